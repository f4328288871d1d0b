"""Basic layers and containers: Dense, Chain, SkipConnection, Parallel, Flatten, Dropout, Embedding.

Every layer is an immutable functor class whose arrays are its children, and
computes with plain NumPy calls on them, so the same code runs on arrays (at
NumPy's speed) and on traced values (under ``grad``, ``vmap``...).

>>> import numpy as np
>>> from funcflux import nn
>>> model = nn.Chain(nn.Dense(784, 256, nn.relu), nn.Dense(256, 10))
>>> model
Chain(Dense(784 => 256, relu), Dense(256 => 10))  # 203_530 parameters, 795.039 KiB
>>> model(np.zeros((32, 784), np.float32)).shape
(32, 10)
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

from .. import numpy as fnp
from ..functors import functor
from ..ops.nn import dense, dense_p
from .activations import identity
from .. import random
from .base import (Module, activation_name, apply_layer, array_module_of, as_rng, as_rng_or_key,
                   describe, shape_error, split_rng)
from .init import glorot_uniform, normal, zeros
from ..ops.common import shape as _shape

__all__ = ["Dense", "Chain", "SkipConnection", "Parallel", "Flatten", "Dropout", "Embedding",
           "Bilinear", "Maxout"]


def _bias(bias: Any, rng: Any, n: int, dtype: Any) -> Any:
    """``True`` -> zeros, ``False``/``None`` -> no bias, an array -> that array."""
    if bias is True:
        return zeros(rng, (n,), dtype)
    if bias is False or bias is None:
        return None
    b = np.asarray(bias, dtype=dtype)
    if b.shape != (n,):
        raise ValueError(f"bias must have shape ({n},), got {b.shape}")
    return b


# ----------------------------------------------------------------------------- Dense
@functor("weight", "bias")
class Dense(Module):
    """``y = activation(x @ weight.T + bias)`` on inputs of shape ``(..., in_features)``.

    ``weight`` has shape ``(out_features, in_features)`` (PyTorch's layout) and
    ``bias`` ``(out_features,)``, or is ``None`` with ``bias=False``. Weights
    come from ``init(rng, shape, dtype)`` (Glorot uniform by default), biases
    start at zero; ``dtype`` is float32 unless given. Inputs promote as in NumPy:
    float64 data through float32 weights computes in float64 (cast the data to
    float32 for speed).

    >>> import numpy as np
    >>> d = Dense(3, 2, rng=0)
    >>> d, d.weight.shape, d(np.ones((5, 3))).shape
    (Dense(3 => 2)  # 8 parameters, 0.031 KiB, (2, 3), (5, 2))
    """

    _ndims = {"weight": 2, "bias": 1}

    def __init__(self, in_features: int, out_features: int, activation: Callable = identity,
                 *, bias: Any = True, init: Callable = glorot_uniform, dtype: Any = np.float32,
                 rng: Any = None):
        rng = as_rng(rng)
        # (out, in) in column-major order: the memory of an (in, out) row-major matrix
        # (Flux's layout in Julia), so that x @ weight.T is a plain GEMM with no operand
        # to transpose (OpenBLAS repacks a transposed operand). Shape and values as PyTorch.
        w = init(rng, (int(out_features), int(in_features)), dtype)
        self.weight = w.T.copy().T if isinstance(w, np.ndarray) else w
        self.bias = _bias(bias, rng, int(out_features), dtype)
        self.activation = activation
        self._freeze()

    @classmethod
    def from_arrays(cls, weight: Any, bias: Any = None, activation: Callable = identity) -> "Dense":
        """A Dense layer holding these arrays (``weight`` of shape ``(out, in)``)."""
        new = object.__new__(cls)
        object.__setattr__(new, "weight", weight)
        object.__setattr__(new, "bias", bias)
        object.__setattr__(new, "activation", activation)
        new._freeze()
        return new

    def __call__(self, x: Any) -> Any:
        w = self.weight
        s = _shape(x)
        if not s or s[-1] != w.shape[-1]:
            raise shape_error(self, x, f"(..., {w.shape[-1]})")
        b = self.bias
        if len(w.shape) == 2 and hasattr(x, "shape") and (b is None or b.shape == w.shape[:1]):
            # one fused primitive: a GEMM, the bias added in place (shapes checked above)
            y = dense_p(x, w) if b is None else dense_p(x, w, b)
        else:
            y = dense(x, w, b)
        return y if self.activation is identity else self.activation(y)

    def _repr_inner(self) -> str:
        out, inp = self.weight.shape[-2:]
        extra = "" if self.activation is identity else f", {activation_name(self.activation)}"
        if self.bias is None:
            extra += "; bias=False"
        return f"Dense({inp} => {out}{extra})"


# ----------------------------------------------------------------------------- Chain
@functor("layers")
class Chain(Module):
    """Layers applied in order: ``Chain(f, g)(x) == g(f(x))``.

    ``Chain(a, b)`` or ``Chain(enc=a, dec=b)`` (names give ``chain.enc`` and
    ``chain["enc"]``); also ``Chain([a, b])``. Indexing gives a layer, a slice
    gives a Chain; iterable, with ``len``. Plain functions are allowed as
    layers (``Chain(Dense(2, 3), np.tanh)``).

    >>> import numpy as np
    >>> c = Chain(enc=Dense(4, 2, rng=0), dec=Dense(2, 4, rng=1))
    >>> c.enc is c[0] is c["enc"], c[1:]
    (True, Chain(dec=Dense(2 => 4))  # 12 parameters, 0.047 KiB)
    """

    def __init__(self, *layers: Any, **named: Any):
        if layers and named:
            raise TypeError("Chain takes layers either positionally or by name, not both")
        if len(layers) == 1 and isinstance(layers[0], list):
            layers = tuple(layers[0])
        self.layers = tuple(layers) if layers else tuple(named.values())
        self.names = tuple(named) if named else None
        for n in self.names or ():
            if n.startswith("_") or hasattr(type(self), n) or n in ("layers", "names"):
                raise ValueError(f"Chain: {n!r} cannot name a layer (it is an attribute of "
                                 f"Chain); choose another name.")
        for i, layer in enumerate(self.layers):
            if not callable(layer):
                where = self.names[i] if self.names else i
                raise TypeError(f"Chain: layer {where!r} is a {type(layer).__name__}, which is "
                                f"not callable (a layer or a function of one argument).")
        self._freeze()

    def __call__(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def apply(self, x: Any, *, train: bool = False, rng: Any = None) -> tuple[Any, "Chain"]:
        new = []
        for layer, r in zip(self.layers, split_rng(rng, len(self.layers))):
            x, layer = apply_layer(layer, x, train, r)
            new.append(layer)
        return x, self._with_layers(tuple(new), self.names)

    def _with_layers(self, layers: tuple, names: tuple | None) -> "Chain":
        out = object.__new__(type(self))
        object.__setattr__(out, "layers", layers)
        object.__setattr__(out, "names", names)
        out._freeze()
        return out

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            names = self.names[i] if self.names is not None else None
            return self._with_layers(self.layers[i], names)
        if isinstance(i, str):
            return getattr(self, i)
        return self.layers[i]

    def __getattr__(self, name: str) -> Any:
        names = self.__dict__.get("names")
        if names and name in names:
            return self.__dict__["layers"][names.index(name)]
        raise AttributeError(f"{type(self).__name__} has no attribute or layer named {name!r}")

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.layers)

    def _repr_inner(self) -> str:
        parts = [describe(layer) for layer in self.layers]
        if self.names is not None:
            parts = [f"{n}={p}" for n, p in zip(self.names, parts)]
        return f"Chain({', '.join(parts)})"


# ----------------------------------------------------------------------------- combinators
@functor("layers", "connection")
class SkipConnection(Module):
    """``connection(layers(x), x)``: a residual block is ``SkipConnection(block, np.add)``.

    >>> import numpy as np
    >>> SkipConnection(lambda x: 2 * x, np.add)(np.ones(2))
    array([3., 3.])
    """

    def __init__(self, layers: Any, connection: Callable):
        self.layers = layers
        self.connection = connection
        self._freeze()

    def __call__(self, x: Any) -> Any:
        return self.connection(self.layers(x), x)

    def apply(self, x: Any, *, train: bool = False, rng: Any = None) -> tuple[Any, Any]:
        y, layers = apply_layer(self.layers, x, train, rng)
        return self.connection(y, x), SkipConnection(layers, self.connection)

    def _repr_inner(self) -> str:
        return f"SkipConnection({describe(self.layers)}, {describe(self.connection)})"


@functor("connection", "layers")
class Parallel(Module):
    """``connection(layer_1(x), ..., layer_n(x))``; a tuple input of length n sends
    ``x[i]`` to ``layer_i``. ``connection=None`` returns the tuple of outputs.

    >>> import numpy as np
    >>> Parallel(np.add, lambda x: x, lambda x: 10 * x)(np.ones(2))
    array([11., 11.])
    """

    def __init__(self, connection: Callable | None, *layers: Any):
        if not layers:
            raise TypeError("Parallel needs at least one layer")
        self.connection = connection
        self.layers = tuple(layers)
        self._freeze()

    def _inputs(self, x: Any) -> tuple:
        if isinstance(x, tuple):
            if len(x) != len(self.layers):
                raise ValueError(f"{describe(self)} got a tuple of {len(x)} inputs for "
                                 f"{len(self.layers)} layers")
            return x
        return (x,) * len(self.layers)

    def _combine(self, ys: tuple) -> Any:
        return ys if self.connection is None else self.connection(*ys)

    def __call__(self, x: Any) -> Any:
        return self._combine(tuple(f(xi) for f, xi in zip(self.layers, self._inputs(x))))

    def apply(self, x: Any, *, train: bool = False, rng: Any = None) -> tuple[Any, Any]:
        ys, new = [], []
        for f, xi, r in zip(self.layers, self._inputs(x), split_rng(rng, len(self.layers))):
            y, f = apply_layer(f, xi, train, r)
            ys.append(y)
            new.append(f)
        return self._combine(tuple(ys)), Parallel(self.connection, *new)

    def _repr_inner(self) -> str:
        conn = "None" if self.connection is None else describe(self.connection)
        return f"Parallel({conn}, {', '.join(describe(f) for f in self.layers)})"


# ----------------------------------------------------------------------------- reshaping, noise
@functor(children=())
class Flatten(Module):
    """``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``: keeps the first (batch) axis."""

    def __init__(self) -> None:
        self._freeze()

    def __call__(self, x: Any) -> Any:
        s = _shape(x)
        if not s:
            raise shape_error(self, x, "(N, ...)")
        return np.reshape(x, (s[0], -1))


DROPOUT_NEEDS_RNG = (
    "{layer} in training mode needs random numbers: pass rng (a random key, a seed or an "
    "np.random.Generator), e.g. nn.apply(model, x, train=True, rng=ff.random.key(0)).")


@functor(children=())
class Dropout(Module):
    """Zero each entry with probability ``p`` in training mode, scaling the rest by ``1/(1-p)``.

    Inference (``layer(x)``) is the identity. In training mode
    (``nn.apply(model, x, train=True, rng=...)``) the mask is drawn from ``rng``:

    - a random key (``ff.random.key(0)``) draws with ``ff.random.bernoulli``, so it
      works under ``jit`` and ``vmap``: ``vmap`` over a batch of keys gives each member
      its own mask (an ensemble with independent dropout), a key that is not mapped
      gives every member the same mask;
    - a seed or ``np.random.Generator`` draws with NumPy, outside any transform: under
      ``vmap`` every member shares one mask.

    The same key or seed gives the same mask.

    >>> import numpy as np, funcflux as ff
    >>> from funcflux import nn
    >>> y, _ = nn.apply(Dropout(0.5), np.ones(6), rng=ff.random.key(0))
    >>> y
    array([0., 0., 2., 2., 0., 2.])
    >>> y, _ = nn.apply(Dropout(0.5), np.ones(6), rng=0)
    >>> sorted(set(y.tolist())) <= [0.0, 2.0]
    True
    """

    def __init__(self, p: float):
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self._freeze()

    def __call__(self, x: Any) -> Any:
        return x

    def apply(self, x: Any, *, train: bool = False, rng: Any = None) -> tuple[Any, "Dropout"]:
        if not train or self.p == 0:
            return x, self
        if rng is None:
            raise ValueError(DROPOUT_NEEDS_RNG.format(layer=self._repr_inner()))
        dtype = np.dtype(getattr(x, "dtype", np.float64))
        xp = array_module_of(x)
        if self.p == 1:
            return x * xp.zeros(_shape(x), dtype), self
        rng = as_rng_or_key(rng, self._repr_inner())
        if not isinstance(rng, np.random.Generator):  # a key: ff.random, traceable
            keep = random.bernoulli(rng, 1.0 - self.p, _shape(x))
            return x * (fnp.astype(keep, dtype) * dtype.type(1.0 / (1.0 - self.p))), self
        keep = rng.random(_shape(x)) >= self.p
        # One constant array (mask / (1 - p)): a single multiply on the tape.
        scale = (keep * (1.0 / (1.0 - self.p))).astype(dtype)
        return x * (scale if xp is np else xp.asarray(scale)), self

    def _repr_inner(self) -> str:
        return f"Dropout({self.p:g})"


# ----------------------------------------------------------------------------- Embedding
@functor("weight")
class Embedding(Module):
    """A lookup table: integer ids of any shape ``S`` -> vectors of shape ``S + (dim,)``.

    ``weight`` has shape ``(vocab, dim)``, drawn from ``N(0, 1)`` by default (as
    Flux and PyTorch). Repeated ids accumulate their gradients.

    >>> import numpy as np
    >>> e = Embedding(10, 3, rng=0)
    >>> e(np.array([[1, 2], [3, 3]])).shape
    (2, 2, 3)
    """

    _ndims = {"weight": 2}

    def __init__(self, vocab: int, dim: int, *, init: Callable = normal(1.0),
                 dtype: Any = np.float32, rng: Any = None):
        self.weight = init(as_rng(rng), (int(vocab), int(dim)), dtype)
        self._freeze()

    def __call__(self, idx: Any) -> Any:
        if isinstance(idx, (list, tuple, int, np.integer)):
            idx = np.asarray(idx)
        kind = getattr(getattr(idx, "dtype", None), "kind", "")
        if kind not in ("i", "u"):
            raise TypeError(f"{self._repr_inner()} takes integer ids, got an array of dtype "
                            f"{getattr(idx, 'dtype', type(idx).__name__)}")
        vocab = self.weight.shape[-2]
        if isinstance(idx, np.ndarray) and idx.size and (idx.min() < 0 or idx.max() >= vocab):
            bad = idx[(idx < 0) | (idx >= vocab)].flat[0]
            raise IndexError(f"{self._repr_inner()} got id {bad}; ids must be in [0, {vocab})")
        # fnp.take also accepts traced ids (vmap over a batch of sequences).
        return fnp.take(self.weight, idx, axis=0)

    def _repr_inner(self) -> str:
        vocab, dim = self.weight.shape[-2:]
        return f"Embedding({vocab} => {dim})"


# ----------------------------------------------------------------------------- Bilinear, Maxout
BILINEAR_INPUTS = ("{layer} takes two inputs, layer(x1, x2) or layer((x1, x2)) (one array is "
                   "used as both); got a tuple of {n}")


@functor("weight", "bias")
class Bilinear(Module):
    """``y = activation(x1^T A x2 + b)`` for each output: PyTorch's ``nn.Bilinear``.

    ``y[..., o] = sum_ij x1[..., i] * weight[o, i, j] * x2[..., j] + bias[o]``
    with ``x1`` of shape ``(..., in1_features)`` and ``x2`` ``(..., in2_features)``
    (the same leading axes). ``weight`` has shape ``(out, in1, in2)``, Glorot
    uniform by default (as Flux; PyTorch draws from ``U(-1/sqrt(in1), 1/sqrt(in1))``),
    and ``bias`` ``(out,)`` starts at zero. Call it as ``layer(x1, x2)`` or, as
    Flux, with a tuple ``layer((x1, x2))`` (so it sits in a ``Chain`` after a
    ``Parallel(None, ...)``); one array ``layer(x)`` is used as both inputs.

    >>> import numpy as np
    >>> b = Bilinear(3, 2, 4, rng=0)
    >>> b, b(np.ones((5, 3)), np.ones((5, 2))).shape
    (Bilinear((3, 2) => 4)  # 28 parameters, 0.109 KiB, (5, 4))
    """

    _ndims = {"weight": 3, "bias": 1}

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 activation: Callable = identity, *, bias: Any = True,
                 init: Callable = glorot_uniform, dtype: Any = np.float32, rng: Any = None):
        rng = as_rng(rng)
        out = int(out_features)
        self.weight = init(rng, (out, int(in1_features), int(in2_features)), dtype)
        self.bias = _bias(bias, rng, out, dtype)
        self.activation = activation
        self._freeze()

    def __call__(self, x1: Any, x2: Any = None) -> Any:
        if x2 is None:
            if isinstance(x1, tuple):
                if len(x1) != 2:
                    raise ValueError(BILINEAR_INPUTS.format(layer=self._repr_inner(), n=len(x1)))
                x1, x2 = x1
            else:
                x2 = x1
        o, i, j = _shape(self.weight)[-3:]
        s1, s2 = _shape(x1), _shape(x2)
        if not s1 or not s2 or s1[-1] != i or s2[-1] != j or s1[:-1] != s2[:-1]:
            raise ValueError(f"{describe(self)} got inputs of shapes {s1} and {s2}; expected "
                             f"(..., {i}) and (..., {j}) with the same leading axes")
        # x1 times every (i, j) slice at once: (..., o * j), then a batched product with x2.
        t = np.matmul(x1, np.reshape(np.transpose(self.weight, (1, 0, 2)), (i, o * j)))
        t = np.reshape(t, s1[:-1] + (o, j))
        y = np.matmul(t, np.reshape(x2, s2 + (1,)))
        y = np.reshape(y, s1[:-1] + (o,))
        if self.bias is not None:
            y = y + self.bias
        return y if self.activation is identity else self.activation(y)

    def _repr_inner(self) -> str:
        o, i, j = self.weight.shape[-3:]
        extra = "" if self.activation is identity else f", {activation_name(self.activation)}"
        if self.bias is None:
            extra += "; bias=False"
        return f"Bilinear(({i}, {j}) => {o}{extra})"


@functor("layers")
class Maxout(Module):
    """The elementwise maximum of several layers' outputs on the same input (Flux's ``Maxout``).

    ``Maxout(layer_1, ..., layer_n)``, or ``Maxout(make, n)`` with a function of
    no arguments that builds each of the ``n`` layers (``Maxout(lambda:
    Dense(4, 3), 2)``, fresh weights each). Every layer must give outputs of one
    shape. The gradient flows to the layer that wins each entry; exact ties share
    it, as ``np.maximum`` shares it between its two arguments (the layers are
    combined pairwise, in order).

    >>> import numpy as np
    >>> m = Maxout(lambda x: x, lambda x: -x)
    >>> m(np.array([-2.0, 3.0]))
    array([2., 3.])
    """

    def __init__(self, *layers: Any):
        if (len(layers) == 2 and isinstance(layers[1], (int, np.integer))
                and not isinstance(layers[0], Module) and callable(layers[0])):
            make, n = layers
            if n < 1:
                raise ValueError(f"Maxout: the number of layers must be positive, got {n}")
            layers = tuple(make() for _ in range(int(n)))
        if not layers:
            raise TypeError("Maxout needs at least one layer (Maxout(a, b, ...) or "
                            "Maxout(make, n))")
        for k, f in enumerate(layers):
            if not callable(f):
                raise TypeError(f"Maxout: layer {k} is a {type(f).__name__}, which is not "
                                f"callable")
        self.layers = tuple(layers)
        self._freeze()

    def _combine(self, ys: list) -> Any:
        shapes = [_shape(y) for y in ys]
        if len(set(shapes)) > 1:
            raise ValueError(f"{describe(self)}: the layers' outputs have different shapes "
                             f"{shapes}; they must agree to take their maximum")
        out = ys[0]
        for y in ys[1:]:
            out = np.maximum(out, y)
        return out

    def __call__(self, x: Any) -> Any:
        return self._combine([f(x) for f in self.layers])

    def apply(self, x: Any, *, train: bool = False, rng: Any = None) -> tuple[Any, Any]:
        ys, new = [], []
        for f, r in zip(self.layers, split_rng(rng, len(self.layers))):
            y, f = apply_layer(f, x, train, r)
            ys.append(y)
            new.append(f)
        return self._combine(ys), Maxout(*new)

    def _repr_inner(self) -> str:
        return f"Maxout({', '.join(describe(f) for f in self.layers)})"
