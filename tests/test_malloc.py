"""The allocator setting is opt-in: ff.tune_allocator() or FUNCFLUX_MALLOC=keep (funcflux/_malloc.py).

``import funcflux`` alone must leave the process's allocator as it found it.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A training step in miniature: eight 2 MiB intermediates live at once, then all are
# freed. With glibc's defaults the freed heap top is trimmed and the next step touches
# it again page by page; with the thresholds the heap keeps it.
CHURN = """
import resource, sys, numpy as np
import funcflux as ff, funcflux._malloc as m
if sys.argv[1] == "call":
    ff.tune_allocator()
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
glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt only")


def run(env_extra: dict, how: str = "import") -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES",
                        "FUNCFLUX_MALLOC")}
    env.update(env_extra, PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHURN, how], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@glibc
def test_import_alone_changes_nothing():
    tuned, faults = run({})
    assert not tuned
    if run({}, "call")[0]:  # on glibc, the defaults do page-fault here
        assert faults > 1000, faults


@glibc
def test_tune_allocator_keeps_freed_memory():
    tuned, faults = run({}, "call")
    if not tuned:
        pytest.skip("not glibc")
    assert faults < 100, faults  # 20 steps touching 16 MiB afresh would be ~80,000


@glibc
def test_the_environment_opts_in():
    tuned, faults = run({"FUNCFLUX_MALLOC": "keep"})
    if not tuned:
        pytest.skip("not glibc")
    assert faults < 100, faults


@glibc
def test_the_users_allocator_settings_win():
    assert not run({"MALLOC_TRIM_THRESHOLD_": "131072"}, "call")[0]
    assert not run({"MALLOC_TRIM_THRESHOLD_": "131072", "FUNCFLUX_MALLOC": "keep"})[0]
