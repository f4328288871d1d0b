"""funcflux.scipy.special: routing of SciPy's ufuncs, derivatives at special points, the
paths without SciPy, and logsumexp against SciPy's.

The sweep (tests/ops/specs_special.py) checks every rule against finite differences;
this file checks what a sweep over smooth domains cannot: poles, kinks, tails, the
error messages, and the NumPy fallbacks. SciPy is optional: tests that compare with it
skip without it; the no-SciPy tests simulate its absence (and run without it too,
against values recorded from SciPy 1.17.1).
"""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp
from funcflux.ops import special as ops
from funcflux.scipy import special as fsp
from funcflux.test_util import check_grads

try:
    import scipy.special as sc
except ImportError:  # SciPy is optional
    sc = None

needs_scipy = pytest.mark.skipif(sc is None, reason="needs SciPy (pip install scipy)")
EULER = 0.5772156649015329
ZETA3 = 1.2020569031595942


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, check=False)


# ----------------------------------------------------------------------------- importing
def test_import_funcflux_does_not_import_scipy():
    r = _run("""
        import sys
        import funcflux, funcflux.scipy.special
        assert "scipy" not in sys.modules, sorted(m for m in sys.modules if "scipy" in m)
        """)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- routing
@needs_scipy
@pytest.mark.parametrize("name", sorted(set(ops.SCIPY_UFUNCS) - {"digamma"}))
def test_scipy_ufuncs_route_to_funcflux(name):
    """SciPy's ufunc on a traced value is funcflux's primitive, found by name and cached."""
    uf = getattr(sc, name)
    x = np.array([0.3, 0.6])
    args = (x, x + 1.0, x)[:uf.nin] if name != "yn" else (np.array([1, 2]), x + 1.0)
    ours = getattr(fsp, name)
    # the order or shape parameters of these have no derivative: only the last argument
    last = name in ("jv", "yn", "iv", "ive", "gammainc", "gammaincc", "betainc")
    nums = uf.nin - 1 if last else tuple(range(uf.nin))
    np.testing.assert_allclose(ff.grad(lambda *a: np.sum(uf(*a)), argnums=nums)(*args),
                               ff.grad(lambda *a: np.sum(ours(*a)), argnums=nums)(*args),
                               rtol=1e-15)
    assert fnp.UFUNCS[uf] is ops.SCIPY_UFUNCS[name]


@needs_scipy
def test_unsupported_scipy_ufunc_names_itself():
    """Regression: an unsupported SciPy ufunc was reported as ``numpy.struve``."""
    with pytest.raises(TypeError, match=r"scipy\.special\.struve, called here") as e:
        ff.grad(lambda x: sc.struve(1.0, x))(2.0)
    assert "numpy.struve" not in str(e.value)
    with pytest.raises(TypeError, match=r"scipy\.special\.erf\(\.\.\., out=\.\.\.\)"):
        ff.grad(lambda x: sc.erf(x, out=np.empty(())))(np.array(1.0))
    with pytest.raises(TypeError, match=r"scipy\.special\.xlogy\.outer"):
        ff.grad(lambda x: np.sum(sc.xlogy.outer(x, x)))(np.ones(2))


def test_unsupported_numpy_and_other_ufuncs_name_themselves():
    with pytest.raises(TypeError, match=r"rule for numpy\.ldexp, called"):
        ff.grad(lambda x: np.ldexp(x, 2))(1.0)
    vectorized = np.frompyfunc(math.erf, 1, 1)
    with pytest.raises(TypeError, match=r"rule for the ufunc 'erf \(vectorized\)'"):
        ff.grad(lambda x: vectorized(x))(np.array(1.0))


@needs_scipy
def test_scipy_functions_that_are_not_ufuncs_refuse_traced_values():
    """SciPy's logsumexp and polygamma convert to NumPy: an error, never a wrong number."""
    with pytest.raises(TypeError, match="on a traced value would drop it"):
        ff.grad(lambda x: sc.logsumexp(x))(np.ones(3))
    with pytest.raises(TypeError, match="on a traced value would drop it"):
        ff.grad(lambda x: sc.polygamma(1, x))(1.0)


# ----------------------------------------------------------------------------- special points
def _d(f, x, order=1):
    g = f
    for _ in range(order):
        g = ff.grad(g)
    return float(g(x))


# Derivatives with JAX's value where JAX defines one, else the closed form. JAX's rules
# as read in its source (JAX 0.4.x): jax/_src/scipy/special.py (expit, logit, xlogy,
# _xlogx for entr, polygamma) and the jvp rules of lax's erf, erf_inv, bessel_i0e and
# bessel_i1e (jax/_src/lax/special.py; jax/_src/lax/lax.py in older releases).
SPECIAL_POINTS = [
    ("erf", 0.0, 2 / math.sqrt(math.pi)),          # 2/sqrt(pi) exp(-x^2), JAX's erf jvp
    ("erfc", 0.0, -2 / math.sqrt(math.pi)),
    ("erfinv", 0.0, math.sqrt(math.pi) / 2),       # JAX's erf_inv jvp: sqrt(pi)/2 exp(ans^2)
    ("erfinv", 1.0, math.inf),
    ("erfcx", 0.0, -2 / math.sqrt(math.pi)),
    ("ndtr", 0.0, 1 / math.sqrt(2 * math.pi)),
    ("ndtri", 0.5, math.sqrt(2 * math.pi)),
    ("ndtri", 0.0, math.inf),
    ("log_ndtr", 0.0, 2 * (1 / math.sqrt(2 * math.pi))),  # pdf(0)/cdf(0)
    ("gammaln", 1.0, -EULER),                      # digamma(1) = -Euler's gamma
    ("gamma", 1.0, -EULER),                        # gamma(1) digamma(1)
    ("digamma", 1.0, math.pi ** 2 / 6),            # polygamma(1, 1) = zeta(2)
    ("expit", 0.0, 0.25),                          # JAX's expit jvp: ans (1 - ans)
    ("logit", 0.5, 4.0),                           # JAX's logit jvp: 1/(x (1 - x))
    ("logit", 0.0, math.inf),
    ("entr", 0.0, math.inf),                       # JAX: -(log(0) + 1) from _xlogx's jvp
    ("entr", -1.0, 0.0),                           # JAX: select of the constant -inf
    ("entr", 1.0, -1.0),
    ("i0e", 0.0, 0.0),                             # JAX's bessel_i0e jvp: i1e - sign(x) i0e
    ("i1e", 0.0, 0.5),                             # JAX's bessel_i1e jvp: 0.5 where |x| <= eps
    ("i1e", 1e-300, 0.5),
]


@needs_scipy
@pytest.mark.parametrize("name, x, want", SPECIAL_POINTS,
                         ids=[f"{n}({x})" for n, x, _ in SPECIAL_POINTS])
def test_derivative_at_special_points(name, x, want):
    f = getattr(fsp, name)
    with np.errstate(divide="ignore"):  # log(0) inside the rule of entr at 0
        rev = _d(f, x)
        fwd = float(ff.jvp(f, (x,), (1.0,))[1])
    for got in (rev, fwd):
        if math.isinf(want):
            assert got == want
        else:
            assert got == pytest.approx(want, rel=1e-14, abs=1e-15)


@needs_scipy
def test_second_derivatives_at_special_points():
    assert _d(fsp.digamma, 1.0, 2) == pytest.approx(-2 * ZETA3, rel=1e-14)  # polygamma(2, 1)
    assert _d(lambda x: fsp.polygamma(1, x), 1.0) == pytest.approx(-2 * ZETA3, rel=1e-14)
    # The derivative of i1e has a kink at 0 (i1e is odd): 0, the mean of the one-sided
    # limits -1 and 1, as JAX's rule (a constant 0.5 at |x| <= eps) gives.
    assert _d(fsp.i1e, 0.0, 2) == 0.0
    assert _d(fsp.expit, 0.0, 2) == 0.0
    assert _d(fsp.logit, 0.5, 2) == pytest.approx(0.0, abs=1e-14)


@needs_scipy
def test_log_ndtr_derivative_in_the_far_left_tail():
    """At x = -30 both pdf and cdf are below 1e-197 and pdf/cdf is fine, but at -40
    both underflow (0/0): the rule must not form that quotient."""
    x = -30.0  # Reference: -x / (1 - x^-2 + 3 x^-4 - 15 x^-6 + 105 x^-8 - 945 x^-10),
    s = 1 - x ** -2 + 3 * x ** -4 - 15 * x ** -6 + 105 * x ** -8 - 945 * x ** -10
    assert _d(fsp.log_ndtr, x) == pytest.approx(-x / s, rel=1e-13)  # the Mills-ratio series
    x = -40.0
    s = 1 - x ** -2 + 3 * x ** -4 - 15 * x ** -6 + 105 * x ** -8 - 945 * x ** -10
    assert _d(sc.log_ndtr, x) == pytest.approx(-x / s, rel=1e-13)
    assert math.isfinite(_d(sc.log_ndtr, -1e5))
    # the second derivative -> -1 in the tail (d/dx of about -x)
    assert _d(sc.log_ndtr, -30.0, 2) == pytest.approx(-1.0, abs=2e-3)
    # the right tail: erfcx(-x/sqrt(2)) overflows past 37.5; no inf/inf at second order
    assert _d(sc.log_ndtr, 40.0, 2) == 0.0 and _d(sc.log_ndtr, 37.0, 2) < 0.0
    assert float(ff.jvp(ff.grad(sc.log_ndtr), (40.0,), (1.0,))[1]) == 0.0
    # at 0, from either formula: -(pdf(0)/cdf(0))**2 = -2/pi
    assert _d(sc.log_ndtr, 0.0, 2) == pytest.approx(-2 / math.pi, rel=1e-14)
    assert _d(sc.log_ndtr, 1e-9, 2) == pytest.approx(-2 / math.pi, rel=1e-8)
    # where pdf/cdf is computable, the same number
    x = -10.0
    naive = math.exp(-x * x / 2) / math.sqrt(2 * math.pi) / float(sc.ndtr(x))
    assert _d(sc.log_ndtr, x) == pytest.approx(naive, rel=1e-13)


@needs_scipy
def test_expit_derivative_does_not_round_to_zero():
    """expit'(40) = expit(40) expit(-40) = 4.2e-18; s (1 - s), JAX's rule, rounds to 0."""
    assert _d(sc.expit, 40.0) == pytest.approx(math.exp(-40) / (1 + math.exp(-40)) ** 2,
                                               rel=1e-14)


@needs_scipy
def test_xlogy_and_xlog1py_at_zero():
    """JAX's rules (jax/_src/scipy/special.py, _xlogy_jvp): d/dx = log(y), d/dy = x/y,
    which is 0/0 = NaN at (0, 0); funcflux gives 0 there, the derivative of the
    function 0 along x = 0. Elsewhere the numbers are JAX's."""
    with np.errstate(divide="ignore"):
        dx, dy = ff.grad(sc.xlogy, argnums=(0, 1))(0.0, 0.0)
        assert float(dx) == -math.inf and float(dy) == 0.0
        dx, dy = ff.grad(sc.xlogy, argnums=(0, 1))(0.0, 2.0)
        assert float(dx) == pytest.approx(math.log(2.0)) and float(dy) == 0.0
        dx, dy = ff.grad(sc.xlog1py, argnums=(0, 1))(0.0, -1.0)
        assert float(dx) == -math.inf and float(dy) == 0.0
        # second order at (0, 0): d2/dy2 is 0 along x = 0, and d2/dxdy = 1/y
        h = ff.hessian(lambda v: sc.xlogy(v[0], v[1]))(np.array([0.0, 1.0]))
        np.testing.assert_allclose(h, [[0.0, 1.0], [1.0, 0.0]])
        assert float(ff.grad(ff.grad(sc.xlogy, argnums=1), argnums=1)(0.0, 0.0)) == 0.0
    # entropy written with xlogy, at a zero probability: finite where it should be
    g = ff.grad(lambda p: -np.sum(sc.xlogy(p, 0.5)))(np.array([0.0, 0.5]))
    np.testing.assert_allclose(g, [math.log(2.0), math.log(2.0)])


@needs_scipy
def test_polygamma_order_is_not_differentiated():
    with pytest.raises(TypeError, match=r"polygamma\(n, x\): n, the order of the derivative"):
        ff.grad(lambda n: fsp.polygamma(n, 2.0))(1.0)
    with pytest.raises(TypeError, match=r"n, the order of the derivative"):
        ff.jvp(lambda n: fsp.polygamma(n, 2.0), (1.0,), (1.0,))
    # a constant or batched integer order is fine
    n, x = np.array([0, 1, 2]), np.array([1.5, 2.0, 2.5])
    got = ff.vmap(ff.grad(lambda n, x: fsp.polygamma(n, x), argnums=1))(n, x)
    np.testing.assert_allclose(got, sc.polygamma(n + 1, x), rtol=1e-14)
    # float32 kept (SciPy's own polygamma returns float64 here)
    assert fsp.polygamma(1, np.float32(2.0)).dtype == np.float32


@needs_scipy
def test_complex_arguments_are_refused_with_a_clear_error():
    # (erf and erfc take complex values since the autograd-coverage work: erfcx does not)
    with pytest.raises(NotImplementedError, match=r"special\.erfcx: complex values"):
        ff.grad(lambda z: np.real(sc.erfcx(z)))(np.complex128(0.5 + 0.5j))


# ----------------------------------------------------------------------------- logsumexp
LSE_CASES = [
    {"a": [[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]]},
    {"a": [[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]], "axis": 1},
    {"a": [[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]], "axis": (0, 1), "keepdims": True},
    {"a": [[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]], "axis": -1, "keepdims": True, "return_sign": True},
    {"a": [1000.0, 1000.0, -np.inf]},
    {"a": [-np.inf, -np.inf]},
    {"a": [-np.inf, -np.inf], "return_sign": True},
    {"a": 2.5},
    {"a": 2.5, "keepdims": True},
    {"a": [1, 2, 3]},
    {"a": [[0.0, 1.0], [2.0, 3.0]], "b": [1.0, 2.0], "axis": 0},
    {"a": [[0.0, 1.0], [2.0, 3.0]], "b": [[1.0, 0.0], [0.0, 0.5]], "axis": 1},
    {"a": [1.0, 2.0], "b": [1.0, -1.0]},
    {"a": [1.0, 2.0], "b": [1.0, -1.0], "return_sign": True},
    {"a": [1.0, 2.0], "b": [-1.0, 1.0], "return_sign": True},
    {"a": [1.0, 1.0], "b": [1.0, -1.0], "return_sign": True},
    {"a": np.arange(10.0), "b": np.arange(10, 0, -1), "keepdims": True},
]


@needs_scipy
@pytest.mark.parametrize("kw", LSE_CASES, ids=range(len(LSE_CASES)))
def test_logsumexp_matches_scipy(kw):
    kw = {k: (np.asarray(v) if k in "ab" else v) for k, v in kw.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        want = sc.logsumexp(**kw)
        got = fsp.logsumexp(**kw)
    want, got = (want, got) if isinstance(want, tuple) else ((want,), (got,))
    for w, g in zip(want, got):
        assert np.shape(g) == np.shape(w)
        assert np.asarray(g).dtype == np.asarray(w).dtype
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)


def test_logsumexp_derivatives():
    a = np.array([[0.1, 1.2, -0.4], [0.3, 0.0, 2.0]])
    b = np.array([0.5, 2.0, 1.5])
    check_grads(lambda a, b: fsp.logsumexp(a, axis=1, b=b), (a, b), order=2)
    check_grads(lambda a: fsp.logsumexp(a, axis=0, b=-b[:2, None], return_sign=True)[0],
                (a,), order=2)
    # softmax is the gradient; a zero weight drops its entry
    g = ff.grad(lambda a: fsp.logsumexp(a, b=np.array([1.0, 0.0, 1.0])))(np.zeros(3))
    np.testing.assert_allclose(g, [0.5, 0.0, 0.5])
    # the sign is a constant
    g = ff.grad(lambda a: fsp.logsumexp(a, b=np.array([1.0, -2.0]), return_sign=True)[1])(
        np.zeros(2))
    np.testing.assert_array_equal(g, [0.0, 0.0])


# ----------------------------------------------------------------------------- without SciPy
@pytest.fixture
def no_scipy(monkeypatch):
    """SciPy made unimportable, and funcflux's memory of having found it forgotten."""
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.special", None)
    monkeypatch.setattr(ops, "_FOUND", {})
    monkeypatch.setattr(ops, "_REGISTERED", {})


# Values from SciPy 1.17.1 (scipy.special.<name>(np.array(points)).tolist()).
RECORDED = {
    "erf": ([-2.5, -0.3, 0.0, 0.7, 3.0],
            [-0.999593047982555, -0.3286267594591274, 0.0, 0.6778011938374183,
             0.9999779095030014]),
    "erfc": ([-1.0, 0.2, 2.0, 10.0, 26.0],
             [1.8427007929497148, 0.7772974107895215, 0.004677734981047266,
              2.0884875837625446e-45, 5.663192408856145e-296]),
    "ndtr": ([-37.0, -5.0, -0.5, 0.0, 1.2, 9.0],
             [5.7255712225239266e-300, 2.866515718791933e-07, 0.3085375387259869, 0.5,
              0.8849303297782918, 1.0]),
    "gamma": ([-2.5, -0.5, 0.5, 3.7, 171.5, 0.0, -0.0, -1.0],
              [-0.9453087204829419, -3.5449077018110318, 1.7724538509055159,
               4.170651783796604, 9.483367566824803e+307, math.inf, -math.inf, math.nan]),
    "gammaln": ([-2.5, 0.1, 1.0, 7.3, 100000.0, 0.0, -3.0],
                [-0.05624371649767401, 2.252712651734206, 0.0, 7.147892523022249,
                 1051287.7089736569, math.inf, math.inf]),
    "expit": ([-800.0, -20.0, -0.5, 0.0, 3.0, 40.0],
              [0.0, 2.0611536181902037e-09, 0.3775406687981454, 0.5, 0.9525741268224334,
               1.0]),
    "logit": ([1e-10, 0.25, 0.49, 0.5, 0.51, 0.9, 0.0, 1.0],
              [-23.025850929840455, -1.0986122886681098, -0.04000533461369919, 0.0,
               0.04000533461369919, 2.1972245773362196, -math.inf, math.inf]),
    "entr": ([0.0, 1e-300, 0.3, 1.0, 5.0, -1.0, math.nan],
             [0.0, 6.907755278982137e-298, 0.3611918412977808, -0.0, -8.047189562170502,
              -math.inf, math.nan]),
    "i0e": ([-1000.0, -3.0, 0.0, 0.4, 50.0, 699.0, 701.0, 1000000.0],
            [0.012617240455891257, 0.24300035416182536, 1.0, 0.6974021705595334,
             0.056561626647454184, 0.01509208342218638, 0.015070530981047301,
             0.00039894233026924577]),
}
RECORDED2 = {
    "xlogy": (([0.0, 0.0, 2.0, 3.0], [0.0, math.nan, 0.5, 4.0]),
              [0.0, math.nan, -1.3862943611198906, 4.1588830833596715]),
    "xlog1py": (([0.0, 0.0, 2.0], [-1.0, math.nan, 0.5]), [0.0, math.nan, 0.8109302162163288]),
    "betaln": (([1.0, 0.5, 30.0], [2.0, 0.5, 40.0]),
               [-0.6931471805599453, 1.1447298858494, -48.30174909591612]),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_without_scipy_values_match_recorded_scipy(name, no_scipy):
    x, want = RECORDED[name]
    with np.errstate(all="ignore"):
        got = getattr(fsp, name)(np.array(x))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, equal_nan=True)
    assert got.dtype == np.float64
    assert np.asarray(getattr(fsp, name)(np.array(x, dtype=np.float32))).dtype == np.float32
    assert np.asarray(getattr(fsp, name)(np.array([1, 2]))).dtype == np.float64


@pytest.mark.parametrize("name", sorted(RECORDED2))
def test_without_scipy_binary_values_match_recorded_scipy(name, no_scipy):
    (x, y), want = RECORDED2[name]
    got = getattr(fsp, name)(np.array(x), np.array(y))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, equal_nan=True)


@needs_scipy
@pytest.mark.parametrize("name", sorted(RECORDED) + sorted(RECORDED2))
def test_without_scipy_values_match_scipy_on_a_grid(name, no_scipy):
    rng = np.random.default_rng(0)
    lo, hi = {"logit": (0.0, 1.0), "entr": (0.0, 5.0), "xlog1py": (-1.0, 5.0),
              "i0e": (-2000.0, 2000.0), "gammaln": (-50.0, 200.0), "gamma": (-20.0, 20.0),
              "betaln": (0.01, 100.0)}.get(name, (-8.0, 8.0))
    x = rng.uniform(lo, hi, 400)
    x[:4] = [lo, hi, 0.5 * (lo + hi), 0.0 if lo <= 0 <= hi else lo]
    args = (x, rng.uniform(max(lo, 0.01), hi, 400)) if name in RECORDED2 else (x,)
    with np.errstate(all="ignore"):
        got = getattr(fsp, name)(*args)
        want = getattr(sc, name)(*args)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300, equal_nan=True)


@pytest.mark.parametrize("name", ["erf", "erfc", "ndtr", "expit", "logit", "entr"])
def test_without_scipy_derivatives(name, no_scipy):
    lo, hi = (0.1, 0.9) if name in ("logit", "entr") else (-2.0, 2.0)
    x = np.linspace(lo, hi, 5)
    check_grads(getattr(fsp, name), (x,), order=2)


def test_without_scipy_binary_derivatives(no_scipy):
    x, y = np.array([0.5, -1.0, 2.0]), np.array([0.3, 1.5, 2.0])
    check_grads(fsp.xlogy, (x, y), order=2)
    check_grads(fsp.xlog1py, (x, y), order=2)
    check_grads(lambda a: fsp.logsumexp(a, b=y), (x,), order=2)


@pytest.mark.parametrize("name", ["erfinv", "erfcx", "ndtri", "log_ndtr", "digamma", "i1e"])
def test_without_scipy_the_others_ask_for_it(name, no_scipy):
    with pytest.raises(ImportError, match=rf"special\.{name}.* needs scipy\.special.*"
                                          r"pip install scipy"):
        getattr(fsp, name)(np.array([0.5]))


def test_without_scipy_derivatives_that_need_it_ask_for_it(no_scipy):
    with pytest.raises(ImportError, match=r"digamma \(also the derivative of gammaln"):
        ff.grad(fsp.gammaln)(2.0)
    with pytest.raises(ImportError, match=r"polygamma.*pip install scipy"):
        fsp.polygamma(1, 2.0)
    with pytest.raises(ImportError, match=r"i1e \(also the derivative of i0e\).*pip install"):
        ff.grad(fsp.i0e)(2.0)


def test_without_scipy_cpu_only_fallbacks_refuse_device_arrays(no_scipy):
    from tests import strict
    strict.register()
    try:
        x = strict.to_strict(np.array([0.5]))
        with pytest.raises(ImportError, match=r"special\.erf needs a special-function module "
                                              r"for strict_np arrays"):
            fsp.erf(x)
        # the NumPy fallbacks run on any array module
        np.testing.assert_allclose(strict.from_strict(fsp.expit(x)), [0.6224593312018546])
        x = strict.to_strict(np.array([0.4, -1000.0]))  # i0e: RECORDED's values
        np.testing.assert_allclose(strict.from_strict(fsp.i0e(x)),
                                   [0.6974021705595334, 0.012617240455891257], rtol=1e-12)
    finally:
        strict.unregister()


def test_without_scipy_in_a_fresh_process():
    """End to end with SciPy unimportable: the fallbacks, the errors, and the doctests of
    the functions that need SciPy marked to skip."""
    r = _run("""
        import sys
        sys.modules["scipy"] = None
        import numpy as np, funcflux as ff
        from funcflux.scipy import special as fsp
        assert abs(float(ff.grad(fsp.erf)(0.0)) - 2 / np.pi ** 0.5) < 1e-15
        assert float(fsp.logsumexp(np.zeros(4))) == np.log(4.0)
        try:
            fsp.ndtri(0.5)
        except ImportError as e:
            assert "pip install scipy" in str(e)
        else:
            raise AssertionError("ndtri without SciPy")
        assert "+SKIP" in fsp.digamma.__doc__ and "+SKIP" not in fsp.erf.__doc__
        """)
    assert r.returncode == 0, r.stderr


# -- the functions added for HIPS autograd's test suite (its tests/test_scipy.py) ----------
_AUTOGRAD_UFUNCS = [
    ("i0", lambda x: sc.i0(x), (0.2, 5.0)), ("i1", lambda x: sc.i1(x), (-5.0, 5.0)),
    ("j0", lambda x: sc.j0(x), (0.2, 20.0)), ("j1", lambda x: sc.j1(x), (0.2, 20.0)),
    ("y0", lambda x: sc.y0(x), (0.2, 20.0)), ("y1", lambda x: sc.y1(x), (0.2, 20.0)),
    ("jn", lambda x: sc.jn(2, x), (1.3, 6.0)), ("yn", lambda x: sc.yn(2, x), (1.3, 6.0)),
    ("iv", lambda x: sc.iv(np.array([1.5, 30.0]), x), (1.3, 6.0)),
    ("ive", lambda x: sc.ive(np.array([1.5, 30.0]), x), (1.3, 6.0)),
    ("rgamma", lambda x: sc.rgamma(x), (0.3, 2.0)), ("erfcinv", lambda x: sc.erfcinv(x), (0.05, 1.95)),
    ("gammainc", lambda x: sc.gammainc(1.0, x), (1.3, 6.0)),
    ("gammaincc", lambda x: sc.gammaincc(1.0, x), (1.3, 6.0)),
    ("betainc", lambda x: sc.betainc(np.array([1.5, 3.0]), np.array([2.5, 1.2]), x), (0.1, 0.9)),
]


@needs_scipy
@pytest.mark.parametrize("name, f, lims", _AUTOGRAD_UFUNCS, ids=[n for n, _, _ in _AUTOGRAD_UFUNCS])
def test_more_scipy_ufuncs_are_differentiable(name, f, lims):
    """SciPy's own ufuncs on traced values (they had no rule: a TypeError before)."""
    x = np.random.default_rng(0).uniform(*lims, size=2)
    check_grads(f, (x,), order=2)
    np.testing.assert_allclose(ff.vmap(f)(x), np.stack([f(v) for v in x]), rtol=1e-15)


@needs_scipy
def test_beta_in_both_arguments():
    a, b = np.array([1.3, 2.0]), np.array([0.7, 3.5])
    check_grads(sc.beta, (a, b), order=2)
    ga, gb = ff.grad(lambda a, b: np.sum(sc.beta(a, b)), argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, sc.beta(a, b) * (sc.digamma(a) - sc.digamma(a + b)))
    np.testing.assert_allclose(gb, sc.beta(a, b) * (sc.digamma(b) - sc.digamma(a + b)))


@needs_scipy
@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_rgamma_derivative_at_its_zeros(n):
    """1/gamma has zeros at x = -n with slope (-1)^n n! and second derivative
    -2 (-1)^n n! digamma(n + 1) (series of gamma(1 - x) sin(pi x)/pi); -rgamma digamma
    alone would give 0 * inf = NaN there."""
    x = float(-n)
    slope, curv = (-1) ** n * math.factorial(n), -2 * (-1) ** n * math.factorial(n) * sc.digamma(n + 1)
    assert float(ff.grad(sc.rgamma)(x)) == pytest.approx(slope, rel=1e-12)
    assert float(ff.jvp(sc.rgamma, (x,), (1.0,))[1]) == pytest.approx(slope, rel=1e-12)
    assert float(ff.grad(ff.grad(sc.rgamma))(x)) == pytest.approx(curv, rel=1e-10)
    check_grads(sc.rgamma, (np.array([x - 0.3, x + 0.4]),), order=2)


@needs_scipy
def test_gammasgn_has_zero_derivative():
    assert float(ff.grad(sc.gammasgn)(-0.5)) == 0.0


@needs_scipy
@pytest.mark.parametrize("f, what", [
    (lambda v: sc.jv(v, 2.0), "jv: the derivative with respect to the order v"),
    (lambda v: sc.iv(v, 2.0), "iv: the derivative with respect to the order v"),
    (lambda a: sc.gammainc(a, 2.0), "gammainc: the derivative with respect to the shape a"),
    (lambda a: sc.betainc(a, 2.0, 0.5), "betainc: the derivative with respect to a "),
    (lambda b: sc.betainc(2.0, b, 0.5), "betainc: the derivative with respect to b "),
])
def test_parameters_without_a_derivative_say_so(f, what):
    with pytest.raises(TypeError, match=what + ".*not implemented"):
        ff.grad(f)(1.5)
    with pytest.raises(TypeError, match=what + ".*not implemented"):
        ff.jvp(f, (1.5,), (1.0,))


@needs_scipy
@pytest.mark.parametrize("f, d", [
    (sc.erf, lambda z: 2 / np.sqrt(np.pi) * np.exp(-z * z)),
    (sc.erfc, lambda z: -2 / np.sqrt(np.pi) * np.exp(-z * z)),
])
def test_complex_erf_and_erfc_are_holomorphic(f, d):
    """(NotImplementedError before.) JAX's convention: vjp(ct) = ct f'(z)."""
    z = np.array([0.3 + 0.2j, -1.0 + 0.5j])
    np.testing.assert_allclose(ff.jacfwd(f, holomorphic=True)(z), np.diag(d(z)), rtol=1e-13)
    np.testing.assert_allclose(ff.jacrev(f, holomorphic=True)(z), np.diag(d(z)), rtol=1e-13)
    check_grads(f, (z,), order=2)
    check_grads(lambda z: np.abs(f(z)) ** 2, (z,), order=2)


@needs_scipy
def test_multigammaln_matches_scipy_and_is_differentiable():
    a = np.array([[4.2, 4.5, 4.9], [4.1, 4.3, 4.7]])
    for d in (1, 2, 3):
        np.testing.assert_allclose(fsp.multigammaln(a, d), sc.multigammaln(a, d), rtol=1e-14)
        check_grads(lambda a, d=d: fsp.multigammaln(a, d), (a,), order=2)
    assert fsp.multigammaln(np.float32(4.5), 2).dtype == np.float32
    with pytest.raises(ValueError, match=r"a must be greater than \(d - 1\)/2 = 1.0"):
        fsp.multigammaln(np.array([0.5, 3.0]), 3)
    with pytest.raises(ValueError, match="d must be a positive integer"):
        fsp.multigammaln(3.0, 0)
