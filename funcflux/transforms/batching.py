"""vmap: a tracer holds a whole batch and remembers which axis is the batch axis.

Each primitive has a batching rule that receives the unwrapped arguments with
their batch axes (``bdim``: an int, or ``None`` for ``not_mapped``) and calls
the vectorised operation once, moving axes where the operation needs them.
There is never a Python loop over the batch. Rules are written with
primitives, so ``vmap`` of ``grad`` batches the backward pass and ``jacrev`` is
one batched pullback.

``vmap(..., axis_name="i")`` names the batch axis, so that code inside can reduce
over it with the collectives of ``funcflux.lax`` (``psum``, ``pmean``, ``all_gather``,
``axis_index``...). The names in scope are a dynamic environment, as in JAX: each
named ``vmap`` pushes ``(name, trace)`` onto a context variable for the duration of
the call (so threads and async tasks each see their own), and a collective looks its
name up there. A collective is an :class:`~funcflux.ops.collectives.AxisPrimitive`
carrying the trace of its axis: that trace applies the collective's axis rule, and
every other trace (another ``vmap``, ``grad``, ``jvp``) treats it as an ordinary
primitive.
"""
from __future__ import annotations

import contextvars
from typing import Any, Callable, Hashable, Sequence

from ..core.backend import array_module
from ..core.trace import Trace, Tracer, escaped, find_top_trace, module_value
from ..ops.collectives import AxisPrimitive
from .. import tree
from . import edge
from .custom import CustomJVPRule, CustomVJPRule, bind_custom

CONTROL_FLOW = (
    "vmap: Python control flow (bool, if, while, int(), float()) on a batched value is "
    "ambiguous: each example in the batch may take a different branch. Write the branch "
    "with np.where(cond, a, b) so that every example takes its own."
)


class BatchTracer(Tracer):
    __slots__ = ("value", "bdim")

    def __init__(self, trace: "BatchTrace", value: Any, bdim: int):
        self._trace = trace
        self.value = value
        self.bdim = bdim

    @property
    def shape(self) -> tuple:
        s = tuple(self.value.shape)
        return s[:self.bdim] + s[self.bdim + 1:]

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def aval(self) -> Any:
        if self._trace.dead:
            raise escaped(self)
        return self.value

    def _repr_extra(self) -> str:
        return f", batch_axis={self.bdim}"

    def __bool__(self) -> bool:
        raise escaped(self) if self._trace.dead else TypeError(CONTROL_FLOW)

    __float__ = __int__ = __index__ = __bool__  # type: ignore[assignment]


def _split(trace: "BatchTrace", xs: Sequence[Any]) -> tuple[list, list]:
    """``xs`` as values and batch axes: ``trace``'s tracers unwrapped, others unbatched."""
    vals, dims = [], []
    for a in xs:
        if type(a) is BatchTracer and a._trace is trace:
            vals.append(a.value)
            dims.append(a.bdim)
        else:
            vals.append(a)
            dims.append(None)
    return vals, dims


UNBOUND = (
    "{fn}: the axis name {name!r} is not bound here; the names bound are {bound}. "
    "Collectives run inside a vmap that names its axis: ff.vmap(f, axis_name={name!r})."
)

# The named axes in scope, innermost last: ((name, BatchTrace), ...). A context variable,
# so each thread and async task sees only the vmaps it is itself inside.
_AXES: contextvars.ContextVar[tuple] = contextvars.ContextVar("funcflux_vmap_axes", default=())


def bound_axis(fn: str, name: Hashable) -> "BatchTrace":
    """The trace of the innermost ``vmap`` whose ``axis_name`` is ``name`` (``fn`` names the
    collective in the error when there is none)."""
    env = _AXES.get()
    for n, t in reversed(env):
        if n == name:
            return t
    bound = ", ".join(f"{n!r} (size {t.axis_size})" for n, t in reversed(env)) or "none"
    raise NameError(UNBOUND.format(fn=fn, name=name, bound=bound))


class BatchTrace(Trace):
    # xp: the array module of the mapped inputs, for values made from nothing (axis_index);
    # looked up only for a named axis
    __slots__ = ("axis_size", "axis_name", "xp")

    def __init__(self, axis_size: int, axis_name: Hashable | None = None, mapped: Sequence = ()):
        super().__init__()
        self.axis_size = axis_size
        self.axis_name = axis_name
        self.xp = None if axis_name is None else array_module(*[module_value(x) for x in mapped])

    def __repr__(self) -> str:
        return f"vmap axis {self.axis_name!r} of size {self.axis_size}"

    def process_primitive(self, prim: Any, args: tuple, params: dict) -> Any:
        vals, dims = _split(self, args)
        if type(prim) is AxisPrimitive and params["axis"] is self:  # a collective over us
            out, d = prim.axis_rule(self.axis_size, vals, dims, **params)
        else:
            out, d = prim.batch_rule()(vals, dims, **params)
        if d is None:
            return out
        return BatchTracer(self, out, d)


    # -- custom rules (see custom.py) ------------------------------------------------
    def _unwrap(self, xs: list) -> tuple[list, list]:
        return _split(self, xs)

    def process_custom_vjp(self, rule: Any, xs: list) -> list:
        vals, dims = self._unwrap(xs)
        if find_top_trace(tuple(vals)) is None:  # nothing below needs the rule
            return rule.fun(*xs)
        n, box = self.axis_size, {}

        def fwd(*v: Any) -> tuple[list, list]:
            k: list = []

            def both(*a: Any) -> list:
                o, r = rule.fwd(*a)
                k.append(len(o))
                return list(o) + list(r)
            flat, fd = _run_batched(both, n, v, dims, self.axis_name)
            m = k[0]
            box["res"] = fd[m:]
            return _outs_to_front(flat[:m], fd[:m], box), flat[m:]

        def bwd(res: list, cts: list) -> list:
            k = len(res)
            cdims = [None if c is None else d for c, d in zip(cts, box["out"])]
            cs, cd = _run_batched(lambda *a: rule.bwd(list(a[:k]), list(a[k:])), n,
                                  list(res) + list(cts), box["res"] + cdims, self.axis_name)
            return [_ct_to_dim(c, e, d, n) for c, e, d in zip(cs, cd, dims)]

        batched = CustomVJPRule(rule.name, self._batched_fun(rule, dims, box), fwd, bwd)
        return self._wrap_custom(bind_custom(batched, vals), box)

    def process_custom_jvp(self, rule: Any, xs: list) -> list:
        vals, dims = self._unwrap(xs)
        if find_top_trace(tuple(vals)) is None:
            return rule.fun(*xs)
        n, box = self.axis_size, {}

        def jvp(primals: list, tangents: list) -> tuple[list, list]:
            k, m = len(primals), []

            def both(*a: Any) -> list:
                o, t = rule.jvp(list(a[:k]), list(a[k:]))
                m.append(len(o))
                return list(o) + list(t)
            tdims = [None if t is None else d for t, d in zip(tangents, dims)]
            flat, fd = _run_batched(both, n, list(primals) + list(tangents), list(dims) + tdims,
                                    self.axis_name)
            j = m[0]
            outs, touts, od = [], [], []
            for o, d, t, e in zip(flat[:j], fd[:j], flat[j:], fd[j:]):
                if d is None and e is None:
                    od.append(None)
                else:  # primal and tangent must agree on the batch axis
                    o = _to_front(o, d, n)
                    t = None if t is None else _to_front(t, e, n)
                    od.append(0)
                outs.append(o)
                touts.append(t)
            box["out"] = od
            return outs, touts

        batched = CustomJVPRule(rule.name, self._batched_fun(rule, dims, box), jvp)
        return self._wrap_custom(bind_custom(batched, vals), box)

    def _batched_fun(self, rule: Any, dims: list, box: dict) -> Callable:
        def fun(*v: Any) -> list:
            outs, od = _run_batched(rule.fun, self.axis_size, v, dims, self.axis_name)
            return _outs_to_front(outs, od, box)
        return fun

    def _wrap_custom(self, outs: list, box: dict) -> list:
        return [o if d is None else BatchTracer(self, o, d) for o, d in zip(outs, box["out"])]


def _run_batched(f: Callable, n: int, args: Sequence[Any], dims: Sequence[Any],
                 axis_name: Hashable | None = None) -> tuple[list, list]:
    """Run ``f`` (flat list out) on ``args`` batched along ``dims``: ``(values, out dims)``.

    The new trace stands in for a named one (a custom rule re-batched below it), so it
    binds the same name while ``f`` runs: collectives inside reduce over its axis.
    """
    trace = BatchTrace(n, axis_name, [a for a, d in zip(args, dims) if d is not None])
    token = None if axis_name is None else _AXES.set(_AXES.get() + ((axis_name, trace),))
    try:
        outs = f(*[a if d is None else BatchTracer(trace, a, d) for a, d in zip(args, dims)])
    finally:
        if token is not None:
            _AXES.reset(token)
        trace.end("vmap")
    return _split(trace, outs)


def _outs_to_front(outs: list, dims: list, box: dict) -> list:
    """Batched outputs get their batch axis first (the lower level sees them so)."""
    from .. import numpy as fnp
    box["out"] = [None if d is None else 0 for d in dims]
    return [o if d is None or d == 0 else fnp.moveaxis(o, d, 0) for o, d in zip(outs, dims)]


def _to_front(x: Any, d: int | None, n: int) -> Any:
    from .. import numpy as fnp
    if d is None:
        s = edge.shape_of(x)
        return fnp.broadcast_to(fnp.expand_dims(x, 0), (n,) + s)
    return x if d == 0 else fnp.moveaxis(x, d, 0)


def _ct_to_dim(c: Any, e: int | None, d: int | None, n: int) -> Any:
    """A per-example cotangent (batched at ``e``) for an argument batched at ``d``.

    An argument shared by the whole batch (``d is None``) collects the sum of the
    examples' cotangents.
    """
    from .. import numpy as fnp
    if c is None:
        return None
    if d is None:
        return c * n if e is None else fnp.sum(c, axis=e)
    if e is None:
        s = edge.shape_of(c)
        return fnp.broadcast_to(fnp.expand_dims(c, d), s[:d] + (n,) + s[d:])
    return c if e == d else fnp.moveaxis(c, e, d)


def _axes_per_leaf(fn: str, what: str, axes: Any, full: Any, root: str) -> list:
    """Broadcast the prefix pytree ``axes`` of ints/None over the leaves of ``full``."""
    is_axis = lambda a: a is None or isinstance(a, int)
    if is_axis(axes):
        return [axes] * len(tree.leaves(full))
    adef = tree.structure(axes, is_leaf=is_axis)
    kind = "argument" if root == "args" else "output"
    try:
        subtrees = tree.flatten_up_to(adef, full, f"the {kind}", root=root)
    except ValueError as e:
        raise ValueError(f"{fn}: {what}={axes!r} is not a prefix of the {kind}s' structure: "
                         f"{e}") from None
    out = []
    for a, sub in zip(tree.leaves(axes, is_leaf=is_axis), subtrees):
        if not is_axis(a):
            raise TypeError(f"{fn}: {what} must hold ints or None, found {a!r}.")
        out.extend([a] * len(tree.leaves(sub)))
    return out


def vmap(fun: Callable, in_axes: Any = 0, out_axes: Any = 0,
         axis_name: Hashable | None = None, axis_size: int | None = None) -> Callable:
    """Vectorise ``fun`` over an axis of its arguments, with no Python loop.

    Args:
      in_axes: an int, ``None`` (the argument is shared by every example), or a
        tuple with one entry per positional argument, each a pytree prefix of
        ints/None. Negative axes count from the end. Keyword arguments are always
        mapped over their axis 0 (JAX's rule: ``in_axes`` speaks of positional
        arguments only); pass an unmapped value positionally with ``None``, or
        close over it.
      out_axes: where the batch axis goes in each output (same forms).
      axis_name: a name (any hashable) for the batch axis, for the collectives of
        ``funcflux.lax`` inside ``fun`` (``psum``, ``pmean``, ``all_gather``,
        ``axis_index``...). An inner ``vmap`` with the same name hides the outer one.
      axis_size: the batch size, needed only when no argument is batched.

    >>> import numpy as np, funcflux as ff
    >>> ff.vmap(lambda x, y: x @ y, in_axes=(0, None))(np.ones((3, 2)), np.arange(2.0))
    array([1., 1., 1.])
    >>> ff.vmap(lambda x: x - ff.lax.pmean(x, "i"), axis_name="i")(np.array([1.0, 2.0, 6.0]))
    array([-2., -1.,  3.])
    >>> ff.vmap(lambda x, *, scale: x * scale)(np.ones(2), scale=np.array([2.0, 3.0]))
    array([2., 3.])
    """
    def vmapped(*args: Any, **kwargs: Any) -> Any:
        ia = tuple(in_axes) if isinstance(in_axes, list) else in_axes  # as JAX allows
        if isinstance(ia, tuple) and len(ia) != len(args):
            raise ValueError(
                f"vmap: in_axes={in_axes!r} must be an int, None, or a tuple with one "
                f"entry per positional argument ({len(args)} given; keyword arguments are "
                "always mapped over axis 0 and take no entry).")
        if not (ia is None or isinstance(ia, (int, tuple))):
            raise TypeError(f"vmap: in_axes must be an int, None, or a tuple with one entry "
                            f"per positional argument, got {type(in_axes).__name__}.")
        axes = _axes_per_leaf("vmap", "in_axes", ia, args, "args")
        leaves, in_def = tree.flatten_with_path(args)
        paths = [_argpath(p) for p, _ in leaves]
        if kwargs:  # JAX's rule: every keyword argument is mapped over its axis 0
            kw_leaves, kw_def = tree.flatten_with_path(kwargs)
            leaves += kw_leaves
            paths += [_argpath(p, "kwargs") for p, _ in kw_leaves]
            axes = axes + [0] * len(kw_leaves)
        sizes: list[tuple[str, int]] = []
        norm_axes = []
        for (_, x), path, a in zip(leaves, paths, axes):
            if a is None:
                norm_axes.append(None)
                continue
            nd = len(edge.shape_of(x))
            if not -nd <= a < nd:
                raise ValueError(f"vmap: in_axes {a} is out of range for the argument at "
                                 f"{path} of shape {edge.shape_of(x)}.")
            a %= nd
            norm_axes.append(a)
            sizes.append((path, edge.shape_of(x)[a]))
        n = axis_size
        if sizes:
            distinct = {s for _, s in sizes} | ({axis_size} if axis_size is not None else set())
            if len(distinct) > 1:
                listing = ", ".join(f"{p} has size {s}" for p, s in sizes)
                extra = f" and axis_size={axis_size}" if axis_size is not None else ""
                raise ValueError(f"vmap got inconsistent sizes for the mapped axes: {listing}{extra}.")
            n = sizes[0][1]
        elif n is None:
            raise ValueError("vmap: no argument is mapped (every in_axes is None); pass "
                             "axis_size to say how many times to repeat the computation.")
        trace = BatchTrace(n, axis_name, [x for (_, x), a in zip(leaves, norm_axes)
                                          if a is not None])
        wrapped = [x if a is None else BatchTracer(trace, x, a)
                   for (_, x), a in zip(leaves, norm_axes)]
        nargs = in_def.num_leaves
        call_args = tree.unflatten(in_def, wrapped[:nargs])
        call_kwargs = tree.unflatten(kw_def, wrapped[nargs:]) if kwargs else {}
        token = None if axis_name is None else _AXES.set(_AXES.get() + ((axis_name, trace),))
        try:
            out = fun(*call_args, **call_kwargs)
        finally:
            if token is not None:
                _AXES.reset(token)
            trace.end("vmap")
        return _finish(trace, out, out_axes, n, [x for _, x in leaves])

    vmapped.__name__ = f"vmap_{getattr(fun, '__name__', 'fun')}"
    vmapped.__wrapped__ = fun  # type: ignore[attr-defined]
    return vmapped


def _argpath(path: tuple, root: str = "args") -> str:
    return root + "".join(str(k) for k in path)


def _finish(trace: BatchTrace, out: Any, out_axes: Any, n: int, given: list) -> Any:
    from .. import numpy as fnp

    pl, out_def = tree.flatten_with_path(out)
    axes = _axes_per_leaf("vmap", "out_axes", out_axes, out, "out")
    res = []
    for (path, o), a in zip(pl, axes):
        batched = type(o) is BatchTracer and o._trace is trace
        if a is None:
            if batched:
                raise ValueError(f"vmap: out_axes is None at {_argpath(path, 'out')}, but that "
                                 "output depends on the mapped inputs.")
            res.append(o)
            continue
        shp = edge.shape_of(o.value) if batched else edge.shape_of(o)
        nd = len(shp) + (not batched)
        if not -nd <= a < nd:
            raise ValueError(f"vmap: out_axes {a} is out of range for the output at "
                             f"{_argpath(path, 'out')}, which has {nd} axes with the batch axis.")
        a %= nd
        if batched:
            res.append(o.value if o.bdim == a else fnp.moveaxis(o.value, o.bdim, a))
        else:
            o = fnp.expand_dims(o, a)
            res.append(fnp.broadcast_to(o, shp[:a] + (n,) + shp[a:]))
    # Outputs (per-example gradients among them) are ordinary writable arrays: an unbatched
    # output's broadcast view, or an input handed straight back, is copied (edge.owned).
    return tree.unflatten(out_def, edge.owned(res, given))
