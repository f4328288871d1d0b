"""Every spec line of ``tests/ops/specs_*.py`` through every transform.

For each line hypothesis draws the dimension sizes and a seed; the arrays come
from a NumPy generator (fast, and reproducible from the printed seed). Checks:

- values: the function under ``vjp``, ``jvp`` and ``vmap`` matches plain NumPy;
- derivatives: ``check_grads`` forward and reverse to ``spec.order`` (float64);
- batching: ``vmap`` with random batch axes (and unbatched arguments) matches a
  Python loop, and so does ``vmap`` of ``grad``;
- float32: outputs, cotangents and tangents stay float32 (complex64 for complex
  arguments, drawn by ``C(...)``) when NumPy's own result does;
- nondiff lines: values and batching only, and their cotangents are zero.

The arguments go through ``tests.devices.put`` (``pytest --device strict`` or
``gpu``) while the expected values come from plain NumPy on the host: every
rule then runs on the device's array module, checked against the CPU.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

import funcflux as ff
from funcflux import tree
from funcflux.test_util import check_grads
from tests.devices import get, put
from tests.ops.specs import SPECS, Spec

TIGHT = dict(rtol=1e-7, atol=1e-9)    # same computation, possibly batched differently
TIGHT32 = dict(rtol=2e-5, atol=1e-6)


# ----------------------------------------------------------------------------- drawing
def _tokens(dims: str) -> list[str]:
    return dims.split()


def _letters(spec: Spec) -> list[str]:
    seen: list[str] = []
    for a in spec.args:
        for t in _tokens(a.dims):
            if not t.isdigit() and t not in seen:
                seen.append(t)
    return seen


def _shape(dims: str, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(int(t) if t.isdigit() else sizes[t] for t in _tokens(dims))


def make_args(spec: Spec, sizes: dict[str, int], rng: np.random.Generator) -> list:
    """One set of arguments for ``spec`` with the given dimension sizes."""
    shapes = [_shape(a.dims, sizes) for a in spec.args]
    out: list[Any] = [None] * len(spec.args)
    distinct = [i for i, a in enumerate(spec.args) if a.kind == "float" and a.distinct]
    if distinct:
        # One pool for every distinct argument (in the intersection of their ranges), so
        # values differ across arguments too: maximum(x, y) needs x != y as much as
        # max(x) needs distinct entries.
        lo = max(spec.args[i].lo for i in distinct)
        hi = min(spec.args[i].hi for i in distinct)
        n = sum(int(np.prod(shapes[i])) for i in distinct)
        # One value per cell of an even grid, anywhere in its middle half: neighbours stay
        # gap/2 apart, and no value sits on a fixed point such as 0 (a kink of abs).
        gap = (hi - lo) / n
        pool = lo + gap * (rng.permutation(n) + 0.5 + rng.uniform(-0.25, 0.25, n))
        start = 0
        for i in distinct:
            k = int(np.prod(shapes[i]))
            out[i] = np.asarray(pool[start:start + k].reshape(shapes[i]), dtype=np.float64)
            start += k
    for i, (a, s) in enumerate(zip(spec.args, shapes)):
        if out[i] is not None:
            continue
        if a.kind == "float":
            out[i] = np.asarray(rng.uniform(a.lo, a.hi, s), dtype=np.float64)
        elif a.kind == "complex":
            out[i] = np.asarray(rng.uniform(a.lo, a.hi, s) + 1j * rng.uniform(a.lo, a.hi, s),
                                dtype=np.complex128)
        elif a.kind == "int":
            out[i] = np.asarray(rng.integers(int(a.lo), int(a.hi) + 1, s), dtype=np.int64)
        elif a.kind == "bool":
            out[i] = np.asarray(rng.random(s) < 0.5)
        else:
            raise ValueError(f"spec {spec.name}: unknown argument kind {a.kind!r}")
    return out


def draw_case(spec: Spec, data: Any) -> tuple[dict[str, int], int]:
    lo, hi = spec.sizes
    sizes = {c: data.draw(st.integers(lo, hi), label=f"size {c}") for c in _letters(spec)}
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    return sizes, seed


# ----------------------------------------------------------------------------- helpers
def _is_float(x: Any) -> bool:
    return np.asarray(x).dtype.kind == "f" if x is not None else False


def _float_idx(spec: Spec) -> list[int]:
    """The differentiated arguments: float and complex ones."""
    return [i for i, a in enumerate(spec.args) if a.kind in ("float", "complex")]


def _leaves(x: Any) -> list:
    return tree.leaves(x)


def assert_values(actual: Any, expected: Any, what: str, check_dtype: bool = True, **tol: Any
                  ) -> None:
    al, el = _leaves(get(actual)), _leaves(expected)
    assert len(al) == len(el), f"{what}: {len(al)} output leaves, NumPy gives {len(el)}"
    for k, (a, e) in enumerate(zip(al, el)):
        a, e = np.asarray(a), np.asarray(e)
        where = f"{what}, output leaf {k}"
        assert a.shape == e.shape, f"{where}: shape {a.shape}, expected {e.shape}"
        if check_dtype:
            assert a.dtype == e.dtype, f"{where}: dtype {a.dtype}, expected {e.dtype}"
        if e.dtype.kind in "fc":
            t = tol or (TIGHT32 if e.dtype in (np.float32, np.complex64) else TIGHT)
            np.testing.assert_allclose(a, e, equal_nan=True, err_msg=where, **t)
        else:
            np.testing.assert_array_equal(a, e, err_msg=where)


def _scalar_loss(spec: Spec, args: list) -> Any:
    """``sum`` of every float output leaf of ``spec.fun``: a scalar to take ``grad`` of.

    A complex leaf counts with its real part plus half its imaginary part, so both parts
    reach the gradient.
    """
    parts = [np.sum(np.real(o) + 0.5 * np.imag(o)) if _is_complex_leaf(o) else np.sum(o)
             for o in _leaves(spec.fun(*args)) if _is_float_leaf(o)]
    return functools.reduce(lambda a, b: a + b, parts)


def _is_float_leaf(o: Any) -> bool:
    """Float or complex: the leaves that carry derivatives."""
    d = getattr(o, "dtype", None)
    return d.kind in "fc" if d is not None else isinstance(o, (float, complex))


def _is_complex_leaf(o: Any) -> bool:
    d = getattr(o, "dtype", None)
    return d.kind == "c" if d is not None else isinstance(o, complex)


_SINGLE = {"f": np.dtype(np.float32), "c": np.dtype(np.complex64)}


def _dtype(x: Any) -> Any:
    return np.asarray(x).dtype if isinstance(x, (float, int)) else x.dtype


def _stack(outs: list, axis: int = 0) -> Any:
    first, td = tree.flatten(outs[0])
    cols = [tree.leaves(o) for o in outs]
    return [np.stack([np.asarray(c[k]) for c in cols], axis=axis) for k in range(len(first))]


# ----------------------------------------------------------------------------- the sweep
@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
@given(data=st.data())
def test_sweep(spec: Spec, data: Any) -> None:
    sizes, seed = draw_case(spec, data)
    rng = np.random.default_rng(seed)
    args = make_args(spec, sizes, rng)
    expected = spec.fun(*args)

    dargs = put(args)
    check_primals(spec, dargs, expected)
    if not spec.nondiff:
        check_grads(_plain(spec, dargs), tuple(dargs), order=spec.order, modes=("fwd", "rev"),
                    rtol=spec.rtol, atol=spec.atol, rng=seed)
    else:
        check_zero_cotangents(spec, dargs)
    if spec.vmap:
        check_vmap(spec, sizes, rng)
    check_float32(spec, args)


def _plain(spec: Spec, args: list) -> Any:
    """``spec.fun`` for ``check_grads``, which also calls it on plain (device) arrays.

    A NumPy function that CuPy lacks (``np.linalg.outer``, ``np.matvec``...) or a
    keyword it lacks (``np.sum(initial=)``, ``np.linalg.cholesky(upper=)``) cannot
    dispatch on device arrays outside a transform; inside one, funcflux computes it
    from primitives. For those lines the plain call runs under ``jvp`` with zero
    tangents: the same values and derivatives, computed by funcflux's composition.
    """
    try:
        spec.fun(*args)
        return spec.fun
    except TypeError as e:
        if not any(m in str(e) for m in ("NotImplemented", "no implementation found",
                                          "unexpected keyword argument")):
            raise

    def through_funcflux(*a: Any) -> Any:
        zeros = tuple(np.zeros_like(x) if _is_float_leaf(x) else None for x in a)
        return ff.jvp(spec.fun, a, zeros)[0]
    return through_funcflux


def check_primals(spec: Spec, args: list, expected: Any) -> None:
    """The function's values under each transform are NumPy's."""
    fi = _float_idx(spec)
    if fi:
        out, _ = ff.vjp(spec.fun, *args)
        assert_values(out, expected, f"{spec.name}: primal output of vjp")
        tangents = [np.ones_like(a) if i in fi else None for i, a in enumerate(args)]
        out, _ = ff.jvp(spec.fun, tuple(args), tuple(tangents))
        assert_values(out, expected, f"{spec.name}: primal output of jvp")


def check_zero_cotangents(spec: Spec, args: list) -> None:
    """A nondiff line passes no derivative back: every float argument gets zeros."""
    fi = _float_idx(spec)
    if not fi:
        return
    out, pullback = ff.vjp(spec.fun, *args)
    ct = tree.map(lambda o: np.ones_like(o) if _is_float_leaf(o) else None, out)
    for i, g in enumerate(pullback(ct)):
        if i in fi:
            assert g is not None and not np.any(get(g)), \
                f"{spec.name} is nondiff but argument {i} got a nonzero cotangent {g!r}"


def check_vmap(spec: Spec, sizes: dict, rng: np.random.Generator) -> None:
    """vmap over random batch axes (some arguments unbatched) against a Python loop."""
    # Axes come from the seeded generator, not hypothesis: uniform choices find a wrong
    # batch axis in 8 examples more often than hypothesis' bias toward small values.
    n = int(rng.integers(1, 4))
    examples = [make_args(spec, sizes, rng) for _ in range(n)]
    nargs = len(spec.args)
    axes: list[int | None] = []
    for i in range(nargs):
        nd = examples[0][i].ndim
        axes.append(int(rng.integers(-(nd + 1), nd + 1)) if rng.random() < 0.7 else None)
    if nargs and all(a is None for a in axes):
        axes[0] = 0
    batched_args = [
        examples[0][i] if axes[i] is None else np.stack([ex[i] for ex in examples], axis=axes[i])
        for i in range(nargs)]
    # Unbatched arguments are shared: the loop uses example 0's value for them.
    loop_args = [[examples[0][i] if axes[i] is None else ex[i] for i in range(nargs)]
                 for ex in examples]
    in_axes = tuple(axes)

    got = ff.vmap(spec.fun, in_axes=in_axes)(*put(batched_args))
    want = _stack([spec.fun(*a) for a in loop_args])
    assert_values(got, want, f"{spec.name}: vmap with in_axes={in_axes}, batch {n}")

    fi = _float_idx(spec)
    if spec.nondiff or not fi:
        return
    g = ff.grad(lambda *a: _scalar_loss(spec, list(a)), argnums=tuple(fi))
    got = ff.vmap(g, in_axes=in_axes)(*put(batched_args))
    want = _stack([g(*a) for a in loop_args])
    assert_values(got, want, f"{spec.name}: vmap of grad with in_axes={in_axes}, batch {n}")


def check_float32(spec: Spec, args: list) -> None:
    """float32 in, float32 out (values, cotangents, tangents) wherever NumPy keeps float32."""
    fi = _float_idx(spec)
    if not fi:
        return
    a32 = [a.astype(_SINGLE[a.dtype.kind]) if i in fi else a for i, a in enumerate(args)]
    ref = spec.fun(*a32)
    ref_leaves = _leaves(ref)
    if any(np.asarray(o).dtype in (np.float64, np.complex128) for o in ref_leaves):
        return  # NumPy itself promotes: nothing to preserve
    a32 = put(a32)
    out, pullback = ff.vjp(spec.fun, *a32)
    assert_values(out, ref, f"{spec.name}: float32 output of vjp")
    if spec.nondiff:
        return
    ct = tree.map(lambda o: np.ones_like(o) if _is_float_leaf(o) else None, out)
    for i, g in enumerate(pullback(ct)):
        if i in fi:
            assert _dtype(g) == a32[i].dtype, \
                f"{spec.name}: cotangent of {a32[i].dtype} argument {i} has dtype {_dtype(g)}"
    tangents = [np.ones_like(a) if i in fi else None for i, a in enumerate(a32)]
    out, t_out = ff.jvp(spec.fun, tuple(a32), tuple(tangents))
    assert_values(out, ref, f"{spec.name}: float32 output of jvp")
    for k, (o, t) in enumerate(zip(_leaves(out), tree.flatten_up_to(tree.structure(out), t_out))):
        if _is_float_leaf(o):
            assert t is not None and _dtype(t) == _dtype(o), \
                f"{spec.name}: tangent of {_dtype(o)} output leaf {k} has dtype " \
                f"{None if t is None else _dtype(t)}"
