"""Wrappers around an optimiser: ``MultiSteps`` (gradient accumulation), ``apply_if_finite``,
``lookahead``. optax's names, arguments and update rules.

Each wraps an inner optimiser and decides, step by step, whether and how its
update is used. ``MultiSteps`` and ``apply_if_finite`` decide with ``ff.lax.cond`` on
the state's counters (plain ints and bools): eagerly only the chosen branch runs, so
``MultiSteps`` calls the inner optimiser once every ``k`` mini-steps (optax computes it
at every mini-step and throws it away, with the same result), and under ``ff.jit`` the
decision is one staged ``cond``. ``lookahead`` decides in Python, so it runs eagerly.

>>> import numpy as np
>>> from funcflux import optim
>>> opt = optim.MultiSteps(optim.sgd(1.0), every_k_schedule=2)
>>> p = np.zeros(1)
>>> state = opt.init(p)
>>> u1, state = opt.update(np.array([1.0]), state, p)   # accumulated, no step yet
>>> u2, state = opt.update(np.array([3.0]), state, p)   # the mean of 1 and 3
>>> u1, u2, opt.has_updated(state)
(array([0.]), array([-2.]), True)
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, NamedTuple, Optional, Union

import numpy as np

from .. import tree
from ..core.backend import array_module
from ..core.trace import ConcretizationTypeError, Tracer
from ..lax import cond as _cond
from .base import GradientTransformation, is_transformation
from .combine import takes_extra_args
from .tree_utils import align, flatten, map_updates

__all__ = ["MultiSteps", "MultiStepsState", "skip_not_finite", "skip_large_updates",
           "apply_if_finite", "ApplyIfFiniteState", "lookahead", "LookaheadState",
           "LookaheadParams"]

NOT_AN_OPTIMISER = ("optim.{fn}: {arg} is a {kind}, not an optimiser. Pass one such as "
                    "optim.adam(1e-3) (the factory optim.adam itself must be called).")
LOOKAHEAD_PARAMS = ("optim.lookahead: update needs params=optim.LookaheadParams(fast, slow) "
                    "(got {kind}). Keep both sets: params = "
                    "optim.LookaheadParams.init_synced(params), take gradients at params.fast, "
                    "and apply the returned updates to the pair with optim.apply_updates. "
                    "{extra}")
IN_JIT = ("optim.{fn} decides in Python, at every update, {what}; under ff.jit (and "
          "ff.train(jit=True)) that value is traced, not known. Train with it eagerly (the "
          "explicit loop, or ff.train without jit).")
LOOKAHEAD_SETUP = ("Through optim.setup/ff.train the two sets start as the same arrays, which "
                   "setup takes for tied weights: use the explicit loop for lookahead.")


def decide(fn: str, what: str, cond: Any) -> bool:
    """``bool(cond)``, or, where ``cond`` is staged (inside ``ff.jit``), an error that names
    the wrapper and what it decides on (shared by the wrappers and ``reduce_on_plateau``)."""
    try:
        return bool(cond)
    except ConcretizationTypeError:
        raise ConcretizationTypeError(IN_JIT.format(fn=fn, what=what)) from None


def _check_opt(fn: str, arg: str, opt: Any) -> None:
    if not is_transformation(opt):
        raise TypeError(NOT_AN_OPTIMISER.format(fn=fn, arg=arg, kind=type(opt).__name__))


def _call(update: Callable, takes: bool, updates: Any, state: Any, params: Any,
          extra_args: dict) -> tuple:
    """``update(updates, state, params)``, with the extra keyword arguments if it takes them."""
    if takes and extra_args:
        return update(updates, state, params, **extra_args)
    return update(updates, state, params)


def _zeros(updates: Any) -> Any:
    return map_updates(lambda u: array_module(u).zeros_like(u), updates)


def _map2(f: Callable[[Any, Any], Any], updates: Any, other: Any, name: str) -> Any:
    """``f(u, o)`` leaf by leaf where ``u`` is not ``None``; ``None`` stays ``None``."""
    lv, td = flatten(updates)
    ov = align(td, other, name)
    return tree.unflatten(td, [None if u is None else f(u, o) for u, o in zip(lv, ov)])


def _cast(x: Any, like: Any) -> Any:
    return x if x.dtype == like.dtype else x.astype(like.dtype)


def _all_finite(updates: Any) -> Any:
    """Whether every leaf is finite: a Python bool, or a staged one inside ``ff.jit``."""
    ok: Any = True
    for u in flatten(updates)[0]:
        if u is not None:
            f = np.all(np.isfinite(u))
            ok = f if ok is True else np.logical_and(ok, f)
    return ok if isinstance(ok, Tracer) else bool(ok)


def _positive_int(fn: str, name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or v != int(v) or v < 1:
        raise ValueError(f"optim.{fn}: {name} must be an int >= 1, got {v!r}.")
    return int(v)


# ----------------------------------------------------------------------------- MultiSteps
class MultiStepsState(NamedTuple):
    """``mini_step`` (0 to k-1), ``gradient_step`` (inner updates so far), the inner
    optimiser's state, the accumulated gradients, and what ``should_skip_update_fn``
    last reported."""
    mini_step: int
    gradient_step: int
    inner_opt_state: Any
    acc_grads: Any
    skip_state: Any = ()


def skip_not_finite(updates: Any, gradient_step: int, params: Any) -> tuple[bool, dict]:
    """A ``should_skip_update_fn`` for :class:`MultiSteps`: skip a mini-step whose gradient
    holds an ``inf`` or a ``nan``. Reports ``should_skip`` and ``num_not_finite``.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.skip_not_finite({"w": np.array([1.0, np.nan])}, 0, None)
    (True, {'should_skip': True, 'num_not_finite': 1})
    """
    n = sum(int((~array_module(u).isfinite(u)).sum())
            for u in flatten(updates)[0] if u is not None)
    return n > 0, {"should_skip": n > 0, "num_not_finite": n}


def skip_large_updates(updates: Any, gradient_step: int, params: Any,
                       max_squared_norm: float) -> tuple[bool, dict]:
    """A ``should_skip_update_fn`` for :class:`MultiSteps` (bind ``max_squared_norm`` with
    ``functools.partial``): skip a mini-step whose squared global norm is not below it.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> optim.skip_large_updates(np.array([3.0, 4.0]), 0, None, max_squared_norm=20.0)
    (True, {'should_skip': True, 'norm_squared': 25.0})
    """
    sq = sum(float((u * u).sum()) for u in flatten(updates)[0] if u is not None)
    skip = not sq < max_squared_norm
    return skip, {"should_skip": skip, "norm_squared": sq}


class MultiSteps(GradientTransformation):
    """Accumulate gradients over ``k`` mini-steps, then take one step of ``opt`` with
    their mean (gradient accumulation: a batch ``k`` times larger in the same memory).

    Args:
      opt: the optimiser stepped every ``k`` mini-steps.
      every_k_schedule: ``k``, an int, or a function ``gradient_step -> k`` (the
        batch size may grow over training).
      use_grad_mean: pass the mean of the ``k`` gradients (default), else their sum.
      should_skip_update_fn: ``(updates, gradient_step, params) -> (skip, info)``;
        a skipped mini-step leaves the state as it was (``info`` is kept as
        ``skip_state``). See :func:`skip_not_finite`, :func:`skip_large_updates`.
      accumulator_dtype: the dtype of the accumulated gradients. ``None`` (the
        default here): each gradient's own dtype. optax's default is float32,
        which rounds float64 gradients; pass ``np.float32`` for that.

    Between steps the update is zeros (the parameters stay); on the ``k``-th
    mini-step it is ``opt``'s update of the accumulated gradient. Keyword
    arguments given to ``update`` beyond ``params`` go to ``opt`` on that step.

    A ``MultiSteps`` *is* a ``GradientTransformation`` (``init``, ``update``), so
    ``optim.setup`` and ``ff.train`` take it as it is; ``gradient_transformation()``
    gives the plain pair, as in optax.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.MultiSteps(optim.adam(0.1), every_k_schedule=4)
    >>> state = opt.init({"w": np.zeros(2)})
    >>> state.mini_step, state.gradient_step
    (0, 0)
    """

    def __new__(cls, opt: GradientTransformation,
                every_k_schedule: Union[int, Callable[[int], int]],
                use_grad_mean: bool = True,
                should_skip_update_fn: Optional[Callable[..., tuple]] = None,
                accumulator_dtype: Any = None) -> "MultiSteps":
        _check_opt("MultiSteps", "opt", opt)
        if callable(every_k_schedule):
            schedule = every_k_schedule
        else:
            k0 = _positive_int("MultiSteps", "every_k_schedule", every_k_schedule)

            def schedule(step: int) -> int:
                return k0
        inner_update, takes = opt.update, takes_extra_args(opt.update)

        def acc_dtype(g: Any) -> Any:
            return g.dtype if accumulator_dtype is None else accumulator_dtype

        def init(params: Any) -> MultiStepsState:
            acc = map_updates(lambda p: array_module(p).zeros(p.shape, acc_dtype(p))
                              if getattr(p, "dtype", None) is not None and p.dtype.kind in "fc"
                              else None, params)
            skip_state: Any = ()
            if should_skip_update_fn is not None:
                skip_state = should_skip_update_fn(_zeros(params), 0, params)[1]
            return MultiStepsState(0, 0, opt.init(params), acc, skip_state)

        def update(updates: Any, state: MultiStepsState, params: Any = None,
                   **extra_args: Any) -> tuple:
            k = _positive_int("MultiSteps", f"every_k_schedule({state.gradient_step})",
                              schedule(state.gradient_step))
            skip_state = state.skip_state
            if should_skip_update_fn is not None:
                skip, skip_state = should_skip_update_fn(updates, state.gradient_step, params)
                if skip:
                    return _zeros(updates), state._replace(skip_state=skip_state)
            n = state.mini_step
            if use_grad_mean:  # optax's running mean, in this order
                def add(g: Any, a: Any) -> Any:
                    return a + (g - a) / (n + 1)
            else:
                def add(g: Any, a: Any) -> Any:
                    return g + a
            acc = _map2(add, updates, state.acc_grads, "MultiSteps accumulated gradients")

            def emit(acc: Any) -> tuple:  # the k-th mini-step: the inner optimiser steps
                new_updates, inner = _call(inner_update, takes,
                                           _map2(_cast, acc, updates, "MultiSteps updates"),
                                           state.inner_opt_state, params, extra_args)
                acc = map_updates(lambda a: array_module(a).zeros(a.shape, acc_dtype(a)), acc)
                return new_updates, MultiStepsState(0, state.gradient_step + 1, inner, acc,
                                                    skip_state)

            def accumulate(acc: Any) -> tuple:
                acc = map_updates(lambda a: a.astype(acc_dtype(a), copy=False), acc)
                return _zeros(updates), MultiStepsState((n + 1) % k, state.gradient_step,
                                                        state.inner_opt_state, acc, skip_state)
            return _cond(n == k - 1, emit, accumulate, acc)

        self = super().__new__(cls, init, update)
        self._opt = opt
        self._k = every_k_schedule
        return self

    def __repr__(self) -> str:
        return f"MultiSteps({self._opt!r}, every_k_schedule={self._k!r})"

    @property
    def inner_opt(self) -> GradientTransformation:
        """The wrapped optimiser."""
        return self._opt

    def has_updated(self, state: MultiStepsState) -> bool:
        """Whether the last ``update`` stepped the inner optimiser.

        >>> import numpy as np
        >>> from funcflux import optim
        >>> opt = optim.MultiSteps(optim.sgd(0.1), 2)
        >>> s = opt.init(np.zeros(1))
        >>> _, s = opt.update(np.ones(1), s); opt.has_updated(s)
        False
        """
        return state.mini_step == 0 and state.gradient_step > 0

    def gradient_transformation(self) -> GradientTransformation:
        """The plain ``GradientTransformation(init, update)`` pair (optax's method)."""
        return GradientTransformation(self.init, self.update)


# ----------------------------------------------------------------------------- apply_if_finite
class ApplyIfFiniteState(NamedTuple):
    """``notfinite_count`` consecutive non-finite updates (reset by a finite one),
    ``last_finite``, ``total_notfinite`` ever, and the inner optimiser's state."""
    notfinite_count: int
    last_finite: bool
    total_notfinite: int
    inner_state: Any


def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int
                    ) -> GradientTransformation:
    """Skip updates holding an ``inf`` or a ``nan``: the update is zeros and ``inner``'s
    state is kept, until more than ``max_consecutive_errors`` come in a row; then
    ``inner`` is applied anyway (as in optax: it gives up).

    The loss itself is checked by ``ff.train`` (a non-finite loss stops it); this
    catches non-finite gradients of a finite loss (an overflow in a backward pass).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.apply_if_finite(optim.sgd(1.0), max_consecutive_errors=2)
    >>> s = opt.init(np.zeros(2))
    >>> u, s = opt.update(np.array([np.nan, 1.0]), s)
    >>> u, s.notfinite_count, s.total_notfinite
    (array([0., 0.]), 1, 1)
    """
    _check_opt("apply_if_finite", "inner", inner)
    if isinstance(max_consecutive_errors, bool) or not isinstance(
            max_consecutive_errors, numbers.Real) or max_consecutive_errors < 0:
        raise ValueError(f"optim.apply_if_finite: max_consecutive_errors must be an int >= 0, "
                         f"got {max_consecutive_errors!r}.")
    inner_update, takes = inner.update, takes_extra_args(inner.update)

    def init(params: Any) -> ApplyIfFiniteState:
        return ApplyIfFiniteState(0, True, 0, inner.init(params))

    def update(updates: Any, state: ApplyIfFiniteState, params: Any = None,
               **extra_args: Any) -> tuple:
        finite = _all_finite(updates)
        count = _cond(finite, lambda c: 0, lambda c: c + 1, state.notfinite_count)
        total = _cond(finite, lambda t: t, lambda t: t + 1, state.total_notfinite)
        apply = np.logical_or(finite, np.greater(count, max_consecutive_errors))
        updates, inner_state = _cond(
            apply if isinstance(apply, Tracer) else bool(apply),
            lambda: _call(inner_update, takes, updates, state.inner_state, params, extra_args),
            lambda: (_zeros(updates), state.inner_state))
        return updates, ApplyIfFiniteState(count, finite, total, inner_state)

    return GradientTransformation(init, update)


# ----------------------------------------------------------------------------- lookahead
class LookaheadParams(NamedTuple):
    """The two sets of parameters lookahead keeps: ``fast`` (take gradients there) and
    ``slow`` (evaluate and infer with these).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> pair = optim.LookaheadParams.init_synced({"w": np.ones(2)})
    >>> pair.fast is pair.slow
    True
    """
    fast: Any
    slow: Any

    @classmethod
    def init_synced(cls, params: Any) -> "LookaheadParams":
        """Both sets equal to ``params`` (the same arrays: funcflux never writes into them)."""
        return cls(fast=params, slow=params)


class LookaheadState(NamedTuple):
    """The fast optimiser's state, and its steps since the last synchronisation."""
    fast_state: Any
    steps_since_sync: int


def lookahead(fast_optimizer: GradientTransformation, sync_period: int,
              slow_step_size: float, reset_state: bool = False) -> GradientTransformation:
    """Lookahead (Zhang et al. 2019): ``sync_period`` steps of ``fast_optimizer`` on the
    fast parameters, then the slow ones move ``slow_step_size`` of the way to them and
    the fast ones are reset to the slow ones.

    Parameters are a :class:`LookaheadParams` pair (optax's representation):
    start from ``LookaheadParams.init_synced(params)``, compute gradients at
    ``params.fast``, pass the pair as ``update``'s ``params`` and apply the
    returned pair of updates with ``optim.apply_updates``. ``init`` also takes
    plain parameters (they are the fast ones). ``reset_state`` re-initialises
    the fast optimiser's state at each synchronisation. The updates must be
    applied unchanged, or the pair loses its synchronisation.

    This is a rule for the explicit loop: under ``optim.setup``/``ff.train`` the
    fast and slow arrays of ``init_synced`` are one object, which ``setup`` takes
    for tied weights, and ``update`` then raises.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.lookahead(optim.sgd(0.5), sync_period=2, slow_step_size=0.5)
    >>> params = optim.LookaheadParams.init_synced(np.array([4.0]))
    >>> state = opt.init(params)
    >>> for _ in range(2):          # gradient of x**2 / 2 is x, at the fast parameters
    ...     updates, state = opt.update(params.fast, state, params)
    ...     params = optim.apply_updates(params, updates)
    >>> params                      # fast: 4 -> 2 -> 1; then both move to 4 + 0.5 * (1 - 4)
    LookaheadParams(fast=array([2.5]), slow=array([2.5]))
    """
    _check_opt("lookahead", "fast_optimizer", fast_optimizer)
    sync_period = _positive_int("lookahead", "sync_period", sync_period)
    if isinstance(slow_step_size, bool) or not isinstance(slow_step_size, numbers.Real) \
            or not math.isfinite(slow_step_size):
        raise ValueError(f"optim.lookahead: slow_step_size must be a finite number, got "
                         f"{slow_step_size!r}.")
    a = float(slow_step_size)
    fast_update, takes = fast_optimizer.update, takes_extra_args(fast_optimizer.update)

    def init(params: Any) -> LookaheadState:
        fast = params.fast if isinstance(params, LookaheadParams) else params
        return LookaheadState(fast_optimizer.init(fast), 0)

    def update(updates: Any, state: LookaheadState, params: Any = None,
               **extra_args: Any) -> tuple:
        if not isinstance(params, LookaheadParams):
            raise TypeError(LOOKAHEAD_PARAMS.format(kind=type(params).__name__, extra=""))
        updates, fast_state = _call(fast_update, takes, updates, state.fast_state, params.fast,
                                    extra_args)
        sync = decide("lookahead", "from its step counter, whether to synchronise",
                      state.steps_since_sync == sync_period - 1)
        lv, td = flatten(updates)
        fs = align(td, params.fast, "params.fast")
        ss = align(td, params.slow, "params.slow")
        fast_u, slow_u = [], []
        for u, f, s in zip(lv, fs, ss):
            if u is None:
                fast_u.append(None)
                slow_u.append(None)
            elif f is None or s is None:
                raise TypeError(LOOKAHEAD_PARAMS.format(
                    kind="a pair with parameters missing", extra=LOOKAHEAD_SETUP))
            elif sync:  # optax's arithmetic, in its order
                diff = f + u - s
                slow_u.append(a * diff)
                fast_u.append(u - (1.0 - a) * diff)
            else:
                slow_u.append(array_module(u).zeros_like(u))
                fast_u.append(u)
        if sync and reset_state:
            fast_state = fast_optimizer.init(params.fast)
        return (LookaheadParams(tree.unflatten(td, fast_u), tree.unflatten(td, slow_u)),
                LookaheadState(fast_state, (state.steps_since_sync + 1) % sync_period))

    return GradientTransformation(init, update)
