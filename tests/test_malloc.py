"""funcflux keeps freed array memory in the process on glibc (funcflux/_malloc.py)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A training step in miniature: eight 2 MiB intermediates live at once, then all are
# freed. With glibc's defaults the freed heap top is trimmed and the next step touches
# it again page by page; with funcflux's thresholds the heap keeps it.
CHURN = """
import resource, numpy as np, funcflux._malloc as m
import funcflux
x = np.ones(1 << 19, np.float32)
def step():
    tape = [x * float(i) for i in range(8)]
    return sum(float(t[0]) for t in tape)
for _ in range(5):
    step()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(m.tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


def run(env_extra: dict) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES",
                        "FUNCFLUX_MALLOC")}
    env.update(env_extra, PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHURN], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt only")
def test_freed_arrays_are_reused_without_page_faults():
    tuned, faults = run({})
    if not tuned:
        pytest.skip("not glibc")
    assert faults < 100, faults  # 20 steps touching 16 MiB afresh would be ~80,000


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt only")
def test_the_users_allocator_settings_win():
    tuned, faults = run({"FUNCFLUX_MALLOC": "system"})
    assert not tuned
    if run({})[0]:  # on glibc, the defaults do page-fault here: the test above can fail
        assert faults > 1000, faults
    assert not run({"MALLOC_TRIM_THRESHOLD_": "131072"})[0]
