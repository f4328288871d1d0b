"""``funcflux.scipy.linalg``: expm values against SciPy, derivatives, batching, imports."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import funcflux as ff
from funcflux.ops import linalg as L
from funcflux.scipy.linalg import expm
from funcflux.test_util import check_grads

scipy_linalg = pytest.importorskip("scipy.linalg")
RNG = np.random.default_rng(0)

CASES = {
    "small": 1e-3 * RNG.normal(size=(3, 3)),
    "unit": RNG.normal(size=(4, 4)),
    "large-norm": 8.0 * RNG.normal(size=(4, 4)),     # needs several squarings
    "stack": RNG.normal(size=(2, 3, 3, 3)),
    "complex": RNG.normal(size=(3, 3)) + 1j * RNG.normal(size=(3, 3)),
    "nilpotent": np.triu(RNG.normal(size=(4, 4)), 1),
    "1x1": np.array([[0.7]]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pade_path_matches_scipy(name):
    a = CASES[name]
    want = scipy_linalg.expm(a)
    # the NumPy Pade path (used when SciPy is absent, and for non-NumPy arrays)
    np.testing.assert_allclose(L._expm_pade(a), want, rtol=1e-12,
                               atol=1e-13 * np.abs(want).max())
    got = expm(a)
    np.testing.assert_allclose(got, want, rtol=1e-13)
    assert got.dtype == want.dtype


def test_float32_and_integer_inputs():
    a = CASES["unit"].astype(np.float32)
    assert expm(a).dtype == np.float32 and L._expm_pade(a).dtype == np.float32
    np.testing.assert_allclose(L._expm_pade(a), scipy_linalg.expm(a), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(expm(np.eye(2, dtype=int)), np.e * np.eye(2))


@pytest.mark.parametrize("name", ["small", "unit", "large-norm", "stack", "complex"])
def test_expm_derivatives(name):
    check_grads(expm, (CASES[name],), order=2)


def test_expm_known_derivative_and_vmap():
    # d/dt expm(t G) at t = 0 is G; for a rotation generator the (0, 1) entry is sin t
    g = np.array([[0.0, 1.0], [-1.0, 0.0]])
    assert ff.grad(lambda t: expm(t * g)[0, 1])(0.3) == pytest.approx(np.cos(0.3), rel=1e-12)
    xs = RNG.normal(size=(4, 3, 3))
    got = ff.vmap(expm, in_axes=1)(np.moveaxis(xs, 0, 1))
    np.testing.assert_allclose(got, scipy_linalg.expm(xs), rtol=1e-12)
    gl = ff.grad(lambda a: np.sum(np.sin(expm(a))))
    np.testing.assert_allclose(ff.vmap(gl)(xs), np.stack([gl(x) for x in xs]), rtol=1e-12)


def test_expm_errors_and_scipy_on_traced_values():
    with pytest.raises(ValueError, match="square"):
        expm(np.ones((2, 3)))
    # SciPy's own expm converts its input with np.asarray, which a traced value refuses
    # (with funcflux's TO_NUMPY message) instead of silently dropping the derivative.
    with pytest.raises(TypeError, match="traced value"):
        ff.grad(lambda a: np.sum(scipy_linalg.expm(a)))(np.eye(2))


def test_import_funcflux_does_not_import_scipy():
    code = ("import sys, funcflux, funcflux.scipy, funcflux.scipy.linalg; "
            "print('scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", out.stderr
