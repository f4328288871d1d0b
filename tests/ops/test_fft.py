"""The FFT family beyond the sweep: NumPy's values and dtypes, known derivatives,
the Hermitian halving of ``rfft``/``irfft``, batching, and the errors.

The sweep (``specs_fft.py``) checks every transform against finite differences;
here the derivatives are checked against values known in closed form: the DFT
matrix ``W[k, j] = exp(-2 pi i j k / n)``, Parseval's theorem, and round trips.
"""
from __future__ import annotations

import doctest
import warnings

import numpy as np
import pytest

import funcflux as ff
import funcflux.numpy as fnp
from funcflux.test_util import check_grads

RNG = np.random.default_rng(0)
NORMS = [None, "backward", "ortho", "forward"]


def _x(shape, dtype=np.float64):
    x = RNG.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * RNG.standard_normal(shape)
    return x.astype(dtype)


def _traced(f, *args):
    """``f``'s value computed inside ``jvp`` (so every NumPy call sees tracers)."""
    return ff.jvp(f, args, tuple(np.zeros_like(a) for a in args))[0]


# ------------------------------------------------------------------------------- values
ONE_AXIS = [
    ("fft", {}), ("fft", {"n": 3}), ("fft", {"n": 8, "axis": 0}),
    ("ifft", {}), ("ifft", {"n": 2, "axis": -2}), ("ifft", {"n": 7}),
    ("rfft", {}), ("rfft", {"n": 5}), ("rfft", {"n": 4, "axis": 0}), ("rfft", {"n": 9}),
    ("irfft", {}), ("irfft", {"n": 5}), ("irfft", {"n": 2}), ("irfft", {"n": 11, "axis": 0}),
]
MANY_AXES = [
    (name, kw) for name in ["fft2", "ifft2", "rfft2", "irfft2", "fftn", "ifftn", "rfftn", "irfftn"]
    for kw in [{}, {"axes": (0, 2)}, {"s": (3, 5), "axes": (2, 1)}, {"s": (2, 4, 6), "axes": (0, 1, 2)},
               {"axes": (1, 1)}]
    if not (name.endswith("2") and len(kw.get("axes", (1, 2))) != 2)
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("name,kw", ONE_AXIS + MANY_AXES + [
    ("fftshift", {}), ("fftshift", {"axes": 1}), ("ifftshift", {"axes": (0, -1)})])
def test_values_and_dtypes_are_numpys(name, kw, norm, dtype):
    if name in ("rfft", "rfft2", "rfftn") and np.dtype(dtype).kind == "c":
        pytest.skip("NumPy refuses complex input to the real transforms (tested below)")
    x = _x((4, 5, 6), dtype)
    kw = dict(kw) if "shift" in name else dict(kw, norm=norm)
    want = getattr(np.fft, name)(x, **kw)
    got = _traced(lambda x: getattr(np.fft, name)(x, **kw), x)
    assert got.dtype == want.dtype and got.shape == want.shape
    # NumPy's n-dimensional transforms are loops of the one-axis ones: the same bits.
    np.testing.assert_array_equal(got, want)
    # Outside a transform the namespace is NumPy (or CuPy) itself.
    np.testing.assert_array_equal(getattr(fnp.fft, name)(x, **kw), want)


def test_float32_gives_complex64_and_back():
    x = _x((6,), np.float32)
    out, pullback = ff.vjp(np.fft.rfft, x)
    assert out.dtype == np.complex64 == np.fft.rfft(x).dtype
    (g,) = pullback(np.ones_like(out))
    assert g.dtype == np.float32
    c = _x((4,), np.complex64)
    out, pullback = ff.vjp(lambda c: np.fft.irfft(c, 7), c)
    assert out.dtype == np.float32
    assert pullback(np.ones_like(out))[0].dtype == np.complex64


def test_float16_cotangents_keep_float16():
    """NumPy transforms float16 in complex64; the cotangent comes back as float16."""
    x = _x((5,), np.float16)
    for f in (np.fft.fft, np.fft.rfft, lambda x: np.fft.irfft(x, 7)):
        out, pullback = ff.vjp(f, x)
        assert pullback(np.ones_like(out))[0].dtype == np.float16


def test_namespace_docstring_runs():
    """The examples of ``fnp.fft``'s module docstring (its functions' run on their own)."""
    runner = doctest.DocTestRunner()
    for t in doctest.DocTestFinder(recurse=False).find(fnp.fft, "funcflux.numpy.fft", globs={}):
        runner.run(t)
    assert runner.summarize(verbose=False) == (0, 3)


def test_fft_of_a_python_list_and_plain_arrays():
    assert fnp.fft.fft([1.0, 2.0]).tolist() == [3.0 + 0j, -1.0 + 0j]
    assert sorted(n for n in dir(fnp.fft) if not n.startswith("_")) == sorted(
        ["fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "rfft2", "irfft2",
         "fftn", "ifftn", "rfftn", "irfftn", "fftshift", "ifftshift"])


# ------------------------------------------------------------------- known derivatives
def _dft(n):
    j = np.arange(n)
    return np.exp(-2j * np.pi * np.outer(j, j) / n)


@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_rfft_jacobian_is_the_first_rows_of_the_dft_matrix(n):
    x = _x((n,))
    W = _dft(n)[: n // 2 + 1]
    for mode in (ff.jacrev, ff.jacfwd):
        np.testing.assert_allclose(mode(lambda x: np.real(np.fft.rfft(x)))(x), W.real,
                                   atol=1e-12)
        np.testing.assert_allclose(mode(lambda x: np.imag(np.fft.rfft(x)))(x), W.imag,
                                   atol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 8])
@pytest.mark.parametrize("norm", NORMS)
def test_irfft_jacobian_reads_a_hermitian_half_spectrum(n, norm):
    """x_j = s [a_0 + 2 sum_k (a_k cos - b_k sin)(2 pi j k / n) + a_{n/2} (-1)^j], k < n/2.

    Bin 0's imaginary part (and bin n/2's for even n) is ignored: its column is zero.
    This is why irfft's transpose is not rfft (the mirrored bins count twice).
    """
    m = n // 2 + 1
    s = {None: 1 / n, "backward": 1 / n, "ortho": 1 / np.sqrt(n), "forward": 1.0}[norm]
    weight = np.full(m, 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    angle = 2 * np.pi * np.outer(np.arange(n), np.arange(m)) / n
    d_re = s * weight * np.cos(angle)
    d_im = -s * weight * np.sin(angle)
    d_im[:, 0] = 0.0
    if n % 2 == 0:
        d_im[:, -1] = 0.0
    a, b = _x((m,)), _x((m,))
    f = lambda a, b: np.fft.irfft(a + 1j * b, n, norm=norm)
    for mode in (ff.jacrev, ff.jacfwd):
        ja, jb = mode(f, argnums=(0, 1))(a, b)
        np.testing.assert_allclose(ja, d_re, atol=1e-12)
        np.testing.assert_allclose(jb, d_im, atol=1e-12)


@pytest.mark.parametrize("norm", [None, "ortho", "forward"])
def test_parseval(norm):
    """sum |fft(x)|^2 = n sum x^2 (backward norm): its gradient is 2 n x, its Hessian 2 n I."""
    n = 6
    x = _x((n,))
    c = {None: n, "ortho": 1.0, "forward": 1.0 / n}[norm]
    loss = lambda x: np.sum(np.abs(np.fft.fft(x, norm=norm)) ** 2)
    np.testing.assert_allclose(ff.grad(loss)(x), 2 * c * x, rtol=1e-12)
    np.testing.assert_allclose(ff.hessian(lambda x: np.sum(np.real(
        np.fft.fft(x, norm=norm) * np.conj(np.fft.fft(x, norm=norm)))))(x),
        2 * c * np.eye(n), atol=1e-10)
    # The same through the half spectrum: the mirrored bins count twice.
    z = _x((n,))
    half = lambda x: np.sum(np.abs(np.fft.rfft(x, norm=norm)[1:n // 2]) ** 2)
    full = lambda x: np.sum(np.abs(np.fft.fft(x, norm=norm)[1:n // 2]) ** 2)
    np.testing.assert_allclose(ff.grad(half)(z), ff.grad(full)(z), rtol=1e-12)


def test_parseval_complex():
    """For complex z, JAX's convention: grad of sum |fft(z)|^2 = n sum |z|^2 is 2 n conj(z)."""
    z = _x((5,), np.complex128)
    g = ff.grad(lambda z: np.sum(np.abs(np.fft.fft(z)) ** 2))(z)
    np.testing.assert_allclose(g, 2 * 5 * np.conj(z), rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 6])
@pytest.mark.parametrize("norm", NORMS)
def test_irfft_of_rfft_has_identity_derivatives(n, norm):
    x = _x((n,))
    round_trip = lambda x: np.fft.irfft(np.fft.rfft(x, norm=norm), n, norm=norm)
    for mode in (ff.jacrev, ff.jacfwd):
        np.testing.assert_allclose(mode(round_trip)(x), np.eye(n), atol=1e-12)
    # two dimensions, and a Hessian of a quadratic through the round trip
    y = _x((3, n))
    rt2 = lambda y: np.fft.irfft2(np.fft.rfft2(y, norm=norm), y.shape, norm=norm)
    np.testing.assert_allclose(ff.jacrev(rt2)(y).reshape(3 * n, 3 * n), np.eye(3 * n),
                               atol=1e-12)
    np.testing.assert_allclose(ff.hessian(lambda x: np.sum(round_trip(x) ** 2))(x),
                               2 * np.eye(n), atol=1e-10)


def test_fft_then_ifft_round_trip_on_complex_input():
    z = _x((3, 4), np.complex128)
    out, pullback = ff.vjp(lambda z: np.fft.ifftn(np.fft.fftn(z, norm="ortho"), norm="ortho"), z)
    ct = _x((3, 4), np.complex128)
    np.testing.assert_allclose(out, z, atol=1e-12)
    np.testing.assert_allclose(pullback(ct)[0], ct, atol=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_second_order_with_a_crop_and_a_pad(norm):
    f = lambda x: np.sum(np.abs(np.fft.rfft(np.tanh(x), n=7, norm=norm)) ** 3)
    check_grads(f, (_x((2, 5)),), order=2)
    g = lambda z: np.sum(np.real(np.fft.ifft2(z * z, s=(4, 2), norm=norm)) ** 2)
    check_grads(g, (_x((3, 3), np.complex128),), order=2)


# -------------------------------------------------------------------------------- vmap
@pytest.mark.parametrize("in_axis", [0, 1, 2, -1])
def test_vmap_and_vmap_of_grad_match_a_loop(in_axis):
    xs = _x((3, 4, 5))
    f = lambda x: np.fft.irfft(np.fft.rfft(x, axis=0) ** 2, 4, axis=0)
    loss = lambda x: np.sum(f(x) ** 2) + np.sum(np.abs(np.fft.fft2(x, s=(3, 6), norm="ortho")) ** 3)
    examples = [np.take(xs, i, axis=in_axis) for i in range(xs.shape[in_axis])]
    np.testing.assert_allclose(ff.vmap(f, in_axes=in_axis)(xs),
                               np.stack([f(e) for e in examples]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ff.vmap(ff.grad(loss), in_axes=in_axis)(xs),
                               np.stack([ff.grad(loss)(e) for e in examples]), rtol=1e-12)
    jac = ff.jacrev(lambda x: np.real(np.fft.fftn(x, axes=(1, 0))))(examples[0])
    jac_fwd = ff.jacfwd(lambda x: np.real(np.fft.fftn(x, axes=(1, 0))))(examples[0])
    np.testing.assert_allclose(jac, jac_fwd, atol=1e-12)


# ------------------------------------------------------------------------------ errors
def _traced_call(f, x):
    return ff.grad(lambda x: np.sum(np.real(f(x))))(x)


def test_errors_name_the_problem():
    x = _x((4,))
    with pytest.raises(TypeError, match="rfft.*must be real"):
        ff.grad(lambda x: np.sum(np.abs(np.fft.rfft(x + 1j * x))))(x)
    with pytest.raises(ValueError, match="Invalid norm value"):
        _traced_call(lambda x: np.fft.fft(x, norm="unitary"), x)
    with pytest.raises(ValueError, match=r"Invalid number of FFT data points \(0\)"):
        _traced_call(lambda x: np.fft.fft(x, n=0), x)
    with pytest.raises(ValueError, match=r"Invalid number of FFT data points \(0\)"):
        _traced_call(lambda x: np.fft.irfft(x[:1]), x)
    with pytest.raises(TypeError, match="out="):
        _traced_call(lambda x: np.fft.fft(x, out=np.empty(4, complex)), x)
    with pytest.raises(np.exceptions.AxisError):
        _traced_call(lambda x: np.fft.fft(x, axis=1), x)
    with pytest.raises(ValueError, match="Shape and axes have different lengths"):
        _traced_call(lambda x: np.fft.fftn(x, s=(2, 2), axes=(0,)), x)


def test_s_without_axes_warns_as_numpy_does():
    x = _x((3, 4))
    with pytest.warns(DeprecationWarning, match="`axes` should not be `None`"):
        got = _traced(lambda x: np.fft.fftn(x, s=(3, 5)), x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        np.testing.assert_array_equal(got, np.fft.fftn(x, s=(3, 5)))
