"""Indexing primitives: ``getitem`` and its transposes, the scatters; their binders.

An index such as ``x[i, 1:, None, j]`` is split in two before ``bind``:

- the *arrays* (integer index arrays, possibly traced: an ``argmax`` under
  ``vmap`` is a batched tracer) become positional arguments of the primitive,
  so every transform sees them and batching rules can batch them;
- the static rest (ints, slices, ``None``, and an ``ARR`` marker where each
  array goes) is the ``idx`` parameter. ``...`` is expanded away and boolean
  masks become their ``nonzero`` arrays, as NumPy itself does.

``Iota`` entries are index arrays known from shapes alone (``arange`` along one
axis): ``diagonal``, ``take_along_axis`` and the batching rules use them, so
they never hold a constant array and ``impl`` builds them in the array module
of the data (NumPy or CuPy).

``getitem`` is linear in ``x``; its transpose is ``scatter_add`` (a zero array
with the cotangent added at the indexed places, so repeated indices
accumulate), whose transpose is ``getitem`` again. ``scatter_set`` (NumPy's
``z[idx] = v``) serves ``index_update``.

NumPy's placement rule for advanced indices is followed everywhere: when the
advanced entries (arrays and, among them, ints) are adjacent, their broadcast
dimensions replace them in place; when a slice or ``None`` separates them, the
broadcast dimensions go first. ``_layout`` computes where that block lands.

Binders, for the rules of every family and for the NumPy surface: ``getitem(x,
index)``, ``take(a, indices, axis=None)``, ``take_along_axis(a, indices, axis)``,
``diagonal(a, offset=0, axis1=0, axis2=1)``, ``index_add(x, index, values)`` and
``index_update(x, index, values)`` (public as they are), and ``_xp(x)``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core import abstract
from ..core.backend import array_module
from ..core.primitive import primitive
from ..core.trace import Tracer, module_value
from .common import ndim, norm_axis, shape
from .base import astype, bdim_to_front, broadcast_to, move_bdim, moveaxis, reshape, \
    reshape_p, transpose, unbroadcast
from .elementwise import equal, where_p
from .common import shape as _shape_of  # the scatters' parameter named shape hides it

__all__ = ["getitem_p", "scatter_add_p", "scatter_set_p", "getitem", "take", "take_along_axis",
           "diagonal", "index_add", "index_update"]

BATCHED_MASK = (
    "{what}: the boolean mask is batched under vmap, so the number of selected elements "
    "differs between examples and the result has no fixed shape. Keep the shape fixed "
    "with np.where(mask, x, fill) (or multiply by the mask), or close over a mask that "
    "does not depend on the mapped inputs."
)
BAD_INDEX = ("only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and "
             "integer or boolean arrays are valid indices")


# ----------------------------------------------------------------------------- static index
class _Arr:
    """Marks where the next positional index array goes in ``idx``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ARR"

    def __reduce__(self) -> str:
        return "ARR"


ARR = _Arr()


@dataclasses.dataclass(frozen=True)
class Iota:
    """The index array ``arange(start, start + n)`` laid along axis ``pos`` of ``nd`` axes."""
    n: int
    nd: int = 1
    pos: int = 0
    start: int = 0

    @property
    def shape(self) -> tuple:
        return (1,) * self.pos + (self.n,) + (1,) * (self.nd - self.pos - 1)

    def make(self, xp: Any) -> Any:
        return xp.arange(self.start, self.start + self.n).reshape(self.shape)


def _index(xp: Any, idx: tuple, arrays: tuple) -> tuple:
    """The concrete NumPy/CuPy index: arrays and iotas put in their places."""
    if not arrays:
        for e in idx:
            if type(e) is Iota:
                break
        else:
            return idx  # basic indexing: the parameter is the index
    if xp is not np:  # user index lists arrive as NumPy arrays
        arrays = tuple(xp.asarray(a) for a in arrays)
    it = iter(arrays)
    return tuple(next(it) if e is ARR else e.make(xp) if type(e) is Iota else e for e in idx)


def _layout(idx: tuple, arr_shapes: list) -> tuple:
    """``(bshape, pos)``: the advanced entries' broadcast shape and its output position.

    ``bshape`` is ``None`` for basic indexing. Ints count as advanced entries
    whenever an array is present (NumPy's rule), which decides adjacency.
    """
    shapes, where = [], []
    it = iter(arr_shapes)
    for k, e in enumerate(idx):
        if e is ARR:
            shapes.append(next(it))
            where.append(k)
        elif type(e) is Iota:
            shapes.append(e.shape)
            where.append(k)
    if not where:
        return None, 0
    where = sorted(where + [k for k, e in enumerate(idx) if type(e) is int])
    bshape = tuple(np.broadcast_shapes(*shapes))
    if where[-1] - where[0] != len(where) - 1:
        return bshape, 0  # separated by a slice or None: the block goes first
    return bshape, sum(1 for e in idx[:where[0]] if e is None or type(e) is slice)


def _out_shape(xshape: tuple, idx: tuple, arr_shapes: list) -> tuple:
    """The shape of ``x[idx]`` without computing it."""
    bshape, pos = _layout(idx, arr_shapes)
    basic: list[int] = []
    d = 0
    for e in idx:
        if e is None:
            basic.append(1)
        elif type(e) is slice:
            basic.append(len(range(*e.indices(xshape[d]))))
            d += 1
        else:
            d += 1
    basic.extend(xshape[d:])
    if bshape is None:
        return tuple(basic)
    return tuple(basic[:pos]) + bshape + tuple(basic[pos:])


def _concrete(v: Any, what: str) -> Any:
    """The real array under ``v``'s tracers; an error if any of them batches it."""
    while isinstance(v, Tracer):
        a = v.aval
        if tuple(shape(a)) != tuple(v.shape):
            raise IndexError(BATCHED_MASK.format(what=what))
        v = a
    return v


def _xp(x: Any) -> Any:
    """The array module of the data under ``x`` (for constants built from shapes)."""
    return array_module(module_value(x))


def _int_slice(s: slice) -> bool:
    """Whether a slice's bounds are Python ints or None (no conversion needed)."""
    return all(v is None or type(v) is int for v in (s.start, s.stop, s.step))


def _as_int(v: Any) -> Any:
    return v if v is None or type(v) is int else int(v) if isinstance(v, np.integer) else v


def _parse(xshape: tuple, index: Any) -> tuple[tuple, tuple]:
    """Split a NumPy index into ``(idx, arrays)``; see the module docstring."""
    if type(index) is not tuple:
        index = (index,)
    entries: list = []
    arrays: list = []
    ell = -1
    used = 0
    for e in index:
        if e is None:
            entries.append(None)
        elif type(e) is slice:
            if not _int_slice(e):
                e = slice(_as_int(e.start), _as_int(e.stop), _as_int(e.step))
            entries.append(e)
            used += 1
        elif e is Ellipsis:
            if ell >= 0:
                raise IndexError("an index can only have a single ellipsis ('...')")
            ell = len(entries)
        elif isinstance(e, (bool, np.bool_)):
            raise IndexError("funcflux does not support a scalar boolean index "
                             f"(x[{e}]); use x[None] to add an axis.")
        elif isinstance(e, (int, np.integer)):
            entries.append(int(e))
            used += 1
        else:
            a = e if isinstance(e, Tracer) or hasattr(e, "dtype") else np.asarray(e)
            kind = a.dtype.kind
            if kind not in "iub" and shape(a) and 0 in shape(a) and not isinstance(a, Tracer):
                a, kind = np.asarray(a, dtype=np.intp), "i"  # x[[]]: an empty int index
            if kind == "b":
                m = _concrete(a, "x[mask]")
                if not shape(m):
                    raise IndexError("funcflux does not support a 0-d boolean index; use "
                                     "x[None] to add an axis.")
                entries.append(("mask", m))
                used += len(shape(m))
            elif kind in "iu":
                if not shape(a) and not isinstance(a, Tracer):
                    entries.append(int(a))
                else:
                    entries.append(ARR)
                    arrays.append(a)
                used += 1
            else:
                raise IndexError(BAD_INDEX)
    nd = len(xshape)
    if used > nd:
        raise IndexError(f"too many indices for array: array is {nd}-dimensional, but "
                         f"{used} were indexed")
    if ell >= 0:
        entries[ell:ell] = [slice(None)] * (nd - used)
    if not any(type(e) is tuple for e in entries):
        return tuple(entries), tuple(arrays)
    # Boolean masks: check their shape against the axes they cover, then use their nonzero.
    idx: list = []
    out_arrays: list = []
    it = iter(arrays)
    d = 0
    for e in entries:
        if type(e) is tuple:
            m = e[1]
            for j, n in enumerate(shape(m)):
                if xshape[d + j] != n:
                    raise IndexError(
                        f"boolean index did not match indexed array along axis {d + j}; "
                        f"size of axis is {xshape[d + j]} but size of corresponding boolean "
                        f"axis is {n}")
            for a in array_module(m).nonzero(m):
                idx.append(ARR)
                out_arrays.append(a)
            d += len(shape(m))
            continue
        if e is ARR:
            out_arrays.append(next(it))
        if e is not None:
            d += 1
        idx.append(e)
    return tuple(idx), tuple(out_arrays)


# ----------------------------------------------------------------------------- primitives
def _getitem_impl(x: Any, *arrays: Any, idx: tuple) -> Any:
    return x[_index(array_module(x), idx, arrays)]


def _unique(idx: tuple, arr_shapes: list) -> bool:
    """True when no two index points coincide (iotas span every non-trivial axis)."""
    if not any(e is ARR for e in idx):
        return True
    bshape, _ = _layout(idx, arr_shapes)
    covered = {len(bshape) - e.nd + e.pos for e in idx if type(e) is Iota}
    return all(n <= 1 or k in covered for k, n in enumerate(bshape))


def _scatter_impl(mode: str) -> Any:
    def impl(v: Any, *arrays: Any, shape: tuple, idx: tuple) -> Any:
        xp = array_module(v)
        z = xp.zeros(shape, dtype=v.dtype)
        index = _index(xp, idx, arrays)
        if mode == "set" or _unique(idx, [a.shape for a in arrays]):
            z[index] = v
        else:
            # Repeated indices accumulate (for CuPy, xp.add.at is cupyx.scatter_add).
            xp.add.at(z, index, v)
        return z

    def specialize(vals: Any, shape: tuple, idx: tuple) -> Any:
        # staged (funcflux.transforms.staging): whether index points can repeat is
        # decided by the index's structure and shapes, once
        if array_module(vals[0]) is not np:
            return None
        accumulate = mode != "set" and not _unique(idx, [np.shape(a) for a in vals[1:]])
        dtype = vals[0].dtype

        def run(v: Any, *arrays: Any) -> Any:
            z = np.zeros(shape, dtype=dtype)
            index = _index(np, idx, arrays)
            if accumulate:
                np.add.at(z, index, v)
            else:
                z[index] = v
            return z
        return run
    impl.specialize = specialize  # type: ignore[attr-defined]
    return impl


getitem_p = primitive("getitem", _getitem_impl)
scatter_add_p = primitive("scatter_add", _scatter_impl("add"))
scatter_set_p = primitive("scatter_set", _scatter_impl("set"))
# getitem has no shape rule: on a zero-stride stand-in a basic index is a view (no memory)
# and an advanced one allocates its result only.
for _p in (scatter_add_p, scatter_set_p):
    _p.def_abstract(lambda v, *arrays, shape, idx: abstract.ShapeDtypeStruct(shape, v.dtype))


def _data_only(rule: Any) -> Any:
    """A variadic rule for argument 0; index arrays (the rest) carry no derivative."""
    return lambda i, *a, **p: rule(*a, **p) if i == 0 else None


getitem_p.def_vjp(_data_only(lambda ct, ans, x, *arrays, idx:
                             scatter_add_p(ct, *arrays, shape=shape(x), idx=idx)), variadic=True)
getitem_p.def_jvp(_data_only(lambda t, ans, x, *arrays, idx:
                             getitem_p(t, *arrays, idx=idx)), variadic=True)
scatter_add_p.def_vjp(_data_only(lambda ct, ans, v, *arrays, shape, idx:
                                 unbroadcast(getitem_p(ct, *arrays, idx=idx), v)), variadic=True)
scatter_add_p.def_jvp(_data_only(lambda t, ans, v, *arrays, shape, idx:
                                 scatter_add_p(t, *arrays, shape=shape, idx=idx)), variadic=True)


def _set_vjp(ct: Any, ans: Any, v: Any, *arrays: Any, shape: tuple, idx: tuple) -> Any:
    g = getitem_p(ct, *arrays, idx=idx)
    if not _unique(idx, [_shape_of(a) for a in arrays]):
        # Of repeated indices only the write that landed gets the cotangent: find it by
        # scattering each element's position and reading back who won.
        gs = _shape_of(g)
        ids = _xp(ct).arange(int(np.prod(gs))).reshape(gs)
        won = equal(getitem_p(scatter_set_p(ids, *arrays, shape=shape, idx=idx),
                              *arrays, idx=idx), ids)
        g = where_p(won, g, 0.0)
    return unbroadcast(g, v)


scatter_set_p.def_vjp(_data_only(_set_vjp), variadic=True)
scatter_set_p.def_jvp(_data_only(lambda t, ans, v, *arrays, shape, idx:
                                 scatter_set_p(t, *arrays, shape=shape, idx=idx)), variadic=True)


# ----------------------------------------------------------------------------- batching
def _unbatched_shapes(arrays: list, dims: list) -> list:
    out = []
    for a, d in zip(arrays, dims):
        s = _shape_of(a)
        out.append(s if d is None else s[:d] + s[d + 1:])
    return out


def _batched_arrays(arrays: list, dims: list, nb: int) -> list:
    """Batched index arrays as ``(B, 1.., *shape)`` so that B leads the broadcast."""
    out = []
    for a, d in zip(arrays, dims):
        if d is not None:
            a = move_bdim(a, d, 0)
            s = _shape_of(a)
            if len(s) - 1 < nb:
                a = reshape_p(a, shape=s[:1] + (1,) * (nb - len(s) + 1) + s[1:])
        out.append(a)
    return out


def _data_bdim(idx: tuple, arr_shapes: list) -> int:
    """Where the batch axis of ``x[(slice(None),) + idx]`` lands (x batched first)."""
    bshape, pos = _layout((slice(None),) + idx, arr_shapes)
    return 0 if bshape is None or pos else len(bshape)


def _block_perm(nout: int, nb: int, pos: int) -> tuple | None:
    """Axes taking ``(B, basic[:pos], bshape, rest)`` to ``(B, bshape, basic[:pos], rest)``."""
    if not pos:
        return None
    return (0,) + tuple(range(1 + pos, 1 + pos + nb)) + tuple(range(1, 1 + pos)) + \
        tuple(range(1 + pos + nb, nout))


def _getitem_batch(args: list, dims: list, idx: tuple) -> tuple:
    x, arrays = args[0], list(args[1:])
    dx, adims = dims[0], list(dims[1:])
    shapes = _unbatched_shapes(arrays, adims)
    if all(d is None for d in adims):
        return (getitem_p(move_bdim(x, dx, 0), *arrays, idx=(slice(None),) + idx),
                _data_bdim(idx, shapes))
    n = next(_shape_of(a)[d] for a, d in zip(arrays, adims) if d is not None)
    bshape, pos = _layout(idx, shapes)
    arrays = _batched_arrays(arrays, adims, len(bshape))
    if dx is None:  # the batch axis is the first of the advanced block
        return getitem_p(x, *arrays, idx=idx), pos
    # Pair every example with its own indices: an iota over the batch axis leads the
    # advanced block, which then comes first; put it back where one example has it.
    out = getitem_p(move_bdim(x, dx, 0), *arrays, idx=(Iota(n, len(bshape) + 1),) + idx)
    perm = _block_perm(ndim(out), len(bshape), pos)
    if perm is not None:
        out = transpose(out, tuple(np.argsort(perm).tolist()))
    return out, 0


def _scatter_batch(p: Any) -> Any:
    def rule(args: list, dims: list, shape: tuple, idx: tuple) -> tuple:
        v, arrays = args[0], list(args[1:])
        dv, adims = dims[0], list(dims[1:])
        shapes = _unbatched_shapes(arrays, adims)
        if all(d is None for d in adims):
            n = _shape_of(v)[dv]
            v = move_bdim(v, dv, _data_bdim(idx, shapes))
            return p(v, *arrays, shape=(n,) + shape, idx=(slice(None),) + idx), 0
        n = next(_shape_of(a)[d] for a, d in zip(arrays, adims) if d is not None)
        bshape, pos = _layout(idx, shapes)
        arrays = _batched_arrays(arrays, adims, len(bshape))
        if dv is None:
            v = broadcast_to(v, _out_shape(shape, idx, shapes))
        v = bdim_to_front([v], [dv], n)[0]
        perm = _block_perm(ndim(v), len(bshape), pos)
        if perm is not None:
            v = transpose(v, perm)
        return p(v, *arrays, shape=(n,) + shape, idx=(Iota(n, len(bshape) + 1),) + idx), 0
    return rule


getitem_p.def_batch(_getitem_batch)
scatter_add_p.def_batch(_scatter_batch(scatter_add_p))
scatter_set_p.def_batch(_scatter_batch(scatter_set_p))


# ----------------------------------------------------------------------------- binders
def getitem(x: Any, index: Any) -> Any:
    """``x[index]`` with every NumPy index kind; index arrays may be traced.

    >>> import numpy as np, funcflux as ff
    >>> ff.grad(lambda x: np.sum(x[np.array([0, 0, 2])]))(np.ones(3))
    array([2., 0., 1.])
    """
    t = type(index)
    if (t is int or t is slice and _int_slice(index)) and shape(x):  # the hottest: x[0], x[1:]
        return getitem_p(x, idx=(index,))
    # A 0-d value (a Python float passed to grad included) goes through _parse for
    # NumPy's own IndexError, never the impl's error about a NumPy scalar.
    idx, arrays = _parse(shape(x), index)
    return getitem_p(x, *arrays, idx=idx)


def _values_for(x: Any, idx: tuple, arrays: tuple, values: Any) -> Any:
    """``values`` cast to ``x``'s dtype and broadcast to the shape of ``x[idx]``."""
    g = _out_shape(shape(x), idx, [_shape_of(a) for a in arrays])
    dt = x.dtype if hasattr(x, "dtype") else np.result_type(x)
    if not hasattr(values, "dtype"):
        values = _xp(x).asarray(values, dtype=dt)
    elif values.dtype != dt:
        values = astype(values, dt)
    s = _shape_of(values)
    if s == g:
        return values
    np.broadcast_shapes(s, g)  # NumPy's error for incompatible shapes
    return broadcast_to(values, g)


def index_add(x: Any, index: Any, values: Any) -> Any:
    """A copy of ``x`` with ``values`` added at ``x[index]`` (repeats accumulate).

    The functional ``x[index] += values``; differentiable in ``x`` and ``values``.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.index_add(np.zeros(3), np.array([0, 0, 2]), 1.0)
    array([2., 0., 1.])
    """
    idx, arrays = _parse(shape(x), index)
    v = _values_for(x, idx, arrays, values)
    return x + scatter_add_p(v, *arrays, shape=shape(x), idx=idx)


def index_update(x: Any, index: Any, values: Any) -> Any:
    """A copy of ``x`` with ``x[index]`` set to ``values``.

    The functional ``x[index] = values``; differentiable in ``x`` and ``values``.
    With repeated indices one of the writes lands (NumPy's choice), and only it
    gets a derivative.

    >>> import numpy as np, funcflux.numpy as fnp
    >>> fnp.index_update(np.zeros(3), slice(1, None), np.array([5.0, 6.0]))
    array([0., 5., 6.])
    """
    idx, arrays = _parse(shape(x), index)
    v = _values_for(x, idx, arrays, values)
    g = _out_shape(shape(x), idx, [_shape_of(a) for a in arrays])
    covered = scatter_set_p(_xp(x).ones(g, dtype=bool), *arrays, shape=shape(x), idx=idx)
    return where_p(covered, scatter_set_p(v, *arrays, shape=shape(x), idx=idx), x)


def take(a: Any, indices: Any, axis: int | None = None) -> Any:
    """``a[..., indices, ...]`` along ``axis`` (of the flattened ``a`` when ``None``)."""
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    axis = norm_axis(axis, ndim(a))[0]
    return getitem(a, (slice(None),) * axis + (indices,))


def take_along_axis(a: Any, indices: Any, axis: int | None) -> Any:
    """Gather along ``axis`` with per-position integer ``indices`` (as many axes as ``a``)."""
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    if not hasattr(indices, "dtype"):  # tracers and arrays have one
        indices = np.asarray(indices)
    nd = ndim(a)
    axis = norm_axis(axis, nd)[0]
    s = shape(a)
    idx = tuple(ARR if d == axis else Iota(s[d], nd, d) for d in range(nd))
    return getitem_p(a, indices, idx=idx)


def _diag_iotas(n1: int, n2: int, offset: int) -> tuple[Iota, Iota]:
    """The row and column iotas of the ``offset``-th diagonal of an ``n1 x n2`` matrix."""
    if offset >= 0:
        m = max(0, min(n1, n2 - offset))
        return Iota(m), Iota(m, start=offset)
    m = max(0, min(n1 + offset, n2))
    return Iota(m, start=-offset), Iota(m)


def diagonal(a: Any, offset: int = 0, axis1: int = 0, axis2: int = 1) -> Any:
    """The ``offset``-th diagonal over ``axis1`` and ``axis2``, as the last axis."""
    nd = ndim(a)
    if nd < 2:
        raise ValueError("diag requires an array of at least two dimensions")
    ax1, ax2 = norm_axis(axis1, nd)[0], norm_axis(axis2, nd)[0]
    if ax1 == ax2:
        raise ValueError("axis1 and axis2 cannot be the same")
    s = shape(a)
    i1, i2 = _diag_iotas(s[ax1], s[ax2], int(offset))
    idx = tuple(i1 if d == ax1 else i2 if d == ax2 else slice(None) for d in range(nd))
    out = getitem_p(a, idx=idx)
    pos = min(ax1, ax2) if abs(ax1 - ax2) == 1 else 0
    return moveaxis(out, pos, -1) if pos != nd - 2 else out
