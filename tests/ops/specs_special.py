"""Spec lines for funcflux/ops/special.py: SciPy's special functions.

With SciPy installed, the lines call SciPy's own ufuncs (``scipy.special.erf``), so
the routing through ``__array_ufunc__`` is swept too; ``polygamma`` and
``logsumexp``, which are not ufuncs, are funcflux.scipy.special's. Without SciPy the
lines call funcflux.scipy.special's functions, and the lines whose values or
derivatives need SciPy skip. Every id starts with ``special-``
(``pytest tests/ops/test_sweep.py -k special``).

Domains keep away from poles (gamma at 0 and the negative integers), from
``erfinv``'s and ``logit``'s ends, from the kink of ``i0e``/``i1e`` at 0, and from
``entr``'s constant ``-inf`` below 0 (finite differences of ``-inf`` are NaN); those
points are checked one by one in tests/test_scipy_special.py.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from funcflux.ops.special import register_special_module
from funcflux.scipy import special as fsp
from tests import devices, strict
from tests.ops.specs import C, F, I, Spec

try:
    import scipy.special as sc
except ImportError:  # SciPy is optional
    sc = None

# Without SciPy: the values or derivatives of these need it; the CPU-only fallbacks
# (Python's math module) need it on a device too.
_NEEDS_SCIPY = {"erfinv", "erfcx", "ndtri", "log_ndtr", "gammaln", "digamma", "psi",
                "polygamma", "gamma", "betaln", "i0e", "i1e", "i0", "i1", "j0", "j1", "y0",
                "y1", "jv", "yn", "iv", "ive", "rgamma", "gammasgn", "beta", "gammainc",
                "gammaincc", "erfcinv", "betainc"}
_CPU_ONLY = {"erf", "erfc", "ndtr"}


def _skip(*args: Any) -> Any:
    pytest.skip("needs SciPy (pip install scipy)")


def S(name: str) -> Callable[..., Any]:
    """SciPy's ``name`` when installed, else funcflux's (or a skip when it needs SciPy)."""
    if sc is not None and name not in ("polygamma", "logsumexp"):
        return getattr(sc, name)
    return FF(name)


def FF(name: str) -> Callable[..., Any]:
    """funcflux.scipy.special's ``name`` (a skip without SciPy when it needs SciPy)."""
    if sc is None and (name in _NEEDS_SCIPY or (name in _CPU_ONLY and devices.on_device())):
        return _skip
    return getattr(fsp, name)


class _StrictSpecial:
    """``cupyx.scipy.special`` for the strict stand-in device: SciPy's functions on the
    wrapped arrays, refusing NumPy operands as the device does."""

    def __getattr__(self, name: str) -> Any:
        f = getattr(sc, name)
        out = strict._Ufunc(f) if isinstance(f, np.ufunc) else strict._function(name, f)
        setattr(self, name, out)
        return out


if sc is not None:
    register_special_module(strict.strict_np.__name__, _StrictSpecial())

POS = {"lo": 0.5, "hi": 3.0}

SPECS = [
    # -- the error function and the normal distribution -----------------------------------
    Spec("erf", S("erf"), [F("a b")], id="special-erf"),
    Spec("erfc", S("erfc"), [F("a b")], id="special-erfc"),
    Spec(("erf", "erfc"), lambda x: FF("erf")(x) * FF("erfc")(x), [F("a")],
         id="special-erf-funcflux"),
    Spec("erfinv", S("erfinv"), [F("a b", lo=-0.8, hi=0.8)], id="special-erfinv"),
    Spec("erfcx", S("erfcx"), [F("a b", lo=-1.0, hi=3.0)], id="special-erfcx"),
    Spec("ndtr", S("ndtr"), [F("a b", lo=-3.0, hi=3.0)], id="special-ndtr"),
    Spec("ndtri", S("ndtri"), [F("a b", lo=0.1, hi=0.9)], id="special-ndtri"),
    Spec(("log_ndtr", "erfcx"), S("log_ndtr"), [F("a b", lo=-5.0, hi=3.0)],
         id="special-log_ndtr"),
    # The far left tail, where ndtr' / ndtr would be 0/0.
    Spec(("log_ndtr", "erfcx"), S("log_ndtr"), [F("a", lo=-40.0, hi=-30.0)],
         id="special-log_ndtr-tail"),

    # -- gamma and friends ------------------------------------------------------------------
    Spec(("gammaln", "digamma"), S("gammaln"), [F("a b", **POS)], id="special-gammaln"),
    Spec(("gammaln", "digamma"), S("gammaln"), [F("a", lo=-0.9, hi=-0.1)],
         id="special-gammaln-negative"),
    Spec(("digamma", "polygamma"), S("digamma"), [F("a b", **POS)], id="special-digamma"),
    Spec(("digamma", "polygamma"), S("psi"), [F("a", lo=-1.9, hi=-1.1)],
         id="special-psi-negative"),
    Spec("polygamma", lambda x: S("polygamma")(1, x), [F("a b", **POS)],
         id="special-polygamma"),
    Spec("polygamma", lambda n, x: S("polygamma")(n, x), [I("a", lo=0, hi=3), F("a", **POS)],
         id="special-polygamma-orders"),
    Spec(("gamma", "digamma"), S("gamma"), [F("a b", lo=0.5, hi=2.5)], id="special-gamma"),
    Spec(("gamma", "digamma"), S("gamma"), [F("a", lo=-0.9, hi=-0.1)],
         id="special-gamma-negative"),
    Spec(("betaln", "digamma"), S("betaln"), [F("a b", **POS), F("b", **POS)],
         id="special-betaln"),
    Spec("betaln", lambda b: S("betaln")(2.0, b), [F("a", **POS)], id="special-betaln-scalar"),

    # -- the logistic function --------------------------------------------------------------
    Spec("expit", S("expit"), [F("a b", lo=-4.0, hi=4.0)], id="special-expit"),
    Spec("logit", S("logit"), [F("a b", lo=0.1, hi=0.9)], id="special-logit"),
    Spec(("logit", "expit"), lambda x: S("logit")(S("expit")(x)), [F("a", lo=-3.0, hi=3.0)],
         id="special-logit-expit"),

    # -- x log y and entropy -----------------------------------------------------------------
    Spec("xlogy", S("xlogy"), [F("a b"), F("b", **POS)], id="special-xlogy"),
    Spec("xlogy", lambda p: S("xlogy")(p, p), [F("a b", **POS)], id="special-xlogy-same"),
    Spec("xlogy", lambda y: S("xlogy")(2.0, y), [F("a", **POS)], id="special-xlogy-scalar"),
    Spec("xlog1py", S("xlog1py"), [F("a 1"), F("b", lo=-0.5, hi=2.0)], id="special-xlog1py"),
    Spec("entr", S("entr"), [F("a b", lo=0.2, hi=2.0)], id="special-entr"),

    # -- exponentially scaled Bessel functions (either side of the kink at 0) ---------------
    Spec(("i0e", "i1e"), S("i0e"), [F("a b", lo=0.2, hi=4.0)], id="special-i0e"),
    Spec(("i0e", "i1e"), S("i0e"), [F("a b", lo=-4.0, hi=-0.2)], id="special-i0e-negative"),
    Spec(("i1e", "i0e"), S("i1e"), [F("a b", lo=0.2, hi=4.0)], id="special-i1e"),
    Spec(("i1e", "i0e"), S("i1e"), [F("a b", lo=-4.0, hi=-0.2)], id="special-i1e-negative"),

    # -- Bessel functions (HIPS autograd's coverage); the order is a constant --------------
    Spec(("i0", "i1"), S("i0"), [F("a b", lo=-3.0, hi=3.0)], id="special-i0"),
    Spec(("i1", "i0"), S("i1"), [F("a b", lo=-3.0, hi=3.0)], id="special-i1"),
    Spec(("j0", "j1"), S("j0"), [F("a b", lo=0.2, hi=8.0)], id="special-j0"),
    Spec(("j1", "j0"), S("j1"), [F("a b", lo=-8.0, hi=8.0)], id="special-j1"),
    Spec(("y0", "y1"), S("y0"), [F("a b", lo=0.5, hi=8.0)], id="special-y0"),
    Spec(("y1", "y0"), S("y1"), [F("a b", lo=0.5, hi=8.0)], id="special-y1"),
    Spec("jv", lambda x: S("jv")(1.5, x), [F("a b", lo=0.2, hi=6.0)], id="special-jv"),
    Spec("jv", lambda x: S("jn")(2, x), [F("a b", lo=-6.0, hi=6.0)], id="special-jn"),
    Spec("yn", lambda x: S("yn")(2, x), [F("a b", lo=0.5, hi=6.0)], id="special-yn"),
    Spec("iv", lambda x: S("iv")(1.5, x), [F("a b", lo=0.2, hi=4.0)], id="special-iv"),
    Spec("ive", lambda x: S("ive")(2.0, x), [F("a b", lo=0.2, hi=4.0)], id="special-ive"),
    Spec("ive", lambda x: S("ive")(1.0, x), [F("a b", lo=-4.0, hi=-0.2)],
         id="special-ive-negative"),

    # -- more of the gamma family -----------------------------------------------------------
    Spec(("rgamma", "gamma", "digamma"), S("rgamma"), [F("a b", lo=-2.5, hi=2.5)],
         id="special-rgamma"),
    Spec("gammasgn", S("gammasgn"), [F("a b", lo=-2.5, hi=2.5)], nondiff=True,
         id="special-gammasgn"),
    Spec(("beta", "digamma"), S("beta"), [F("a b", **POS), F("b", **POS)], id="special-beta"),
    Spec(("gammainc", "xlogy", "gammaln"), lambda x: S("gammainc")(1.5, x),
         [F("a b", **POS)], id="special-gammainc"),
    Spec(("gammaincc", "xlogy", "gammaln"), lambda x: S("gammaincc")(2.5, x),
         [F("a b", **POS)], id="special-gammaincc"),
    Spec(("betainc", "xlogy", "xlog1py", "betaln"), lambda x: S("betainc")(2.0, 3.0, x),
         [F("a b", lo=0.1, hi=0.9)], id="special-betainc"),
    Spec("erfcinv", S("erfcinv"), [F("a b", lo=0.2, hi=1.8)], id="special-erfcinv"),
    Spec("gammaln", lambda a: FF("multigammaln")(a, 3), [F("a b", lo=1.5, hi=4.0)],
         id="special-multigammaln"),

    # -- complex erf and erfc (holomorphic) --------------------------------------------------
    Spec("erf", S("erf"), [C("a b", lo=-1.0, hi=1.0)], id="special-erf-complex"),
    Spec("erfc", S("erfc"), [C("a b", lo=-1.0, hi=1.0)], id="special-erfc-complex"),

    # -- logsumexp (funcflux.scipy.special's: SciPy's is no ufunc) ---------------------------
    Spec("logsumexp", lambda a: fsp.logsumexp(a, axis=1), [F("a b")],
         id="special-logsumexp"),
    Spec(("logsumexp",), lambda a: fsp.logsumexp(a, axis=(0, 1), keepdims=True), [F("a b c")],
         id="special-logsumexp-keepdims"),
    Spec(("exp", "sum", "log", "absolute"), lambda a, b: fsp.logsumexp(a, axis=0, b=b),
         [F("a b"), F("a 1", lo=0.5, hi=2.0)], id="special-logsumexp-b"),
    Spec(("exp", "sum", "log", "absolute", "sign"),
         lambda a, b: fsp.logsumexp(a, axis=-1, b=b, return_sign=True),
         [F("a b"), F("b", lo=-2.0, hi=-0.5)], id="special-logsumexp-sign"),
]
