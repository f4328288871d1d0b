"""``funcflux.scipy.special``: SciPy's special functions, differentiable, with SciPy's names.

Inside ``grad``, ``jvp`` or ``vmap``, SciPy's own ufuncs work on traced values when
SciPy is installed (``scipy.special.erf(x)`` reaches these functions through NumPy's
ufunc protocol), so existing SciPy code is differentiated as it is:

>>> import numpy as np, funcflux as ff
>>> from funcflux.scipy import special
>>> float(ff.grad(special.erf)(0.0))  # 2/sqrt(pi)  # doctest: +ELLIPSIS
1.128379...

Three of SciPy's functions are not ufuncs and cannot be reached that way: call
``funcflux.scipy.special.logsumexp``, ``polygamma`` and ``multigammaln`` instead of
SciPy's inside a transform (SciPy's turn their arguments into NumPy arrays, which a traced value
refuses with an error).

SciPy is optional, and ``import funcflux`` never imports it. Without it, ``expit``,
``logit``, ``xlogy``, ``xlog1py``, ``entr``, ``i0e`` (NumPy's ``i0``, rescaled; an
asymptotic series beyond ``|x| = 700`` where ``i0`` overflows) and ``logsumexp`` are
computed with NumPy on any device; ``erf``, ``erfc``, ``ndtr``, ``gamma``, ``gammaln`` and
``betaln`` with Python's ``math`` module, element by element, on the CPU only (slower than
SciPy; ``betaln`` as ``gammaln(a) + gammaln(b) - gammaln(a + b)``, which loses digits
when ``a`` or ``b`` is large). The others (``erfinv``, ``erfcx``, ``ndtri``,
``log_ndtr``, ``digamma``, ``polygamma``, ``i1e``) raise an ``ImportError`` asking for
``pip install scipy``, and so do the derivatives that use them (``gammaln' = digamma``).
With SciPy, every value is SciPy's; on CuPy arrays, ``cupyx.scipy.special``'s.

Every function keeps float32 (as SciPy's ufuncs do), works under ``vmap`` and is
differentiable to any order in both modes, except in complex arguments (``erf`` and
``erfc`` take those too). The order of the Bessel functions (``jv``, ``yn``, ``iv``,
``ive``) and the shape parameters of ``gammainc``, ``gammaincc`` and ``betainc`` have no
derivative: differentiating with respect to them raises a ``TypeError``. Derivatives
at special points follow JAX's where they are defined (see ``funcflux/ops/special.py``
for each rule and the points where funcflux gives a finite limit instead of JAX's NaN).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

import funcflux.numpy as fnp

from ..core.trace import Tracer
from ..ops import special as _s
from ..ops.common import ndim, norm_axis

__all__ = ["beta", "betainc", "betaln", "digamma", "entr", "erf", "erfc", "erfcinv", "erfcx",
           "erfinv", "expit", "gamma", "gammainc", "gammaincc", "gammaln", "gammasgn", "i0",
           "i0e", "i1", "i1e", "iv", "ive", "j0", "j1", "jn", "jv", "log_ndtr", "logit",
           "logsumexp", "multigammaln", "ndtr", "ndtri", "polygamma", "psi", "rgamma",
           "xlog1py", "xlogy", "y0", "y1", "yn"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _scipy_findable() -> bool:
    try:  # finds the package without importing it
        return importlib.util.find_spec("scipy") is not None
    except (ImportError, ValueError):
        return False


_HAVE_SCIPY = _scipy_findable()


def _needs_scipy(fn: _F) -> _F:
    """Mark ``fn`` as needing SciPy: without it, its examples are skipped by doctest.

    SciPy is optional (not in the ``test`` extra), so the doctest run must pass
    without it; the examples stay exactly as a reader sees them.
    """
    if not _HAVE_SCIPY and fn.__doc__:
        fn.__doc__ = "\n".join(_skipped(line) for line in fn.__doc__.splitlines())
    return fn


def _skipped(line: str) -> str:
    if not line.lstrip().startswith(">>>"):
        return line
    return line + (", +SKIP" if "# doctest:" in line else "  # doctest: +SKIP")


# -- the error function and the normal distribution -------------------------------------
def erf(z: Any) -> Any:
    """The error function, ``2/sqrt(pi)`` times the integral of ``exp(-t**2)`` from 0 to ``z``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import erf
    >>> float(ff.grad(erf)(1.0))  # 2/sqrt(pi) exp(-1)  # doctest: +ELLIPSIS
    0.41510...
    """
    return _s.erf(z)


def erfc(x: Any) -> Any:
    """The complementary error function ``1 - erf(x)``, accurate where ``erf(x)`` is near 1.

    >>> from funcflux.scipy.special import erfc
    >>> float(erfc(10.0))  # doctest: +ELLIPSIS
    2.08848...e-45
    """
    return _s.erfc(x)


@_needs_scipy
def erfinv(y: Any) -> Any:
    """The inverse of ``erf`` on ``(-1, 1)``; its derivative is ``sqrt(pi)/2 exp(erfinv(y)**2)``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import erfinv
    >>> float(ff.grad(erfinv)(0.0))  # sqrt(pi)/2  # doctest: +ELLIPSIS
    0.88622...
    """
    return _s.erfinv(y)


@_needs_scipy
def erfcx(x: Any) -> Any:
    """The scaled complementary error function ``exp(x**2) erfc(x)``, finite for large ``x``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import erfcx
    >>> float(ff.grad(erfcx)(0.0))  # -2/sqrt(pi)  # doctest: +ELLIPSIS
    -1.12837...
    """
    return _s.erfcx(x)


def ndtr(x: Any) -> Any:
    """The standard normal distribution function; its derivative is the normal density.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import ndtr
    >>> float(ff.grad(ndtr)(0.0))  # 1/sqrt(2 pi)  # doctest: +ELLIPSIS
    0.39894...
    """
    return _s.ndtr(x)


@_needs_scipy
def ndtri(y: Any) -> Any:
    """The inverse of ``ndtr``: the standard normal quantile of probability ``y``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import ndtri
    >>> float(ff.grad(ndtri)(0.5))  # sqrt(2 pi)  # doctest: +ELLIPSIS
    2.50662...
    """
    return _s.ndtri(y)


@_needs_scipy
def log_ndtr(x: Any) -> Any:
    """``log(ndtr(x))``, accurate far in the left tail, with a derivative accurate there too.

    The derivative ``ndtr'(x)/ndtr(x)`` is computed as ``sqrt(2/pi)/erfcx(-x/sqrt(2))``,
    which stays finite (about ``-x``) where both ``ndtr'`` and ``ndtr`` underflow.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import log_ndtr
    >>> float(ff.grad(log_ndtr)(-40.0))  # doctest: +ELLIPSIS
    40.02...
    """
    return _s.log_ndtr(x)


# -- gamma and friends -------------------------------------------------------------------
def gammaln(x: Any) -> Any:
    """``log(abs(gamma(x)))``; its derivative is ``digamma(x)`` (which needs SciPy).

    >>> from funcflux.scipy.special import gammaln
    >>> float(gammaln(5.0))  # log(4!)  # doctest: +ELLIPSIS
    3.17805...
    """
    return _s.gammaln(x)


@_needs_scipy
def digamma(z: Any) -> Any:
    """The digamma function ``psi``, the derivative of ``gammaln``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import digamma
    >>> float(ff.grad(digamma)(1.0))  # polygamma(1, 1) = pi**2/6  # doctest: +ELLIPSIS
    1.64493...
    """
    return _s.digamma(z)


psi = digamma


@_needs_scipy
def polygamma(n: Any, x: Any) -> Any:
    """The ``n``-th derivative of ``digamma``; differentiable in ``x``, not in the order ``n``.

    Call this one, not SciPy's, inside a transform (SciPy's is not a ufunc). Unlike
    SciPy's, it keeps float32 ``x`` float32, as ``digamma`` does.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import polygamma
    >>> float(ff.grad(lambda x: polygamma(1, x))(1.0))  # polygamma(2, 1) = -2 zeta(3)  # doctest: +ELLIPSIS
    -2.40411...
    """
    return _s.polygamma(n, x)


def gamma(z: Any) -> Any:
    """The gamma function; its derivative ``gamma(z) digamma(z)`` needs SciPy.

    >>> from funcflux.scipy.special import gamma
    >>> float(gamma(5.0))
    24.0
    """
    return _s.gamma(z)


def betaln(a: Any, b: Any) -> Any:
    """``log(abs(beta(a, b)))``; its partials are ``digamma(a) - digamma(a + b)`` and alike.

    >>> from funcflux.scipy.special import betaln
    >>> float(betaln(1.0, 2.0))  # log(1/2)  # doctest: +ELLIPSIS
    -0.69314...
    """
    return _s.betaln(a, b)


# -- the logistic function ---------------------------------------------------------------
def expit(x: Any) -> Any:
    """The logistic sigmoid ``1/(1 + exp(-x))``; its derivative ``expit(x) expit(-x)``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import expit
    >>> float(ff.grad(expit)(0.0))
    0.25
    """
    return _s.expit(x)


def logit(x: Any) -> Any:
    """``log(x/(1 - x))``, the inverse of ``expit``; its derivative is ``1/(x (1 - x))``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import logit
    >>> float(ff.grad(logit)(0.5))
    4.0
    """
    return _s.logit(x)


# -- x log y and entropy -----------------------------------------------------------------
def xlogy(x: Any, y: Any) -> Any:
    """``x * log(y)``, and 0 where ``x == 0`` (unless ``y`` is NaN).

    The ``y``-partial ``x/y`` is 0 wherever ``x == 0``, also at ``y = 0``.

    >>> import numpy as np, funcflux as ff
    >>> from funcflux.scipy.special import xlogy
    >>> ff.grad(lambda p: np.sum(xlogy(p, p)))(np.array([0.5, 1.0]))  # log(p) + 1
    array([0.30685282, 1.        ])
    """
    return _s.xlogy(x, y)


def xlog1py(x: Any, y: Any) -> Any:
    """``x * log1p(y)``, and 0 where ``x == 0`` (unless ``y`` is NaN).

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import xlog1py
    >>> float(ff.grad(xlog1py, argnums=1)(2.0, 1.0))  # x/(1 + y)
    1.0
    """
    return _s.xlog1py(x, y)


def entr(x: Any) -> Any:
    """The elementwise entropy ``-x log(x)``: 0 at 0, ``-inf`` for ``x < 0``.

    Its derivative ``-(1 + log x)`` is ``+inf`` at 0, and 0 for ``x < 0``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import entr
    >>> float(ff.grad(entr)(1.0))
    -1.0
    """
    return _s.entr(x)


# -- exponentially scaled Bessel functions -----------------------------------------------
def i0e(x: Any) -> Any:
    """``exp(-abs(x)) I0(x)``, the scaled modified Bessel function of order 0.

    Its derivative ``i1e(x) - sign(x) i0e(x)`` needs SciPy; at the kink ``x = 0`` it is 0.

    >>> from funcflux.scipy.special import i0e
    >>> float(i0e(0.0))
    1.0
    """
    return _s.i0e(x)


@_needs_scipy
def i1e(x: Any) -> Any:
    """``exp(-abs(x)) I1(x)``, the scaled modified Bessel function of order 1.

    Its derivative ``i0e(x) - i1e(x) (sign(x) + 1/x)`` is ``1/2`` at ``x = 0``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import i1e
    >>> float(ff.grad(i1e)(0.0))
    0.5
    """
    return _s.i1e(x)


# -- Bessel functions (all need SciPy) ------------------------------------------------------
@_needs_scipy
def i0(x: Any) -> Any:
    """The modified Bessel function of order 0; its derivative is ``i1(x)``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import i0
    >>> float(ff.grad(i0)(0.0))
    0.0
    """
    return _s.i0(x)


@_needs_scipy
def i1(x: Any) -> Any:
    """The modified Bessel function of order 1; its derivative ``i0(x) - i1(x)/x`` is 1/2 at 0.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import i1
    >>> float(ff.grad(i1)(0.0))
    0.5
    """
    return _s.i1(x)


@_needs_scipy
def j0(x: Any) -> Any:
    """The Bessel function of the first kind of order 0; its derivative is ``-j1(x)``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import j0
    >>> float(ff.grad(j0)(0.0))
    -0.0
    """
    return _s.j0(x)


@_needs_scipy
def j1(x: Any) -> Any:
    """The Bessel function of the first kind of order 1; its derivative ``j0 - j1/x`` is 1/2 at 0.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import j1
    >>> float(ff.grad(j1)(0.0))
    0.5
    """
    return _s.j1(x)


@_needs_scipy
def y0(x: Any) -> Any:
    """The Bessel function of the second kind of order 0 (``x > 0``); its derivative is ``-y1``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import y0, y1
    >>> bool(ff.grad(y0)(2.0) == -y1(2.0))
    True
    """
    return _s.y0(x)


@_needs_scipy
def y1(x: Any) -> Any:
    """The Bessel function of the second kind of order 1 (``x > 0``); ``y1' = y0 - y1/x``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import y1
    >>> float(ff.grad(y1)(2.0))  # doctest: +ELLIPSIS
    0.5638...
    """
    return _s.y1(x)


@_needs_scipy
def jv(v: Any, x: Any) -> Any:
    """The Bessel function of the first kind of real order ``v`` (SciPy's ``jn`` is this one).

    Differentiable in ``x`` (``(jv(v-1, x) - jv(v+1, x))/2``), not in the order ``v``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import jv
    >>> float(ff.grad(lambda x: jv(1, x))(0.0))
    0.5
    """
    return _s.jv(v, x)


jn = jv


@_needs_scipy
def yn(n: Any, x: Any) -> Any:
    """The Bessel function of the second kind of integer order ``n``; differentiable in ``x``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import yn, y0, y1
    >>> bool(abs(ff.grad(lambda x: yn(0, x))(2.0) + y1(2.0)) < 1e-15)
    True
    """
    return _s.yn(n, x)


@_needs_scipy
def iv(v: Any, x: Any) -> Any:
    """The modified Bessel function of real order ``v``; differentiable in ``x``, not in ``v``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import iv
    >>> float(ff.grad(lambda x: iv(1, x))(0.0))
    0.5
    """
    return _s.iv(v, x)


@_needs_scipy
def ive(v: Any, x: Any) -> Any:
    """``iv(v, x) exp(-abs(x))``; differentiable in ``x``, not in the order ``v``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import ive
    >>> float(ff.grad(lambda x: ive(1, x))(0.0))
    0.5
    """
    return _s.ive(v, x)


# -- more of the gamma family (all need SciPy) --------------------------------------------
@_needs_scipy
def rgamma(x: Any) -> Any:
    """``1/gamma(x)``, an entire function: its derivative is finite everywhere.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import rgamma
    >>> float(ff.grad(rgamma)(-2.0))  # (-1)^n n! at the zero x = -n  # doctest: +ELLIPSIS
    2.0...
    """
    return _s.rgamma(x)


@_needs_scipy
def gammasgn(x: Any) -> Any:
    """The sign of ``gamma(x)``: piecewise constant, so its derivative is 0 (as ``sign``'s).

    >>> from funcflux.scipy.special import gammasgn
    >>> float(gammasgn(-0.5))
    -1.0
    """
    return _s.gammasgn(x)


@_needs_scipy
def beta(a: Any, b: Any) -> Any:
    """The beta function ``gamma(a) gamma(b) / gamma(a + b)``, differentiable in both.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import beta
    >>> float(ff.grad(beta)(1.0, 1.0))  # beta(1, 1) (digamma(1) - digamma(2)) = -1
    -1.0
    """
    return _s.beta(a, b)


@_needs_scipy
def gammainc(a: Any, x: Any) -> Any:
    """The regularised lower incomplete gamma function; differentiable in ``x`` only.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import gammainc
    >>> float(ff.grad(lambda x: gammainc(1.0, x))(0.0))  # x^0 e^0 / gamma(1)
    1.0
    """
    return _s.gammainc(a, x)


@_needs_scipy
def gammaincc(a: Any, x: Any) -> Any:
    """``1 - gammainc(a, x)``, accurate where ``gammainc`` is near 1; differentiable in ``x``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import gammaincc
    >>> float(ff.grad(lambda x: gammaincc(1.0, x))(0.0))
    -1.0
    """
    return _s.gammaincc(a, x)


@_needs_scipy
def betainc(a: Any, b: Any, x: Any) -> Any:
    """The regularised incomplete beta function; differentiable in ``x`` only.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import betainc
    >>> float(ff.grad(lambda x: betainc(2.0, 1.0, x))(0.5))  # x^2 on [0, 1]
    1.0
    """
    return _s.betainc(a, b, x)


@_needs_scipy
def erfcinv(y: Any) -> Any:
    """The inverse of ``erfc`` on ``(0, 2)``; its derivative is ``-sqrt(pi)/2 exp(erfcinv(y)**2)``.

    >>> import funcflux as ff
    >>> from funcflux.scipy.special import erfcinv
    >>> float(ff.grad(erfcinv)(1.0))  # -sqrt(pi)/2  # doctest: +ELLIPSIS
    -0.88622...
    """
    return _s.erfcinv(y)


def multigammaln(a: Any, d: int) -> Any:
    """The log of the multivariate gamma function of dimension ``d``, differentiable in ``a``.

    ``d(d-1)/4 log(pi) + sum_j gammaln(a - j/2)`` for ``j < d``: SciPy's is not a ufunc, so
    call this one inside a transform. Like SciPy's, it needs ``a > (d - 1)/2`` (else a
    ``ValueError``), checked on concrete values only. Its derivative needs SciPy.

    >>> from funcflux.scipy.special import multigammaln, gammaln
    >>> float(multigammaln(3.0, 1)) == float(gammaln(3.0))
    True
    """
    if int(d) != d or d < 1:
        raise ValueError(f"multigammaln(a, d): d must be a positive integer, got {d!r}.")
    d = int(d)
    a = _floating(a)
    if not isinstance(a, Tracer) and bool(fnp.any(fnp.less_equal(a, 0.5 * (d - 1)))):
        raise ValueError(f"multigammaln(a, d={d}): a must be greater than (d - 1)/2 = "
                         f"{0.5 * (d - 1)}.")
    out = 0.25 * d * (d - 1) * float(np.log(np.pi))  # a Python float keeps float32
    for j in range(d):
        out = out + _s.gammaln(a - 0.5 * j)
    return out


# -- logsumexp -----------------------------------------------------------------------------
def logsumexp(a: Any, axis: Any = None, b: Any = None, keepdims: bool = False,
              return_sign: bool = False) -> Any:
    """``log(sum(b * exp(a), axis))`` without overflow: SciPy's ``logsumexp``, differentiable.

    SciPy's own ``logsumexp`` is a Python function that turns its arguments into NumPy
    arrays, so inside a transform call this one. ``b`` may be negative: with
    ``return_sign=True`` the result is ``(log(abs(s)), sign(s))`` for the weighted sum
    ``s``, otherwise a negative ``s`` gives NaN, as in SciPy. The sign carries no
    derivative.

    >>> import numpy as np, funcflux as ff
    >>> from funcflux.scipy.special import logsumexp
    >>> float(logsumexp(np.array([1000.0, 1000.0])))  # doctest: +ELLIPSIS
    1000.693...
    >>> ff.grad(lambda a: logsumexp(a, b=np.array([1.0, 3.0])))(np.zeros(2))
    array([0.25, 0.75])
    """
    a = _floating(a)
    if ndim(a) == 0:  # SciPy reduces a 0-d array as a 1-d one (keepdims gives shape (1,))
        a = fnp.reshape(a, (1,))
    if b is None:
        out = fnp.logsumexp(a, axis=axis, keepdims=keepdims)
        if not return_sign:
            return out
        sign = fnp.where(fnp.isnan(out), out, fnp.where(fnp.equal(out, -np.inf), 0.0, 1.0))
        return out, fnp.astype(fnp.stop_gradient(sign), fnp.common_dtype(out))
    b = _floating(b)
    shape = np.broadcast_shapes(fnp.shape(a), fnp.shape(b))
    a, b = fnp.broadcast_to(a, shape), fnp.broadcast_to(b, shape)
    axes = norm_axis(axis, len(shape))
    axes = tuple(range(len(shape))) if axes is None else axes
    a = fnp.where(fnp.not_equal(b, 0), a, -np.inf)  # a zero weight drops its term
    m = fnp.max(a, axis=axes, keepdims=True)
    m = fnp.stop_gradient(fnp.where(fnp.isfinite(m), m, 0.0))  # an infinite max: no shift
    with np.errstate(divide="ignore"):  # log(0) = -inf for an empty (all-zero) sum
        s = fnp.sum(b * fnp.exp(a - m), axis=axes, keepdims=True)
        out = fnp.log(fnp.abs(s)) + m
    sign = fnp.stop_gradient(fnp.sign(s))
    if not keepdims:
        out, sign = fnp.squeeze(out, axis=axes), fnp.squeeze(sign, axis=axes)
    if return_sign:
        return out, sign
    return fnp.where(fnp.less(sign, 0), np.nan, out)


def _floating(x: Any) -> Any:
    """``x`` as an array in the float dtype SciPy computes it in (integers: float64)."""
    x = x if hasattr(x, "dtype") else np.asarray(x)
    return x if x.dtype.kind in "fc" else fnp.astype(x, np.float64)
