import importlib.util
import os

import pytest
from hypothesis import HealthCheck, Phase, settings

from tests import devices

# The default profile is for quick runs while many rules change at once: few examples
# and no shrinking (a failing sweep line prints its sizes and seed, which reproduce it).
# HYPOTHESIS_PROFILE=thorough explores more and shrinks failures to minimal examples.
settings.register_profile(
    "default", max_examples=8, deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


# ----------------------------------------------------------------------------- devices
# `pytest --device strict` runs the device-aware tests on the strict stand-in (tests/strict.py),
# `--device gpu` on CuPy. Tests that put their data through `put` run on that device;
# `@pytest.mark.gpu` tests need a real GPU and skip without one; `@pytest.mark.cpu_only(reason)`
# tests skip on any other device.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", choices=("cpu", "strict", "gpu"), default="cpu",
                     help="where device-aware tests put their arrays: NumPy (cpu), the strict "
                          "CuPy-like stand-in (strict), or CuPy (gpu)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs CuPy and a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "cpu_only(reason): runs only with --device cpu")
    name = config.getoption("--device")
    if name == "gpu":
        from funcflux import device
        if not device.is_available():
            raise pytest.UsageError("--device gpu needs CuPy (pip install cupy-cuda12x) and a "
                                    "CUDA GPU, and this machine lacks one of them. Use --device strict to "
                                    "check CuPy-readiness without one.")
    devices.select(name)


#: doctests that need an optional package (the README's test command installs .[test] only)
DOCTEST_NEEDS = {"funcflux.train.plot_history": "matplotlib"}


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    name = config.getoption("--device")
    gpu_ok = None
    for item in items:
        need = DOCTEST_NEEDS.get(item.name)
        if need is not None and importlib.util.find_spec(need) is None:
            item.add_marker(pytest.mark.skip(reason=f"needs {need} (an optional dependency)"))
        if item.get_closest_marker("gpu") is not None:
            if gpu_ok is None:
                from funcflux import device
                gpu_ok = device.is_available()
            if not gpu_ok:
                item.add_marker(pytest.mark.skip(reason="needs CuPy and a CUDA GPU"))
        m = item.get_closest_marker("cpu_only")
        if m is not None and name != "cpu":
            why = m.args[0] if m.args else "CPU only"
            item.add_marker(pytest.mark.skip(reason=f"--device {name}: {why}"))


@pytest.fixture
def device() -> str:
    """The session's device: "cpu", "strict" or "gpu"."""
    return devices.NAME


@pytest.fixture
def put():
    """Move a tree's arrays to the session's device."""
    return devices.put


@pytest.fixture
def get():
    """Bring a tree's arrays back to NumPy."""
    return devices.get
