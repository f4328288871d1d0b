"""``funcflux.nn``: Flux's layers as immutable functor classes, activations, initialisers.

Layers are batch-first (``(N, features)``, images NCHW). ``model(x)`` is
inference; ``nn.apply(model, x, train=True, rng=...)`` runs training mode and
returns ``(y, new_model)``.
"""
from .base import Module, apply, param_summary  # noqa: F401
from .activations import *  # noqa: F401,F403
from .init import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .normalise import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .resample import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .shapes import outputsize  # noqa: F401
from . import activations, init, layers, conv, normalise, recurrent, shapes  # noqa: F401
from . import resample, attention, embedding  # noqa: F401
