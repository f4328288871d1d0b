"""The popular optimisers, each a plain ``chain`` of building blocks with optax's defaults.

As in optax, ``optim.adam(1e-3)`` is ``chain(scale_by_adam(), scale_by_learning_rate(1e-3))``
and its state is that chain's: ``state[0].mu``, ``state[0].count``. Its
numbers are fixed; to change them between steps, train through
``optim.setup`` (whose ``optim.adjust`` reaches every alias inside, as
``Optimisers.adjust!`` does), or build the optimiser with
``optim.inject_hyperparams(optim.adam)(learning_rate=1e-3)`` (optax's way).
A ``learning_rate`` may also be a schedule ``step -> float``; it then keeps
its own step count.

>>> import numpy as np
>>> from funcflux import optim
>>> opt = optim.adam(0.1)
>>> params = np.array([1.0, -2.0])
>>> state = opt.init(params)
>>> for _ in range(3):
...     updates, state = opt.update(2 * params, state, params)  # grad of sum(params**2)
...     params = optim.apply_updates(params, updates)
>>> params, state[0].count
(array([ 0.7, -1.7]), 3)
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Union

import numpy as np

from .base import GradientTransformation, Recipe, recorded
from .checks import check_range
from .combine import chain
from .leafwise import Leafwise
from .factorized import scale_by_factored_rms
from .transforms import (add_decayed_weights, clip_by_block_rms, ema, identity, scale,
                         scale_by_adadelta, scale_by_adam, scale_by_belief, scale_by_learning_rate,
                         scale_by_lion, scale_by_param_block_rms, scale_by_radam, scale_by_rms,
                         scale_by_rss, scale_by_stddev, scale_by_trust_ratio, trace)

__all__ = ["sgd", "adam", "adamw", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "lion",
           "lamb", "adabelief", "adafactor"]


def _alias(factory: Callable[..., GradientTransformation]) -> Callable[..., GradientTransformation]:
    """Make ``factory`` record its call (every argument, defaults applied) on the chain it
    returns, so that ``optim.setup`` can rebuild it with ``inject_hyperparams``."""
    sig = inspect.signature(factory)

    @functools.wraps(factory)
    def make(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        t = factory(*bound.args, **bound.kwargs)
        if isinstance(t.update, Leafwise):  # a fresh fused chain: errors name the alias
            t.update.name = factory.__name__
        return recorded(t, Recipe(make, (), dict(bound.arguments)))
    return make


ScalarOrSchedule = Union[float, Callable[[int], float]]


@_alias
def sgd(learning_rate: ScalarOrSchedule, momentum: Optional[float] = None,
        nesterov: bool = False) -> GradientTransformation:
    """Stochastic gradient descent, with optional (Nesterov) momentum ``trace(momentum)``.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.sgd(0.1, momentum=0.9)
    >>> s = opt.init(np.zeros(1))
    >>> u, s = opt.update(np.ones(1), s); u, s = opt.update(np.ones(1), s)
    >>> u  # -0.1 * (1 + 0.9)
    array([-0.19])
    """
    if momentum is not None:  # checked here to name it as the caller did (trace calls it decay)
        check_range("sgd", "momentum", momentum, 0.0, 1.0, high_closed=True)
    return chain(trace(momentum, nesterov) if momentum is not None else identity(),
                 scale_by_learning_rate(learning_rate))


@_alias
def adam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         eps_root: float = 0.0, *, nesterov: bool = False) -> GradientTransformation:
    """Adam: ``-lr * m̂ / (sqrt(v̂ + eps_root) + eps)`` with bias-corrected moment estimates.

    ``nesterov=True`` is NAdam (see :func:`nadam`).
    """
    return chain(scale_by_adam(b1, b2, eps, eps_root, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


@_alias
def adamw(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, weight_decay: float = 1e-4, mask: Any = None, *,
          nesterov: bool = False) -> GradientTransformation:
    """Adam with decoupled weight decay: ``-lr * (adam_step + weight_decay * params)``.

    ``mask`` (bools or ``params -> bools``) picks the parameters that decay.
    """
    return chain(scale_by_adam(b1, b2, eps, eps_root, nesterov=nesterov),
                 add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


@_alias
def nadam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0) -> GradientTransformation:
    """NAdam (Dozat 2016): Adam with Nesterov momentum in the first moment."""
    return chain(scale_by_adam(b1, b2, eps, eps_root, nesterov=True),
                 scale_by_learning_rate(learning_rate))


@_alias
def radam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          eps_root: float = 0.0, threshold: float = 5.0, *, nesterov: bool = False
          ) -> GradientTransformation:
    """Rectified Adam (Liu et al. 2020): momentum SGD until the variance estimate is
    tractable (``rho_t >= threshold``), then Adam scaled by the rectification term."""
    return chain(scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


@_alias
def rmsprop(learning_rate: ScalarOrSchedule, decay: float = 0.9, eps: float = 1e-8,
            initial_scale: float = 0.0, eps_in_sqrt: bool = True, centered: bool = False,
            momentum: Optional[float] = None, nesterov: bool = False) -> GradientTransformation:
    """RMSProp: ``-lr * g / sqrt(nu + eps)``; ``centered`` subtracts the squared mean,
    ``momentum`` adds a ``trace`` after the learning rate (as optax does)."""
    if momentum is not None:  # checked here to name it as the caller did (trace calls it decay)
        check_range("rmsprop", "momentum", momentum, 0.0, 1.0, high_closed=True)
    rescale = (scale_by_stddev(decay, eps, initial_scale, eps_in_sqrt) if centered
               else scale_by_rms(decay, eps, initial_scale, eps_in_sqrt))
    return chain(rescale, scale_by_learning_rate(learning_rate),
                 trace(momentum, nesterov) if momentum is not None else identity())


@_alias
def adagrad(learning_rate: ScalarOrSchedule, initial_accumulator_value: float = 0.1,
            eps: float = 1e-7) -> GradientTransformation:
    """Adagrad: ``-lr * g / sqrt(sum of squared gradients + eps)``, the sum starting at
    ``initial_accumulator_value``."""
    return chain(scale_by_rss(initial_accumulator_value, eps),
                 scale_by_learning_rate(learning_rate))


@_alias
def adadelta(learning_rate: Optional[ScalarOrSchedule] = None, rho: float = 0.9,
             eps: float = 1e-6, weight_decay: float = 0.0, weight_decay_mask: Any = None
             ) -> GradientTransformation:
    """Adadelta (Zeiler 2012): ``-lr * g * sqrt(E[dx²] + eps) / sqrt(E[g²] + eps)``.

    ``learning_rate=None`` means 1.0, the paper's step (optax's default ``None``
    skips the scaling step, sign flip included, which would climb the loss).
    """
    return chain(add_decayed_weights(weight_decay, weight_decay_mask),
                 scale_by_adadelta(rho, eps),
                 scale_by_learning_rate(1.0 if learning_rate is None else learning_rate))


@_alias
def lion(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.99,
         weight_decay: float = 1e-3, mask: Any = None) -> GradientTransformation:
    """Lion (Chen et al. 2023): ``-lr * (sign(b1 * m + (1 - b1) * g) + weight_decay * p)``.

    Its steps are ±lr per element: use a learning rate 3-10x smaller than Adam's.
    """
    return chain(scale_by_lion(b1, b2), add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate))


@_alias
def lamb(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         eps_root: float = 0.0, weight_decay: float = 0.0, mask: Any = None
         ) -> GradientTransformation:
    """LAMB (You et al. 2019): Adam's step plus weight decay, scaled per array by the
    trust ratio ``|p| / |step|``."""
    return chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay, mask),
                 scale_by_trust_ratio(), scale_by_learning_rate(learning_rate))



@_alias
def adabelief(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-16, eps_root: float = 1e-16, *, nesterov: bool = False
              ) -> GradientTransformation:
    """AdaBelief (Zhuang et al. 2020): Adam whose second moment tracks ``(g - m)²``, the
    gradient's deviation from its prediction: ``-lr * m̂ / (sqrt(ŝ) + eps)``
    (:func:`~funcflux.optim.scale_by_belief`). optax's defaults.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.adabelief(0.1)
    >>> p = np.array([1.0, -2.0])
    >>> u, s = opt.update(2 * p, opt.init(p), p)
    >>> optim.apply_updates(p, u)  # the first step: -lr * g / (0.9 |g|)
    array([ 0.8889, -1.8889])
    """
    return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


@_alias
def adafactor(learning_rate: Optional[ScalarOrSchedule] = None,
              min_dim_size_to_factor: int = 128, decay_rate: float = 0.8,
              decay_offset: int = 0, multiply_by_parameter_scale: bool = True,
              clipping_threshold: Optional[float] = 1.0, momentum: Optional[float] = None,
              dtype_momentum: Any = np.float32, weight_decay_rate: Optional[float] = None,
              eps: float = 1e-30, factored: bool = True, weight_decay_mask: Any = None
              ) -> GradientTransformation:
    """Adafactor (Shazeer & Stern 2018): factored second moments for matrices, update
    clipping by RMS, steps relative to each parameter array's RMS. optax's chain and
    defaults:

    ``chain(scale_by_factored_rms(factored, decay_rate, decay_offset,
    min_dim_size_to_factor, eps), clip_by_block_rms(clipping_threshold),
    scale_by_learning_rate(learning_rate, flip_sign=False),
    scale_by_param_block_rms(), ema(momentum, debias=False,
    accumulator_dtype=dtype_momentum), add_decayed_weights(weight_decay_rate,
    weight_decay_mask), scale(-1))``, each step left out when its argument is
    ``None`` (or ``multiply_by_parameter_scale=False``).

    Only arrays whose two largest axes have at least ``min_dim_size_to_factor``
    elements are factored (128 by default: small matrices keep the full
    average). With ``momentum``, its average is kept in ``dtype_momentum``
    (float32, as in optax; pass ``None`` for the parameters' dtype).

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.adafactor(learning_rate=0.1)
    >>> p = np.array([1.0, -2.0])
    >>> u, s = opt.update(2 * p, opt.init(p), p)
    >>> u.round(4)      # -lr * rms(p) * sign(g) at the first step
    array([-0.1581,  0.1581])
    """
    tx = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor,
                                eps)]
    if clipping_threshold is not None:
        tx.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        tx.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        tx.append(scale_by_param_block_rms())
    if momentum is not None:
        tx.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        tx.append(add_decayed_weights(weight_decay_rate, weight_decay_mask))
    tx.append(scale(-1.0))
    return chain(*tx)
