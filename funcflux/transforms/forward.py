"""Forward mode: each tracer carries its tangent alongside its primal value.

A primitive applied to this level's tracers is bound again on the primals, and
its JVP rules turn the argument tangents into the output tangent. A zero
tangent is ``None`` and costs nothing; constants from lower levels have zero
tangents. Because JVP rules are written with primitives, ``jvp`` of ``grad``
(a Hessian-vector product) traces the backward pass like any other code.
"""
from __future__ import annotations

from typing import Any, Callable

from ..core.trace import Trace, Tracer, escaped
from .. import tree
from . import edge


class JVPTracer(Tracer):
    __slots__ = ("primal", "tangent")

    def __init__(self, trace: "JVPTrace", primal: Any, tangent: Any):
        self._trace = trace
        self.primal = primal
        self.tangent = tangent

    @property
    def shape(self) -> tuple:
        return self.primal.shape

    @property
    def dtype(self) -> Any:
        return self.primal.dtype

    @property
    def aval(self) -> Any:
        if self._trace.dead:
            raise escaped(self)
        return self.primal


class JVPTrace(Trace):
    __slots__ = ()

    def _unwrap(self, xs: Any) -> tuple[list, list]:
        """Primals and tangents of ``xs``; constants from other levels get ``None`` (zero)."""
        primals, tangents = [], []
        for a in xs:
            if type(a) is JVPTracer and a._trace is self:
                primals.append(a.primal)
                tangents.append(a.tangent)
            else:
                primals.append(a)
                tangents.append(None)
        return primals, tangents

    def process_primitive(self, prim: Any, args: tuple, params: dict) -> Any:
        primals, tangents = self._unwrap(args)
        ans = prim(*primals, **params)
        if prim.nondiff:
            return ans
        t_out = None
        for i, t in enumerate(tangents):
            if t is not None:
                c = prim.jvp_rule(i)(t, ans, *primals, **params)
                if c is not None:
                    t_out = c if t_out is None else t_out + c
        if t_out is None:
            return ans
        if edge.shape_of(t_out) != edge.shape_of(ans):
            from .. import numpy as fnp
            t_out = fnp.broadcast_to(t_out, edge.shape_of(ans))
        return JVPTracer(self, ans, t_out)


    # -- custom rules (see custom.py) ------------------------------------------------
    def process_custom_jvp(self, rule: Any, xs: list) -> list:
        from .. import numpy as fnp
        primals, tangents = self._unwrap(xs)
        # custom rules get explicit zeros for float constants (they may not expect None)
        tangents = [fnp.zeros_like(p) if t is None and edge.is_float_leaf(p) else t
                    for p, t in zip(primals, tangents)]
        outs, touts = rule.jvp(primals, tangents)
        return [o if t is None else JVPTracer(self, o, t) for o, t in zip(outs, touts)]

    def process_custom_vjp(self, rule: Any, xs: list) -> list:
        # A reverse rule says nothing about tangents: forward mode differentiates the
        # body, operation by operation (see custom.py for why this is not an error).
        return rule.fun(*xs)


def jvp(fun: Callable, primals: Any, tangents: Any, has_aux: bool = False) -> Any:
    """Evaluate ``fun(*primals)`` and its directional derivative along ``tangents``.

    ``primals`` and ``tangents`` are tuples (or lists) of the same structure;
    returns ``(out, tangent_out)``. Tangents of non-float leaves are ignored.
    Complex primals and tangents are welcome: the tangent map is real-linear, so
    a non-holomorphic function (``np.conj``, ``np.abs``) is differentiated too.

    >>> import numpy as np, funcflux as ff
    >>> ff.jvp(lambda x: x ** 2, (np.array([1.0, 2.0]),), (np.array([1.0, 0.5]),))
    (array([1., 4.]), array([2., 2.]))
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp(fun, primals, tangents): primals and tangents must be tuples "
                        f"of arguments, got {type(primals).__name__} and {type(tangents).__name__}.")
    trace = JVPTrace()
    pl, in_def = tree.flatten_with_path(edge.promote_ints(primals))
    tl = tree.flatten_up_to(in_def, tuple(tangents), "tangents")
    wrapped = []
    for (path, x), t in zip(pl, tl):
        if edge.is_float_leaf(x) and t is not None:
            x = edge.as_primal(x)
            t = edge.as_primal(t)
            if edge.shape_of(t) != edge.shape_of(x):
                raise ValueError(f"jvp: the tangent at {tree.keystr(path)} has shape "
                                 f"{edge.shape_of(t)}, but its primal has shape {edge.shape_of(x)}.")
            wrapped.append(JVPTracer(trace, x, t))
        else:
            wrapped.append(x)
    try:
        out = fun(*tree.unflatten(in_def, wrapped))
    finally:
        trace.end("jvp")
    aux = None
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("jvp: has_aux=True needs the function to return a pair (output, "
                            f"aux); it returned {type(out).__name__}.")
        out, aux = out
        aux = tree.map(lambda a: a.primal if type(a) is JVPTracer and a._trace is trace else a, aux)
    from .. import numpy as fnp
    ol, out_def = tree.flatten(out)
    po, to = [], []
    for o in ol:
        if type(o) is JVPTracer and o._trace is trace:
            po.append(edge.as_output(o.primal))
            to.append(edge.as_output(o.tangent))
        else:
            po.append(edge.as_output(o))
            to.append(fnp.zeros_like(edge.as_primal(o)) if edge.is_float_leaf(o) else None)
    to = edge.owned(to, [x for _, x in pl] + list(tl))
    res = (tree.unflatten(out_def, po), tree.unflatten(out_def, to))
    return res + (aux,) if has_aux else res
