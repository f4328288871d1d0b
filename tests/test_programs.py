"""Random programs over the primitive table, checked against finite differences.

The sweep in ``tests/ops/test_sweep.py`` checks each primitive alone; bugs that
only show in *compositions* (a cotangent of the wrong dtype reaching the next
rule, a broadcast undone on the wrong axis, a rule that is right to first order
but whose own derivative is wrong) need programs. Hypothesis draws a short
straight-line program: each step applies one operation to values computed
before it (inputs of shapes ``(n, m)``, ``(m,)``, ``(n, 1)`` and ``()``, so
binary operations broadcast in every pairing). Every operation is smooth on its
whole domain (``log1p(v**2)``, ``w / (1 + v**2)``...) so that central
differences are meaningful anywhere.

Each program is checked three ways:

- ``check_grads`` in float64, forward and reverse, to second order;
- ``vmap`` over a batch of inputs against a Python loop, for the program and
  for its gradient;
- float32 inputs give float32 values and gradients;
- under ``jit``: the program, its gradient and a Hessian-vector product, staged, equal
  the eager ones on the tracing call and on a replay with other inputs (no retrace), and
  ``eval_shape`` gives their shapes and dtypes;
- inside ``jit``, the program as the body of a ``lax.scan`` (with a ``lax.cond`` in it)
  under ``grad``, ``jvp`` and ``vmap``: one staged scan, equal to the eager transforms,
  and a scan body that reads differentiated values from a closure (converted: still one
  scan);

The budget is small by default (CI). Whoever changes a rule runs thousands:
``FUNCFLUX_PROGRAMS=2000 python -m pytest tests/test_programs.py`` (or the
``HYPOTHESIS_PROFILE=thorough`` profile, which also shrinks a failure to a
minimal program). A failure prints the program, one operation per line.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import funcflux as ff
from funcflux import lax
from funcflux.test_util import check_grads

BUDGET = int(os.environ.get("FUNCFLUX_PROGRAMS",
                            "300" if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else "12"))
SHAPES = ("nm", "m", "n1", "s")  # (n, m), (m,), (n, 1), ()


def _bshape(a: str, b: str) -> str:
    """The kind of ``a op b`` under broadcasting."""
    if a == b:
        return a
    pair = {a, b}
    if "s" in pair:
        return (pair - {"s"}).pop()
    if "nm" in pair:
        return "nm"
    return "nm"  # (m,) with (n, 1)


# Unary operations: name -> (function, kind of the result given the argument's kind).
def _same(k: str) -> str:
    return k


UNARY: dict[str, tuple[Callable, Callable[[str], str]]] = {
    "tanh": (np.tanh, _same),
    "sin": (np.sin, _same),
    "cos": (np.cos, _same),
    "arctan": (np.arctan, _same),
    "square": (np.square, _same),
    "cube": (lambda v: v ** 3, _same),
    "pow0": (lambda v: v ** 0, _same),  # the 0 ** 0 derivative is JAX's 0, not NaN
    "gauss": (lambda v: np.exp(-v * v), _same),
    "log1p_sq": (lambda v: np.log1p(v * v), _same),
    "sqrt_1p_sq": (lambda v: np.sqrt(1.0 + v * v), _same),
    "recip_1p_sq": (lambda v: 1.0 / (1.0 + v * v), _same),
    "expm1_tanh": (lambda v: np.expm1(np.tanh(v)), _same),
    "neg": (np.negative, _same),
    "sinh_tanh": (lambda v: np.sinh(np.tanh(v)), _same),
    "arcsin_half_tanh": (lambda v: np.arcsin(0.5 * np.tanh(v)), _same),
    "sum0": (lambda v: np.sum(v, axis=0) if v.ndim == 2 else np.sum(v),
             lambda k: {"nm": "m", "n1": "s", "m": "s", "s": "s"}[k]),
    "mean1k": (lambda v: np.mean(v, axis=-1, keepdims=True) if v.ndim == 2 else v,
               lambda k: "n1" if k in ("nm", "n1") else k),
    "prod0": (lambda v: np.prod(v, axis=0) if v.ndim == 2 else np.prod(v),
              lambda k: {"nm": "m", "n1": "s", "m": "s", "s": "s"}[k]),
    "var1k": (lambda v: np.var(v, axis=-1, keepdims=True) if v.ndim == 2 else v,
              lambda k: "n1" if k in ("nm", "n1") else k),
    "cumsum": (lambda v: np.cumsum(v, axis=-1) if v.ndim else v, _same),
    "flip": (lambda v: v[..., ::-1] if v.ndim else v, _same),
    "ravel_back": (lambda v: v.reshape(-1).reshape(v.shape), _same),
    "transpose2": (lambda v: v.T.T, _same),
    "gather0": (lambda v: v[np.array([0, 0, 1])[: v.shape[0]] % v.shape[0]].sum(0) * 0.0 + v
                if v.ndim == 2 else v, _same),
    "max1k": (lambda v: np.max(v, axis=-1, keepdims=True) if v.ndim == 2 else v,
              lambda k: "n1" if k in ("nm", "n1") else k),
    "min0": (lambda v: np.min(v, axis=0) if v.ndim == 2 else np.min(v),
             lambda k: {"nm": "m", "n1": "s", "m": "s", "s": "s"}[k]),
    "sort": (lambda v: np.sort(v, axis=-1) if v.ndim else v, _same),
    "abs": (np.abs, _same),  # a kink only at 0, which random inputs miss
    "cumprod": (lambda v: np.cumprod(v, axis=-1) if v.ndim else v, _same),
    "concat_crop": (lambda v: np.concatenate([v, 2.0 * v], axis=-1)[..., : v.shape[-1]]
                    if v.ndim else v, _same),
    "stack_sum": (lambda v: np.sum(np.stack([v, np.sin(v)]), axis=0), _same),
    "einsum_sq": (lambda v: np.einsum("...i,...i->...i", v, v) if v.ndim else v * v, _same),
    "clip": (lambda v: np.clip(v, -0.7, 0.9), _same),
    "std1k": (lambda v: np.std(v, axis=-1, keepdims=True) + 0.0 * v[..., :1]
              if v.ndim == 2 and v.shape[-1] > 1 else v,
              lambda k: "n1" if k in ("nm", "n1") else k),
    # Shifted by the max, as a careful user writes it: smooth even where the max ties (the
    # max's derivative cancels exactly, whichever tied entry receives it).
    "logsumexp1k": (lambda v: _lse(v) if v.ndim == 2 else v,
                    lambda k: "n1" if k in ("nm", "n1") else k),
}

def _lse(v: Any) -> Any:
    c = np.max(v, axis=-1, keepdims=True)
    return c + np.log(np.sum(np.exp(v - c), axis=-1, keepdims=True))


BINARY: dict[str, Callable] = {
    "add": lambda v, w: v + w,
    "sub": lambda v, w: v - w,
    "mul": lambda v, w: v * w,
    "div_1p_sq": lambda v, w: v / (1.0 + w * w),
    "arctan2_pos": lambda v, w: np.arctan2(v, 1.0 + w * w),
    "hypot_pos": lambda v, w: np.hypot(v, 1.0 + w * w),
    "logaddexp": np.logaddexp,
    "where_fixed": lambda v, w: np.where(_MASKS[np.ndim(v + w)](np.shape(v + w)), v, w),
    "pow_pos": lambda v, w: (1.5 + np.tanh(v)) ** (1.0 + np.tanh(w)),
    "pow_k": lambda v, w: v ** 2 + w ** 3,
    "maximum": np.maximum,
    "minimum": np.minimum,
}


def _mask(shape: tuple) -> np.ndarray:
    return (np.arange(int(np.prod(shape))).reshape(shape) % 2) == 0


_MASKS = {0: lambda s: np.array(True), 1: _mask, 2: _mask}


def _matvec(v: Any, w: Any) -> Any:
    """(n, m) @ (m,) kept in the shape set as (n, 1)."""
    return (v @ w)[:, None]


@st.composite
def programs(draw: Any) -> list[tuple]:
    """A straight-line program: a list of (op, kind, operand indices) after the inputs."""
    kinds = list(SHAPES)  # values 0..3 are the inputs x (n, m), y (m,), z (n, 1), s ()
    steps = []
    for _ in range(draw(st.integers(2, 7))):
        choice = draw(st.sampled_from(("u", "u", "b", "b", "mv")))
        if choice == "u":
            name = draw(st.sampled_from(sorted(UNARY)))
            i = draw(st.integers(0, len(kinds) - 1))
            kind = UNARY[name][1](kinds[i])
            steps.append(("u", name, (i,)))
        elif choice == "b":
            name = draw(st.sampled_from(sorted(BINARY)))
            i = draw(st.integers(0, len(kinds) - 1))
            j = draw(st.integers(0, len(kinds) - 1))
            kind = _bshape(kinds[i], kinds[j])
            steps.append(("b", name, (i, j)))
        else:
            nm = [k for k, kd in enumerate(kinds) if kd == "nm"]
            ms = [k for k, kd in enumerate(kinds) if kd == "m"]
            i, j = draw(st.sampled_from(nm)), draw(st.sampled_from(ms))
            kind = "n1"
            steps.append(("mv", "matvec", (i, j)))
        kinds.append(kind)
    return steps


@st.composite
def smooth_programs(draw: Any) -> list[tuple]:
    steps = draw(programs())
    return [(tag, KINKED.get(name, name), ops) for tag, name, ops in steps]


def evaluate(steps: list[tuple], inputs: tuple) -> list:
    """Every value of a program, inputs first (tag "c": an operation of COMPLEX_OPS)."""
    vals = list(inputs)
    for tag, name, ops in steps:
        if tag == "u":
            vals.append(UNARY[name][0](vals[ops[0]]))
        elif tag == "c":
            vals.append(COMPLEX_OPS[name](vals[ops[0]]))
        elif tag == "b":
            vals.append(BINARY[name](vals[ops[0]], vals[ops[1]]))
        else:
            vals.append(_matvec(vals[ops[0]], vals[ops[1]]))
    return vals


def run(steps: list[tuple], x: Any, y: Any, z: Any, s: Any) -> Any:
    """Evaluate a program; the output is the last value plus a scalar mix of all values."""
    vals = evaluate(steps, (x, y, z, s))
    mix = sum(np.sum(np.tanh(v)) for v in vals[4:])
    return vals[-1] + 0.1 * mix


def describe(steps: list[tuple]) -> str:
    lines = ["v0 = x (n, m); v1 = y (m,); v2 = z (n, 1); v3 = s ()"]
    for k, (tag, name, ops) in enumerate(steps, start=4):
        lines.append(f"v{k} = {name}(" + ", ".join(f"v{i}" for i in ops) + ")")
    return "\n".join(lines)


def _inputs(seed: int, n: int, m: int, dtype: Any = np.float64, batch: int | None = None,
            zeros: bool = False) -> tuple:
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    shapes = [(n, m), (m,), (n, 1), ()]
    out = tuple(rng.uniform(-1.5, 1.5, lead + sh).astype(dtype) for sh in shapes)
    if zeros:  # about half the entries exactly 0: the special point of powers and products
        out = tuple(np.where(rng.uniform(size=a.shape) < 0.5, 0.0, a).astype(dtype) for a in out)
    return out


# Operations whose derivatives exist at 0 and at ties (no kink there): the ones a program
# at exact zeros may use. abs, max/min, sort, clip, std, maximum/minimum have kinks there.
# Each kinked operation is replaced by a smooth one with the same result shape.
KINKED = {"abs": "tanh", "max1k": "mean1k", "min0": "sum0", "sort": "tanh", "clip": "sin",
          "std1k": "var1k", "maximum": "add", "minimum": "mul"}


SIZES = dict(n=st.integers(1, 3), m=st.integers(1, 4), seed=st.integers(0, 2 ** 31 - 1))


@settings(max_examples=BUDGET, deadline=None)
@given(steps=programs(), **SIZES)
def test_program_derivatives_match_finite_differences(steps, n, m, seed):
    args = _inputs(seed, n, m)
    f = lambda *a: run(steps, *a)  # noqa: E731
    try:
        check_grads(f, args, order=2, modes=("fwd", "rev"), rng=seed, rtol=2e-4, atol=2e-5)
    except AssertionError as e:
        raise AssertionError(f"program (n={n}, m={m}, seed={seed}):\n{describe(steps)}\n{e}")


@settings(max_examples=BUDGET, deadline=None)
@given(steps=smooth_programs(), **SIZES)
def test_program_derivatives_at_zeros(steps, n, m, seed):
    """At exact zeros: x ** 0, x ** k, products with several zeros (JAX's finite limits)."""
    args = _inputs(seed, n, m, zeros=True)
    f = lambda *a: run(steps, *a)  # noqa: E731
    try:
        check_grads(f, args, order=2, modes=("fwd", "rev"), rng=seed, rtol=2e-4, atol=2e-5)
    except AssertionError as e:
        raise AssertionError(f"program at zeros (n={n}, m={m}, seed={seed}):\n"
                             f"{describe(steps)}\n{e}")


@settings(max_examples=BUDGET, deadline=None)
@given(steps=programs(), **SIZES)
def test_program_vmap_matches_loop(steps, n, m, seed):
    xs, ys, zs, ss = _inputs(seed, n, m, batch=3)
    y0 = ys[0]
    f = lambda x, y, z, s: run(steps, x, y, z, s)  # noqa: E731
    loss = lambda x, y, z, s: np.sum(run(steps, x, y, z, s) ** 2)  # noqa: E731
    where = f"program (n={n}, m={m}, seed={seed}):\n{describe(steps)}"
    got = ff.vmap(f, in_axes=(0, None, 0, 0))(xs, y0, zs, ss)
    want = np.stack([f(xs[b], y0, zs[b], ss[b]) for b in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=where)
    gx, gy = ff.vmap(ff.grad(loss, argnums=(0, 1)), in_axes=(0, None, 0, 0))(xs, y0, zs, ss)
    for b in range(3):
        wx, wy = ff.grad(loss, argnums=(0, 1))(xs[b], y0, zs[b], ss[b])
        np.testing.assert_allclose(gx[b], wx, rtol=1e-9, atol=1e-11, err_msg=where)
        np.testing.assert_allclose(gy[b], wy, rtol=1e-9, atol=1e-11, err_msg=where)


@settings(max_examples=BUDGET, deadline=None)
@given(steps=programs(), **SIZES)
def test_program_under_jit_matches_eager(steps, n, m, seed):
    loss = lambda x, y, z, s: np.sum(run(steps, x, y, z, s) ** 2)  # noqa: E731
    hvp = lambda x, y, z, s, t: ff.jvp(lambda x: ff.grad(loss)(x, y, z, s), (x,), (t,))[1]  # noqa: E731
    where = f"program (n={n}, m={m}, seed={seed}):\n{describe(steps)}"
    fns = {"value": lambda x, y, z, s, t: run(steps, x, y, z, s),
           "grad": lambda x, y, z, s, t: ff.grad(loss, argnums=(0, 1, 2, 3))(x, y, z, s),
           "hvp": hvp}
    for what, fn in fns.items():
        j = ff.jit(fn)
        for k in (seed, seed + 1):  # the tracing call, then a replay on other values
            args = _inputs(k, n, m)
            t = np.random.default_rng(k).normal(size=args[0].shape)
            for a, b in zip(ff.tree.leaves(j(*args, t)), ff.tree.leaves(fn(*args, t))):
                np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11,
                                           err_msg=f"jit, {what}: {where}")
                assert np.asarray(a).dtype == np.asarray(b).dtype, f"jit dtype, {what}: {where}"
        assert len(j._cache) == 1, where
        # eval_shape: the shape rules give the types the program computes
        args = _inputs(seed, n, m)
        t = np.zeros(args[0].shape)
        for a, b in zip(ff.tree.leaves(ff.eval_shape(fn, *args, t)),
                        ff.tree.leaves(fn(*args, t))):
            assert a == ff.ShapeDtypeStruct(np.shape(b), np.asarray(b).dtype), \
                f"eval_shape, {what}: {where}"


@settings(max_examples=BUDGET, deadline=None)
@given(steps=programs(), **SIZES)
def test_program_float32_stays_float32(steps, n, m, seed):
    args = _inputs(seed, n, m, np.float32)
    loss = lambda *a: np.sum(run(steps, *a))  # noqa: E731
    where = f"program (n={n}, m={m}, seed={seed}):\n{describe(steps)}"
    with np.errstate(all="ignore"):  # float32 may overflow where float64 does not: see below
        value, grads = ff.value_and_grad(loss, argnums=(0, 1, 2, 3))(*args)
    assert value.dtype == np.float32, where
    for g, a in zip(grads, args):
        assert g.dtype == np.float32 and g.shape == a.shape, where
    ref = ff.grad(loss, argnums=(0, 1, 2, 3))(*(a.astype(np.float64) for a in args))
    # Powers of powers reach float32's range; there float32 overflows as NumPy's own would.
    assume(all(np.all(np.abs(r) < 1e4) for r in ref))
    for g, r in zip(grads, ref):
        np.testing.assert_allclose(g, r, rtol=2e-3, atol=2e-3, err_msg=where)


# Complex programs: the same shapes, holomorphic operations and the non-holomorphic
# ones of complex code (real, imag, conj, abs, angle), checked with JAX's convention.
COMPLEX_OPS = {"tanh": lambda v: np.tanh(0.5 * v), "sin": np.sin, "exp_half": lambda v: np.exp(0.5 * v),
               "square": np.square, "recip": lambda v: 1.0 / (2.0 + v * np.conj(v)),
               "conj": np.conj, "real": lambda v: np.real(v) + 0j, "imag": lambda v: 1j * np.imag(v),
               "abs": lambda v: np.abs(v + 3.0) + 0j, "angle": lambda v: np.angle(v + 3.0) + 0j,
               "sqrt": lambda v: np.sqrt(v + 3.0), "log": lambda v: np.log(v + 3.0),
               "cumsum": lambda v: np.cumsum(v, axis=-1) if v.ndim else v,
               "flip": lambda v: v[..., ::-1] if v.ndim else v}


@settings(max_examples=BUDGET, deadline=None)
@given(steps=programs(), **SIZES)
def test_complex_program_derivatives_match_finite_differences(steps, n, m, seed):
    """The real programs with complex inputs and complex operations swapped in."""
    # Imaginary parts from another stream: equal parts would make x * y purely imaginary,
    # and |real(x * y)| sit exactly on abs's kink at 0.
    args = tuple(0.5 * (a + 1j * b) for a, b in zip(_inputs(seed, n, m), _inputs(seed + 1, n, m)))
    names = sorted(COMPLEX_OPS)
    swapped = []
    for k, (tag, name, ops) in enumerate(steps):
        if tag == "u" and UNARY[name][1] is _same:  # shape-keeping ones only
            swapped.append(("c", names[(k + seed) % len(names)], ops))
        elif tag == "b" and name not in ("add", "sub", "mul"):
            swapped.append(("b", "mul", ops))
        else:
            swapped.append((tag, name, ops))

    def f(*a):
        last = evaluate(swapped, a)[-1]
        return last, np.sum(np.abs(last) ** 2)   # a complex and a real output

    try:
        check_grads(f, args, order=2, modes=("fwd", "rev"), rng=seed, rtol=2e-4, atol=2e-5)
    except AssertionError as e:
        raise AssertionError(f"complex program (n={n}, m={m}, seed={seed}):\n"
                             f"{describe([(t if t != 'c' else 'u', nm, o) for t, nm, o in swapped])}"
                             f"\n{e}")


def test_programs_can_fail():
    """The harness notices a wrong rule: a custom_vjp with a wrong derivative inside a program."""
    @ff.custom_vjp
    def bad_tanh(v):
        return np.tanh(v)

    bad_tanh.defvjp(lambda v: (np.tanh(v), v), lambda res, g: (g * 2.0,))
    UNARY["bad_tanh"] = (bad_tanh, _same)
    try:
        steps = [("u", "bad_tanh", (0,)), ("b", "mul", (4, 1))]
        with pytest.raises(AssertionError, match="bad_tanh"):
            test_program_derivatives_match_finite_differences.hypothesis.inner_test(
                steps=steps, n=2, m=3, seed=1)
    finally:
        del UNARY["bad_tanh"]


def _scan_program(steps: list[tuple]) -> Callable:
    """A random program as the body of a ``lax.scan`` over 3 steps, and of a ``lax.cond``
    inside it: every value the body reads is in its carry or its inputs (no closure)."""
    def body(carry: tuple, xt: Any) -> tuple:
        c, y, z, s = carry
        new = lax.cond(np.sum(xt) > 0.0,  # both branches give c's shape
                       lambda c, y, z, s: c * 0.0 + run(steps, c * xt, y, z, s),
                       lambda c, y, z, s: np.sin(c) * s + y,
                       c, y, z, s)
        c2 = 0.5 * np.tanh(c + new)
        return (c2, y, z, s), np.sum(c2 * c2)

    def f(x: Any, y: Any, z: Any, s: Any, xs: Any) -> Any:
        (c, _, _, _), ys = lax.scan(body, (x, y, z, s), xs)
        return np.sum(c ** 2) + np.sum(ys)
    return f


@settings(max_examples=BUDGET, deadline=None)
@given(steps=programs(), **SIZES)
def test_program_in_lax_under_transforms_inside_jit(steps, n, m, seed):
    """grad, jvp and vmap of a scan (with a cond in its body) inside jit: one scan equation,
    equal to the eager transforms."""
    f = _scan_program(steps)
    where = f"program (n={n}, m={m}, seed={seed}):\n{describe(steps)}"
    args = _inputs(seed, n, m)
    xs = np.random.default_rng(seed).uniform(-1.5, 1.5, (3, n, m))
    t = np.random.default_rng(seed + 1).normal(size=(n, m))
    batch = np.random.default_rng(seed + 2).uniform(-1.5, 1.5, (2, 3, n, m))
    fns = {"grad": (lambda *a: ff.grad(f, argnums=(0, 1, 2, 3, 4))(*a), (*args, xs)),
           "jvp": (lambda *a: ff.jvp(lambda x: f(x, *a[1:]), (a[0],), (t,)), (*args, xs)),
           "vmap": (lambda xs: ff.vmap(lambda v: f(*args, v))(xs), (batch,))}
    for what, (fn, a) in fns.items():
        j = ff.jit(fn)
        got, want = j(*a), fn(*a)
        for u, v in zip(ff.tree.leaves(got), ff.tree.leaves(want)):
            np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-11, err_msg=f"{what}: {where}")
        names = [e.prim.name for e in j.lower(*a).optimized.eqns]
        assert "scan" in names, f"{what} not staged as a scan: {where}"


@settings(max_examples=BUDGET, deadline=None)
@given(steps=programs(), **SIZES)
def test_program_scan_closing_over_differentiated_values_inside_jit(steps, n, m, seed):
    """The scan body reads y, z, s from a closure while grad traces them: the closure is
    converted (they ride in the carry), one staged scan, equal to eager."""
    def f(x, y, z, s, xs):
        def body(c, xt):
            c2 = 0.5 * np.tanh(c + run(steps, c * xt, y, z, s))
            return c2, np.sum(c2 * c2)
        c, ys = lax.scan(body, x, xs)
        return np.sum(c ** 2) + np.sum(ys)
    where = f"program (n={n}, m={m}, seed={seed}):\n{describe(steps)}"
    args = _inputs(seed, n, m)
    xs = np.random.default_rng(seed).uniform(-1.5, 1.5, (3, n, m))
    g = ff.grad(f, argnums=(0, 1, 2, 3, 4))
    j = ff.jit(g)
    for u, v in zip(ff.tree.leaves(j(*args, xs)), ff.tree.leaves(g(*args, xs))):
        np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-11, err_msg=where)
    names = [e.prim.name for e in j.lower(*args, xs).optimized.eqns]
    assert names.count("scan") == 2, f"not converted: {where}"
