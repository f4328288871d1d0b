"""Every spec line of ``tests/ops/specs_*.py`` under ``jit``: the staged program against eager.

For each line hypothesis draws the sizes and two seeds. ``jit(fun)`` is called on the
first draw (the call that traces) and on the second (a replay of the generated code,
which must not trace again); both must equal eager funcflux to rounding (the same
``impl``s run, though eager NumPy-facing code may take a shortcut of its own, and BLAS
may round differently at another alignment), with the same dtypes. For differentiable
lines ``jit(grad(loss))`` must equal ``grad(loss)`` the same way, so every VJP rule is
checked staged too.

A line whose computation needs the contents of a traced value (a boolean mask, the
indices of ``nonzero``, a shape that depends on values) cannot be staged: under
``jit`` it must raise ``ConcretizationTypeError``, never compute. ``NEEDS_VALUES``
lists those lines (some read values only for some shapes: ``lstsq`` checks the rank
of a tall matrix); the test fails for any other line that raises.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import funcflux as ff
from tests.devices import get, put
from tests.ops.specs import SPECS, Spec
from tests.ops.test_sweep import _float_idx, _scalar_loss, assert_values, draw_case, make_args

# spec name -> why its computation reads values (so jit refuses it)
NEEDS_VALUES: dict[str, str] = {
    "getitem_mask": "x[mask]: the result's length is the number of True entries",
    "getitem_mask_rows": "x[mask] on rows: the same",
    "nonzero": "the number of nonzero entries is the result's length",
    "argwhere": "the same",
    "flatnonzero": "the same",
    "lstsq": "np.linalg.lstsq's residuals are empty unless the matrix has full rank",
    "lstsq-s": "the same",
    "eig": "the eigenvalues of a real matrix are real or complex arrays by their values",
    "eig-stack": "the same",
    "eigvals": "the same",
    "eigvals-complex-output": "the same",
}


def _stage(spec: Spec, args: list) -> tuple[Any, Any]:
    f = ff.jit(spec.fun)
    return f, f(*args)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_jit_matches_eager(spec: Spec, data: Any) -> None:
    sizes, seed = draw_case(spec, data)
    seed2 = data.draw(st.integers(0, 2**32 - 1), label="seed 2")
    args = put(make_args(spec, sizes, np.random.default_rng(seed)))
    args2 = put(make_args(spec, sizes, np.random.default_rng(seed2)))
    f = ff.jit(spec.fun)
    try:
        first = f(*args)
    except ff.ConcretizationTypeError:
        assert spec.name in NEEDS_VALUES, f"{spec.name}: jit refused a computation that " \
            "does not read values"
        return
    assert_values(first, spec.fun(*get(args)), "jit, tracing call")
    assert_values(f(*args2), spec.fun(*get(args2)), "jit, replay")
    assert len(f._cache) == 1, "the second call traced again"
    if spec.nondiff or not _float_idx(spec):
        return
    idx = _float_idx(spec)

    def loss(*a: Any) -> Any:  # every argument is an argument of jit: none is baked in
        return _scalar_loss(spec, list(a))
    g = ff.grad(loss, argnums=tuple(idx))
    jg = ff.jit(g)
    for a in (args, args2):
        # tight, not exact: eager grad may take a declared fast NumPy rule, jit the general one
        assert_values(jg(*a), g(*get(a)), "jit(grad)")


def _types_of(x: Any) -> Any:
    return ff.tree.map(lambda a: (tuple(np.shape(a)), np.asarray(a).dtype
                                  if not hasattr(a, "dtype") else np.dtype(a.dtype)), x)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@settings(max_examples=2, deadline=None)
@given(data=st.data())
def test_eval_shape_matches_eager(spec: Spec, data: Any) -> None:
    """eval_shape gives the shape and dtype of every primitive's result (its shape rule,
    or its impl on stand-ins), for values and for gradients."""
    sizes, seed = draw_case(spec, data)
    args = put(make_args(spec, sizes, np.random.default_rng(seed)))
    try:
        got = ff.eval_shape(spec.fun, *args)
    except ff.ConcretizationTypeError:
        assert spec.name in NEEDS_VALUES, f"{spec.name}: eval_shape refused a computation " \
            "that does not read values"
        return
    want = spec.fun(*get(args))
    if spec.name.startswith("extremum_mask"):  # bool without ties, else float: see ops/elementwise.py
        want = np.asarray(want, np.float64)
    assert _types_of(got) == _types_of(want), spec.name
    assert all(type(a) is ff.ShapeDtypeStruct for a in ff.tree.leaves(got))
    if spec.nondiff or not _float_idx(spec):
        return
    idx = _float_idx(spec)
    g = ff.grad(lambda *a: _scalar_loss(spec, list(a)), argnums=tuple(idx))
    assert _types_of(ff.eval_shape(g, *args)) == _types_of(g(*get(args))), spec.name


#: primitives without a shape rule: eval_shape runs them on zero-stride stand-ins (see
#: funcflux.core.abstract), which computes their result. Matrix factorisations and fft
#: produce results the size of their inputs (no saving from a rule); getitem on a
#: stand-in is a view, or allocates an advanced index's result only.
STAND_IN = {
    "getitem", "fft", "searchsorted", "cholesky", "cofactor", "cofactor_d", "det", "det_svd",
    "eig", "eigh", "eigh_v", "eigh_w",
    "eigvals", "eigvalsh", "expm", "inv", "pinv", "qr",
    "slogdet", "slogdet_csign", "slogdet_logabs", "solve", "svd", "svdvals",
}


def test_shape_rules_declared() -> None:
    from funcflux.core.primitive import REGISTRY
    missing = {n for n, p in REGISTRY.items() if p.abstract is None}
    assert missing <= STAND_IN, f"primitives with no shape rule: {sorted(missing - STAND_IN)}; " \
        "declare one with def_abstract beside the primitive (or list it in STAND_IN, with why)"
    assert not {n for n in STAND_IN if n in REGISTRY and REGISTRY[n].abstract is not None}, \
        "STAND_IN lists a primitive that has a shape rule now"
