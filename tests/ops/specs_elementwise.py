"""Spec lines for funcflux/ops/elementwise.py: one per primitive, plus compositions.

Domains stay away from singularities (log and sqrt at 0, arcsin at +-1) and from
kinks and ties (``distinct=True`` for the extrema).
"""
from __future__ import annotations

import numpy as np

import funcflux.numpy as fnp

import funcflux as ff
from tests.ops.specs import B, F, I, Spec

POS = dict(lo=0.5, hi=2.0)
UNIT = dict(lo=-0.8, hi=0.8)
QUOT = dict(lo=1.4, hi=2.15)  # over DIV: a quotient in (1.07, 1.96)
DIV = dict(lo=1.1, hi=1.3)

SPECS = [
    # -- arithmetic, with broadcasting and Python scalars --------------------------------
    Spec("add", lambda x, y: x + y, [F("a b"), F("b")]),
    Spec("add", lambda x, y: np.add(x, y), [F("a 1"), F("b")], id="add_a1_b"),
    Spec("add", lambda x: 3 + x, [F("a")], id="add_rscalar"),
    Spec("subtract", lambda x, y: x - y, [F("a b"), F("b")]),
    Spec("subtract", lambda x, y: np.subtract(x, y), [F("b"), F("a 1")], id="subtract_b_a1"),
    Spec("subtract", lambda x: 1.5 - x, [F("a")], id="subtract_rscalar"),
    Spec("multiply", lambda x, y: x * y, [F("a b"), F("b")]),
    Spec("multiply", lambda x, y: np.multiply(x, y), [F("a 1"), F("b")], id="multiply_a1_b"),
    Spec("multiply", lambda x, y: x * y, [F(""), F("a")], id="multiply_0d"),
    Spec("multiply", lambda x: x * 3, [F("a b")], id="multiply_scalar"),
    Spec("negative", lambda x: -x, [F("a b")]),
    Spec("negative", lambda x: np.negative(x), [F("a")], id="np_negative"),
    Spec("add", lambda x: np.positive(x) + (+x), [F("a")], id="positive"),
    Spec("true_divide", lambda x, y: x / y, [F("a b"), F("b", **POS)]),
    Spec("true_divide", lambda x, y: np.divide(x, y), [F("a 1"), F("b", lo=-2.0, hi=-0.5)],
         id="divide_a1_b"),
    Spec("true_divide", lambda x: 1 / x, [F("a", **POS)], id="true_divide_rscalar"),
    Spec("reciprocal", np.reciprocal, [F("a b", **POS)]),
    Spec("power", lambda x, y: x ** y, [F("a b", **POS), F("b")]),
    Spec("power", lambda x, y: np.power(x, y), [F("a 1", **POS), F("b")], id="power_a1_b"),
    Spec("power", lambda x: x ** 2, [F("a b")], id="power_square_negative_base"),
    Spec("power", lambda x: x ** 3.0, [F("a b")], id="power_cube"),
    Spec("power", lambda x: 2.0 ** x, [F("a b")], id="power_scalar_base"),
    Spec("power", lambda x: np.pow(x, -1.5), [F("a", **POS)], id="pow"),
    Spec(("power", "astype"), lambda x, y: np.float_power(x, y), [F("a", **POS), F("a")],
         id="float_power"),
    Spec("square", np.square, [F("a b")]),
    Spec("sqrt", np.sqrt, [F("a b", **POS)]),
    Spec("cbrt", np.cbrt, [F("a b", **POS)]),
    Spec("cbrt", np.cbrt, [F("a b", lo=-2.0, hi=-0.5)], id="cbrt_negative"),
    Spec("absolute", np.abs, [F("a b")]),
    Spec("absolute", lambda x: abs(x) + np.fabs(x), [F("a b")], id="abs_fabs"),
    Spec("sign", np.sign, [F("a b")], nondiff=True),
    Spec(("sign", "multiply"), lambda x: np.sign(x) * x, [F("a b")], id="sign_times_x"),
    Spec("copysign", np.copysign, [F("a b"), F("b")]),
    # Quotients kept away from the integers where remainder and fmod jump: x / y lies
    # in (1, 2) or (-2, -1), so floor and trunc are constant near every drawn point.
    Spec("remainder", lambda x, y: x % y, [F("a b", **QUOT), F("b", **DIV)]),
    Spec("remainder", lambda x, y: np.mod(x, y), [F("a", **QUOT), F("a", lo=-1.3, hi=-1.1)],
         id="mod_negative_divisor"),
    Spec("remainder", lambda x, y: np.remainder(x, y), [F("a", lo=-2.15, hi=-1.4), F("a", **DIV)],
         id="mod_negative_dividend"),
    Spec("remainder", lambda x: x % 1.5, [F("a b", lo=1.6, hi=2.9)], id="remainder_scalar"),
    Spec("fmod", np.fmod, [F("a b", **QUOT), F("b", **DIV)]),
    Spec("fmod", np.fmod, [F("a b", lo=-2.15, hi=-1.4), F("b", **DIV)], id="fmod_negative"),
    Spec("floor_divide", lambda x, y: x // y, [F("a b"), F("b", **POS)], nondiff=True),
    Spec(("floor_divide", "remainder"), lambda x, y: np.divmod(x, y)[1] * np.divmod(x, y)[0],
         [F("a", **QUOT), F("a", **DIV)], id="divmod"),

    # -- exponentials and logarithms -----------------------------------------------------
    Spec("exp", np.exp, [F("a b")]),
    Spec("exp2", np.exp2, [F("a b")]),
    Spec("expm1", np.expm1, [F("a b")]),
    Spec("log", np.log, [F("a b", **POS)]),
    Spec("log2", np.log2, [F("a b", **POS)]),
    Spec("log10", np.log10, [F("a b", **POS)]),
    Spec("log1p", np.log1p, [F("a b", lo=-0.5, hi=2.0)]),
    Spec("logaddexp", np.logaddexp, [F("a b"), F("b")]),
    Spec("logaddexp2", np.logaddexp2, [F("a 1"), F("b")]),

    # -- trigonometry ----------------------------------------------------------------------
    Spec("sin", np.sin, [F("a b")]),
    Spec("cos", np.cos, [F("a b")]),
    Spec("tan", np.tan, [F("a b", lo=-1.2, hi=1.2)]),
    Spec("arcsin", np.arcsin, [F("a b", **UNIT)]),
    Spec("arccos", np.arccos, [F("a b", **UNIT)]),
    Spec("arctan", np.arctan, [F("a b")]),
    Spec("arctan2", np.arctan2, [F("a b"), F("b")]),
    Spec("arctan2", lambda y, x: np.atan2(y, x), [F("a", **POS), F("a", lo=-2.0, hi=-0.5)],
         id="atan2_left_half"),
    Spec("hypot", np.hypot, [F("a b"), F("a 1")]),
    Spec("multiply", lambda x: np.deg2rad(x) + np.radians(x), [F("a b", lo=-180, hi=180)],
         id="deg2rad_radians"),
    Spec("multiply", lambda x: np.rad2deg(x) + np.degrees(x), [F("a b")], id="rad2deg_degrees"),
    Spec(("sin", "multiply", "where", "equal", "true_divide"), np.sinc, [F("a b")], id="sinc"),

    # -- hyperbolic ------------------------------------------------------------------------
    Spec("sinh", np.sinh, [F("a b")]),
    Spec("cosh", np.cosh, [F("a b")]),
    Spec("tanh", np.tanh, [F("a b")]),
    Spec("arcsinh", np.arcsinh, [F("a b")]),
    Spec("arccosh", np.arccosh, [F("a b", lo=1.2, hi=3.0)]),
    Spec("arctanh", np.arctanh, [F("a b", **UNIT)]),

    # -- extrema ------------------------------------------------------------------------------
    Spec("maximum", np.maximum, [F("a b", distinct=True), F("b", distinct=True)]),
    Spec("maximum", lambda x: np.maximum(x, 0.0), [F("a b", distinct=True)], id="relu"),
    Spec("extremum_mask", lambda x, y: fnp._elementwise.extremum_mask(np.maximum(x, y), x, y),
         [F("a b"), F("b")], nondiff=True),
    Spec("extremum_mask", lambda x: fnp._elementwise.extremum_mask(np.maximum(x, 1.0), x, 1.0),
         [I("a b", lo=0, hi=2)], nondiff=True, id="extremum_mask-ties"),
    Spec("minimum", np.minimum, [F("a 1", distinct=True), F("b", distinct=True)]),
    Spec("fmax", np.fmax, [F("a b", distinct=True), F("b", distinct=True)]),
    Spec("fmin", np.fmin, [F("a", distinct=True), F("a", distinct=True)]),
    Spec(("maximum", "minimum"), lambda x: np.clip(x, -1.0, 1.0), [F("a b", distinct=True)],
         id="clip"),
    Spec(("maximum", "minimum"), lambda x, lo, hi: np.clip(x, lo, hi),
         [F("a b"), F("b", lo=-2.0, hi=-0.1), F("a 1", lo=0.1, hi=2.0)], id="clip_arrays"),
    Spec("maximum", lambda x: x.clip(min=0.5) + np.clip(x, None, 1.0),
         [F("a b", distinct=True)], id="clip_none_and_method"),
    Spec("where", lambda c, x, y: np.where(c, x, y), [B("a b"), F("a b"), F("b")]),
    Spec("where", lambda x: np.where(x > 0, x, 0.1 * x), [F("a b")], id="leaky_relu"),

    # -- piecewise constant -------------------------------------------------------------------
    Spec("greater", lambda x, y: x > y, [F("a b"), F("b")], nondiff=True),
    Spec("greater_equal", lambda x, y: x >= y, [F("a b"), F("b")], nondiff=True),
    Spec("less", lambda x, y: np.less(x, y), [F("a 1"), F("b")], nondiff=True),
    Spec("less_equal", lambda x, y: x <= y, [F("a b"), F("b")], nondiff=True),
    Spec("equal", lambda x: np.equal(x, np.round(x)), [F("a b")], nondiff=True),
    Spec("not_equal", lambda x, y: x != y, [F("a b"), F("b")], nondiff=True),
    Spec("logical_and", lambda x, y: np.logical_and(x > 0, y > 0), [F("a b"), F("b")],
         nondiff=True),
    Spec("logical_or", lambda x, y: (x > 0) | (y > 0), [F("a b"), F("b")], nondiff=True),
    Spec("logical_xor", lambda c, d: np.logical_xor(c, d), [B("a b"), B("b")], nondiff=True),
    Spec("logical_not", lambda x: ~(x > 0), [F("a b")], nondiff=True),
    Spec(("bitwise_and", "bitwise_or", "bitwise_xor", "invert"),
         lambda c, x: np.bitwise_xor(np.bitwise_or(c, x > 0), np.bitwise_and(c, np.invert(x < 1))),
         [B("b"), F("a b")], nondiff=True, id="bitwise"),
    Spec("isfinite", lambda x: np.isfinite(np.where(x > 0, x, np.inf)), [F("a b")],
         nondiff=True),
    Spec("isnan", lambda x: np.isnan(np.where(x > 0, x, np.nan)), [F("a b")], nondiff=True),
    Spec("isinf", lambda x: np.isinf(np.where(x > 0, x, -np.inf)), [F("a b")], nondiff=True),
    Spec("signbit", np.signbit, [F("a b")], nondiff=True),
    Spec("floor", np.floor, [F("a b")], nondiff=True),
    Spec("ceil", np.ceil, [F("a b")], nondiff=True),
    Spec("rint", np.rint, [F("a b")], nondiff=True),
    Spec("trunc", lambda x: np.trunc(x) + np.fix(x), [F("a b")], nondiff=True),
    Spec("round", lambda x: np.round(x, 2) + np.around(x) + x.round(1), [F("a b")],
         nondiff=True),
    Spec(("floor", "multiply"), lambda x: np.floor(x) * x, [F("a b", lo=1.1, hi=1.9)],
         id="floor_times_x"),
    Spec("heaviside", lambda x: np.heaviside(x, 0.5), [F("a b")], nondiff=True),
    Spec(("where", "isnan", "isinf", "signbit"),
         lambda x: np.nan_to_num(np.where(x > 1.0, np.inf, np.where(x < -1.0, np.nan, x)),
                                 posinf=5.0),
         [F("a b")], id="nan_to_num"),

    # -- real numbers seen as complex, creation, casting ---------------------------------------
    Spec(("multiply", "zeros_like"), lambda x: np.conj(x) * np.real(x) + np.imag(x) + x.conj(),
         [F("a b")], id="conj_real_imag"),
    Spec(("ones_like", "zeros_like"), lambda x: np.ones_like(x) * x + np.zeros_like(x),
         [F("a b")], id="ones_zeros_like"),
    Spec("astype", lambda x: np.sin(x.astype(np.float32)), [F("a b")]),
    Spec("astype_nondiff", lambda x: x.astype(np.int32), [F("a b")], nondiff=True),
    Spec("stop_gradient", lambda x: ff.stop_gradient(x), [F("a b")], nondiff=True),
]
