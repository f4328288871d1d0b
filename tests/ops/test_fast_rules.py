"""Fast VJP variants (``Primitive.def_fast_vjp``) agree with the general rules, and the
reverse trace picks them only when nothing traces the backward pass.

Every primitive that declares fast rules must have a case table below
(``test_every_fast_rule_has_cases`` fails otherwise).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import funcflux as ff
from funcflux.core.primitive import REGISTRY
from funcflux.core.trace import Tracer
from funcflux.ops.nn import dense_p
from funcflux.ops.reductions import mean_p


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _arr(rng: np.random.Generator, shape: tuple, dtype: Any = np.float64, order: str = "C"
         ) -> np.ndarray:
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return np.asarray(a, dtype=dtype, order=order)


def _dense_cases() -> list:
    """``(args, params, ct)`` for dense: ranks 1-3 of x, both weight layouts, dtypes mixed."""
    rng = _rng(1)
    out = []
    for xs, wdt, xdt, order, bias, ctdt in [
        ((5, 3), np.float64, np.float64, "C", True, None),
        ((5, 3), np.float32, np.float32, "F", True, None),
        ((2, 4, 3), np.float64, np.float64, "C", True, None),
        ((2, 4, 3), np.float32, np.float32, "F", False, None),
        ((3,), np.float64, np.float64, "C", True, None),
        ((3,), np.float64, np.float64, "F", False, None),
        ((6, 3), np.float32, np.float64, "C", True, None),  # promotion: f64 x, f32 w
        ((6, 3), np.float64, np.float64, "C", True, np.complex128),  # complex ct, real args
        ((4, 3), np.complex128, np.complex128, "C", True, None),
        ((4, 3), np.float64, np.float64, "C", True, np.float32),  # a lower-precision ct
    ]:
        x, w = _arr(rng, xs, xdt), _arr(rng, (4, 3), wdt, order)
        args = (x, w, _arr(rng, (4,), wdt)) if bias else (x, w)
        ans = dense_p.impl(*args)
        ct = _arr(rng, ans.shape, ctdt or ans.dtype)
        out.append((args, {}, ct))
    return out


def _mean_cases() -> list:
    rng = _rng(2)
    out = []
    for xs, axis, keepdims, dt in [
        ((7, 3), None, False, np.float64),
        ((7, 3), None, True, np.float32),
        ((90, 50), None, False, np.float64),  # large: a read-only broadcast view
        ((90, 50), None, True, np.float32),
        ((7, 3), (1,), False, np.float64),
        ((2, 3, 4), (0, 2), True, np.float32),
        ((0, 3), None, False, np.float64),  # empty: nan, as the general rule
        ((5,), None, False, np.complex128),
    ]:
        x = _arr(rng, xs, dt)
        params = {"axis": axis, "keepdims": keepdims}
        with np.errstate(invalid="ignore", divide="ignore"):
            ans = mean_p.impl(x, **params)
        ct = np.asarray(_arr(rng, np.shape(ans), np.asarray(ans).dtype))
        if ct.ndim == 0:
            ct = ct[()]  # NumPy's 0-d results are scalars: the cotangent of a loss is one
        out.append(((x,), params, ct))
    return out


CASES: dict[str, Callable[[], list]] = {"dense": _dense_cases, "mean": _mean_cases}


def _declared() -> list:
    return sorted((n, i) for n, p in REGISTRY.items() if p.fast_vjps is not None
                  for i, r in enumerate(p.fast_vjps) if r is not None)


def test_every_fast_rule_has_cases():
    missing = sorted({n for n, _ in _declared()} - set(CASES))
    assert not missing, f"fast VJP rules with no case table in {__file__}: {missing}"


@pytest.mark.parametrize("name,i", _declared())
def test_fast_rule_agrees_with_general(name: str, i: int):
    prim = REGISTRY[name]
    fast, general = prim.fast_vjps[i], prim.vjps[i]
    for args, params, ct in CASES[name]():
        if i >= len(args):
            continue  # a case without that (optional) argument
        ans = prim.impl(*args, **params)
        with np.errstate(invalid="ignore"):
            want = general(ct, ans, *args, **params)
            got = fast(ct, ans, *args, **params)
        where = f"{name} argument {i}, shapes {[a.shape for a in args]}, params {params}"
        assert isinstance(got, np.ndarray), where
        assert got.shape == np.shape(want), where
        assert got.dtype == np.asarray(want).dtype, where
        tol = 1e-5 if np.asarray(want).dtype in (np.float32, np.complex64) else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=where)
        # Never a read-only array or a view of an input where the general rule gives a
        # fresh writable array.
        inputs = (ct, ans) + tuple(args)
        if isinstance(want, np.ndarray) and want.flags.writeable and \
                not any(np.may_share_memory(want, a) for a in inputs):
            assert got.flags.writeable, where
            assert not any(np.may_share_memory(got, a) for a in inputs), where


# -- which rule the reverse trace picks ------------------------------------------------
def _spy(monkeypatch: pytest.MonkeyPatch, prim: Any) -> dict:
    """Count calls of ``prim``'s fast and general VJP rules; fail if a fast rule is
    handed a traced value."""
    calls = {"fast": 0, "general": 0, "general_traced": 0}

    def fast_spy(rule: Callable) -> Callable:
        def spy(ct: Any, ans: Any, *args: Any, **params: Any) -> Any:
            vals = (ct, ans) + args
            assert not any(isinstance(v, Tracer) for v in vals), \
                f"fast rule of {prim.name} was handed a tracer"
            calls["fast"] += 1
            return rule(ct, ans, *args, **params)
        return spy

    def general_spy(rule: Callable) -> Callable:
        def spy(ct: Any, ans: Any, *args: Any, **params: Any) -> Any:
            calls["general"] += 1
            calls["general_traced"] += any(isinstance(v, Tracer) for v in (ct,) + args)
            return rule(ct, ans, *args, **params)
        return spy

    monkeypatch.setattr(prim, "fast_vjps", tuple(
        None if r is None else fast_spy(r) for r in prim.fast_vjps))
    monkeypatch.setattr(prim, "vjps", tuple(
        None if r is None else general_spy(r) for r in prim.vjps))
    return calls


def _loss(w: Any, b: Any, x: Any) -> Any:
    return np.mean(np.tanh(ff.ops.nn.dense(x, w, b)) ** 2)


def _data() -> tuple:
    rng = _rng(3)
    return _arr(rng, (4, 3)), _arr(rng, (4,)), _arr(rng, (6, 3))


def _transformed() -> dict:
    """Derivatives whose backward passes run under another transform."""
    w, b, x = _data()
    v = _arr(_rng(4), (4, 3))
    xs = _arr(_rng(5), (5, 6, 3))
    return {
        "grad of grad (hvp)": lambda: ff.grad(
            lambda w: np.sum(ff.grad(_loss)(w, b, x) * v))(w),
        "vmap of grad": lambda: ff.vmap(ff.grad(_loss), in_axes=(None, None, 0))(w, b, xs),
        "jvp of grad": lambda: ff.jvp(lambda w: ff.grad(_loss)(w, b, x), (w,), (v,))[1],
        "jacrev": lambda: ff.jacrev(lambda w: np.tanh(ff.ops.nn.dense(x, w, b)))(w),
    }


def test_plain_grad_takes_the_fast_rules(monkeypatch: pytest.MonkeyPatch):
    w, b, x = _data()
    want = ff.grad(_loss, argnums=(0, 1))(w, b, x)
    dense_calls, mean_calls = _spy(monkeypatch, dense_p), _spy(monkeypatch, mean_p)
    got = ff.grad(_loss, argnums=(0, 1))(w, b, x)
    assert dense_calls["fast"] == 2 and dense_calls["general"] == 0
    assert mean_calls["fast"] == 1 and mean_calls["general"] == 0
    for g, e in zip(got, want):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("what", sorted(_transformed()))
def test_traced_backward_passes_take_the_general_rules(monkeypatch: pytest.MonkeyPatch,
                                                      what: str):
    run = _transformed()[what]
    with monkeypatch.context() as m:  # the reference: no fast rules at all
        m.setattr(dense_p, "fast_vjps", None)
        m.setattr(mean_p, "fast_vjps", None)
        want = run()
    calls = _spy(monkeypatch, dense_p)  # asserts inside: no fast rule sees a tracer
    got = run()
    assert calls["general_traced"] > 0, f"{what}: the general rule never ran traced"
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_fast_rules_are_skipped_off_numpy(monkeypatch: pytest.MonkeyPatch):
    """Another array type (a NumPy subclass stands in for CuPy here) takes the general
    rules: the fast ones may assume NumPy arrays."""
    class Other(np.ndarray):
        pass

    w, b, x = _data()
    calls = _spy(monkeypatch, dense_p)
    ff.grad(_loss)(w.view(Other), b, x)
    assert calls["fast"] == 0 and calls["general"] > 0
