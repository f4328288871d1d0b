"""Functors: classes that opt into the pytree registry, and walks over them.

``@functor`` registers a class as a pytree node (Functors.jl's idea, on the
same registry as ``funcflux.tree``): its *children* are the fields that
transforms, ``fmap``, optimisers, devices and checkpoints see; every other
field is configuration, kept in the tree structure and never touched. Of the
children, the *trainable* ones are those an optimiser updates (BatchNorm's
running statistics are children but not trainable).

One traversal serves everything: ``fsplit(x) -> (children, rebuild)``, read from
the node's entry in the pytree registry. For a functor class that entry holds
flatten and unflatten functions generated once, when the class is registered
(``funcflux/_flatten.py``), so ``tree.map``, ``fmap``, ``tree.at``, the
optimisers and checkpoints all build an object the same way. ``fmap`` walks it
with an identity cache that lives for one call, so an array that appears in two
places (tied weights) is mapped once and stays one object in the result.

>>> import numpy as np, funcflux as ff
>>> @ff.functor("weight")
... class Scale:
...     def __init__(self, weight, name="scale"):
...         self.weight, self.name = weight, name
>>> s = ff.fmap(lambda w: w * 2, Scale(np.ones(2)))
>>> s.weight, s.name
(array([2., 2.]), 'scale')
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence, TypeVar, overload

from . import _flatten
from . import tree as _tree
from .tree import at as tree_at

__all__ = ["functor", "children", "fsplit", "isleaf", "trainable", "fmap", "fmapstructure",
           "fleaves", "fcollect", "tree_at"]

T = TypeVar("T")


def _keys(obj: Any, aux: tuple) -> list:
    return [_tree.AttrKey(n) for n in aux[0]]


@overload
def functor(cls: type[T], /) -> type[T]: ...
@overload
def functor(*children: str, trainable: Sequence[str] | None = None) -> Callable[[type[T]], type[T]]: ...
@overload
def functor(*, children: Sequence[str] | None = None, trainable: Sequence[str] | None = None
            ) -> Callable[[type[T]], type[T]]: ...


def functor(*args: Any, children: Sequence[str] | None = None,
            trainable: Sequence[str] | None = None) -> Any:
    """Register a class as a functor: ``@functor``, ``@functor("a", "b")`` or
    ``@functor(children=("a", "b"), trainable=("a",))``.

    Works for dataclasses (frozen or not), plain classes and slotted classes.
    Without names, every field is a child.

    >>> import numpy as np, funcflux as ff
    >>> @ff.functor(children=("w", "stats"), trainable=("w",))
    ... class Layer:
    ...     def __init__(self): self.w, self.stats, self.act = np.ones(2), np.zeros(2), "relu"
    >>> sorted(ff.children(Layer())), sorted(ff.trainable(Layer()))
    (['stats', 'w'], ['w'])
    """
    if len(args) == 1 and isinstance(args[0], type):
        return _register(args[0], None, None)
    if args and children is not None:
        raise TypeError("functor: give children either positionally or as children=..., not both")
    names = tuple(args) if args else (tuple(children) if children is not None else None)
    for n in (names or ()) + tuple(trainable or ()):
        if not isinstance(n, str):
            raise TypeError(f"functor: child names must be strings, got {n!r}")
    if trainable is not None and names is not None and not set(trainable) <= set(names):
        raise ValueError(f"functor: trainable={tuple(trainable)} names fields that are not "
                         f"children {names}; trainable children must be children.")
    return lambda cls: _register(cls, names, tuple(trainable) if trainable is not None else None)


def _register(cls: type, names: tuple[str, ...] | None, train: tuple[str, ...] | None) -> type:
    fc = _flatten.generate(cls, names, train)
    _tree._register_node(cls, _tree._NodeType(fc.flatten, fc.unflatten, _keys, fc))
    return cls


def _declaration(x: Any) -> _flatten.FunctorClass | None:
    """The functor declaration of ``x``'s class (children, trainable), None for others."""
    nt = _tree._NODES.get(type(x))
    return None if nt is None else nt.functor


def is_functor(x: Any) -> bool:
    """Whether ``x``'s class was registered with ``@functor``."""
    return _declaration(x) is not None


# ----------------------------------------------------------------------------- one traversal
def fsplit(x: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``x -> (children, rebuild)``: the single traversal every walk uses.

    ``children`` is a dict for functor classes and dicts (keys sorted, as
    ``tree.flatten`` visits them), a tuple/list for tuples/lists, a tuple for
    other registered nodes, and ``{}`` for a leaf; ``rebuild(new_children)``
    returns an object like ``x`` with those children and every other field
    unchanged, built by the node's unflatten (``__init__`` does not run).

    >>> import funcflux as ff
    >>> ch, rebuild = ff.fsplit((1, 2))
    >>> rebuild((10, 20))
    (10, 20)
    """
    nt = None if x is None else _tree._node_type(x)
    if nt is None:
        return {}, _Same(x)
    kids, aux = nt.flatten(x)
    t = type(x)
    if nt.functor is not None or t is dict:
        names = aux[0] if nt.functor is not None else aux
        return dict(zip(names, kids)), _RebuildByName(nt.unflatten, aux, names)
    if t is tuple or t is list:
        return x, t
    return tuple(kids), _RebuildInOrder(nt.unflatten, aux)


# Rebuild functions are small objects, not closures: they hold exactly what they need and
# never themselves, so a walk leaves no reference cycle behind (a step's arrays are freed by
# reference counting alone, with the garbage collector off).
class _Same:
    __slots__ = ("x",)

    def __init__(self, x: Any):
        self.x = x

    def __call__(self, new: Any) -> Any:
        return self.x


class _RebuildByName:
    __slots__ = ("unflatten", "aux", "names")

    def __init__(self, unflatten: Callable[[Any, list], Any], aux: Any, names: Sequence[Any]):
        self.unflatten, self.aux, self.names = unflatten, aux, names

    def __call__(self, new: dict) -> Any:
        return self.unflatten(self.aux, [new[n] for n in self.names])


class _RebuildInOrder:
    __slots__ = ("unflatten", "aux")

    def __init__(self, unflatten: Callable[[Any, list], Any], aux: Any):
        self.unflatten, self.aux = unflatten, aux

    def __call__(self, new: Any) -> Any:
        return self.unflatten(self.aux, list(new))


def children(x: Any) -> Any:
    """The children of ``x``: a dict (functors, dicts), a tuple/list, or ``{}`` for a leaf."""
    return fsplit(x)[0]


def trainable(x: Any) -> dict:
    """The children of a functor that an optimiser updates (all children by default)."""
    ch = children(x)
    fc = _declaration(x)
    if fc is None or fc.trainable is None:
        return dict(ch) if isinstance(ch, dict) else dict(enumerate(ch))
    return {k: v for k, v in ch.items() if k in fc.trainable}


def isleaf(x: Any) -> bool:
    """True for values with no children that are not containers (arrays, numbers, strings...).

    ``None`` is an empty container (as in ``funcflux.tree``), so walks pass over it.
    """
    return x is not None and _tree._node_type(x) is None


def _items(ch: Any) -> Iterable[tuple[Any, Any]]:
    return ch.items() if isinstance(ch, dict) else enumerate(ch)


def _rebuild_from(ch: Any, values: list) -> Any:
    if isinstance(ch, dict):
        return dict(zip(ch.keys(), values))
    return type(ch)(values) if type(ch) in (tuple, list) else tuple(values)


# ----------------------------------------------------------------------------- fmap family
# The walks below are module-level functions that pass their state along (or small classes),
# never closures that call themselves: such a closure is a reference cycle, and it would keep
# the walk's cache (every array it mapped) alive until the garbage collector runs.
def fmap(f: Callable[..., Any], x: Any, *ys: Any, exclude: Callable[[Any], bool] = isleaf,
         walk: Callable[..., Any] | None = None, cache: bool = True) -> Any:
    """Rebuild ``x`` with ``f`` applied wherever ``exclude`` holds (by default: the leaves).

    With several trees, ``f`` receives the matching nodes of each. With
    ``cache=True`` an object met twice in ``x`` (a tied weight) is mapped once
    and the result is shared too, so tied weights stay tied. Containers are
    rebuilt as ``funcflux.tree.map`` rebuilds them (a dict with its keys sorted).

    A NumPy *view* of another child (``W.T``, ``W[0]``) is a different object:
    ``fmap`` maps it separately and the tie is lost. To tie through a view,
    store the one array and take the view in the forward pass (``x @ self.W.T``).

    >>> import numpy as np, funcflux as ff
    >>> w = np.ones(2)
    >>> m = ff.fmap(lambda a: a.astype(np.float32), {"enc": w, "dec": w})
    >>> m["enc"] is m["dec"], m["enc"].dtype
    (True, dtype('float32'))
    """
    return _FMap(f, exclude, cache).go(x, ys)


class _FMap:
    __slots__ = ("f", "exclude", "cache", "memo", "keep")

    def __init__(self, f: Callable[..., Any], exclude: Callable[[Any], bool], cache: bool):
        self.f, self.exclude, self.cache = f, exclude, cache
        self.memo: dict[int, Any] = {}
        self.keep: list = []  # holds mapped originals so their ids stay unique during the walk

    def go(self, node: Any, others: tuple) -> Any:
        # Shared nodes (a tied array, a layer used twice) are mapped once: leaves and
        # containers alike, so the result shares them the way the input did.
        use_cache = self.cache and not others and node is not None
        if use_cache:
            k = id(node)
            if k in self.memo:
                return self.memo[k]
        if self.exclude(node):
            out = self.f(node, *others)
        else:
            ch, rebuild = fsplit(node)
            och = [fsplit(o)[0] for o in others]
            new = []
            for k_, c in _items(ch):
                sub = []
                for oc in och:
                    try:
                        sub.append(oc[k_])
                    except (KeyError, IndexError, TypeError):
                        raise ValueError(f"fmap: the trees differ in structure at child {k_!r} "
                                         f"of a {type(node).__name__}.") from None
                new.append(self.go(c, tuple(sub)))
            out = rebuild(_rebuild_from(ch, new))
        if use_cache:
            self.memo[k] = out
            self.keep.append(node)
        return out


def fmapstructure(f: Callable[[Any], Any], x: Any, exclude: Callable[[Any], bool] = isleaf) -> Any:
    """Like :func:`fmap`, but return plain nested dicts/lists/tuples instead of rebuilding.

    >>> import numpy as np, funcflux as ff
    >>> @ff.functor
    ... class P:
    ...     def __init__(self): self.a, self.b = np.zeros(3), [np.ones(2)]
    >>> ff.fmapstructure(lambda a: a.shape, P())
    {'a': (3,), 'b': [(2,)]}
    """
    return _structure(x, f, exclude, {})


def _structure(node: Any, f: Callable[[Any], Any], exclude: Callable[[Any], bool],
               memo: dict[int, Any]) -> Any:
    if exclude(node):
        k = id(node)
        if k not in memo:
            memo[k] = f(node)
        return memo[k]
    if node is None:
        return None
    ch = children(node)
    if isinstance(ch, dict):
        return {k: _structure(v, f, exclude, memo) for k, v in ch.items()}
    out = [_structure(c, f, exclude, memo) for c in ch]
    return type(ch)(out) if type(ch) in (tuple, list) else tuple(out)


def fleaves(x: Any, exclude: Callable[[Any], bool] = isleaf) -> list:
    """The leaves of ``x``, each once (by identity), in walk order."""
    out: list = []
    _leaves(x, exclude, set(), out)
    return out


def _leaves(node: Any, exclude: Callable[[Any], bool], seen: set[int], out: list) -> None:
    if exclude(node):
        if id(node) not in seen:
            seen.add(id(node))
            out.append(node)
        return
    for _, c in _items(children(node)):
        _leaves(c, exclude, seen, out)


def fcollect(x: Any, exclude: Callable[[Any], bool] = lambda v: False) -> list:
    """Every node of ``x`` (containers and leaves), each once, parents first.

    The walk does not descend below a node where ``exclude`` holds (that node is
    still collected, as Functors.jl does).
    """
    out: list = []
    _collect(x, exclude, set(), out)
    return out


def _collect(node: Any, exclude: Callable[[Any], bool], seen: set[int], out: list) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    out.append(node)
    if exclude(node):
        return
    for _, c in _items(children(node)):
        _collect(c, exclude, seen, out)
