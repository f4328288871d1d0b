"""Special functions (SciPy's ``scipy.special`` ufuncs) as primitives, with their rules.

Each function is one primitive: its values need a special-function library, which no
composition of NumPy's ufuncs gives to full precision. ``impl`` calls the library that
goes with the array module of its inputs: ``scipy.special`` for NumPy arrays,
``cupyx.scipy.special`` for CuPy arrays (others through :func:`register_special_module`).
SciPy is optional and imported the first time a special function is computed, never by
``import funcflux``. Without it, the functions NumPy suffices for fall back to NumPy
(``expit``, ``logit``, ``xlogy``, ``xlog1py``, ``entr``, ``i0e``; on the CPU only,
``erf``, ``erfc``, ``ndtr``, ``gamma``, ``gammaln`` and ``betaln`` through Python's
``math`` module, element by element); the others raise an ``ImportError`` that names
the function and says to ``pip install scipy``.

The derivatives are compositions of these primitives and the elementwise ones, so
every order, every mode and ``vmap`` follow:

- ``erf' = 2/sqrt(pi) exp(-x^2)``, ``erfc' = -erf'``, ``erfinv' = sqrt(pi)/2 exp(erfinv^2)``,
  ``erfcx' = 2x erfcx(x) - 2/sqrt(pi)``;
- ``ndtr' = exp(-x^2/2)/sqrt(2 pi)``, ``ndtri' = sqrt(2 pi) exp(ndtri^2/2)``, and
  ``log_ndtr' = ndtr'/ndtr``, written for ``x <= 0`` as ``sqrt(2/pi)/erfcx(-x/sqrt(2))``:
  the same number, without the ``0/0`` of the quotient below ``x = -38`` (both factors
  underflow);
- ``gammaln' = digamma``, ``digamma' = polygamma(1, .)``, ``polygamma(n, .)' =
  polygamma(n + 1, .)`` (the integer order ``n`` has no derivative: differentiating with
  respect to it is an error), ``gamma' = gamma digamma``, ``betaln``'s partials
  ``digamma(a) - digamma(a + b)`` and ``digamma(b) - digamma(a + b)``;
- ``expit' = expit(x) expit(-x)`` (``s (1 - s)`` would round to 0 for ``x > 37``),
  ``logit' = 1/(x (1 - x))``;
- ``xlogy``: ``log(y)`` and ``x/y``, ``xlog1py``: ``log1p(y)`` and ``x/(1 + y)`` (JAX's
  rules), except at ``x = y = 0`` (``y = -1`` for xlog1py), where JAX's ``0/0`` gives NaN
  and funcflux the ``y``-partial's value 0 (the function is 0 all along ``x = 0``); the
  mixed second derivative is not defined there (``1/y``), and funcflux gives 0;
- ``entr' = -(1 + log x)`` for ``x >= 0`` (``+inf`` at 0, as in JAX), 0 for ``x < 0``
  where ``entr`` is the constant ``-inf``;
- ``i0e' = i1e - sign(x) i0e`` (0 at the kink ``x = 0``, as JAX's and ``abs'``),
  ``i1e' = i0e - i1e (sign(x) + 1/x)``, whose limit at 0 is ``1/2``.

Complex arguments are transformed only by ``erf`` and ``erfc`` (holomorphic, with the
same rules); the others raise (their values are SciPy's, outside transforms).

Added for HIPS autograd's coverage (SciPy needed for all of them):

- ``i0' = i1``, ``i1' = i0 - i1/x`` (``1/2`` at 0), ``j0' = -j1``, ``j1' = j0 - j1/x``,
  ``y0' = -y1``, ``y1' = y0 - y1/x``; for order ``v``, ``jv' = (jv(v-1) - jv(v+1))/2``,
  ``yn`` alike, ``iv' = (iv(v-1) + iv(v+1))/2``, ``ive' = (ive(v-1) + ive(v+1))/2 -
  sign(x) ive``; the order has no derivative (an error, as for ``polygamma``'s ``n``);
- ``rgamma' = -rgamma digamma``, through the reflection formula for ``x < 1/2`` so that
  it is finite (``(-1)^n n!``) at the zeros ``x = -n``; ``gammasgn`` is piecewise
  constant (no derivative, like ``sign``); ``beta``'s partials are ``beta`` times
  ``betaln``'s; ``erfcinv' = -sqrt(pi)/2 exp(erfcinv^2)``;
- ``gammainc`` and ``gammaincc`` in ``x``: ``+-x^(a-1) e^-x / gamma(a)``; ``betainc`` in
  ``x``: ``x^(a-1) (1-x)^(b-1) / beta(a, b)``. The shape parameters have no derivative
  here (an error; JAX differentiates ``gammainc`` in ``a``, funcflux does not yet).
"""
from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import Primitive, primitive
from .common import dtype
from .base import elementwise_batch, unbroadcast
from .elementwise import _binary_rules, _typed, where_p as _where_p
from .elementwise import cos, equal, exp, greater, less, log, log1p, logical_and, sign, sin

__all__ = ["SCIPY_UFUNCS", "beta", "betainc", "betaln", "digamma", "entr", "erf", "erfc",
           "erfcinv", "erfcx", "erfinv", "expit", "gamma", "gammainc", "gammaincc", "gammaln",
           "gammasgn", "i0", "i0e", "i1", "i1e", "iv", "ive", "j0", "j1", "jv", "log_ndtr",
           "logit", "ndtr", "ndtri", "polygamma", "register_special_module", "rgamma",
           "xlog1py", "xlogy", "y0", "y1", "yn"]

NEEDS = ("funcflux.scipy.special.{name}{used} needs {lib}, which could not be imported "
         "({why}): {how}. Without SciPy, funcflux.scipy.special computes only "
         "expit, logit, xlogy, xlog1py, entr, i0e and logsumexp with NumPy alone, and erf, "
         "erfc, ndtr, gamma, gammaln and betaln on the CPU.")
NO_COMPLEX = ("funcflux.scipy.special.{name}: complex values are not transformed (their "
              "derivatives are not implemented); pass real arrays.")
POLYGAMMA_N = ("funcflux.scipy.special.polygamma(n, x): n, the order of the derivative, is "
               "an integer and has no derivative, but here it depends on a value being "
               "differentiated. Pass n as a constant (an int or an integer array), or "
               "ff.stop_gradient(n).")
NO_ARG_DERIVATIVE = ("funcflux.scipy.special.{name}: the derivative with respect to {arg} is "
                     "not implemented (only the last argument, x, is differentiable). Pass "
                     "{arg} as a constant, or ff.stop_gradient it.")
# Where a function needing SciPy is also used by the derivative of another.
_USED_BY = {"digamma": " (also the derivative of gammaln, gamma and betaln)",
            "polygamma": " (also the derivative of digamma)",
            "erfcx": " (also the derivative of log_ndtr)",
            "i1e": " (also the derivative of i0e)"}


# -- finding the special-function library of an array module ---------------------------
_LIBRARIES = {"numpy": ("scipy.special", "pip install scipy"),
              "cupy": ("cupyx.scipy.special", "pip install cupy-cuda12x (cupyx comes with it)")}
_FOUND: dict[str, Any] = {}        # array module name -> library, or None when not importable
_REGISTERED: dict[str, Any] = {}   # array module name -> library, by register_special_module


def register_special_module(array_module_name: str, module: Any) -> None:
    """Compute special functions of ``array_module_name``'s arrays with ``module``.

    ``module`` offers SciPy's names (``module.erf(x)``...). NumPy (``scipy.special``)
    and CuPy (``cupyx.scipy.special``) are known; this is for other array libraries.

    >>> import math, types, numpy as np
    >>> mine = types.SimpleNamespace(erf=np.vectorize(math.erf))  # a stand-in library
    >>> register_special_module("my_array_library", mine)
    """
    _REGISTERED[array_module_name] = module


def _library(xp: Any) -> Any:
    """The special-function library for arrays of module ``xp``, or None."""
    name = getattr(xp, "__name__", "")
    mod = _REGISTERED.get(name)
    if mod is not None:
        return mod
    try:
        return _FOUND[name]
    except KeyError:
        pass
    path = _LIBRARIES.get(name, (None,))[0]
    try:
        mod = importlib.import_module(path) if path else None
    except ImportError:
        mod = None
    _FOUND[name] = mod
    return mod


def _missing(name: str, xp: Any) -> ImportError:
    xname = getattr(xp, "__name__", "?")
    register = "register one with funcflux.ops.special.register_special_module"
    lib, how = _LIBRARIES.get(xname, (f"a special-function module for {xname} arrays", register))
    why = "it is not installed" if xname in _LIBRARIES else "none is registered"
    return ImportError(NEEDS.format(name=name, used=_USED_BY.get(name, ""), lib=lib, why=why,
                                    how=how))


def _impl(name: str, fallback: Callable[..., Any] | None = None, cpu_only: bool = False,
          scipy_name: str | None = None) -> Callable[..., Any]:
    """``library.<scipy_name>(*args)``; without the library, ``fallback(xp, *args)``."""
    sname = scipy_name or name

    def impl(*args: Any) -> Any:
        xp = array_module(*args)
        mod = _library(xp)
        if mod is not None:
            return getattr(mod, sname)(*args)
        if fallback is None or (cpu_only and xp is not np):
            raise _missing(name, xp)
        if any(dtype(a).kind == "c" for a in args):
            raise _missing(name, xp)  # the fallbacks are real-valued
        return fallback(xp, *args)
    impl.__name__ = name
    return impl


# -- the fallbacks: NumPy (any array module) or Python's math module (CPU) --------------
def _out_dtype(*args: Any) -> Any:
    """The float dtype SciPy's ufuncs give: float32 stays, integers and float16 widen."""
    d = np.result_type(*(getattr(a, "dtype", a) for a in args))
    if d.kind != "f":
        return np.dtype(np.float64)
    return np.dtype(np.float32) if d.itemsize < 4 else d


def _as_float(xp: Any, x: Any, d: Any) -> Any:
    return x.astype(d) if hasattr(x, "astype") else xp.asarray(x, dtype=d)


def _elementwise(fn: Callable[..., float]) -> Callable[..., Any]:
    """A NumPy fallback from a Python ``math`` function, applied element by element."""
    uf = np.frompyfunc(fn, 1, 1)

    def run(xp: Any, x: Any) -> Any:
        out = np.asarray(uf(np.asarray(x, dtype=np.float64)), dtype=np.float64)
        with np.errstate(over="ignore"):  # float32 overflows to inf, as in SciPy
            out = out.astype(_out_dtype(x))
        return out[()] if out.ndim == 0 else out
    return run


def _gamma1(v: float) -> float:
    try:
        return math.gamma(v)
    except ValueError:  # a pole (0, a negative integer) or -inf, as SciPy gives them
        return math.copysign(math.inf, v) if v == 0 else math.nan
    except OverflowError:
        return math.inf


def _lgamma1(v: float) -> float:
    if v == -math.inf:
        return -math.inf  # SciPy's value
    try:
        return math.lgamma(v)
    except ValueError:  # a pole
        return math.inf


_SQRT1_2 = math.sqrt(0.5)


def _ndtr1(v: float) -> float:
    z = v * _SQRT1_2  # Cephes' ndtr, as SciPy computes it
    if abs(z) < _SQRT1_2:
        return 0.5 + 0.5 * math.erf(z)
    y = 0.5 * math.erfc(abs(z))
    return 1.0 - y if z > 0 else y


def _expit_np(xp: Any, x: Any) -> Any:
    x = _as_float(xp, x, _out_dtype(x))
    e = xp.exp(-xp.abs(x))  # never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _logit_np(xp: Any, x: Any) -> Any:
    x = _as_float(xp, x, _out_dtype(x))
    s = 2 * (x - 0.5)
    with np.errstate(all="ignore"):
        # log(x/(1-x)) loses digits near 1/2, where log1p(s) - log1p(-s) does not (SciPy's way)
        return xp.where((x < 0.3) | (x > 0.65), xp.log(x / (1 - x)), xp.log1p(s) - xp.log1p(-s))


def _xlog_np(log: str) -> Callable[..., Any]:
    def run(xp: Any, x: Any, y: Any) -> Any:
        d = _out_dtype(x, y)
        x, y = _as_float(xp, x, d), _as_float(xp, y, d)
        with np.errstate(all="ignore"):
            return xp.where((x == 0) & ~xp.isnan(y), 0, x * getattr(xp, log)(y))
    return run


def _entr_np(xp: Any, x: Any) -> Any:
    x = _as_float(xp, x, _out_dtype(x))
    with np.errstate(all="ignore"):
        return xp.where(x > 0, -x * xp.log(x), xp.where(x == 0, 0, xp.where(x < 0, -np.inf, x)))


_I0E_BIG = 700.0  # np.i0 overflows from |x| = 713.98; beyond 700 the asymptotic series
_I0E_TERMS = [1.0]  # c_k = ((2k-1)!!)^2 / (k! 8^k): six terms reach 1e-17 at |x| = 700
for _k in range(1, 6):
    _I0E_TERMS.append(_I0E_TERMS[-1] * (2 * _k - 1) ** 2 / (8 * _k))


def _i0e_np(xp: Any, x: Any) -> Any:
    d = _out_dtype(x)
    ax = xp.abs(_as_float(xp, x, np.float64))
    small = ax <= _I0E_BIG
    near = xp.where(small, ax, 0.0)
    far = xp.where(small, _I0E_BIG, ax)
    series = 0.0
    for c in reversed(_I0E_TERMS):
        series = series / far + c
    with np.errstate(all="ignore"):
        out = xp.where(small, xp.i0(near) * xp.exp(-near), series / xp.sqrt(2 * math.pi * far))
    return out.astype(d)


def _betaln_np(xp: Any, a: Any, b: Any) -> Any:
    # gammaln(a) + gammaln(b) - gammaln(a + b): SciPy's betaln is more accurate when a or
    # b is large (the terms cancel); within 1e-12 of it for a, b below 1e3.
    d = _out_dtype(a, b)
    lg = _elementwise(_lgamma1)
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out = np.asarray(lg(xp, a64) + lg(xp, b64) - lg(xp, a64 + b64)).astype(d)
    return out[()] if out.ndim == 0 else out


# -- declaring the primitives ------------------------------------------------------------
def _real(name: str, ans: Any) -> None:
    if ans.dtype.kind == "c":
        raise NotImplementedError(NO_COMPLEX.format(name=name))


def _unary(name: str, deriv: Callable[[Any, Any], Any], fallback: Callable | None = None,
           cpu_only: bool = False, scipy_name: str | None = None,
           holomorphic: bool = False) -> Primitive:
    """An elementwise special function ``f(x)`` with ``f' = deriv(ans, x)``.

    ``holomorphic``: ``deriv`` holds for complex ``x`` too (JAX's convention then makes
    the VJP ``ct * f'(z)``); otherwise complex values raise.
    """
    p = primitive(name, _impl(name, fallback, cpu_only, scipy_name))

    def d(ans: Any, x: Any) -> Any:
        if not holomorphic:
            _real(name, ans)
        return deriv(ans, x)
    p.def_vjp(lambda ct, ans, x: ct * d(ans, x))
    p.def_jvp(lambda t, ans, x: t * d(ans, x))
    p.def_batch(elementwise_batch(p))
    return p


def _binary(name: str, dx: Callable, dy: Callable, fallback: Callable | None = None,
            cpu_only: bool = False, impl: Callable | None = None) -> Primitive:
    """A broadcasting special function ``f(x, y)`` with partials ``dx``, ``dy``."""
    p = primitive(name, impl or _impl(name, fallback, cpu_only))

    def real(d: Callable) -> Callable:
        def partial(ans: Any, x: Any, y: Any) -> Any:
            _real(name, ans)
            return d(ans, x, y)
        return partial
    (vx, jx), (vy, jy) = _binary_rules(real(dx), 0), _binary_rules(real(dy), 1)
    p.def_vjp(vx, vy)
    p.def_jvp(jx, jy)
    p.def_batch(elementwise_batch(p))
    return p


_2_SQRTPI = 2.0 / math.sqrt(math.pi)
_SQRTPI_2 = math.sqrt(math.pi) / 2.0
_SQRT2PI = math.sqrt(2.0 * math.pi)
_SQRT2_PI = math.sqrt(2.0 / math.pi)


def _where(c: Any, a: Any, b: Any) -> Any:
    return _where_p(c, a, b)


# -- the error function and the normal distribution ---------------------------------------
erf = _unary("erf", lambda ans, x: _2_SQRTPI * exp(-(x * x)), _elementwise(math.erf),
             cpu_only=True, holomorphic=True)
erfc = _unary("erfc", lambda ans, x: -_2_SQRTPI * exp(-(x * x)), _elementwise(math.erfc),
              cpu_only=True, holomorphic=True)
erfinv = _unary("erfinv", lambda ans, x: _SQRTPI_2 * exp(ans * ans))
erfcx = _unary("erfcx", lambda ans, x: 2.0 * x * ans - _2_SQRTPI)
ndtr = _unary("ndtr", lambda ans, x: exp(-0.5 * (x * x)) / _SQRT2PI, _elementwise(_ndtr1),
              cpu_only=True)
ndtri = _unary("ndtri", lambda ans, x: _SQRT2PI * exp(0.5 * (ans * ans)))


def _log_ndtr_d(ans: Any, x: Any) -> Any:
    # ndtr'/ndtr, as sqrt(2/pi)/erfcx(-x/sqrt(2)) for x <= 0: the same number without the
    # 0/0 that the quotient becomes below x = -38. For x > 0, ndtr >= 1/2 and the quotient
    # is safe, while erfcx(-x/sqrt(2)) would overflow (past x = 37.5) and make the second
    # derivative inf/inf. Each branch sees only its own half of the line, at every order.
    pos = greater(x, 0)
    left = _where(pos, ans.dtype.type(0), x)
    right = _where(pos, x, ans.dtype.type(0))
    tail = _SQRT2_PI / erfcx(-_SQRT1_2 * left)
    body = exp(-0.5 * (right * right)) / (_SQRT2PI * ndtr(right))
    return _where(pos, body, tail)


log_ndtr = _unary("log_ndtr", _log_ndtr_d)

# -- gamma and friends ----------------------------------------------------------------------


def _polygamma_impl(n: Any, x: Any) -> Any:
    xp = array_module(n, x)
    mod = _library(xp)
    if mod is None:
        raise _missing("polygamma", xp)
    # SciPy's polygamma is computed in float64 whatever x is; keep x's float dtype, as
    # every other special function does.
    return mod.polygamma(n, x).astype(_out_dtype(x))


def _no_order_derivative(ans: Any, n: Any, x: Any) -> Any:
    raise TypeError(POLYGAMMA_N)


polygamma = _binary("polygamma", _no_order_derivative,
                    lambda ans, n, x: polygamma(n + 1, x), impl=_polygamma_impl)
digamma = _unary("digamma", lambda ans, x: polygamma(1, x), scipy_name="psi")
gammaln = _unary("gammaln", lambda ans, x: digamma(x), _elementwise(_lgamma1), cpu_only=True)
gamma = _unary("gamma", lambda ans, x: ans * digamma(x), _elementwise(_gamma1), cpu_only=True)
betaln = _binary("betaln", lambda ans, a, b: digamma(a) - digamma(a + b),
                 lambda ans, a, b: digamma(b) - digamma(a + b), _betaln_np, cpu_only=True)

# -- the logistic function ------------------------------------------------------------------
expit = _unary("expit", lambda ans, x: ans * expit(-x), _expit_np)
logit = _unary("logit", lambda ans, x: 1.0 / (x * (1.0 - x)), _logit_np)


# -- x log y and entropy ---------------------------------------------------------------------
def _over(x: Any, y: Any, zero: Any) -> Any:
    """``x / y``, and 0 at ``x == y == 0`` (no ``0/0`` in either branch, at any order).

    Only that point: elsewhere on ``x == 0`` the quotient is 0 already, and its own
    derivative in ``x`` (``1/y``, the mixed second derivative) must survive.
    """
    both = logical_and(equal(x, 0), equal(y, 0))
    return _where(both, zero, x / _where(both, 1.0, y))


xlogy = _binary("xlogy", lambda ans, x, y: log(y),
                lambda ans, x, y: _over(x, y, ans.dtype.type(0)), _xlog_np("log"))
xlog1py = _binary("xlog1py", lambda ans, x, y: log1p(y),
                  lambda ans, x, y: _over(x, 1.0 + y, ans.dtype.type(0)), _xlog_np("log1p"))


def _entr_d(ans: Any, x: Any) -> Any:
    neg = less(x, 0)
    return _where(neg, ans.dtype.type(0), -1.0 - log(_where(neg, 1.0, x)))


entr = _unary("entr", _entr_d, _entr_np)


# -- exponentially scaled Bessel functions --------------------------------------------------
def _i1e_d(ans: Any, x: Any) -> Any:
    zero = equal(x, 0)
    over_x = _where(zero, ans.dtype.type(0.5), ans / _where(zero, 1.0, x))  # i1e(x)/x -> 1/2
    return i0e(x) - sign(x) * ans - over_x


i0e = _unary("i0e", lambda ans, x: i1e(x) - sign(x) * ans, _i0e_np)
i1e = _unary("i1e", _i1e_d)


# -- Bessel functions -------------------------------------------------------------------------
def _over_x(ans: Any, x: Any) -> Any:
    """``ans / x``, with its limit ``1/2`` at ``x = 0`` (``i1(x)/x`` and ``j1(x)/x``)."""
    zero = equal(x, 0)
    return _where(zero, ans.dtype.type(0.5), ans / _where(zero, 1.0, x))


i0 = _unary("i0", lambda ans, x: i1(x))
i1 = _unary("i1", lambda ans, x: i0(x) - _over_x(ans, x))
j0 = _unary("j0", lambda ans, x: -j1(x))
j1 = _unary("j1", lambda ans, x: j0(x) - _over_x(ans, x))
y0 = _unary("y0", lambda ans, x: -y1(x))
y1 = _unary("y1", lambda ans, x: y0(x) - y1(x) / x)  # y1 is defined for x > 0 only


def _no_derivative(name: str, arg: str) -> Callable[..., Any]:
    def rule(*args: Any) -> Any:
        raise TypeError(NO_ARG_DERIVATIVE.format(name=name, arg=arg))
    return rule


# d/dx of the Bessel functions of order v: (f(v - 1, x) -/+ f(v + 1, x)) / 2; the order has no
# derivative here (JAX has none either).
jv = _binary("jv", _no_derivative("jv", "the order v"),
             lambda ans, v, x: 0.5 * (jv(v - 1, x) - jv(v + 1, x)))
yn = _binary("yn", _no_derivative("yn", "the order n"),
             lambda ans, n, x: 0.5 * (yn(n - 1, x) - yn(n + 1, x)))
iv = _binary("iv", _no_derivative("iv", "the order v"),
             lambda ans, v, x: 0.5 * (iv(v - 1, x) + iv(v + 1, x)))
ive = _binary("ive", _no_derivative("ive", "the order v"),  # ive = iv exp(-|x|)
              lambda ans, v, x: 0.5 * (ive(v - 1, x) + ive(v + 1, x)) - sign(x) * ans)


# -- more of the gamma family -------------------------------------------------------------------
def _rgamma_d(ans: Any, x: Any) -> Any:
    # -rgamma(x) digamma(x) is 0 * inf at the zeros x = 0, -1, -2... of rgamma, where the
    # derivative is (-1)^n n!. For x < 1/2 the reflection 1/gamma(x) = gamma(1 - x)
    # sin(pi x)/pi gives gamma(1 - x) (cos(pi x) - digamma(1 - x) sin(pi x)/pi), finite
    # there; each branch sees only its own half of the line, so every order is exact.
    low = less(x, 0.5)
    left = _where(low, x, ans.dtype.type(0))
    right = _where(low, ans.dtype.type(1), x)
    pix = math.pi * left
    refl = gamma(1.0 - left) * (cos(pix) - digamma(1.0 - left) * sin(pix) / math.pi)
    return _where(low, refl, -rgamma(right) * digamma(right))


rgamma = _unary("rgamma", _rgamma_d)
gammasgn = primitive("gammasgn", _impl("gammasgn"), nondiff=True)  # piecewise constant
gammasgn.def_batch(elementwise_batch(gammasgn))
beta = _binary("beta", lambda ans, a, b: ans * (digamma(a) - digamma(a + b)),
               lambda ans, a, b: ans * (digamma(b) - digamma(a + b)))


def _gammainc_dx(ans: Any, a: Any, x: Any) -> Any:
    # the integrand x^(a-1) e^(-x) / gamma(a); xlogy keeps 0^0 = 1 at x = 0, a = 1
    return exp(xlogy(a - 1.0, x) - x - gammaln(a))


gammainc = _binary("gammainc", _no_derivative("gammainc", "the shape a"), _gammainc_dx)
gammaincc = _binary("gammaincc", _no_derivative("gammaincc", "the shape a"),
                    lambda ans, a, x: -_gammainc_dx(ans, a, x))
erfcinv = _unary("erfcinv", lambda ans, x: -_SQRTPI_2 * exp(ans * ans))


def _betainc_dx(ans: Any, a: Any, b: Any, x: Any) -> Any:
    _real("betainc", ans)
    a, b, x = _typed(a, ans), _typed(b, ans), _typed(x, ans)  # Python scalars keep float32
    return exp(xlogy(a - 1.0, x) + xlog1py(b - 1.0, -x) - betaln(a, b))


betainc = primitive("betainc", _impl("betainc"))
betainc.def_vjp(_no_derivative("betainc", "a"), _no_derivative("betainc", "b"),
                lambda ct, ans, a, b, x: unbroadcast(ct * _betainc_dx(ans, a, b, x), x))
betainc.def_jvp(_no_derivative("betainc", "a"), _no_derivative("betainc", "b"),
                lambda t, ans, a, b, x: t * _betainc_dx(ans, a, b, x))
betainc.def_batch(elementwise_batch(betainc))


#: ``scipy.special`` ufunc name -> its funcflux primitive: the NumPy surface routes a
#: SciPy ufunc called on a traced value here, by name, the first time it meets it.
SCIPY_UFUNCS: dict[str, Callable[..., Any]] = {
    "erf": erf, "erfc": erfc, "erfinv": erfinv, "erfcx": erfcx, "ndtr": ndtr, "ndtri": ndtri,
    "log_ndtr": log_ndtr, "gammaln": gammaln, "psi": digamma, "digamma": digamma,
    "gamma": gamma, "betaln": betaln, "expit": expit, "logit": logit, "xlogy": xlogy,
    "xlog1py": xlog1py, "entr": entr, "i0e": i0e, "i1e": i1e, "i0": i0, "i1": i1, "j0": j0,
    "j1": j1, "y0": y0, "y1": y1, "jv": jv, "yn": yn, "iv": iv, "ive": ive, "rgamma": rgamma,
    "gammasgn": gammasgn, "beta": beta, "gammainc": gammainc, "gammaincc": gammaincc,
    "erfcinv": erfcinv, "betainc": betainc,
}


# -- shape rules (eval_shape): every primitive of this family is elementwise --------------------
for _p in list(globals().values()):
    if isinstance(_p, Primitive) and _p.abstract is None:
        _p.def_abstract(abstract.elementwise(_p.impl))
del _p
