"""The building blocks: small gradient transformations, each a tiny (init, update) pair.

Formulas, names and defaults follow optax, so that an optax user finds what
they expect: ``scale_by_adam`` puts ``eps`` outside the square root and
``eps_root`` inside, moments are updated as ``(1 - decay) * g + decay * m``,
and the sign flip of gradient descent lives in ``scale_by_learning_rate``.

Each block that applies one formula per leaf declares its update as a
:class:`~funcflux.optim.leafwise.Leafwise` (what a step computes once, the
formula at one leaf, the state's arrays), so that ``chain`` and ``optim.step``
can fuse the loops; called with trees, it is optax's ``update``.

Scalars stay Python floats and step counts Python ints, so a float32 tree
gives float32 updates and float32 state (NEP 50: Python scalars do not
promote arrays). Array work goes through operators and the array module of
the leaf (``array_module``), so the same code runs on CuPy arrays.

>>> import numpy as np
>>> from funcflux import optim
>>> opt = optim.scale_by_adam()
>>> u, s = opt.update(np.float32([0.5, -2.0]), opt.init(np.zeros(2, np.float32)))
>>> u, s.count
(array([ 1., -1.], dtype=float32), 1)
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from .. import tree
from ..core.trace import Tracer
from ..core.backend import array_module
from .base import GradientTransformation, init_empty
from .checks import check_range
from .combine import masked
from .leafwise import Leafwise
from .tree_utils import full_like, global_norm, map_updates, sqrt, zeros_like

BAD_SCHEDULE = ("optim.scale_by_learning_rate: the learning-rate schedule gave {value!r} at "
                "step {count}; a schedule must return a finite number >= 0 at every step.")

__all__ = [
    "identity", "set_to_zero",
    "scale", "scale_by_learning_rate", "scale_by_schedule", "ScaleByScheduleState",
    "scale_by_adam", "ScaleByAdamState", "scale_by_rms", "ScaleByRmsState",
    "scale_by_stddev", "ScaleByRStdDevState", "scale_by_rss", "ScaleByRssState",
    "scale_by_adadelta", "ScaleByAdaDeltaState", "scale_by_lion", "ScaleByLionState",
    "scale_by_radam", "scale_by_trust_ratio", "trace", "TraceState", "clip",
    "clip_by_global_norm", "add_decayed_weights",
    "scale_by_belief", "ScaleByBeliefState", "ema", "EmaState", "clip_by_block_rms",
    "scale_by_param_block_rms",
]


# ----------------------------------------------------------------------------- basics
class _Identity(Leafwise):
    """A leafwise identity whose tree-level update hands back the very same tree."""
    __slots__ = ()

    def __call__(self, updates: Any, state: Any, params: Any = None, **extra_args: Any) -> tuple:
        return updates, state


def identity() -> GradientTransformation:
    """Leave updates unchanged (optax's ``identity``).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> g = {"w": np.ones(2)}
    >>> optim.identity().update(g, optim.EmptyState())[0] is g
    True
    """
    return GradientTransformation(init_empty, _Identity("identity", lambda ctx, g, p: (g,),
                                                        passes=True))


def set_to_zero() -> GradientTransformation:
    """Replace every update by zeros: the parameters under it stay where they are.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.set_to_zero().update(np.ones(2), optim.EmptyState())[0]
    array([0., 0.])
    """
    return GradientTransformation(
        init_empty, Leafwise("set_to_zero", lambda ctx, g, p: (array_module(g).zeros_like(g),)))


# ----------------------------------------------------------------------------- scaling
def scale(step_size: float) -> GradientTransformation:
    """Multiply updates by ``step_size``.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.scale(-0.5).update(np.float32([2.0]), optim.EmptyState())[0]
    array([-1.], dtype=float32)
    """
    check_range("scale", "step_size", step_size, -math.inf, math.inf, low_closed=False)
    return GradientTransformation(init_empty, Leafwise(
        "scale", _times, prepare=lambda state: step_size, multiplier=_same, scaled=_product))


def _times(step_size: float, g: Any, p: Any) -> tuple:
    return (g * step_size,)


def _same(x: Any) -> Any:
    return x


def _product(step_size: float, gain: float) -> float:
    return step_size * gain


class ScaleByScheduleState(NamedTuple):
    count: int


def scale_by_schedule(step_size_fn: Callable[[int], float]) -> GradientTransformation:
    """Multiply updates by ``step_size_fn(count)``; ``count`` (updates so far) is the state.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.scale_by_schedule(lambda n: 1.0 / (n + 1))
    >>> s = opt.init(None)
    >>> u, s = opt.update(np.ones(1), s); u2, s = opt.update(np.ones(1), s)
    >>> u, u2, s.count
    (array([1.]), array([0.5]), 2)
    """
    if not callable(step_size_fn):
        raise TypeError(f"optim.scale_by_schedule: step_size_fn must be a function step -> "
                        f"float, got {step_size_fn!r}; use optim.scale for a constant.")

    def init(params: Any) -> ScaleByScheduleState:
        return ScaleByScheduleState(0)

    def prepare(state: ScaleByScheduleState) -> float:
        v = step_size_fn(state.count)  # a Python float keeps float32 float32
        return v if isinstance(v, Tracer) else float(v)  # (traced inside jit: weak, too)

    def finish(ctx: float, state: ScaleByScheduleState, arrays: tuple) -> ScaleByScheduleState:
        return ScaleByScheduleState(state.count + 1)

    return GradientTransformation(init, Leafwise(
        "scale_by_schedule", _times, prepare=prepare, finish=finish, multiplier=_same,
        scaled=_product))


def scale_by_learning_rate(learning_rate: float | Callable[[int], float], *,
                           flip_sign: bool = True) -> GradientTransformation:
    """Multiply by ``-learning_rate`` (a number or a schedule ``step -> float``).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.scale_by_learning_rate(0.1).update(np.ones(1), optim.EmptyState())[0]
    array([-0.1])
    """
    m = -1.0 if flip_sign else 1.0
    if callable(learning_rate):
        def scheduled(count: int) -> float:
            lr = learning_rate(count)
            if isinstance(lr, Tracer):  # inside jit the value is not known: staged unchecked
                return m * lr
            lr = float(lr)
            if not 0.0 <= lr < math.inf:  # one comparison per step; NaN fails it too
                raise ValueError(BAD_SCHEDULE.format(count=count, value=lr))
            return m * lr
        return scale_by_schedule(scheduled)
    check_range("scale_by_learning_rate", "learning_rate", learning_rate,
                note=" (It may also be a schedule, a function step -> float >= 0.)")
    return scale(m * learning_rate)


# ----------------------------------------------------------------------------- adaptive
class ScaleByAdamState(NamedTuple):
    count: int
    mu: Any
    nu: Any


def _moments(g: Any, m: Any, v: Any, b1: float, b2: float) -> tuple:
    """``(1 - b1) * g + b1 * m`` and ``(1 - b2) * g² + b2 * v``, as ``m + (1 - b1) * (g - m)``:
    one new array each and no other temporary (large temporaries cost page faults)."""
    mu = g - m
    mu *= 1.0 - b1
    mu += m
    nu = g * g
    nu -= v
    nu *= 1.0 - b2
    nu += v
    return mu, nu


def _adam_direction(mu: Any, nu: Any, c1: float, c2: float, eps: float, eps_root: float) -> Any:
    """``(mu / c1) / (sqrt(nu / c2 + eps_root) + eps)``, with the bias corrections folded
    into scalars where ``eps_root`` is 0: ``mu * (sqrt(c2) / c1) / (sqrt(nu) + eps * sqrt(c2))``."""
    if eps_root:
        d = nu / c2
        d += eps_root
        d = sqrt(d)
        d += eps
        u = mu / d
        u *= 1.0 / c1
        return u
    r2 = c2 ** 0.5  # (not math.sqrt: c2 may be staged under jit, where a count is traced)
    d = sqrt(nu)
    d += eps * r2
    u = mu / d
    u *= r2 / c1
    return u


def _adam_finish(ctx: tuple, state: ScaleByAdamState, arrays: tuple) -> ScaleByAdamState:
    return ScaleByAdamState(ctx[0], *arrays)


def _check_adam(owner: str, b1: float, b2: float, eps: float, eps_root: float) -> None:
    # b = 1 would divide by the bias correction 1 - b**t = 0
    check_range(owner, "b1", b1, 0.0, 1.0)
    check_range(owner, "b2", b2, 0.0, 1.0)
    check_range(owner, "eps", eps)
    check_range(owner, "eps_root", eps_root)


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                  *, nesterov: bool = False) -> GradientTransformation:
    """Adam's rescaling: ``m̂ / (sqrt(v̂ + eps_root) + eps)`` with bias-corrected moments.

    With ``nesterov=True`` (NAdam, Dozat 2016), ``m̂ = b1 * m / (1 - b1**(t+1))
    + (1 - b1) * g / (1 - b1**t)``.
    """
    _check_adam("scale_by_adam", b1, b2, eps, eps_root)

    def init(params: Any) -> ScaleByAdamState:
        return ScaleByAdamState(0, zeros_like(params), zeros_like(params))

    def prepare(state: ScaleByAdamState) -> tuple:
        t = state.count + 1
        c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        r2 = c2 ** 0.5  # (not math.sqrt: staged under jit, where the count is traced)
        return t, c1, c2, 1.0 - b1 ** (t + 1) if nesterov else None, r2 / c1, eps * r2

    def leaf(ctx: tuple, g: Any, p: Any, m: Any, v: Any) -> tuple:
        mu, nu = _moments(g, m, v, b1, b2)
        if nesterov:  # m̂ = b1 * mu / (1 - b1**(t+1)) + (1 - b1) * g / (1 - b1**t)
            _, c1, c2, c1_next, _, _ = ctx
            m_hat = mu * (b1 / c1_next)
            m_hat += g * ((1.0 - b1) / c1)
            return _adam_direction(m_hat, nu, 1.0, c2, eps, eps_root), mu, nu
        return _adam_direction(mu, nu, ctx[1], ctx[2], eps, eps_root), mu, nu

    a1, a2 = 1.0 - b1, 1.0 - b2

    def plain_leaf(ctx: tuple, g: Any, p: Any, m: Any, v: Any) -> tuple:
        # ``leaf`` where eps_root = 0 and nesterov is off (the default): the same operations
        # in the same order (_moments, then _adam_direction with its scalars computed once
        # per step, ctx[4] and ctx[5]), written out because this is Adam's hot loop.
        mu = g - m
        mu *= a1
        mu += m
        nu = g * g
        nu -= v
        nu *= a2
        nu += v
        d = nu ** 0.5  # sqrt, with no lookup of the array module (NumPy calls sqrt for it)
        d += ctx[5]
        u = mu / d
        u *= ctx[4]
        return u, mu, nu

    def scaled(ctx: tuple, gain: float) -> tuple:  # the update times gain: fold it into ctx[4]
        return (*ctx[:4], ctx[4] * gain, ctx[5])

    plain = not (nesterov or eps_root)
    return GradientTransformation(init, Leafwise(
        "scale_by_adam", plain_leaf if plain else leaf, arrays=("mu", "nu"), prepare=prepare,
        finish=_adam_finish, scaled=scaled if plain else None))


def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                   threshold: float = 5.0, *, nesterov: bool = False) -> GradientTransformation:
    """Rectified Adam: Adam's step times the rectification ``r_t`` once the length of
    the approximated SMA ``rho_t`` reaches ``threshold``; before that, the bias-corrected
    momentum alone.
    """
    _check_adam("scale_by_radam", b1, b2, eps, eps_root)
    # The rectification sqrt((rho - 4)(rho - 2) ...) is real only for rho > 4.
    check_range("scale_by_radam", "threshold", threshold, 4.0, math.inf, low_closed=False,
                note=" RAdam rectifies only where the SMA length rho_t exceeds 4.")
    rho_inf = 2.0 / (1.0 - b2) - 1.0

    def init(params: Any) -> ScaleByAdamState:
        return ScaleByAdamState(0, zeros_like(params), zeros_like(params))

    def prepare(state: ScaleByAdamState) -> tuple:
        t = state.count + 1
        c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
        rho = rho_inf - 2.0 * t * b2 ** t / c2
        rectify = rho >= threshold
        r = math.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf
                      / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho)) if rectify else 1.0
        return t, c1, c2, 1.0 - b1 ** (t + 1), rectify, r

    def leaf(ctx: tuple, g: Any, p: Any, m: Any, v: Any) -> tuple:
        _, c1, c2, c1_next, rectify, r = ctx
        mu, nu = _moments(g, m, v, b1, b2)
        if nesterov:
            m_hat = (b1 / c1_next) * mu + ((1.0 - b1) / c1) * g
        else:
            m_hat = mu / c1
        if not rectify:
            return m_hat, mu, nu
        u = _adam_direction(m_hat, nu, 1.0, c2, eps, eps_root)
        u *= r
        return u, mu, nu

    return GradientTransformation(init, Leafwise(
        "scale_by_radam", leaf, arrays=("mu", "nu"), prepare=prepare, finish=_adam_finish))


class ScaleByRmsState(NamedTuple):
    nu: Any


def _check_rms(owner: str, decay: float, eps: float, initial_scale: float) -> None:
    check_range(owner, "decay", decay, 0.0, 1.0, high_closed=True)
    check_range(owner, "eps", eps)
    check_range(owner, "initial_scale", initial_scale)


def scale_by_rms(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                 eps_in_sqrt: bool = True) -> GradientTransformation:
    """RMSProp's rescaling: ``g / sqrt(nu + eps)`` (or ``g / (sqrt(nu) + eps)``)."""
    _check_rms("scale_by_rms", decay, eps, initial_scale)

    def init(params: Any) -> ScaleByRmsState:
        return ScaleByRmsState(full_like(params, initial_scale))

    def leaf(ctx: None, g: Any, p: Any, v: Any) -> tuple:
        nu = g * g
        nu *= 1.0 - decay
        nu += decay * v
        d = sqrt(nu + eps) if eps_in_sqrt else sqrt(nu) + eps
        return g / d, nu

    return GradientTransformation(init, Leafwise(
        "scale_by_rms", leaf, arrays=("nu",),
        finish=lambda ctx, s, arrays: ScaleByRmsState(*arrays)))


class ScaleByRStdDevState(NamedTuple):
    mu: Any
    nu: Any


def scale_by_stddev(decay: float = 0.9, eps: float = 1e-8, initial_scale: float = 0.0,
                    eps_in_sqrt: bool = True) -> GradientTransformation:
    """Centred RMSProp: ``g / sqrt(nu - mu**2 + eps)`` with moving averages of g and g²."""
    _check_rms("scale_by_stddev", decay, eps, initial_scale)

    def init(params: Any) -> ScaleByRStdDevState:
        return ScaleByRStdDevState(zeros_like(params), full_like(params, initial_scale))

    def leaf(ctx: None, g: Any, p: Any, m: Any, v: Any) -> tuple:
        mu, nu = _moments(g, m, v, decay, decay)
        var = nu - mu * mu
        d = sqrt(var + eps) if eps_in_sqrt else sqrt(var) + eps
        return g / d, mu, nu

    return GradientTransformation(init, Leafwise(
        "scale_by_stddev", leaf, arrays=("mu", "nu"),
        finish=lambda ctx, s, arrays: ScaleByRStdDevState(*arrays)))


class ScaleByRssState(NamedTuple):
    sum_of_squares: Any


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7
                 ) -> GradientTransformation:
    """Adagrad's rescaling: ``g / sqrt(sum of g² so far + eps)`` (0 where the sum is 0)."""
    check_range("scale_by_rss", "initial_accumulator_value", initial_accumulator_value)
    check_range("scale_by_rss", "eps", eps)

    def init(params: Any) -> ScaleByRssState:
        return ScaleByRssState(full_like(params, initial_accumulator_value))

    def leaf(ctx: None, g: Any, p: Any, acc: Any) -> tuple:
        s = g * g
        s += acc
        d = sqrt(s + eps)
        if eps:
            return g / d, s
        xp = array_module(g)
        return xp.where(s > 0, g / xp.where(s > 0, d, 1), 0), s

    return GradientTransformation(init, Leafwise(
        "scale_by_rss", leaf, arrays=("sum_of_squares",),
        finish=lambda ctx, s, arrays: ScaleByRssState(*arrays)))


class ScaleByAdaDeltaState(NamedTuple):
    e_g: Any
    e_x: Any


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> GradientTransformation:
    """Adadelta: ``g * sqrt(E[dx²] + eps) / sqrt(E[g²] + eps)``, then E[dx²] tracks the step."""
    check_range("scale_by_adadelta", "rho", rho, 0.0, 1.0, high_closed=True)
    check_range("scale_by_adadelta", "eps", eps)

    def init(params: Any) -> ScaleByAdaDeltaState:
        return ScaleByAdaDeltaState(zeros_like(params), zeros_like(params))

    def leaf(ctx: None, g: Any, p: Any, eg: Any, ex: Any) -> tuple:
        e_g = g * g
        e_g *= 1.0 - rho
        e_g += rho * eg
        u = sqrt(ex + eps) / sqrt(e_g + eps) * g
        e_x = u * u
        e_x *= 1.0 - rho
        e_x += rho * ex
        return u, e_g, e_x

    return GradientTransformation(init, Leafwise(
        "scale_by_adadelta", leaf, arrays=("e_g", "e_x"),
        finish=lambda ctx, s, arrays: ScaleByAdaDeltaState(*arrays)))


class ScaleByLionState(NamedTuple):
    count: int
    mu: Any


def scale_by_lion(b1: float = 0.9, b2: float = 0.99) -> GradientTransformation:
    """Lion: ``sign((1 - b1) * g + b1 * m)``, then ``m`` moves with rate ``b2``."""
    check_range("scale_by_lion", "b1", b1, 0.0, 1.0, high_closed=True)
    check_range("scale_by_lion", "b2", b2, 0.0, 1.0, high_closed=True)

    def init(params: Any) -> ScaleByLionState:
        return ScaleByLionState(0, zeros_like(params))

    def leaf(ctx: None, g: Any, p: Any, m: Any) -> tuple:
        c = g * (1.0 - b1)
        c += b1 * m
        mu = g * (1.0 - b2)
        mu += b2 * m
        return array_module(c).sign(c), mu

    return GradientTransformation(init, Leafwise(
        "scale_by_lion", leaf, arrays=("mu",),
        finish=lambda ctx, s, arrays: ScaleByLionState(s.count + 1, *arrays)))


def _norm(x: Any) -> float:
    return float((x * x).sum()) ** 0.5


def scale_by_trust_ratio(min_norm: float = 0.0, trust_coefficient: float = 1.0,
                         eps: float = 0.0) -> GradientTransformation:
    """LAMB/LARS layer-wise scaling: ``u * trust_coefficient * |p| / (|u| + eps)``.

    Norms below ``min_norm`` count as ``min_norm``; where either norm is zero
    the update is left as it is (ratio 1).
    """
    check_range("scale_by_trust_ratio", "min_norm", min_norm)
    check_range("scale_by_trust_ratio", "trust_coefficient", trust_coefficient)
    check_range("scale_by_trust_ratio", "eps", eps)

    def leaf(ctx: None, u: Any, p: Any) -> tuple:
        p_norm = max(_norm(p), min_norm)
        u_norm = max(_norm(u), min_norm)
        if p_norm == 0.0 or u_norm == 0.0:
            return (u,)
        return (u * (trust_coefficient * p_norm / (u_norm + eps)),)

    return GradientTransformation(init_empty,
                                  Leafwise("scale_by_trust_ratio", leaf, needs_params=True))


# ----------------------------------------------------------------------------- momentum
class TraceState(NamedTuple):
    trace: Any


def trace(decay: float, nesterov: bool = False) -> GradientTransformation:
    """Momentum: ``t = g + decay * t``; the update is ``t`` (or ``g + decay * t``, Nesterov).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.trace(0.5)
    >>> s = opt.init(np.zeros(1))
    >>> u, s = opt.update(np.ones(1), s); u, s = opt.update(np.ones(1), s)
    >>> u
    array([1.5])
    """
    check_range("trace", "decay", decay, 0.0, 1.0, high_closed=True)

    def init(params: Any) -> TraceState:
        return TraceState(zeros_like(params))

    def leaf(ctx: None, g: Any, p: Any, t: Any) -> tuple:
        new = t * decay
        new += g
        if nesterov:
            u = new * decay
            u += g
            return u, new
        return new, new

    return GradientTransformation(init, Leafwise(
        "trace", leaf, arrays=("trace",),
        finish=lambda ctx, s, arrays: TraceState(*arrays)))


# ----------------------------------------------------------------------------- clipping
def clip(max_delta: float) -> GradientTransformation:
    """Clip every update element to ``[-max_delta, max_delta]``.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.clip(1.0).update(np.array([-3.0, 0.5, 2.0]), optim.EmptyState())[0]
    array([-1. ,  0.5,  1. ])
    """
    check_range("clip", "max_delta", max_delta, 0.0, math.inf, high_closed=True)

    return GradientTransformation(
        init_empty, Leafwise("clip", lambda ctx, u, p: (u.clip(-max_delta, max_delta),)))


NONFINITE_NORM = ("optim.clip_by_global_norm: the global norm of the updates is {norm} (the "
                  "leaf at {path} holds {what}), so no factor scales them to max_norm={max_norm}"
                  " (optax's would give 0 for every finite element and nan for the rest). "
                  "Stopped before that step. The gradient overflowed or came from an undefined "
                  "derivative (sqrt or log at 0...): find it with ff.grad on one batch; a "
                  "smaller learning rate or the float64 dtype may help.")


def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Scale all updates together so that their global L2 norm is at most ``max_norm``.

    An update holding ``inf`` or ``nan`` has no finite norm to scale: the
    update raises ``FloatingPointError`` naming the norm and the first leaf
    holding one, rather than return zeros and NaNs (as optax does). In
    ``ff.train`` that stops training before the step is applied, with the
    work kept on the error (``err.train_result``).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.clip_by_global_norm(1.0).update({"a": np.array([3.0]), "b": np.array([4.0])},
    ...                                       optim.EmptyState())[0]
    {'a': array([0.6]), 'b': array([0.8])}
    """
    # 0 would zero every update (and divide 0 by 0 at a zero gradient); < 0 flips its sign
    check_range("clip_by_global_norm", "max_norm", max_norm, 0.0, math.inf,
                low_closed=False, high_closed=True)

    def scaled(u: Any, factor: float) -> Any:
        if factor >= _finfo(u).tiny:
            return u * factor
        # the factor itself underflows the leaf's dtype: scale in float64, round once
        return (u.astype(array_module(u).complex128 if u.dtype.kind == "c" else "float64")
                * factor).astype(u.dtype)

    def update(updates: Any, state: Any, params: Any = None) -> tuple:
        norm = global_norm(updates)
        if not math.isfinite(norm):
            raise FloatingPointError(_nonfinite_norm(updates, norm, max_norm))
        if norm < max_norm:
            return updates, state
        factor = max_norm / norm
        return map_updates(lambda u: scaled(u, factor), updates), state
    return GradientTransformation(init_empty, update)


def _finfo(u: Any) -> Any:
    xp = array_module(u)
    return xp.finfo(u.dtype if u.dtype.kind in "fc" else xp.float64)


def _nonfinite_norm(updates: Any, norm: float, max_norm: float) -> str:
    """The error text for a non-finite global norm, naming the first leaf that makes it so."""
    want = math.isnan  # a nan decides the norm; else the first inf
    for path, u in tree.leaves_with_path(updates):
        if u is None:
            continue
        bad = array_module(u).isnan(u) if want(norm) else ~array_module(u).isfinite(u)
        if bool(bad.any()):
            what = "nan" if want(norm) else "inf"
            return NONFINITE_NORM.format(norm=norm, path=tree.keystr(path), what=what,
                                         max_norm=max_norm)
    return NONFINITE_NORM.format(norm=norm, path="?", what="it", max_norm=max_norm)


# ----------------------------------------------------------------------------- weight decay
def add_decayed_weights(weight_decay: float = 0.0, mask: Any = None) -> GradientTransformation:
    """Add ``weight_decay * params`` to the updates (decoupled weight decay in a chain).

    ``mask`` (a tree of bools or a function ``params -> bools``) limits it to
    some parameters, e.g. not to biases.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> p = np.array([2.0])
    >>> optim.add_decayed_weights(0.1).update(np.zeros(1), optim.EmptyState(), p)[0]
    array([0.2])
    """
    check_range("add_decayed_weights", "weight_decay", weight_decay)

    def leaf(ctx: None, u: Any, p: Any) -> tuple:
        return (u + weight_decay * p,) if weight_decay else (u,)

    t = GradientTransformation(init_empty,
                               Leafwise("add_decayed_weights", leaf, needs_params=True))
    return masked(t, mask) if mask is not None else t



# ----------------------------------------------------------------------------- AdaBelief
class ScaleByBeliefState(NamedTuple):
    count: int
    mu: Any
    nu: Any


def scale_by_belief(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
                    eps_root: float = 1e-16, *, nesterov: bool = False
                    ) -> GradientTransformation:
    """AdaBelief's rescaling (Zhuang et al. 2020): ``m̂ / (sqrt(ŝ) + eps)``, where ``s`` is
    the moving average of the squared *prediction error* ``(g - m)²`` (plus ``eps_root``
    each step), not of ``g²`` as in Adam. Both moments are bias-corrected; optax's
    formulas and defaults.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.scale_by_belief()
    >>> u, s = opt.update(np.array([0.5, -2.0]), opt.init(np.zeros(2)))
    >>> u, s.count    # first step: m̂ = g and ŝ = (g - (1 - b1) g)², so u = g / (0.9 |g|)
    (array([ 1.1111, -1.1111]), 1)
    """
    _check_adam("scale_by_belief", b1, b2, eps, eps_root)

    def init(params: Any) -> ScaleByBeliefState:
        return ScaleByBeliefState(0, zeros_like(params), zeros_like(params))

    def prepare(state: ScaleByBeliefState) -> tuple:
        t = state.count + 1
        return t, 1.0 - b1 ** t, 1.0 - b2 ** t, 1.0 - b1 ** (t + 1)

    def leaf(ctx: tuple, g: Any, p: Any, m: Any, v: Any) -> tuple:
        _, c1, c2, c1_next = ctx
        mu = (1.0 - b1) * g + b1 * m
        err = g - mu
        nu = (1.0 - b2) * _abs_sq(err) + b2 * v
        nu += eps_root
        if nesterov:  # b1 m̂(t+1) + (1 - b1) ĝ(t), as in NAdam
            m_hat = b1 * (mu / c1_next) + (1.0 - b1) * (g / c1)
        else:
            m_hat = mu / c1
        return m_hat / (sqrt(nu / c2) + eps), mu, nu

    return GradientTransformation(init, Leafwise(
        "scale_by_belief", leaf, arrays=("mu", "nu"), prepare=prepare,
        finish=lambda ctx, s, arrays: ScaleByBeliefState(ctx[0], *arrays)))


def _abs_sq(x: Any) -> Any:
    """``|x|²`` elementwise, real (``x * x`` for real arrays)."""
    return (x.conj() * x).real if x.dtype.kind == "c" else x * x


# ----------------------------------------------------------------------------- EMA
class EmaState(NamedTuple):
    count: int
    ema: Any


def ema(decay: float, debias: bool = True, accumulator_dtype: Any = None
        ) -> GradientTransformation:
    """Exponential moving average of the updates: ``e = (1 - decay) * u + decay * e``;
    the update is ``e``, or ``e / (1 - decay**t)`` with ``debias``. ``accumulator_dtype``
    (default: the update's own) is the dtype kept in the state.

    Unlike :func:`trace` (``t = u + decay * t``), the new update enters with weight
    ``1 - decay``.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.ema(0.5, debias=False)
    >>> s = opt.init(np.zeros(1))
    >>> u, s = opt.update(np.ones(1), s); u, s = opt.update(np.ones(1), s)
    >>> u, s.count
    (array([0.75]), 2)
    """
    check_range("ema", "decay", decay, 0.0, 1.0, high_closed=True)

    def init(params: Any) -> EmaState:
        z = zeros_like(params)
        if accumulator_dtype is not None:
            z = map_updates(lambda a: a.astype(accumulator_dtype), z)
        return EmaState(0, z)

    def prepare(state: EmaState) -> tuple:
        t = state.count + 1
        return t, (1.0 - decay ** t) if debias else None

    def leaf(ctx: tuple, g: Any, p: Any, e: Any) -> tuple:
        new = (1.0 - decay) * g + decay * e
        u = new / ctx[1] if debias else new
        if accumulator_dtype is not None:
            new = new.astype(accumulator_dtype)
        return u, new

    return GradientTransformation(init, Leafwise(
        "ema", leaf, arrays=("ema",), prepare=prepare,
        finish=lambda ctx, s, arrays: EmaState(ctx[0], *arrays)))


# ----------------------------------------------------------------------------- block RMS
def _rms(x: Any) -> Any:
    """The root mean square of ``x``'s elements (magnitudes, for complex), a 0-d value of
    ``x``'s precision (array operations only: it stages under jit)."""
    return sqrt(_abs_sq(x).mean())


def clip_by_block_rms(threshold: float) -> GradientTransformation:
    """Scale each update array down so that its root mean square is at most ``threshold``:
    ``u / max(1, rms(u) / threshold)`` (Adafactor's update clipping; optax's).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.clip_by_block_rms(1.0).update(np.array([3.0, -4.0]), optim.EmptyState())[0]
    array([ 0.8485..., -1.1313...])
    """
    check_range("clip_by_block_rms", "threshold", threshold, 0.0, math.inf, low_closed=False)

    def leaf(ctx: None, u: Any, p: Any) -> tuple:
        return (u / array_module(u).maximum(1.0, _rms(u) / threshold),)

    return GradientTransformation(init_empty, Leafwise("clip_by_block_rms", leaf))


def scale_by_param_block_rms(min_scale: float = 1e-3) -> GradientTransformation:
    """Multiply each update by its parameter array's root mean square, at least
    ``min_scale`` (Adafactor's relative step size; optax's).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> p = np.array([3.0, -4.0])
    >>> optim.scale_by_param_block_rms().update(np.ones(2), optim.EmptyState(), p)[0]
    array([3.5355..., 3.5355...])
    """
    check_range("scale_by_param_block_rms", "min_scale", min_scale)

    def leaf(ctx: None, u: Any, p: Any) -> tuple:
        return (u * array_module(p).maximum(_rms(p), min_scale),)

    return GradientTransformation(init_empty, Leafwise("scale_by_param_block_rms", leaf,
                                                       needs_params=True))
