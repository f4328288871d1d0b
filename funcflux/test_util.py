"""``check_grads``: compare funcflux's derivatives with finite differences.

Use it to test your own rules (a custom primitive, a ``custom_vjp``) the way
the library tests its own: forward mode compares ``jvp`` along a random
direction with a central difference of ``f``; reverse mode compares, for each
input leaf separately, ``<vjp(ct), v>`` with the central difference of
``<ct, f>`` along ``v`` restricted to that leaf, so a failure names the input.
At order 2 the same checks run on the derivative functions themselves
(``x -> jvp(f, x, v)`` and ``x -> vjp(f, x)(ct)``), which exercises
grad-of-grad and Hessian-vector products.

Complex values follow JAX's convention. A complex input is perturbed in its
real and imaginary parts at once (the random directions are complex), and a
reverse-mode rule is checked as the transpose of the real-linear tangent map
under the pairing ``<a, b> = Re sum(a * b)`` (no conjugate): ``Re sum(ct * J v)``
must equal ``Re sum(vjp(ct) * v)``. So a holomorphic ``f`` has
``vjp(ct) = ct * f'(z)``, and ``grad`` of a real function of ``z`` is
``df/dx - 1j df/dy`` (``grad(abs)(z) == conj(z) / abs(z)``).

Only floating-point and complex leaves of ``args`` are perturbed; integer, bool
and other leaves are held constant. The checker itself computes with NumPy on concrete
values; arrays of another array module (CuPy) are perturbed in that module and
brought to NumPy only to compare.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from . import tree
from .core.backend import array_module

__all__ = ["check_grads"]

#: (eps, rtol, atol) by the least precise floating dtype involved.
_DEFAULTS = {
    np.dtype(np.float64): (1e-6, 1e-4, 1e-5),
    np.dtype(np.float32): (4e-3, 2e-2, 2e-2),
    np.dtype(np.float16): (3e-2, 1e-1, 1e-1),
}

_MODES = {"fwd": "forward", "rev": "reverse"}

FAILED = (
    "check_grads failed: {mode} mode at order {order} ({chain}), at {where}.\n"
    "  {what}\n"
    "  worst element{index}: expected (finite differences) {exp!r}, actual {act!r}, "
    "|diff| {diff:.3g} > tolerance {tol:.3g} (atol={atol:g}, rtol={rtol:g}, eps={eps:g})\n"
    "  expected: {exp_arr}\n"
    "  actual:   {act_arr}"
)


def check_grads(f: Callable[..., Any], args: Sequence[Any], order: int = 2,
                modes: Sequence[str] = ("fwd", "rev"), *, eps: float | None = None,
                atol: float | None = None, rtol: float | None = None, rng: Any = None) -> None:
    """Check ``f``'s forward- and reverse-mode derivatives against finite differences.

    Args:
      f: a function of the positional ``args`` (pytrees allowed) returning a
        pytree of arrays.
      args: a tuple of positional arguments; only floating-point and complex
        leaves vary.
      order: check derivatives up to this order (2: derivatives of derivatives).
      modes: any of ``"fwd"`` (``jvp``) and ``"rev"`` (``vjp``).
      eps, atol, rtol: finite-difference step and tolerances; by default chosen
        from the least precise floating dtype among the inputs and outputs.
      rng: a seed or ``np.random.Generator`` for the random directions (seed 0
        by default, so a failure reproduces).

    Raises:
      AssertionError: naming the mode, the order, the pytree path of the worst
        leaf, and the expected and actual values.

    >>> import numpy as np
    >>> from funcflux.test_util import check_grads
    >>> check_grads(lambda x, y: np.sum(np.tanh(x) * y), (np.array([0.1, 0.5]), np.array([2.0, 3.0])))
    """
    if not isinstance(args, (tuple, list)):
        raise TypeError(f"check_grads(f, args): args must be a tuple of positional arguments, "
                        f"got {type(args).__name__}; write (x,) for a single argument.")
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    bad = [m for m in modes if m not in _MODES]
    if bad:
        raise ValueError(f"check_grads: unknown mode(s) {bad}; use 'fwd' and/or 'rev'.")
    if order < 1:
        raise ValueError(f"check_grads: order must be at least 1, got {order}.")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
        0 if rng is None else rng)

    pl, in_def = tree.flatten_with_path(tuple(args))
    leaves = [np.asarray(x) if isinstance(x, (float, complex)) else x for _, x in pl]
    var = [i for i, x in enumerate(leaves) if _is_float(x)]
    names = ["args" + tree.keystr(pl[i][0]) for i in var]

    def flat_f(xs: list) -> Any:
        full = list(leaves)
        for i, x in zip(var, xs):
            full[i] = x
        return f(*tree.unflatten(in_def, full))

    xs = [leaves[i] for i in var]
    if not xs:
        raise ValueError("check_grads: args have no floating-point leaf to differentiate.")
    out = flat_f(xs)
    dts = [np.dtype(x.dtype) for x in xs] + [
        np.dtype(o.dtype) for o in tree.leaves(out) if _is_float(o) and hasattr(o, "dtype")]
    known = [_real_dtype(d) for d in dts if _real_dtype(d) in _DEFAULTS]
    worst = max(known, key=lambda d: np.finfo(d).eps) if known else np.dtype(np.float64)
    d_eps, d_rtol, d_atol = _DEFAULTS[worst]
    tol = _Tol(d_eps if eps is None else eps, d_rtol if rtol is None else rtol,
               d_atol if atol is None else atol)
    out_namer = lambda p: "output" + ("" if not p else tree.keystr(p))
    _check(flat_f, xs, names, out_namer, order, modes, tol, rng, [])


class _Tol:
    __slots__ = ("eps", "rtol", "atol")

    def __init__(self, eps: float, rtol: float, atol: float):
        self.eps, self.rtol, self.atol = eps, rtol, atol


# ----------------------------------------------------------------------------- recursion
def _check(fun: Callable[[list], Any], xs: list, names: list[str], out_namer: Callable,
           order: int, modes: tuple, tol: _Tol, rng: np.random.Generator, chain: list) -> None:
    """Check ``fun`` (a function of a list of float arrays) to ``order``; recurse."""
    from .transforms.forward import jvp
    from .transforms.reverse import vjp

    ref = fun(xs)  # the plain call: transforms must reproduce it
    if "fwd" in modes:
        v = [_random_like(x, rng) for x in xs]
        _check_fwd(fun, xs, v, ref, names, out_namer, tol, chain + ["jvp"])
        if order > 1:
            g = lambda ys: jvp(fun, (ys,), (v,))[1]
            _check(g, xs, names, lambda p: f"the tangent of {out_namer(p)}", order - 1,
                   modes, tol, rng, chain + ["jvp"])
    if "rev" in modes:
        ct = tree.map(lambda o: _random_like(o, rng) if _is_float(o) else None, ref)
        _check_rev(fun, xs, ct, ref, names, out_namer, tol, rng, chain + ["vjp"])
        if order > 1:
            g = lambda ys: vjp(fun, ys)[1](ct)[0]
            _check(g, xs, names, lambda p: f"the cotangent of {names[p[0].idx]}", order - 1,
                   modes, tol, rng, chain + ["vjp"])


def _check_fwd(fun: Callable, xs: list, v: list, ref: Any, names: list[str],
               out_namer: Callable, tol: _Tol, chain: list) -> None:
    from .transforms.forward import jvp

    out, t_out = jvp(fun, (xs,), (v,))
    opl, out_def = tree.flatten_with_path(ref)
    _same_primal(out, out_def, opl, out_namer, chain)
    tl = tree.flatten_up_to(out_def, t_out, "the tangent output of jvp")
    plus = tree.flatten_up_to(out_def, fun(_shift(xs, v, tol.eps)), "f(x + eps v)")
    minus = tree.flatten_up_to(out_def, fun(_shift(xs, v, -tol.eps)), "f(x - eps v)")
    worst = None
    for (path, o), t, p, m in zip(opl, tl, plus, minus):
        if not _is_float(o):
            continue
        where = out_namer(path)
        if t is None:
            raise AssertionError(f"check_grads failed: forward mode ({_describe(chain)}): jvp "
                                 f"returned no tangent for {where}.")
        if np.shape(t) != np.shape(o):
            raise AssertionError(
                f"check_grads failed: forward mode at order {len(chain)} ({_describe(chain)}): "
                f"the tangent of {where} has shape {np.shape(t)}, but the output has shape "
                f"{np.shape(o)}.")
        expected = (_np(p) - _np(m)) / (2 * tol.eps)
        r = _compare(expected, _np(t), tol)
        if r is not None and (worst is None or r[0] > worst[0]):
            worst = r + (where,)
    if worst is not None:
        culprit = _forward_culprit(fun, xs, v, names, out_def, tol)
        what = "the jvp tangent differs from the central difference along a random direction"
        if culprit:
            what += f"; checked one input at a time, the wrong one(s): {culprit}"
        _fail("forward", chain, worst[-1], what, worst, tol)


def _forward_culprit(fun: Callable, xs: list, v: list, names: list[str], out_def: Any,
                     tol: _Tol) -> str:
    """Re-run the forward check one input leaf at a time to name the failing inputs."""
    from .transforms.forward import jvp

    bad = []
    for k in range(len(xs)):
        vk = [vi if i == k else _zeros_like(vi) for i, vi in enumerate(v)]
        _, t_out = jvp(fun, (xs,), (vk,))
        tl = tree.flatten_up_to(out_def, t_out, "tangent")
        plus = tree.flatten_up_to(out_def, fun(_shift(xs, vk, tol.eps)), "f")
        minus = tree.flatten_up_to(out_def, fun(_shift(xs, vk, -tol.eps)), "f")
        for t, p, m in zip(tl, plus, minus):
            if t is not None and _is_float(p) and \
                    _compare((_np(p) - _np(m)) / (2 * tol.eps), _np(t), tol) is not None:
                bad.append(names[k])
                break
    return ", ".join(bad)


def _check_rev(fun: Callable, xs: list, ct: Any, ref: Any, names: list[str],
               out_namer: Callable, tol: _Tol, rng: np.random.Generator, chain: list) -> None:
    from .transforms.reverse import vjp

    out, pullback = vjp(fun, xs)
    opl, out_def = tree.flatten_with_path(ref)
    _same_primal(out, out_def, opl, out_namer, chain)
    (g,) = pullback(ct)
    cts = tree.flatten_up_to(out_def, ct, "cotangent")
    for k, (x, gk) in enumerate(zip(xs, g)):
        if gk is None or np.shape(gk) != np.shape(x):
            raise AssertionError(
                f"check_grads failed: reverse mode at order {len(chain)} ({_describe(chain)}): "
                f"the cotangent of {names[k]} has shape {None if gk is None else np.shape(gk)}, "
                f"but the input has shape {np.shape(x)}.")

    def phi(ys: list) -> float:
        o = tree.flatten_up_to(out_def, fun(ys), "f(x)")
        return sum(_pair(c, oi) for c, oi in zip(cts, o) if c is not None)

    def probe(dirs: list) -> tuple | None:
        expected = (phi(_shift(xs, dirs, tol.eps)) - phi(_shift(xs, dirs, -tol.eps))) / (2 * tol.eps)
        actual = sum(_pair(gk, d) for gk, d in zip(g, dirs))
        return _compare(np.asarray(expected), np.asarray(actual), tol)

    # One probe along a direction moving every input; only when it fails, one probe per
    # input leaf to name the wrong one(s) (a random direction hides no error but by chance).
    v = [_random_like(x, rng) for x in xs]
    r = probe(v)
    if r is None:
        return
    worst = None
    for k in range(len(xs)):
        rk = probe([vi if i == k else _zeros_like(vi) for i, vi in enumerate(v)])
        if rk is not None and (worst is None or rk[0] > worst[0]):
            worst = rk + (names[k],)
    if worst is None:  # only the sum over inputs is off: report it as a whole
        worst = r + (", ".join(names),)
    _fail("reverse", chain, worst[-1],
          "<vjp(ct) at this input, v> differs from the central difference of <ct, f> "
          "along a random direction v of this input", worst, tol)


def _same_primal(out: Any, out_def: Any, opl: list, namer: Callable, chain: list) -> None:
    ol = tree.flatten_up_to(out_def, out, "the primal output of the transform")
    for (path, r), o in zip(opl, ol):
        if not _is_float(r):
            continue
        a, e = _np(o), _np(r)
        if a.shape != e.shape or not np.allclose(a, e, rtol=1e-6, atol=1e-6, equal_nan=True):
            raise AssertionError(
                f"check_grads failed: {_MODES['fwd' if chain[-1] == 'jvp' else 'rev']} mode at "
                f"order {len(chain)} ({_describe(chain)}): the primal output at {namer(path)} "
                f"differs from calling the function.\n  expected: {_show(e)}\n  actual:   {_show(a)}")


# ----------------------------------------------------------------------------- comparing
def _compare(expected: np.ndarray, actual: np.ndarray, tol: _Tol) -> tuple | None:
    """None when close; else (badness, index, expected, actual, diff, tolerance, arrays)."""
    expected, actual = np.broadcast_arrays(expected, actual)
    if expected.size == 0:
        return None
    diff = np.abs(actual - expected)
    bound = tol.atol + tol.rtol * np.abs(expected)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isfinite(diff), diff / bound, np.inf)
    i = int(np.argmax(ratio))
    if ratio.flat[i] <= 1.0:
        return None
    idx = np.unravel_index(i, expected.shape) if expected.ndim else ()
    return (float(ratio.flat[i]), idx, expected.flat[i].item(), actual.flat[i].item(),
            float(diff.flat[i]), float(bound.flat[i]), expected, actual)


def _fail(mode: str, chain: list, where: str, what: str, r: tuple, tol: _Tol) -> None:
    _, idx, e, a, d, b, earr, aarr = r[:8]
    raise AssertionError(FAILED.format(
        mode=mode, order=len(chain), chain=_describe(chain), where=where, what=what,
        index=f" {tuple(int(i) for i in idx)}" if idx else "", exp=e, act=a, diff=d, tol=b,
        atol=tol.atol, rtol=tol.rtol, eps=tol.eps, exp_arr=_show(earr), act_arr=_show(aarr)))


def _describe(chain: list) -> str:
    """``['vjp', 'jvp'] -> 'jvp of the vjp of f'``: the derivative being checked."""
    return " of the ".join(reversed(chain)) + " of f"


def _show(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a), precision=6, threshold=20, max_line_width=100,
                           separator=", ").replace("\n", "\n            ")


# ----------------------------------------------------------------------------- arrays
def _is_float(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, (float, complex)):
        return True
    d = getattr(x, "dtype", None)
    return d is not None and getattr(d, "kind", "") in ("f", "c")


def _real_dtype(d: Any) -> np.dtype:
    """The real dtype of the parts of ``d`` (float32 for complex64)."""
    d = np.dtype(d)
    return np.finfo(d).dtype if d.kind == "c" else d


def _np(x: Any) -> np.ndarray:
    """A concrete value as a float64 (or complex128) NumPy array, from any array module."""
    if not isinstance(x, (np.ndarray, np.generic, float, int, complex)):
        get = getattr(x, "get", None)
        if callable(get):
            x = get()
    complex_ = isinstance(x, complex) or getattr(getattr(x, "dtype", None), "kind", "") == "c"
    return np.asarray(x, dtype=np.complex128 if complex_ else np.float64)


def _pair(a: Any, b: Any) -> float:
    """``Re sum(a * b)``, no conjugate: the pairing whose transposes the VJP rules are."""
    return float(np.real(np.sum(_np(a) * _np(b))))


def _random_like(x: Any, rng: np.random.Generator) -> Any:
    shape = tuple(np.shape(x)) if not hasattr(x, "shape") else tuple(x.shape)
    dtype = getattr(x, "dtype", np.dtype(np.float64))
    if np.dtype(dtype).kind == "c":
        v = np.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), dtype=dtype)
    else:
        v = np.asarray(rng.standard_normal(shape), dtype=dtype)
    xp = array_module(x)
    return v if xp is np else xp.asarray(v)


def _zeros_like(x: Any) -> Any:
    return array_module(x).zeros_like(x)


def _shift(xs: list, v: list, step: float) -> list:
    out = []
    for x, d in zip(xs, v):
        xp = array_module(x)
        out.append(xp.asarray(x + step * d, dtype=x.dtype))
    return out
