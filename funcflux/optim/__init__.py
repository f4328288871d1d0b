"""Optimisers: optax-shaped ``(init, update)`` pairs over pytrees, and Flux-style helpers.

The explicit loop, the first way to train::

    opt = optim.adam(1e-3)
    state = opt.init(params)
    grads = ff.grad(loss)(params, x, y)
    updates, state = opt.update(grads, state, params)
    params = optim.apply_updates(params, updates)

Over a model (functor classes, tied weights, frozen layers), the same
optimisers through :func:`setup` and :func:`step`::

    state = optim.setup(optim.adam(1e-3), model)
    state, model = optim.step(state, model, ff.grad(loss)(model, x, y))

>>> import numpy as np, funcflux as ff
>>> from funcflux import optim
>>> params = {"w": np.array([3.0, -2.0])}
>>> loss = lambda p: np.sum(p["w"] ** 2)
>>> opt = optim.sgd(0.25)
>>> state = opt.init(params)
>>> for _ in range(2):
...     updates, state = opt.update(ff.grad(loss)(params), state, params)
...     params = optim.apply_updates(params, updates)
>>> params["w"]
array([ 0.75, -0.5 ])
"""
from .base import EmptyState, GradientTransformation, Optimiser
from .tree_utils import apply_updates, global_norm
from .combine import MaskedState, MultiTransformState, chain, masked, multi_transform, named_chain
from .transforms import (ScaleByAdaDeltaState, ScaleByAdamState, ScaleByLionState,
                         ScaleByRmsState, ScaleByRssState, ScaleByRStdDevState,
                         ScaleByScheduleState, TraceState, add_decayed_weights, clip,
                         clip_by_global_norm, identity, scale, scale_by_adadelta, scale_by_adam,
                         scale_by_learning_rate, scale_by_lion, scale_by_radam, scale_by_rms,
                         scale_by_rss, scale_by_schedule, scale_by_stddev, scale_by_trust_ratio,
                         set_to_zero, trace)
from .inject import InjectHyperparamsState, inject_hyperparams
from .aliases import adadelta, adagrad, adam, adamw, lamb, lion, nadam, radam, rmsprop, sgd
from .schedules import (Schedule, constant, constant_schedule, cosine_decay,
                        cosine_decay_schedule, exponential_decay, join_schedules, linear,
                        linear_schedule, piecewise_constant, piecewise_constant_schedule,
                        polynomial, polynomial_schedule, warmup_cosine_decay,
                        warmup_cosine_decay_schedule)
from .setup import OptimiserState, adjust, freeze, setup, step, thaw
from .transforms import (EmaState, ScaleByBeliefState, clip_by_block_rms, ema, scale_by_belief,
                         scale_by_param_block_rms)
from .factorized import FactoredState, scale_by_factored_rms
from .aliases import adabelief, adafactor
from .schedules import cosine_onecycle, cosine_onecycle_schedule, sgdr, sgdr_schedule
from .wrappers import (ApplyIfFiniteState, LookaheadParams, LookaheadState, MultiSteps,
                       MultiStepsState, apply_if_finite, lookahead, skip_large_updates,
                       skip_not_finite)
from .plateau import ReduceLROnPlateauState, reduce_on_plateau

__all__ = [
    # pairs and combinators
    "GradientTransformation", "Optimiser", "EmptyState", "identity", "set_to_zero", "chain",
    "named_chain",
    "apply_updates", "masked", "MaskedState", "multi_transform", "MultiTransformState",
    "inject_hyperparams", "InjectHyperparamsState", "global_norm",
    # building blocks
    "scale", "scale_by_learning_rate", "scale_by_schedule", "ScaleByScheduleState",
    "scale_by_adam", "ScaleByAdamState", "scale_by_radam", "scale_by_rms", "ScaleByRmsState",
    "scale_by_stddev", "ScaleByRStdDevState", "scale_by_rss", "ScaleByRssState",
    "scale_by_adadelta", "ScaleByAdaDeltaState", "scale_by_lion", "ScaleByLionState",
    "scale_by_trust_ratio", "trace", "TraceState", "clip", "clip_by_global_norm",
    "add_decayed_weights",
    # aliases
    "sgd", "adam", "adamw", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "lion", "lamb",
    # schedules
    "Schedule", "constant", "linear", "polynomial", "exponential_decay", "cosine_decay",
    "warmup_cosine_decay", "piecewise_constant", "join_schedules", "constant_schedule",
    "linear_schedule", "polynomial_schedule", "cosine_decay_schedule",
    "warmup_cosine_decay_schedule", "piecewise_constant_schedule",
    # Flux-style
    "setup", "step", "freeze", "thaw", "adjust", "OptimiserState",
    # issue 16: more building blocks, optimisers, schedules and wrappers
    "scale_by_belief", "ScaleByBeliefState", "ema", "EmaState", "clip_by_block_rms",
    "scale_by_param_block_rms", "scale_by_factored_rms", "FactoredState",
    "adabelief", "adafactor",
    "sgdr", "sgdr_schedule", "cosine_onecycle", "cosine_onecycle_schedule",
    "MultiSteps", "MultiStepsState", "skip_not_finite", "skip_large_updates",
    "apply_if_finite", "ApplyIfFiniteState", "lookahead", "LookaheadState", "LookaheadParams",
    "reduce_on_plateau", "ReduceLROnPlateauState",
]
