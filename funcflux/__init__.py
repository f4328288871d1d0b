"""funcflux: differentiate, vectorise and train with plain NumPy.

>>> import numpy as np, funcflux as ff
>>> float(ff.grad(lambda x: np.sum(np.tanh(x) ** 2))(np.array(0.5)))  # doctest: +ELLIPSIS
0.7...
"""
from . import _malloc
from ._malloc import tune_allocator
from . import numpy  # noqa: F401  (installs the NumPy face of tracers)
from . import tree
from . import dtypes
from .core.trace import UnexpectedTracerError
from .transforms.reverse import grad, value_and_grad, vjp
from .transforms.forward import jvp
from .transforms.batching import vmap
from .transforms.derived import jacfwd, jacrev, hessian
from .transforms.custom import custom_jvp, custom_vjp, stop_gradient
from .transforms.checkpoint import checkpoint, remat
from .transforms.staging import jit, make_jaxpr, eval_shape, ShapeDtypeStruct
from . import debug  # noqa: F401  (ff.debug.print)
from .core.trace import ConcretizationTypeError
from . import lax  # noqa: F401  (ff.lax: structured control flow)
from .functors import (children, fcollect, fleaves, fmap, fmapstructure, fsplit, functor, isleaf,
                       trainable, tree_at)
from . import device  # noqa: E402
from .device import gpu, cpu  # noqa: E402
from . import random  # noqa: E402  (keys; nn's Dropout and initialisers draw with them)
from . import nn, losses  # noqa: E402  (layers and losses build on everything above)
from . import data  # noqa: E402
from .io import save, load  # noqa: E402
from .train import train, StopTraining  # noqa: E402
from .train import plot_history  # noqa: E402
from . import optim  # noqa: E402
from . import distributed  # noqa: E402  (MPI is imported lazily, if ever)
from . import test_util  # noqa: E402
from .transforms.linearize import linearize, linear_transpose  # noqa: E402
from .filters import partition, combine, is_array, is_inexact_array, is_array_like  # noqa: E402

__version__ = "0.1.0"

if _malloc.requested():  # FUNCFLUX_MALLOC=keep: the user's opt-in (see tune_allocator)
    tune_allocator()

__all__ = [
    "grad", "value_and_grad", "vjp", "jvp", "vmap", "jacrev", "jacfwd", "hessian",
    "stop_gradient", "custom_vjp", "custom_jvp", "checkpoint", "remat", "jit", "make_jaxpr", "eval_shape",
    "ShapeDtypeStruct", "debug",
    "lax", "tree", "numpy", "dtypes",
    "UnexpectedTracerError", "ConcretizationTypeError",
    "functor", "children", "fsplit", "isleaf", "trainable", "fmap", "fmapstructure", "fleaves",
    "fcollect", "tree_at", "nn", "losses", "optim", "data", "train", "StopTraining", "save",
    "load", "test_util", "device", "gpu", "cpu", "distributed", "tune_allocator",
    "plot_history",
    "random",
    "linearize", "linear_transpose", "partition", "combine", "is_array", "is_inexact_array",
    "is_array_like",
]
