"""Pytrees: nested containers whose leaves are arrays, flattened and rebuilt.

Built-in nodes are ``tuple``, ``list``, ``dict`` (keys sorted, as JAX does) and
namedtuples; ``None`` is a node with no children, so it holds no leaf. Other
classes join with :func:`register` or, for models, ``funcflux.functor`` (the
functor registry and this one are one table seen two ways).

>>> import funcflux as ff
>>> leaves, treedef = ff.tree.flatten({"b": (1, 2), "a": [3, None]})
>>> leaves
[3, 1, 2]
>>> ff.tree.unflatten(treedef, [30, 10, 20])
{'a': [30, None], 'b': (10, 20)}
"""
from __future__ import annotations

import builtins
import collections
import weakref
from typing import Any, Callable, Hashable, Iterable, NamedTuple, Sequence

import numpy as np

__all__ = [
    "PyTreeDef", "register", "flatten", "unflatten", "leaves", "structure", "map",
    "flatten_with_path", "map_with_path", "leaves_with_path", "keystr", "ravel",
    "all_equal_structure", "flatten_up_to", "DictKey", "SequenceKey", "AttrKey",
    "stack", "unstack",
]


# ----------------------------------------------------------------------------- keys
class DictKey(NamedTuple):
    key: Hashable

    def __str__(self) -> str:
        return f"[{self.key!r}]"


class SequenceKey(NamedTuple):
    idx: int

    def __str__(self) -> str:
        return f"[{self.idx}]"


class AttrKey(NamedTuple):
    name: str

    def __str__(self) -> str:
        return f".{self.name}"


def keystr(path: Sequence[Any]) -> str:
    """A path as it reads in Python: ``['layers'][0].weight``; the root is ``<root>``."""
    return "".join(str(k) for k in path) or "<root>"


# ----------------------------------------------------------------------------- registry
class _NodeType(NamedTuple):
    flatten: Callable[[Any], tuple[Iterable[Any], Hashable]]
    unflatten: Callable[[Any, list], Any]
    keys: Callable[[Any, Any], Sequence[Any]]  # (node, aux) -> one key per child
    frozen: Callable[[Any], bool] | None = None  # node -> whether it promises never to change
    # For nodes whose unflatten is "a new object, its __dict__ filled from aux's fields and
    # then the children" (functor classes): aux -> (class, other fields, child names).
    fields: Callable[[Any], tuple] | None = None


_NODES: dict[type, _NodeType] = {}


def register(
    cls: type,
    flatten: Callable[[Any], tuple[Iterable[Any], Any]],
    unflatten: Callable[[Any, list], Any],
    keys: Callable[[Any, Any], Sequence[Any]] | None = None,
    frozen: Callable[[Any], bool] | None = None,
    fields: Callable[[Any], tuple] | None = None,
) -> type:
    """Make ``cls`` a pytree node.

    Args:
      flatten: ``node -> (children, aux)``; ``aux`` is kept in the tree structure
        and must support ``==``.
      unflatten: ``(aux, children) -> node``.
      keys: optional ``(node, aux) -> keys``, one per child, used in paths;
        children are numbered ``[i]`` by default.
      frozen: optional ``node -> bool``, true for a node that never changes after
        it is built (its children and aux stay the same objects). ``flatten`` then
        remembers such a node's leaves and structure while it lives, when no list,
        dict or other changeable node sits below it (layers are flattened at every
        training step).

    >>> import funcflux as ff
    >>> class Pair:
    ...     def __init__(self, a, b): self.a, self.b = a, b
    >>> _ = ff.tree.register(Pair, lambda p: ((p.a, p.b), None), lambda aux, ch: Pair(*ch))
    >>> ff.tree.leaves(Pair(1, [2, 3]))
    [1, 2, 3]
    """
    if keys is None:
        keys = lambda node, aux: [SequenceKey(i) for i in builtins.range(len(list(flatten(node)[0])))]
    _NODES[cls] = _NodeType(flatten, unflatten, keys, frozen, fields)
    return cls


def _dict_flatten(d: dict) -> tuple[list, tuple]:
    try:
        ks = tuple(sorted(d))
    except TypeError:  # unorderable keys: keep insertion order
        ks = tuple(d)
    return [d[k] for k in ks], ks


register(tuple, lambda t: (t, None), lambda _, ch: tuple(ch))
register(list, lambda l: (l, None), lambda _, ch: list(ch))
register(dict, _dict_flatten, lambda ks, ch: dict(zip(ks, ch)),
         keys=lambda d, ks: [DictKey(k) for k in ks])
register(type(None), lambda n: ((), None), lambda _, ch: None)
# Insertion-ordered dicts keep their order; a defaultdict keeps its factory.
register(collections.OrderedDict, lambda d: (list(d.values()), tuple(d)),
         lambda ks, ch: collections.OrderedDict(zip(ks, ch)),
         keys=lambda d, ks: [DictKey(k) for k in ks])
register(collections.defaultdict,
         lambda d: (lambda ch, ks: (ch, (d.default_factory, ks)))(*_dict_flatten(d)),
         lambda aux, ch: collections.defaultdict(aux[0], zip(aux[1], ch)),
         keys=lambda d, aux: [DictKey(k) for k in aux[1]])


def _node_type(x: Any) -> _NodeType | None:
    nt = _NODES.get(type(x))
    if nt is None and isinstance(x, tuple) and hasattr(type(x), "_fields"):
        nt = _namedtuple_node(type(x))
    return nt


def _namedtuple_node(cls: type) -> _NodeType:
    nt = _NodeType(lambda t: (tuple(t), None), lambda _, ch: cls(*ch),
                   lambda t, _: [AttrKey(f) for f in cls._fields])  # type: ignore[attr-defined]
    _NODES[cls] = nt
    return nt


# ----------------------------------------------------------------------------- treedef
class PyTreeDef:
    """The structure of a pytree: node types, their aux data, and where leaves go."""

    __slots__ = ("node", "aux", "children", "num_leaves", "_hash", "_static", "_memo")

    def __init__(self, node: type | None, aux: Any, children: tuple, num_leaves: int):
        self.node = node  # None for a leaf
        self.aux = aux
        self.children = children
        self.num_leaves = num_leaves
        self._hash: int | None = None
        self._static = False  # the structure of a frozen tree (see _remember)
        self._memo: dict | None = None  # facts other modules derive from the structure

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, PyTreeDef):
            return NotImplemented
        if self.node is not other.node or self.num_leaves != other.num_leaves:
            return False
        try:
            same_aux = bool(self.aux == other.aux)
        except Exception:  # e.g. arrays in aux data: compare by identity
            same_aux = self.aux is other.aux
        return same_aux and self.children == other.children

    def __hash__(self) -> int:
        if self._hash is None:
            try:
                h = hash((self.node, self.aux))
            except TypeError:
                h = hash(self.node)
            self._hash = hash((h, self.children))
        return self._hash

    def __repr__(self) -> str:
        return f"PyTreeDef({_describe(self)})"

    def unflatten(self, leaves: Iterable[Any]) -> Any:
        return unflatten(self, leaves)


_LEAF = PyTreeDef(None, None, (), 1)


def _describe(td: PyTreeDef) -> str:
    if td.node is None:
        return "*"
    inner = ", ".join(_describe(c) for c in td.children)
    if td.node is tuple:
        return f"({inner}{',' if len(td.children) == 1 else ''})"
    if td.node is list:
        return f"[{inner}]"
    if td.node is dict:
        return "{" + ", ".join(f"{k!r}: {_describe(c)}" for k, c in zip(td.aux, td.children)) + "}"
    if td.node is type(None):
        return "None"
    return f"{td.node.__name__}({inner})"


# ----------------------------------------------------------------------------- flatten
def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, PyTreeDef]:
    """``tree -> (leaves, treedef)``; ``is_leaf`` stops the walk where it holds."""
    out: list = []
    return out, _flatten(tree, is_leaf, out)


def _flatten(x: Any, is_leaf: Callable[[Any], bool] | None, out: list) -> PyTreeDef:
    if is_leaf is not None and is_leaf(x):
        out.append(x)
        return _LEAF
    nt = _NODES.get(type(x))
    if nt is None:
        if not (isinstance(x, tuple) and hasattr(type(x), "_fields")):
            out.append(x)  # a leaf: the common case, kept short
            return _LEAF
        nt = _namedtuple_node(type(x))
    if nt.frozen is not None and (is_leaf is None or is_leaf is _none_leaf):
        hit = _recall(x)
        if hit is not None and hit[3] and (is_leaf is None or not hit[4]):
            out.extend(hit[1])
            return hit[2]
        if is_leaf is None and nt.frozen(x):
            n0 = len(out)
            td = _static_children(x, nt, out)
            if td is not None:
                _remember(x, out[n0:], td)
                return td
            del out[n0:]
    children, aux = nt.flatten(x)
    n0 = len(out)
    defs = []
    for c in children:
        defs.append(_flatten(c, is_leaf, out))
    return PyTreeDef(type(x), aux, tuple(defs), len(out) - n0)


# Frozen nodes (layers) by id: (weak reference, leaves, treedef, exact, has None). An entry
# goes when its node is collected, before the id can be reused. ``exact``: the leaves are
# what flatten gives (a tree rebuilt by unflatten may hold None or containers where the
# structure has leaves: then only walks along that same structure use the entry).
_FROZEN: dict[int, tuple] = {}


def _none_leaf(x: Any) -> bool:
    """``is_leaf`` for walks that keep ``None`` as a leaf (the optimisers' updates)."""
    return x is None


def _has_none(td: PyTreeDef) -> bool:
    if td.node is None:
        return False
    return td.node is type(None) or any(_has_none(c) for c in td.children)


def _remember(x: Any, leaves: Any, td: PyTreeDef, exact: bool = True) -> None:
    key = id(x)
    try:
        ref = weakref.ref(x, lambda _, key=key: _FROZEN.pop(key, None))
    except TypeError:  # no weak references to this class: nothing remembered
        return
    if not td._static:
        td._static = True
        td._memo = {"none": _has_none(td)}
    _FROZEN[key] = (ref, tuple(leaves), td, exact, td._memo["none"])


def _recall(x: Any) -> tuple | None:
    """``x``'s entry in ``_FROZEN`` (leaves, treedef, exact, has None at 1-4), if any."""
    hit = _FROZEN.get(id(x))
    return hit if hit is not None and hit[0]() is x else None


def _along(td: PyTreeDef, x: Any) -> list | None:
    """The parts of ``x`` at ``td``'s leaves when ``x`` was built or walked with exactly
    ``td`` and is remembered (a frozen tree); else None."""
    hit = _recall(x)
    return list(hit[1]) if hit is not None and hit[2] is td else None


def memo_of(x: Any) -> dict | None:
    """A dict for facts derived from the structure of ``x`` (shared by every tree of that
    structure) when ``x`` is a remembered frozen tree whose leaves are flatten's; else None."""
    hit = _recall(x)
    return hit[2]._memo if hit is not None and hit[3] else None


def _flatten_static(x: Any, out: list) -> PyTreeDef | None:
    """Flatten a frozen node whose subtree holds only tuples, None, namedtuples, leaves and
    other frozen nodes; None (with ``out`` partly filled) if something changeable is below."""
    nt = _NODES.get(type(x))
    if nt is None:
        if not (isinstance(x, tuple) and hasattr(type(x), "_fields")):
            out.append(x)
            return _LEAF
        nt = _namedtuple_node(type(x))
    elif nt.frozen is not None:
        hit = _recall(x)
        if hit is not None and hit[3]:
            out.extend(hit[1])
            return hit[2]
        if not nt.frozen(x):
            return None
    elif type(x) not in (tuple, type(None)):
        return None  # a list, dict or other node that can change in place
    return _static_children(x, nt, out)


def _static_children(x: Any, nt: _NodeType, out: list) -> PyTreeDef | None:
    """The node ``x`` (already found frozen, or a tuple/None/namedtuple) over static children."""
    children, aux = nt.flatten(x)
    n0 = len(out)
    defs = []
    for c in children:
        d = _flatten_static(c, out)
        if d is None:
            return None
        defs.append(d)
    return PyTreeDef(type(x), aux, tuple(defs), len(out) - n0)


def unflatten(treedef: PyTreeDef, leaves: Iterable[Any]) -> Any:
    """Rebuild the tree described by ``treedef`` with ``leaves`` in order."""
    build = _builder(treedef) if treedef._static else None
    if build is not None and type(leaves) in (list, tuple) and \
            len(leaves) == treedef.num_leaves:
        tree = build(leaves)
    else:
        it = iter(leaves)
        try:
            tree = _unflatten(treedef, it)
        except StopIteration:
            raise ValueError(f"unflatten: too few leaves for {treedef} "
                             f"(it holds {treedef.num_leaves})") from None
        for _ in it:
            raise ValueError(f"unflatten: too many leaves for {treedef} "
                             f"(it holds {treedef.num_leaves})")
    if treedef._static and type(leaves) in (list, tuple):
        # A frozen structure rebuilt (gradients, updated parameters, optimiser moments):
        # remember it, so that the walks that follow in the same step are lookups.
        nt = _NODES.get(type(tree))
        if nt is not None and nt.frozen is not None and nt.frozen(tree):
            exact = True
            for x in leaves:
                if type(x) in _NODES or isinstance(x, tuple):
                    exact = False  # None or a container where the structure has a leaf
                    break
            _remember(tree, leaves, treedef, exact)
    return tree


def _builder(td: PyTreeDef) -> Callable[[Sequence[Any]], Any] | None:
    """A function rebuilding a frozen structure from its leaves in one call, compiled once
    per structure (models are rebuilt several times per training step: gradients,
    moments, updates, new parameters); None when some node is not of a kind it knows."""
    memo = td._memo
    if "build" not in memo:
        try:
            memo["build"] = _compile_builder(td)
        except _NotCompilable:
            memo["build"] = None
    return memo["build"]


class _NotCompilable(Exception):
    pass


def _compile_builder(td: PyTreeDef) -> Callable[[Sequence[Any]], Any]:
    # Straight-line Python: each object is made and filled as unflatten would, children
    # first; leaves are read by index. Only names this function makes enter the source.
    env: dict[str, Any] = {"_new": object.__new__}
    lines: list[str] = []
    n_leaf = 0

    def emit(t: PyTreeDef) -> str:
        nonlocal n_leaf
        if t.node is None:
            n_leaf += 1
            return f"L[{n_leaf - 1}]"
        if t.node is type(None):
            return "None"
        parts = [emit(c) for c in t.children]
        if t.node is tuple:
            return "(" + "".join(p + ", " for p in parts) + ")"
        nt = _NODES.get(t.node)
        spec = None if nt is None or nt.fields is None else nt.fields(t.aux)
        if spec is None:
            raise _NotCompilable
        cls, others, names = spec
        k = len(env)
        env[f"C{k}"], env[f"O{k}"], env[f"N{k}"] = cls, dict(others), tuple(names)
        lines.append(f"n{k} = _new(C{k}); d = n{k}.__dict__; d.update(O{k}); "
                     f"d.update(zip(N{k}, ({''.join(p + ', ' for p in parts)})))")
        return f"n{k}"

    root = emit(td)
    src = "def build(L):\n" + "".join(f"    {ln}\n" for ln in lines) + f"    return {root}\n"
    exec(compile(src, "<funcflux.tree builder>", "exec"), env)
    return env["build"]


def _unflatten(td: PyTreeDef, it: Any) -> Any:
    if td.node is None:
        return next(it)
    ch = []  # a loop rather than a comprehension: one frame less per node on Python 3.11
    for c in td.children:
        ch.append(next(it) if c.node is None else _unflatten(c, it))
    if td.node is tuple:
        return tuple(ch)
    return (_NODES.get(td.node) or _namedtuple_node(td.node)).unflatten(td.aux, ch)


def leaves(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list:
    """The leaves of ``tree``, left to right."""
    return flatten(tree, is_leaf)[0]


def structure(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> PyTreeDef:
    """The ``PyTreeDef`` of ``tree``."""
    return flatten(tree, is_leaf)[1]


def all_equal_structure(*trees: Any) -> bool:
    """Whether every tree has the same structure."""
    defs = [structure(t) for t in trees]
    return all(d == defs[0] for d in defs[1:])


# ----------------------------------------------------------------------------- paths
def flatten_with_path(tree: Any, is_leaf: Callable[[Any], bool] | None = None
                      ) -> tuple[list[tuple[tuple, Any]], PyTreeDef]:
    """Like :func:`flatten`, but each leaf comes as ``(path, leaf)``.

    >>> import funcflux as ff
    >>> pl, _ = ff.tree.flatten_with_path({"w": [1.0, 2.0]})
    >>> [ff.tree.keystr(p) for p, _ in pl]
    ["['w'][0]", "['w'][1]"]
    """
    out: list = []
    td = _flatten_path(tree, is_leaf, (), out)
    return out, td


def _flatten_path(x: Any, is_leaf: Any, path: tuple, out: list) -> PyTreeDef:
    nt = None if (is_leaf is not None and is_leaf(x)) else _node_type(x)
    if nt is None:
        out.append((path, x))
        return _LEAF
    children, aux = nt.flatten(x)
    children = list(children)
    keys = nt.keys(x, aux)
    n0 = len(out)
    defs = tuple(_flatten_path(c, is_leaf, path + (k,), out) for c, k in zip(children, keys))
    return PyTreeDef(type(x), aux, defs, len(out) - n0)


def leaves_with_path(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list:
    """``[(path, leaf), ...]`` for every leaf."""
    return flatten_with_path(tree, is_leaf)[0]


def flatten_up_to(treedef: PyTreeDef, tree: Any, name: str = "tree", root: str | None = None
                  ) -> list:
    """Flatten ``tree`` only as deep as ``treedef`` goes (``treedef`` is a prefix).

    A ``treedef`` leaf takes the whole matching subtree. A mismatch raises a
    ``ValueError`` that names the path where the structures part, written
    after ``root`` when given (``root="args"`` gives ``args[1]['w']``).

    >>> import funcflux as ff
    >>> ff.tree.flatten_up_to(ff.tree.structure((0, 0)), ([1, 2], {"a": 3}))
    [[1, 2], {'a': 3}]
    """
    known = _along(treedef, tree)
    if known is not None:
        return known
    out: list = []
    _up_to(treedef, tree, None, out, name, root)
    return out


def _where(root: str | None, path: tuple) -> str:
    return keystr(path) if root is None else root + "".join(str(k) for k in path)


def _up_to(td: PyTreeDef, x: Any, trail: Any, out: list, name: str, root: str | None) -> None:
    # ``trail`` is (parent trail, parent, node type, aux, child index), or None at the root:
    # the path is only worked out for an error message.
    if td.node is None:
        out.append(x)
        return
    nt = _node_type(x)
    if type(x) is not td.node or nt is None:
        raise ValueError(f"{name} at {_where(root, _trail_path(trail))} is of type "
                         f"{type(x).__name__}, where {_describe(td)} was expected.")
    children, aux = nt.flatten(x)
    same = True
    if aux is not td.aux:
        try:
            same = bool(aux == td.aux)
        except Exception:
            same = False
    subs = td.children
    if len(children) != len(subs) or not same:
        raise ValueError(f"{name} at {_where(root, _trail_path(trail))} has structure "
                         f"{_describe(structure(x))}, where {_describe(td)} was expected.")
    for i, (c, sub) in enumerate(zip(children, subs)):
        if sub.node is None:
            out.append(c)
        else:
            _up_to(sub, c, (trail, x, nt, aux, i), out, name, root)


def _trail_path(trail: Any) -> tuple:
    path = []
    while trail is not None:
        trail, x, nt, aux, i = trail
        path.append(list(nt.keys(x, aux))[i])
    return tuple(reversed(path))


# ----------------------------------------------------------------------------- map
def map(f: Callable[..., Any], tree: Any, *rest: Any,
        is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """Apply ``f`` to the leaves of ``tree`` (and the matching parts of ``rest``).

    >>> import funcflux as ff
    >>> ff.tree.map(lambda a, b: a + b, {"x": 1, "y": (2, 3)}, {"x": 10, "y": (20, 30)})
    {'x': 11, 'y': (22, 33)}
    """
    lv, td = flatten(tree, is_leaf)
    others = [flatten_up_to(td, r, f"argument {i + 2} of tree.map") for i, r in enumerate(rest)]
    return unflatten(td, [f(*xs) for xs in zip(lv, *others)])


def map_with_path(f: Callable[..., Any], tree: Any, *rest: Any,
                  is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """Like :func:`map`, with the leaf's path as ``f``'s first argument."""
    pl, td = flatten_with_path(tree, is_leaf)
    others = [flatten_up_to(td, r, f"argument {i + 2} of tree.map_with_path")
              for i, r in enumerate(rest)]
    return unflatten(td, [f(p, x, *xs) for (p, x), *xs in zip(pl, *others)])


# ----------------------------------------------------------------------------- ravel
def _shape(x: Any) -> tuple:
    s = getattr(x, "shape", None)  # tracers have a shape; np.shape would ask NumPy
    return tuple(s) if s is not None else np.shape(x)


def ravel(tree: Any) -> tuple[Any, Callable[[Any], Any]]:
    """Concatenate every leaf into one flat vector; return it and the inverse.

    Leaves are cast to their common result dtype; ``unravel`` casts back. Like
    ``Flux.destructure``, an array that is one object in several places (a
    tied weight) takes one entry in the vector, and ``unravel`` puts one new
    array back at all those places, so the tie is kept (and a gradient with
    respect to the vector sums over the places).

    >>> import numpy as np, funcflux as ff
    >>> v, unravel = ff.tree.ravel({"a": np.ones(2), "b": np.zeros((1, 2))})
    >>> v
    array([1., 1., 0., 0.])
    >>> unravel(v)["b"].shape
    (1, 2)
    >>> w = np.ones(3)
    >>> v, unravel = ff.tree.ravel({"enc": w, "dec": w})
    >>> v.shape, unravel(v)["enc"] is unravel(v)["dec"]
    ((3,), True)
    """
    from . import numpy as fnp  # the vector may be traced: build it with primitives

    all_leaves, td = flatten(tree)
    # One entry per distinct array object. Only arrays tie: equal scalars (Python's or
    # NumPy's, immutable) may be one object by accident, as in optim.setup.
    where: list[int] = []      # per leaf: its entry
    lv: list = []              # per entry: the leaf
    first: dict[int, int] = {}
    for x in all_leaves:
        array = hasattr(x, "shape") and not isinstance(x, np.generic)
        k = first.get(id(x)) if array else None
        if k is None:
            k = len(lv)
            lv.append(x)
            if array:
                first[id(x)] = k
        where.append(k)
    shapes = [_shape(x) for x in lv]
    dtypes = [np.dtype(getattr(x, "dtype", None) or np.result_type(x)) for x in lv]
    sizes = [int(np.prod(s)) for s in shapes]
    if not lv:
        return np.zeros(0), lambda v: unflatten(td, [])
    tied = len(lv) != len(all_leaves)
    # Python scalars are weak (NEP 50): a float32 tree with a Python int stays float32.
    common = np.result_type(*[x if isinstance(x, (int, float, bool)) else d
                              for x, d in zip(lv, dtypes)])
    vec = fnp.concatenate([fnp.reshape(x if d == common else fnp.astype(x, common), (-1,))
                           for x, d in zip(lv, dtypes)])
    splits = np.cumsum(sizes)[:-1].tolist()

    def unravel(v: Any) -> Any:
        if _shape(v) != (sum(sizes),):
            raise ValueError(f"unravel expects a vector of length {sum(sizes)}, got shape "
                             f"{_shape(v)}")
        parts = fnp.split(v, splits) if splits else [v]
        out = [fnp.reshape(p if getattr(p, "dtype", d) == d else fnp.astype(p, d), s)
               for p, s, d in zip(parts, shapes, dtypes)]
        return unflatten(td, [out[k] for k in where] if tied else out)

    return vec, unravel


# ----------------------------------------------------------------------------- stacking
def stack(trees: Sequence[Any], axis: int = 0) -> Any:
    """One tree whose leaves stack the matching leaves of ``trees`` (an ensemble).

    >>> import numpy as np, funcflux as ff
    >>> t = ff.tree.stack([{"w": np.zeros(2)}, {"w": np.ones(2)}])
    >>> t["w"].shape
    (2, 2)
    """
    from . import numpy as fnp

    trees = list(trees)
    if not trees:
        raise ValueError("tree.stack needs at least one tree")
    lv, td = flatten(trees[0])
    others = [flatten_up_to(td, t, f"tree {i + 1} given to tree.stack")
              for i, t in enumerate(trees[1:])]
    for i, t in enumerate(trees[1:]):  # leaves of trees[0] must be leaves in every tree
        if structure(t) != td:
            raise ValueError(f"tree.stack: tree {i + 1} has structure {structure(t)}, but tree "
                             f"0 has {td}.")
    return unflatten(td, [fnp.stack(list(xs), axis=axis) for xs in zip(lv, *others)])


def unstack(tree: Any, axis: int = 0) -> list:
    """The inverse of :func:`stack`: a list of trees, one per index along ``axis``.

    >>> import numpy as np, funcflux as ff
    >>> [t["w"].tolist() for t in ff.tree.unstack({"w": np.arange(4.0).reshape(2, 2)})]
    [[0.0, 1.0], [2.0, 3.0]]
    """
    pl, td = flatten_with_path(tree)
    if not pl:
        raise ValueError("tree.unstack needs a tree with at least one leaf")
    sizes = []
    for p, x in pl:
        s = _shape(x)
        if not -len(s) <= axis < len(s):
            raise ValueError(f"tree.unstack: axis {axis} is out of range for the leaf at "
                             f"{keystr(p)} of shape {s}.")
        sizes.append((keystr(p), s[axis]))
    if len({n for _, n in sizes}) > 1:
        raise ValueError("tree.unstack: the leaves differ in length along axis "
                         f"{axis}: " + ", ".join(f"{p} has {n}" for p, n in sizes))
    n = sizes[0][1]
    idxs = [(slice(None),) * (axis % len(_shape(x))) for _, x in pl]
    return [unflatten(td, [x[pre + (i,)] for (_, x), pre in zip(pl, idxs)]) for i in range(n)]


def at(where: Callable[[Any], Any], tree: Any, **kwargs: Any) -> Any:
    """A copy of ``tree`` with the node(s) ``where`` selects replaced: ``replace=`` or ``replace_fn=``.

    See ``funcflux.tree_at`` (parameter surgery on models).

    >>> import funcflux as ff
    >>> ff.tree.at(lambda t: t[1], [1, 2, 3], replace_fn=lambda v: v * 10)
    [1, 20, 3]
    """
    from .functors import tree_at
    return tree_at(where, tree, **kwargs)


__all__.append("at")
