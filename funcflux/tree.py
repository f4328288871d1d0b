"""Pytrees: nested containers whose leaves are arrays, flattened and rebuilt.

Built-in nodes are ``tuple``, ``list``, ``dict`` (keys sorted, as JAX does) and
namedtuples; ``None`` is a node with no children, so it holds no leaf. Other
classes join with :func:`register` or, for models, ``funcflux.functor`` (the
functor registry and this one are one table seen two ways: a functor class's
entry also carries its declaration, children and trainable children together).

There is no cache: every walk asks each node's flatten function for its
children, and functor classes have flatten and unflatten functions generated
for them once, when they are registered (``funcflux/_flatten.py``).

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
import functools
from typing import Any, Callable, Hashable, Iterable, NamedTuple, Sequence

import numpy as np

from .ops.common import shape as _shape

__all__ = [
    "PyTreeDef", "register", "flatten", "unflatten", "leaves", "structure", "map",
    "flatten_with_path", "map_with_path", "leaves_with_path", "keystr", "ravel",
    "all_equal_structure", "flatten_up_to", "DictKey", "SequenceKey", "AttrKey",
    "stack", "unstack", "at", "transpose", "reduce",
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
    # A class registered by ``funcflux.functor``: its declaration (child names, trainable
    # children; a ``funcflux._flatten.FunctorClass``), None for every other node.
    functor: Any = None


_NODES: dict[type, _NodeType] = {}


def register(
    cls: type,
    flatten: Callable[[Any], tuple[Iterable[Any], Any]],
    unflatten: Callable[[Any, list], Any],
    keys: Callable[[Any, Any], Sequence[Any]] | None = None,
) -> type:
    """Make ``cls`` a pytree node.

    Args:
      flatten: ``node -> (children, aux)``; ``aux`` is kept in the tree structure
        and must support ``==``.
      unflatten: ``(aux, children) -> node``.
      keys: optional ``(node, aux) -> keys``, one per child, used in paths;
        children are numbered ``[i]`` by default.

    >>> import funcflux as ff
    >>> class Pair:
    ...     def __init__(self, a, b): self.a, self.b = a, b
    >>> _ = ff.tree.register(Pair, lambda p: ((p.a, p.b), None), lambda aux, ch: Pair(*ch))
    >>> ff.tree.leaves(Pair(1, [2, 3]))
    [1, 2, 3]
    """
    if keys is None:
        keys = lambda node, aux: [SequenceKey(i) for i in builtins.range(len(list(flatten(node)[0])))]
    _NODES[cls] = _NodeType(flatten, unflatten, keys)
    return cls


def _register_node(cls: type, node: _NodeType) -> None:
    """Enter a node type built elsewhere (``funcflux.functor``'s generated functions)."""
    _NODES[cls] = node


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

    __slots__ = ("node", "aux", "children", "num_leaves", "_hash")

    def __init__(self, node: type | None, aux: Any, children: tuple, num_leaves: int):
        self.node = node  # None for a leaf
        self.aux = aux
        self.children = children
        self.num_leaves = num_leaves
        self._hash: int | None = None

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
    return out, (_flatten(tree, out) if is_leaf is None else _flatten_until(tree, is_leaf, out))


def _flatten(x: Any, out: list) -> PyTreeDef:
    # The walk of every training step (arguments, gradients, updates): kept short. A leaf
    # child is handled in the loop, without a call: most children of a layer are arrays.
    nt = _NODES.get(type(x))
    if nt is None:
        if not (isinstance(x, tuple) and hasattr(type(x), "_fields")):
            out.append(x)
            return _LEAF
        nt = _namedtuple_node(type(x))
    children, aux = nt.flatten(x)
    n0 = len(out)
    defs = []
    for c in children:
        if type(c) in _NODES or isinstance(c, tuple):
            defs.append(_flatten(c, out))
        else:
            out.append(c)
            defs.append(_LEAF)
    return PyTreeDef(type(x), aux, tuple(defs), len(out) - n0)


def flatten_key(tree: Any) -> tuple[list, tuple, tuple]:
    """``tree -> (leaves, skeleton, auxes)``: ``flatten`` with the structure as two flat
    tuples instead of a ``PyTreeDef``: each node's type and number of children in order
    (``None`` for a leaf), and each node's aux data. Two trees have equal structures
    exactly when both tuples are equal. The skeleton always hashes, and both compare in C:
    the cheap cache key of code that meets one structure many times (``jit``'s calls)."""
    out: list = []
    skel: list = []
    auxes: list = []
    _flatten_k(tree, out, skel, auxes)
    return out, tuple(skel), tuple(auxes)


def _flatten_k(x: Any, out: list, skel: list, auxes: list) -> None:
    nt = _NODES.get(type(x))
    if nt is None:
        if not (isinstance(x, tuple) and hasattr(type(x), "_fields")):
            out.append(x)
            skel.append(None)
            return
        nt = _namedtuple_node(type(x))
    children, aux = nt.flatten(x)
    skel.append((type(x), len(children)))
    auxes.append(aux)
    for c in children:
        if type(c) in _NODES or isinstance(c, tuple):
            _flatten_k(c, out, skel, auxes)
        else:
            out.append(c)
            skel.append(None)


def _flatten_until(x: Any, is_leaf: Callable[[Any], bool], out: list) -> PyTreeDef:
    if is_leaf(x):
        out.append(x)
        return _LEAF
    nt = _node_type(x)
    if nt is None:
        out.append(x)
        return _LEAF
    children, aux = nt.flatten(x)
    n0 = len(out)
    defs = [_flatten_until(c, is_leaf, out) for c in children]
    return PyTreeDef(type(x), aux, tuple(defs), len(out) - n0)


def unflatten(treedef: PyTreeDef, leaves: Iterable[Any]) -> Any:
    """Rebuild the tree described by ``treedef`` with ``leaves`` in order."""
    it = iter(leaves)
    try:
        tree = _unflatten(treedef, it)
    except StopIteration:
        raise ValueError(f"unflatten: too few leaves for {treedef} "
                         f"(it holds {treedef.num_leaves})") from None
    for _ in it:
        raise ValueError(f"unflatten: too many leaves for {treedef} "
                         f"(it holds {treedef.num_leaves})")
    return tree


def _unflatten(td: PyTreeDef, it: Any) -> Any:
    if td.node is None:
        return next(it)
    ch = []  # a loop rather than a comprehension: one frame less per node on Python 3.11
    for c in td.children:
        ch.append(next(it) if c.node is None else _unflatten(c, it))
    if td.node is tuple:
        return tuple(ch)
    return (_NODES.get(td.node) or _namedtuple_node(td.node)).unflatten(td.aux, ch)


def unflattener(treedef: PyTreeDef) -> Callable[[Sequence[Any]], Any]:
    """``unflatten(treedef, leaves)`` generated for one structure: a function of the list
    of leaves with the rebuilding written out (for code that rebuilds one structure many
    times, as a staged program's results)."""
    ns: dict[str, Any] = {}
    count = [0]

    def expr(td: PyTreeDef) -> str:
        if td.node is None:
            count[0] += 1
            return f"L[{count[0] - 1}]"
        kids = ", ".join(expr(c) for c in td.children)
        if td.node is tuple:
            return f"({kids}{',' if len(td.children) == 1 else ''})"
        if td.node is list:
            return f"[{kids}]"
        k = len(ns)
        ns[f"u{k}"] = (_NODES.get(td.node) or _namedtuple_node(td.node)).unflatten
        ns[f"a{k}"] = td.aux
        return f"u{k}(a{k}, [{kids}])"
    body = expr(treedef)
    if treedef.node is None and count[0] == 1:
        body = "L[0]"
    src = f"def rebuild(L):\n    return {body}\n"
    try:
        exec(compile(src, "<funcflux.tree.unflattener>", "exec"), ns)
    except (RecursionError, SyntaxError, MemoryError):  # very deep: the generic walk
        return lambda leaves: unflatten(treedef, leaves)
    return ns["rebuild"]


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


_NO_INITIALIZER = object()


def reduce(function: Callable[[Any, Any], Any], tree: Any, initializer: Any = _NO_INITIALIZER,
           is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """Fold ``function`` over the leaves of ``tree``, left to right (``functools.reduce``).

    ``initializer`` starts the fold; without it the first leaf does, and a tree with
    no leaf is an error.

    >>> import funcflux as ff
    >>> ff.tree.reduce(lambda a, b: a + b, {"x": 1, "y": (2, 3)})
    6
    >>> ff.tree.reduce(max, [], initializer=0)
    0
    """
    lv = leaves(tree, is_leaf)
    if initializer is _NO_INITIALIZER:
        if not lv:
            raise TypeError("tree.reduce: the tree has no leaf and no initializer was given; "
                            "pass initializer= for the value of an empty tree.")
        return functools.reduce(function, lv)
    return functools.reduce(function, lv, initializer)


def transpose(outer_treedef: PyTreeDef, inner_treedef: PyTreeDef | None,
              pytree_to_transpose: Any) -> Any:
    """Turn a tree of trees inside out: an ``outer`` tree whose leaves are ``inner`` trees
    becomes an ``inner`` tree whose leaves are ``outer`` trees (JAX's ``tree.transpose``).

    ``inner_treedef=None`` takes the structure of the first inner tree. Every inner tree
    must have exactly that structure.

    >>> import funcflux as ff
    >>> pairs = [(1, "a"), (2, "b"), (3, "c")]
    >>> ff.tree.transpose(ff.tree.structure([0, 0, 0]), ff.tree.structure((0, 0)), pairs)
    ([1, 2, 3], ['a', 'b', 'c'])
    """
    subs = flatten_up_to(outer_treedef, pytree_to_transpose, "tree.transpose's pytree")
    if inner_treedef is None:
        if not subs:
            raise ValueError("tree.transpose: the outer structure has no leaf, so the inner "
                             "structure cannot be inferred; pass inner_treedef.")
        inner_treedef = structure(subs[0])
    rows = []
    for i, sub in enumerate(subs):
        if structure(sub) != inner_treedef:
            raise ValueError(f"tree.transpose: inner tree {i} (in the outer tree's leaf "
                             f"order) has structure {structure(sub)}, where {inner_treedef} "
                             "was expected.")
        rows.append(leaves(sub))
    cols = [unflatten(outer_treedef, [r[j] for r in rows])
            for j in range(inner_treedef.num_leaves)]
    return unflatten(inner_treedef, cols)


# ----------------------------------------------------------------------------- ravel
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


# ----------------------------------------------------------------------------- surgery
class _Marker:
    """Stands at one leaf position of :func:`at`'s proxy, so ``where`` selects by position."""

    __slots__ = ("i",)

    def __init__(self, i: int):
        self.i = i


_NOTHING = object()

AT_NEEDS_ONE: str = "tree.at needs exactly one of replace= or replace_fn="
AT_NOT_A_NODE: str = ("tree.at: where returned something that is not a node of the tree "
                      "(select parts of its argument, e.g. lambda m: m.layers[0].weight).")


def at(where: Callable[[Any], Any], tree: Any, replace: Any = _NOTHING,
       replace_fn: Callable[[Any], Any] | None = None,
       is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """A copy of ``tree`` with the node(s) that ``where`` selects replaced (Equinox's tree_at).

    ``where(tree)`` returns one node or a tuple/list of nodes (``lambda m:
    m.layers[0].weight``); give ``replace`` (a value, or a sequence matching the
    selection) or ``replace_fn(old) -> new``. Nodes are matched by position, not
    value: equal or shared values elsewhere are untouched. Also ``funcflux.tree_at``.

    >>> import funcflux as ff
    >>> ff.tree.at(lambda t: t["b"][0], {"a": 1, "b": [2, 3]}, replace=20)
    {'a': 1, 'b': [20, 3]}
    >>> ff.tree.at(lambda t: t[1], [1, 2, 3], replace_fn=lambda v: v * 10)
    [1, 20, 3]
    """
    if (replace is _NOTHING) == (replace_fn is None):
        raise TypeError(AT_NEEDS_ONE)
    # A proxy with the same nodes but a unique marker at every leaf: ``where`` picks out
    # positions by identity, never by value.
    lv, td = flatten(tree, is_leaf)
    proxy = unflatten(td, [_Marker(i) for i in builtins.range(len(lv))])
    picked = where(proxy)
    many = isinstance(picked, (tuple, list)) and not _is_node_in(picked, proxy)
    nodes = list(picked) if many else [picked]
    if replace_fn is None:
        values = list(replace) if many else [replace]
        if len(values) != len(nodes):
            raise ValueError(f"tree.at: where selected {len(nodes)} nodes but replace has "
                             f"{len(values)} values.")
        new_for: Callable[[int, Any], Any] = lambda i, old: values[i]
    else:
        new_for = lambda i, old: replace_fn(old)
    targets = {id(n): i for i, n in enumerate(nodes)}
    if len(targets) != len(nodes):
        raise ValueError("tree.at: where selected the same node twice.")
    found: set[int] = set()
    out = _at(tree, proxy, targets, new_for, found)
    if len(found) != len(nodes):
        raise ValueError(AT_NOT_A_NODE)
    return out


def _at(orig: Any, prox: Any, targets: dict[int, int], new_for: Callable[[int, Any], Any],
        found: set[int]) -> Any:
    # A module-level recursion (not a closure calling itself), so a call leaves no
    # reference cycle behind: its arrays are freed by reference counting alone.
    k = id(prox)
    if k in targets:
        found.add(k)
        return new_for(targets[k], orig)
    if type(prox) is _Marker:
        return orig
    nt = _node_type(orig)
    children, aux = nt.flatten(orig)  # the proxy was rebuilt from orig's structure
    pch, _ = nt.flatten(prox)
    return nt.unflatten(aux, [_at(o, p, targets, new_for, found)
                              for o, p in zip(children, pch)])


def _is_node_in(candidate: Any, proxy: Any) -> bool:
    """Whether ``candidate`` (a tuple/list) is itself a node inside ``proxy``."""
    todo = [proxy]
    while todo:
        n = todo.pop()
        if n is candidate:
            return True
        nt = None if type(n) is _Marker else _node_type(n)
        if nt is not None:
            todo.extend(nt.flatten(n)[0])
    return False

