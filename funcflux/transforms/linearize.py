"""``linearize`` and ``linear_transpose``, built from reverse mode.

``linearize(f, *primals)`` evaluates ``f`` once and returns the linear map
``t -> J t`` (JAX's signature). Reverse mode already holds that map, transposed:
the pullback ``g -> J^T g`` of ``vjp``. The pullback is linear in ``g`` and written
with primitives, so a second ``vjp``, of the pullback, records its backward pass
once; pulling a tangent back through *that* is the transpose of the transpose,
``J t``. So ``f`` runs once, the backward pass is recorded once, and each call of
``f_jvp`` is one replay of that recording: no re-evaluation of ``f``.

``linear_transpose(f, *primals)`` is ``f``'s pullback: for a linear ``f`` that is
its transpose, the same at every point. Linearity is not checked; for a nonlinear
``f`` the result is the transposed Jacobian at ``primals``.
"""
from __future__ import annotations

from typing import Any, Callable

from .. import tree
from . import edge
from .reverse import vjp


def _check_like(fn: str, what: str, given: Any, ref: Any, ref_name: str) -> list:
    """``given``'s leaves, checked against ``ref``'s structure and shapes."""
    td = tree.structure(ref)
    try:
        leaves = tree.flatten_up_to(td, given, what)
    except ValueError as e:
        raise ValueError(f"{fn}: {e}") from None
    for path_leaf, g in zip(tree.leaves_with_path(ref), leaves):
        path, r = path_leaf
        if g is not None and edge.shape_of(g) != edge.shape_of(r):
            raise ValueError(f"{fn}: {what} at {tree.keystr(path)} has shape "
                             f"{edge.shape_of(g)}, but the {ref_name} there has shape "
                             f"{edge.shape_of(r)}.")
    return leaves


def linearize(fun: Callable, *primals: Any, has_aux: bool = False) -> Any:
    """``fun(*primals)`` and its linearisation: ``(out, f_jvp)``, with
    ``f_jvp(*tangents) == jvp(fun, primals, tangents)[1]``.

    ``fun`` runs once; each ``f_jvp`` call replays a recorded pass, without
    evaluating ``fun`` again (see the module docstring). ``f_jvp`` takes one tangent
    per primal, shaped like it, and may be called any number of times. With
    ``has_aux=True``, ``fun`` returns ``(out, aux)`` and ``linearize`` returns
    ``(out, f_jvp, aux)``.

    >>> import numpy as np, funcflux as ff
    >>> out, f_jvp = ff.linearize(np.sin, np.array([0.0, np.pi]))
    >>> f_jvp(np.array([1.0, 2.0]))
    array([ 1., -2.])
    """
    if has_aux:
        out, pullback, aux = vjp(fun, *primals, has_aux=True)
    else:
        out, pullback = vjp(fun, *primals)
    ct0 = tree.map(lambda o: _zeros(o) if edge.is_float_leaf(o) else None, out)
    # The pullback, recorded once as a function of its cotangent: transposing it is J t.
    _, transpose = vjp(pullback, ct0)
    pdef = tree.structure(tuple(primals))
    # which primal leaves the pullback reaches (None: an integer leaf, not differentiated)
    floats = [c is not None for c in tree.flatten_up_to(pdef, pullback(ct0))]

    def f_jvp(*tangents: Any) -> Any:
        if len(tangents) != len(primals):
            raise TypeError(f"linearize: f_jvp takes one tangent per primal ({len(primals)}), "
                            f"got {len(tangents)}.")
        leaves = _check_like("linearize", "the tangent given to f_jvp", tuple(tangents),
                             tuple(primals), "primal")
        ts = [edge.as_primal(t) if f else None for t, f in zip(leaves, floats)]
        (t_out,) = transpose(tree.unflatten(pdef, ts))
        return t_out

    f_jvp.__name__ = f"linearized_{getattr(fun, '__name__', 'fun')}"
    return (out, f_jvp, aux) if has_aux else (out, f_jvp)


def linear_transpose(fun: Callable, *primals: Any) -> Callable:
    """The transpose of the linear function ``fun``: ``ct -> tuple of input cotangents``
    (JAX's signature; ``primals`` give the inputs' shapes and dtypes).

    ``fun`` is evaluated once, at ``primals``, and the result is its pullback there.
    Linearity is not checked: for a nonlinear ``fun`` this is the transposed Jacobian
    at ``primals`` (as ``vjp`` gives), not a transpose.

    >>> import numpy as np, funcflux as ff
    >>> a = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> f_t = ff.linear_transpose(lambda x: a @ x, np.zeros(2))
    >>> f_t(np.array([1.0, 0.0, 1.0]))
    (array([6., 8.]),)
    """
    out, pullback = vjp(fun, *primals)

    def transpose(cotangent: Any) -> tuple:
        _check_like("linear_transpose", "the cotangent", cotangent, out, "output")
        return pullback(cotangent)

    transpose.__name__ = f"transpose_{getattr(fun, '__name__', 'fun')}"
    return transpose


def _zeros(o: Any) -> Any:
    from .. import numpy as fnp
    return fnp.zeros_like(o)
