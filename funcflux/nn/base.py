"""What every layer shares: the call protocol, training mode, and Flux-style printing.

A layer is an immutable functor class (``@ff.functor`` names its array
children) that subclasses :class:`Module`:

- ``layer(x)`` runs in inference mode (running statistics, no dropout);
- ``layer.apply(x, train=..., rng=...) -> (y, new_layer)`` runs in either mode
  and returns the layer with any state it updated (BatchNorm's running
  statistics). Layers without state inherit the default, which calls
  ``self(x)`` and returns ``self``; containers thread ``apply`` through their
  children and split ``rng`` between them.

Printing follows Flux: ``Dense(784 => 256, relu)``; the outermost layer adds
the parameter count and size. A stack of layers (``ff.tree.stack`` of an
ensemble) prints as one layer with the stacked axis in the summary:
``Dense(3 => 2)  # 4 stacked, 8 parameters each, 0.125 KiB``. A layer whose
children are not arrays (``ff.fmap(np.shape, model)``) prints its children as
``Dense(weight=(2, 3), bias=(2,))``.
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from .. import functors, random, tree
from ..core.trace import Tracer


class Module:
    """Base class of layers: default ``apply``, printing, no mutation after construction."""

    #: How many dimensions each array child has in one layer. Printing reads any leading
    #: axes beyond these, shared by every array of a model, as a stack of models.
    _ndims: ClassVar[dict[str, int]] = {}

    def __call__(self, x: Any) -> Any:  # pragma: no cover - every layer defines it
        raise NotImplementedError

    def apply(self, x: Any, *, train: bool = False, rng: np.random.Generator | None = None
              ) -> tuple[Any, "Module"]:
        """Run the layer in training (``train=True``) or inference mode; return ``(y, layer)``."""
        return self(x), self

    def __setattr__(self, name: str, value: Any) -> None:
        # Models are values: build a new one (ff.fmap, ff.tree.at) instead of mutating.
        if getattr(self, "_frozen", False):
            raise AttributeError(
                f"{type(self).__name__} is immutable: use ff.tree.at(lambda m: m.{name}, model, "
                f"replace=...) to get a model with a new {name}.")
        object.__setattr__(self, name, value)

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    # -- printing ----------------------------------------------------------------------
    def _repr_inner(self) -> str:
        """One-line description without the parameter count (override per layer)."""
        return f"{type(self).__name__}()"

    def __repr__(self) -> str:
        inner = describe(self)
        summary = param_summary(self)
        return f"{inner}  # {summary}" if summary else inner


def activation_name(f: Any) -> str:
    """``relu`` for a function, ``leakyrelu(a=0.2)`` for a ``functools.partial``."""
    if isinstance(f, functools.partial):
        args = [repr(a) for a in f.args] + [f"{k}={v!r}" for k, v in f.keywords.items()]
        return f"{activation_name(f.func)}({', '.join(args)})"
    if isinstance(f, np.ufunc):
        return f.__name__
    return getattr(f, "__name__", repr(f))


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, (int, float))


def param_summary(model: Any) -> str:
    """``'203_530 parameters, 795.039 KiB'`` (arrays counted once, even when tied); for a
    stack of models, ``'16 stacked, 1_056 parameters each, 66.000 KiB'``."""
    arrays = [a for a in functors.fleaves(model) if _is_array(a)]
    if not arrays:
        return ""
    trainable_ids = {id(a) for a in _trainable_arrays(model)}
    n_train = sum(int(a.size) for a in arrays if id(a) in trainable_ids)
    n_other = sum(int(a.size) for a in arrays if id(a) not in trainable_ids)
    nbytes = sum(int(a.size) * np.dtype(a.dtype).itemsize for a in arrays)
    stack = _stack_shape(model, arrays)
    n = int(np.prod(stack))
    s = f"{stack[0] if len(stack) == 1 else stack} stacked, " if stack else ""
    each = " each" if stack else ""
    s += f"{n_train // n:_} parameters{each}"
    if n_other:
        s += f", plus {n_other // n:_} non-trainable"
    return s + f", {nbytes / 1024:.3f} KiB"


def _stack_shape(model: Any, arrays: list) -> tuple:
    """The leading axes that every array of ``model`` has beyond its layer's ``_ndims``
    (``ff.tree.stack`` of an ensemble), or ``()``: also when some array's layer does not
    declare its dimensions, or the arrays disagree."""
    found: set[tuple] = set()
    covered: set[int] = set()
    for node in functors.fcollect(model):
        if not isinstance(node, Module):
            continue
        for name, child in functors.children(node).items():
            nd = node._ndims.get(name)
            if nd is None or not _is_array(child) or child.ndim < nd:
                continue
            found.add(tuple(child.shape[:child.ndim - nd]))
            covered.add(id(child))
    if len(found) != 1 or len(covered) != len(arrays):
        return ()
    return found.pop()


def _trainable_arrays(model: Any) -> list:
    out: list = []
    _collect_trainable(model, set(), out)
    return out


def _collect_trainable(node: Any, seen: set[int], out: list) -> None:
    # A module-level recursion, not a closure calling itself (no reference cycle).
    if id(node) in seen or node is None:
        return
    seen.add(id(node))
    if functors.isleaf(node):
        out.append(node)
        return
    ch = functors.trainable(node) if functors.is_functor(node) else functors.children(node)
    for c in (ch.values() if isinstance(ch, dict) else ch):
        _collect_trainable(c, seen, out)


KEY_BATCH = ("{where}: rng has shape {shape}, a batch of random keys; it takes one key of "
             "shape (2,). Map over the batch with ff.vmap, e.g. ff.vmap(lambda k, x: "
             "nn.apply(model, x, rng=k))(keys, xs), so that each member draws its own.")
TRACED_KEY = ("{where}: rng is a traced random key, but building a layer draws its initial "
              "weights with NumPy. Build each member outside the transform with a key of its "
              "own (keys = ff.random.split(key, n)) and stack them with ff.tree.stack; the "
              "initialisers of nn.init themselves accept traced keys.")


def _looks_like_keys(rng: Any) -> bool:
    s, d = getattr(rng, "shape", None), getattr(rng, "dtype", None)
    return s is not None and d == np.uint32 and len(s) >= 1 and s[-1] == 2


def _check_one_key(rng: Any, where: str) -> bool:
    """Whether ``rng`` is a random key; a batch of keys is an error that says to vmap."""
    if random.is_key(rng):
        return True
    if _looks_like_keys(rng):
        raise TypeError(KEY_BATCH.format(where=where, shape=tuple(rng.shape)))
    return False


def as_rng(rng: Any) -> np.random.Generator:
    """A ``np.random.Generator`` from a seed, a Generator, ``None`` (fresh entropy) or a
    random key (``ff.random.key``), for the NumPy draws of layer constructors.

    A key seeds the generator with its two words, so the same key builds the same layer.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if _check_one_key(rng, "nn (building a layer)"):
        if isinstance(rng, Tracer):
            raise TypeError(TRACED_KEY.format(where="nn (building a layer)"))
        host = rng.get() if hasattr(rng, "get") and not isinstance(rng, np.ndarray) else rng
        return np.random.default_rng(np.asarray(host, dtype=np.uint32))
    return np.random.default_rng(rng)


def as_rng_or_key(rng: Any, where: str = "nn.apply") -> Any:
    """``rng`` itself when it is a random key (drawn with ``ff.random``, traced or not),
    else :func:`as_rng` of it; ``None`` stays ``None``."""
    if rng is None or _check_one_key(rng, where):
        return rng
    return as_rng(rng)


def split_rng(rng: Any, n: int) -> list:
    """``n`` independent sources from ``rng``: ``n`` keys from a key (``ff.random.split``),
    ``n`` generators from a seed or Generator; ``None`` stays ``None``."""
    if rng is None:
        return [None] * n
    if _check_one_key(rng, "nn (splitting rng between layers)"):
        keys = random.split(rng, n)
        return [keys[i] for i in range(n)]
    return list(as_rng(rng).spawn(n))


def apply(model: Any, x: Any, *, train: bool = True, rng: Any = None) -> tuple[Any, Any]:
    """Run ``model`` in training mode (by default) and return ``(y, new_model)``.

    Dropout draws from ``rng``: a random key (``ff.random.key(0)``; under ``vmap`` a
    batch of keys gives each member its own masks), a seed or a
    ``np.random.Generator``. Containers split it between their layers. BatchNorm
    uses batch statistics and the returned model carries the updated running
    statistics. The input model is unchanged.

    >>> import numpy as np, funcflux as ff
    >>> from funcflux import nn
    >>> y, m = nn.apply(nn.Dense(2, 1, rng=0), np.ones((3, 2)))
    >>> y.shape
    (3, 1)
    >>> y, _ = nn.apply(nn.Dropout(0.5), np.ones(4), rng=ff.random.key(0))
    >>> y
    array([0., 0., 2., 2.])
    """
    g = as_rng_or_key(rng, "nn.apply")
    if isinstance(model, Module):
        return model.apply(x, train=train, rng=g)
    if callable(model):
        return model(x), model
    raise TypeError(f"nn.apply: {type(model).__name__} is not a layer or a function")


def apply_layer(layer: Any, x: Any, train: bool, rng: Any) -> tuple[Any, Any]:
    """``layer.apply(x, ...)`` for a Module, ``(layer(x), layer)`` for a plain function."""
    if isinstance(layer, Module):
        return layer.apply(x, train=train, rng=rng)
    return layer(x), layer


def describe(layer: Any) -> str:
    """How a child prints inside its parent: a layer's one-liner, a function's name.

    A layer whose children are not all arrays, layers or functions (a model mapped by
    ``ff.fmap(np.shape, model)``) prints each child: ``Dense(weight=(2, 3), bias=(2,))``.
    """
    if not isinstance(layer, Module):
        return activation_name(layer)
    if all(isinstance(x, Module) or _is_array(x) or callable(x)
           for c in functors.children(layer).values()
           for x in tree.leaves(c, is_leaf=lambda v: isinstance(v, Module))):
        try:
            return layer._repr_inner()
        except (AttributeError, TypeError, ValueError, IndexError):
            pass  # an array taken out (the static half of ff.partition): print the children
    parts = [f"{k}={_child_repr(v)}" for k, v in functors.children(layer).items()]
    return f"{type(layer).__name__}({', '.join(parts)})"


class _Shown:
    """Prints as the text it holds (an array's shape inside a container's repr)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _child_repr(child: Any) -> str:
    if isinstance(child, Module) or callable(child):
        return describe(child)
    if _is_array(child):
        return f"{np.dtype(child.dtype).name}{list(child.shape)}"
    shown = tree.map(lambda x: _Shown(_child_repr(x)) if isinstance(x, Module) or _is_array(x)
                     else x, child, is_leaf=lambda v: isinstance(v, Module))
    return repr(shown)


def shape_error(layer: Any, x: Any, expected: str) -> ValueError:
    """``Dense(784 => 256) got input of shape (32, 28, 28); expected (..., 784)``."""
    return ValueError(f"{describe(layer)} got input of shape {tuple(np.shape(x))}; "
                      f"expected {expected}")


def array_module_of(x: Any) -> Any:
    """The array module (NumPy, CuPy) holding ``x``, looking through tracers, so that
    constants a layer creates (masks, zero carries) live where its inputs do."""
    from ..core.backend import array_module
    from ..core.trace import module_value
    return array_module(module_value(x))
