"""Functors: classes that opt into the pytree registry, and walks over them.

``@functor`` registers a class as a pytree node (Functors.jl's idea, on the
same registry as ``funcflux.tree``): its *children* are the fields that
transforms, ``fmap``, optimisers, devices and checkpoints see; every other
field is configuration, kept in the tree structure and never touched. Of the
children, the *trainable* ones are those an optimiser updates (BatchNorm's
running statistics are children but not trainable).

One traversal serves everything: ``fsplit(x) -> (children, rebuild)``. ``fmap``
walks it with an identity cache, so an array that appears in two places (tied
weights) is mapped once and stays one object in the result.

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

import dataclasses
from typing import Any, Callable, Iterable, Sequence, TypeVar, overload

from . import tree as _tree

__all__ = ["functor", "children", "fsplit", "isleaf", "trainable", "fmap", "fmapstructure",
           "fleaves", "fcollect", "tree_at"]

T = TypeVar("T")


class _FunctorInfo:
    __slots__ = ("children", "trainable")

    def __init__(self, children: tuple[str, ...] | None, trainable: tuple[str, ...] | None):
        self.children = children  # None: every field
        self.trainable = trainable  # None: every child


_INFO: dict[type, _FunctorInfo] = {}


_LAYOUT: dict[type, tuple[tuple[str, ...] | None, tuple[str, ...]]] = {}


def _layout(cls: type) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
    """Per class, once: its dataclass field names (or None) and its slot names."""
    lay = _LAYOUT.get(cls)
    if lay is None:
        dc = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) \
            else None
        slots: list[str] = []
        for klass in cls.__mro__:
            own = klass.__dict__.get("__slots__", ())
            for s in ((own,) if isinstance(own, str) else own):
                if s not in ("__dict__", "__weakref__") and s not in slots:
                    slots.append(s)
        lay = _LAYOUT[cls] = (dc, tuple(slots))
    return lay


def _plain(cls: type) -> bool:
    """Whether objects of ``cls`` keep every field in their ``__dict__`` (no dataclass
    fields, no slots): the flatten and rebuild fast paths."""
    dc, slots = _LAYOUT.get(cls) or _layout(cls)
    return dc is None and not slots


def _fields(obj: Any) -> list[str]:
    """The object's fields, in declaration order (dataclass fields, then __dict__, slots)."""
    dc, slots = _layout(type(obj))
    names = list(dc) if dc is not None else list(getattr(obj, "__dict__", ()))
    for s in slots:
        if s not in names and hasattr(obj, s):
            names.append(s)
    return names


def _child_names(obj: Any) -> tuple[str, ...]:
    info = _INFO[type(obj)]
    if info.children is None:
        return tuple(_fields(obj))
    return info.children


def _new_like(obj: Any, values: dict[str, Any]) -> Any:
    """A new object of ``obj``'s class with ``values`` as its fields; ``__init__`` does not run."""
    new = object.__new__(type(obj))
    for k, v in values.items():
        object.__setattr__(new, k, v)
    return new


def _flatten(obj: Any) -> tuple[list, tuple]:
    cls = type(obj)
    names = _INFO[cls].children
    d = getattr(obj, "__dict__", None)
    if names is not None and d is not None and _plain(cls):
        # A plain class (every layer): its __dict__ holds every field. This runs for each
        # functor in every tree walk (gradients, optimiser updates), so it stays short.
        try:
            ch = list(map(d.__getitem__, names))
        except KeyError:  # a child that is a property: the general path below
            pass
        else:
            others = []
            for k, v in d.items():
                if k not in names:
                    others.append((k, v))
            return ch, (names, tuple(others))
    if names is None:
        names = tuple(_fields(obj))
    try:
        ch = [getattr(obj, n) for n in names]
    except AttributeError:
        missing = [n for n in names if not hasattr(obj, n)]
        raise AttributeError(f"{cls.__name__} is a functor with children {names}, but "
                             f"the object has no field {missing[0]!r}.") from None
    others = tuple([(k, getattr(obj, k)) for k in _fields(obj) if k not in names])
    return ch, (names, others)


def _unflatten_for(cls: type) -> Callable[[Any, list], Any]:
    def unflatten(aux: tuple, ch: list) -> Any:
        names, others = aux
        new = object.__new__(cls)
        d = getattr(new, "__dict__", None)
        if d is not None and _plain(cls):  # fill the __dict__ directly
            d.update(others)
            d.update(zip(names, ch))
            return new
        for k, v in others:
            object.__setattr__(new, k, v)
        for k, v in zip(names, ch):
            object.__setattr__(new, k, v)
        return new
    return unflatten


def _fields_spec(cls: type, aux: tuple) -> tuple | None:
    """For tree's compiled rebuilds: (class, other fields, child names) when objects of
    ``cls`` keep every field in their ``__dict__`` (what ``unflatten`` then fills)."""
    return (cls, aux[1], aux[0]) if _plain(cls) else None


def _is_frozen(obj: Any) -> bool:
    """Layers (``nn.Module``) set ``_frozen`` once built and refuse changes after that."""
    d = getattr(obj, "__dict__", None)
    return d is not None and d.get("_frozen") is True


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
    _INFO[cls] = _FunctorInfo(names, train)
    _tree.register(cls, _flatten, _unflatten_for(cls), keys=_keys, frozen=_is_frozen,
                   fields=lambda aux: _fields_spec(cls, aux))
    return cls


def is_functor(x: Any) -> bool:
    return type(x) in _INFO


# ----------------------------------------------------------------------------- one traversal
def fsplit(x: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``x -> (children, rebuild)``: the single traversal every walk uses.

    ``children`` is a dict for functor classes and dicts, a tuple/list for
    tuples/lists, and ``{}`` for a leaf; ``rebuild(new_children)`` returns an
    object like ``x`` with those children and every other field unchanged.

    >>> import funcflux as ff
    >>> ch, rebuild = ff.fsplit((1, 2))
    >>> rebuild((10, 20))
    (10, 20)
    """
    t = type(x)
    if t in _INFO:
        names = _child_names(x)
        ch = {n: getattr(x, n) for n in names}

        def rebuild_functor(new: dict) -> Any:
            vals = {k: getattr(x, k) for k in _fields(x)}
            vals.update(new)
            return _new_like(x, vals)
        return ch, rebuild_functor
    if t is tuple or t is list:
        return x, (lambda new: t(new))
    if t is dict:
        return x, (lambda new: {k: new[k] for k in x})
    if isinstance(x, tuple) and hasattr(t, "_fields"):  # namedtuple
        return x, (lambda new: t(*new))
    nt = _tree._node_type(x)
    if nt is not None and x is not None:  # a class registered with tree.register
        kids, aux = nt.flatten(x)
        kids = tuple(kids)
        return kids, (lambda new: nt.unflatten(aux, list(new)))
    return {}, (lambda new: x)


def children(x: Any) -> Any:
    """The children of ``x``: a dict (functors, dicts), a tuple/list, or ``{}`` for a leaf."""
    return fsplit(x)[0]


def trainable(x: Any) -> dict:
    """The children of a functor that an optimiser updates (all children by default)."""
    ch = children(x)
    info = _INFO.get(type(x))
    if info is None or info.trainable is None:
        return dict(ch) if isinstance(ch, dict) else dict(enumerate(ch))
    return {k: v for k, v in ch.items() if k in info.trainable}


def isleaf(x: Any) -> bool:
    """True for values with no children that are not containers (arrays, numbers, strings...).

    ``None`` is an empty container (as in ``funcflux.tree``), so walks pass over it.
    """
    if x is None:
        return False
    return type(x) not in _INFO and _tree._node_type(x) is None


def _items(ch: Any) -> Iterable[tuple[Any, Any]]:
    return ch.items() if isinstance(ch, dict) else enumerate(ch)


def _rebuild_from(ch: Any, values: list) -> Any:
    if isinstance(ch, dict):
        return dict(zip(ch.keys(), values))
    return type(ch)(values) if type(ch) in (tuple, list) else tuple(values)


# ----------------------------------------------------------------------------- fmap family
def fmap(f: Callable[..., Any], x: Any, *ys: Any, exclude: Callable[[Any], bool] = isleaf,
         walk: Callable[..., Any] | None = None, cache: bool = True) -> Any:
    """Rebuild ``x`` with ``f`` applied wherever ``exclude`` holds (by default: the leaves).

    With several trees, ``f`` receives the matching nodes of each. With
    ``cache=True`` an object met twice in ``x`` (a tied weight) is mapped once
    and the result is shared too, so tied weights stay tied.

    A NumPy *view* of another child (``W.T``, ``W[0]``) is a different object:
    ``fmap`` maps it separately and the tie is lost. To tie through a view,
    store the one array and take the view in the forward pass (``x @ self.W.T``).

    >>> import numpy as np, funcflux as ff
    >>> w = np.ones(2)
    >>> m = ff.fmap(lambda a: a.astype(np.float32), {"enc": w, "dec": w})
    >>> m["enc"] is m["dec"], m["enc"].dtype
    (True, dtype('float32'))
    """
    memo: dict[int, Any] = {}
    keep: list = []  # holds mapped originals so their ids stay unique during the walk

    def go(node: Any, *others: Any) -> Any:
        # Shared nodes (a tied array, a layer used twice) are mapped once: leaves and
        # containers alike, so the result shares them the way the input did.
        use_cache = cache and not others and node is not None
        if use_cache:
            k = id(node)
            if k in memo:
                return memo[k]
        out = f(node, *others) if exclude(node) else _rebuild_node(node, others)
        if use_cache:
            memo[k] = out
            keep.append(node)
        return out

    def _rebuild_node(node: Any, others: tuple) -> Any:
        ch, rebuild = fsplit(node)
        och = [fsplit(o)[0] for o in others]
        new = []
        for k, c in _items(ch):
            sub = []
            for oc in och:
                try:
                    sub.append(oc[k])
                except (KeyError, IndexError, TypeError):
                    raise ValueError(f"fmap: the trees differ in structure at child {k!r} of a "
                                     f"{type(node).__name__}.") from None
            new.append(go(c, *sub))
        return rebuild(_rebuild_from(ch, new))

    return go(x, *ys)


def fmapstructure(f: Callable[[Any], Any], x: Any, exclude: Callable[[Any], bool] = isleaf) -> Any:
    """Like :func:`fmap`, but return plain nested dicts/lists/tuples instead of rebuilding.

    >>> import numpy as np, funcflux as ff
    >>> @ff.functor
    ... class P:
    ...     def __init__(self): self.a, self.b = np.zeros(3), [np.ones(2)]
    >>> ff.fmapstructure(lambda a: a.shape, P())
    {'a': (3,), 'b': [(2,)]}
    """
    memo: dict[int, Any] = {}

    def go(node: Any) -> Any:
        if exclude(node):
            k = id(node)
            if k not in memo:
                memo[k] = f(node)
            return memo[k]
        if node is None:
            return None
        ch = children(node)
        if isinstance(ch, dict):
            return {k: go(v) for k, v in ch.items()}
        return type(ch)(go(c) for c in ch) if type(ch) in (tuple, list) else tuple(go(c) for c in ch)

    return go(x)


def fleaves(x: Any, exclude: Callable[[Any], bool] = isleaf) -> list:
    """The leaves of ``x``, each once (by identity), in walk order."""
    seen: set[int] = set()
    out: list = []

    def go(node: Any) -> None:
        if exclude(node):
            if id(node) not in seen:
                seen.add(id(node))
                out.append(node)
            return
        for _, c in _items(children(node)):
            go(c)

    go(x)
    return out


def fcollect(x: Any, exclude: Callable[[Any], bool] = lambda v: False) -> list:
    """Every node of ``x`` (containers and leaves), each once, parents first.

    The walk does not descend below a node where ``exclude`` holds (that node is
    still collected, as Functors.jl does).
    """
    seen: set[int] = set()
    out: list = []

    def go(node: Any) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        out.append(node)
        if exclude(node):
            return
        for _, c in _items(children(node)):
            go(c)

    go(x)
    return out


# ----------------------------------------------------------------------------- surgery
class _Marker:
    __slots__ = ("i",)

    def __init__(self, i: int):
        self.i = i


_NOTHING = object()


def tree_at(where: Callable[[Any], Any], tree: Any, replace: Any = _NOTHING,
            replace_fn: Callable[[Any], Any] | None = None, is_leaf: Callable[[Any], bool] | None = None
            ) -> Any:
    """A copy of ``tree`` with the node(s) that ``where`` selects replaced (Equinox's tree_at).

    ``where(tree)`` returns one node or a tuple/list of nodes (``lambda m:
    m.layers[0].weight``); give ``replace`` (a value, or a sequence matching the
    selection) or ``replace_fn(old) -> new``. Nodes are matched by position, not
    value: equal or shared values elsewhere are untouched.

    >>> import numpy as np, funcflux as ff
    >>> ff.tree.at(lambda t: t["b"][0], {"a": 1, "b": [2, 3]}, replace=20)
    {'a': 1, 'b': [20, 3]}
    """
    if (replace is _NOTHING) == (replace_fn is None):
        raise TypeError("tree.at needs exactly one of replace= or replace_fn=")
    # A proxy with the same containers but a unique marker at every leaf, so that
    # `where` picks out positions by identity, never by value.
    leaves, td = _tree.flatten(tree, is_leaf)
    markers = [_Marker(i) for i in range(len(leaves))]
    proxy = _tree.unflatten(td, markers)
    picked = where(proxy)
    many = isinstance(picked, (tuple, list)) and not _is_node_in(picked, proxy)
    nodes = list(picked) if many else [picked]
    if replace_fn is None:
        values = list(replace) if many else [replace]
        if len(values) != len(nodes):
            raise ValueError(f"tree.at: where selected {len(nodes)} nodes but replace has "
                             f"{len(values)} values.")
    targets = {id(n): i for i, n in enumerate(nodes)}
    if len(targets) != len(nodes):
        raise ValueError("tree.at: where selected the same node twice.")
    found: set[int] = set()

    def go(orig: Any, prox: Any) -> Any:
        k = id(prox)
        if k in targets:
            found.add(k)
            i = targets[k]
            return replace_fn(orig) if replace_fn is not None else values[i]
        if isinstance(prox, _Marker):
            return orig
        och, rebuild = fsplit(orig)
        pch = children(prox)
        # Pair children by key, not position: the proxy's dicts come back in sorted key
        # order (tree.unflatten) while fsplit keeps the original's insertion order.
        if isinstance(och, dict):
            new = [go(oc, pch[k]) for k, oc in och.items()]
        else:
            new = [go(oc, pc) for oc, pc in zip(och, pch)]
        return rebuild(_rebuild_from(och, new))

    out = go(tree, proxy)
    if len(found) != len(nodes):
        raise ValueError("tree.at: where returned something that is not a node of the tree "
                         "(select parts of its argument, e.g. lambda m: m.layers[0].weight).")
    return out


def _is_node_in(candidate: Any, proxy: Any) -> bool:
    """Whether ``candidate`` (a tuple/list) is itself a container inside ``proxy``."""
    stack = [proxy]
    while stack:
        n = stack.pop()
        if n is candidate:
            return True
        if not isinstance(n, _Marker) and n is not None:
            stack.extend(c for _, c in _items(children(n)))
    return False
