"""Spec lines for the collectives over a named vmap axis (funcflux/ops/collectives.py).

Each line runs a collective inside ``vmap(..., axis_name="i")`` over the leading axis,
once as it is (the axis rule; ``grad`` of it differentiates the batched sum, max, ...)
and once inside ``vmap(grad(...))`` (the primitives' own VJP/JVP rules, differentiated
again by the sweep). The sweep's own vmap maps each line over another, unnamed axis.
"""
from __future__ import annotations

import numpy as np

import funcflux as ff
from funcflux.lax import all_gather, axis_index, pmax, pmin, psum
from tests.ops.specs import F, Spec


def _named(f):
    return ff.vmap(f, axis_name="i")


def _inner_grad(f):
    return _named(ff.grad(lambda x: np.sum(f(x))))


_PSUM = lambda x: np.sin(x) * psum(x * x, "i")  # noqa: E731
_PMAX = lambda x: x * pmax(np.sin(x), "i")  # noqa: E731
_PMIN = lambda x: x * pmin(np.sin(x), "i")  # noqa: E731
_GATHER = lambda x: np.tanh(x * all_gather(x, "i"))  # noqa: E731
_INDEX = lambda x: x * axis_index("i")  # noqa: E731

SPECS = [
    Spec("psum", _named(_PSUM), [F("a b")], id="psum"),
    Spec("psum", _inner_grad(_PSUM), [F("a b")], id="psum-grad-inside"),
    Spec("pmax", _named(_PMAX), [F("a b", distinct=True)], id="pmax"),
    Spec("pmax", _inner_grad(_PMAX), [F("a b", distinct=True)], id="pmax-grad-inside"),
    Spec("pmin", _named(_PMIN), [F("a b", distinct=True)], id="pmin"),
    Spec("pmin", _inner_grad(_PMIN), [F("a b", distinct=True)], id="pmin-grad-inside"),
    Spec(("all_gather", "psum_scatter"), _named(_GATHER), [F("a b")], id="all_gather"),
    Spec(("all_gather", "psum_scatter"), _inner_grad(_GATHER), [F("a b")],
         id="all_gather-grad-inside"),
    Spec("axis_index", _named(_INDEX), [F("a b")], id="axis_index"),
]
