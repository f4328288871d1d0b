"""CNN benchmark: one SGD step of a small convnet, funcflux against hand-written im2col NumPy.

Run from the repository root::

    python benchmarks/bench_cnn.py            # a few seconds of timing
    python benchmarks/bench_cnn.py --quick    # smoke run: every contender once

The model (MNIST-sized, batch 64, float32)::

    Conv(3x3, 1 => 8, relu) -> MaxPool(2) -> Conv(3x3, 8 => 16, relu) -> MaxPool(2)
    -> Flatten -> Dense(400 => 10) -> softmax cross-entropy

funcflux runs ``ff.grad`` of the loss over the layer objects (``funcflux.nn``)
and an ``ff.tree.map`` update. NumPy runs a forward and backward pass derived by
hand: im2col through a strided view and one copy, one batched matmul per conv,
max-pooling by strided slices, in-place updates. PyTorch (eager, CPU) runs the
same step when it is importable. Contenders take turns round by round and the
minimum over rounds is reported, so load from other processes falls on all of
them alike (it still moves the numbers on a shared machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import funcflux as ff  # noqa: E402
from funcflux import nn  # noqa: E402
from bench_core import allocator, blas_info, cpu_model, fmt_time, measure  # noqa: E402

F32 = np.float32
LR = 0.01
BATCH, N_CLASSES = 64, 10
TARGET = 1.3


# ----------------------------------------------------------------------------- funcflux
def make_model(seed: int = 0) -> nn.Chain:
    return nn.Chain(nn.Conv(3, 1, 8, nn.relu, rng=seed), nn.MaxPool(2),
                    nn.Conv(3, 8, 16, nn.relu, rng=seed + 1), nn.MaxPool(2),
                    nn.Flatten(), nn.Dense(400, N_CLASSES, rng=seed + 2))


def loss(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """Mean softmax cross-entropy: ordinary NumPy on the model's output."""
    z = model(x)
    s = z - np.max(z, axis=1, keepdims=True)
    logp = s - np.log(np.sum(np.exp(s), axis=1, keepdims=True))
    return -np.sum(logp * (y[:, None] == np.arange(N_CLASSES))) / y.shape[0]


def ff_step(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    g = ff.grad(loss)(model, x, y)
    return ff.tree.map(lambda w, gw: w - LR * gw, model, g)


# ----------------------------------------------------------------------------- NumPy by hand
def params_of(model: Any) -> dict:
    c1, _, c2, _, _, d = model
    return {"w1": c1.weight.copy(), "b1": c1.bias.copy(), "w2": c2.weight.copy(),
            "b2": c2.bias.copy(), "wd": d.weight.copy(), "bd": d.bias.copy()}


def im2col(x: np.ndarray, k: int) -> np.ndarray:
    """``(N, C, H, W) -> (N, C*k*k, OH*OW)`` through a strided view and one copy."""
    n, c, h, w = x.shape
    oh, ow = h - k + 1, w - k + 1
    s = x.strides
    v = np.lib.stride_tricks.as_strided(x, (n, c, k, k, oh, ow), s + s[2:])
    return np.ascontiguousarray(v).reshape(n, c * k * k, oh * ow)


def col2im(cols: np.ndarray, shape: tuple, k: int) -> np.ndarray:
    n, c, h, w = shape
    oh, ow = h - k + 1, w - k + 1
    cols = cols.reshape(n, c, k, k, oh, ow)
    dx = np.zeros(shape, cols.dtype)
    for i in range(k):
        for j in range(k):
            dx[:, :, i:i + oh, j:j + ow] += cols[:, :, i, j]
    return dx


def conv_relu_fwd(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple:
    n, _, h, wd = x.shape
    o, _, k, _ = w.shape
    cols = im2col(x, k)
    out = w.reshape(o, -1) @ cols                # (N, O, OH*OW), one batched matmul
    out += b[:, None]
    np.maximum(out, 0, out=out)
    return out.reshape(n, o, h - k + 1, wd - k + 1), cols


def conv_relu_bwd(dout: np.ndarray, out: np.ndarray, cols: np.ndarray, w: np.ndarray,
                  x_shape: tuple | None) -> tuple:
    n, o = dout.shape[:2]
    dout = dout * (out > 0)
    d2 = dout.reshape(n, o, -1)
    dw = (d2 @ cols.transpose(0, 2, 1)).sum(axis=0).reshape(w.shape)
    db = d2.sum(axis=(0, 2))
    dx = None if x_shape is None else col2im(w.reshape(o, -1).T @ d2, x_shape, w.shape[2])
    return dx, dw, db


def pool_fwd(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    return np.maximum(np.maximum(x[:, :, 0:h:2, 0:w:2], x[:, :, 0:h:2, 1:w:2]),
                      np.maximum(x[:, :, 1:h:2, 0:w:2], x[:, :, 1:h:2, 1:w:2]))


def pool_bwd(dout: np.ndarray, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    dx = np.zeros_like(x)
    h, w = x.shape[2] // 2 * 2, x.shape[3] // 2 * 2
    for i in range(2):
        for j in range(2):
            dx[:, :, i:h:2, j:w:2] = dout * (x[:, :, i:h:2, j:w:2] == out)
    return dx


def np_grads(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    n = x.shape[0]
    a1, cols1 = conv_relu_fwd(x, p["w1"], p["b1"])
    m1 = pool_fwd(a1)
    a2, cols2 = conv_relu_fwd(m1, p["w2"], p["b2"])
    m2 = pool_fwd(a2)
    f = m2.reshape(n, -1)
    z = f @ p["wd"].T
    z += p["bd"]
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    z[np.arange(n), y] -= 1
    z /= n                                        # dloss/dz
    g = {"wd": z.T @ f, "bd": z.sum(axis=0)}
    dm2 = (z @ p["wd"]).reshape(m2.shape)
    dm1, g["w2"], g["b2"] = conv_relu_bwd(pool_bwd(dm2, a2, m2), a2, cols2, p["w2"], m1.shape)
    _, g["w1"], g["b1"] = conv_relu_bwd(pool_bwd(dm1, a1, m1), a1, cols1, p["w1"], None)
    return g


def np_step(p: dict, x: np.ndarray, y: np.ndarray) -> dict:
    for k, gk in np_grads(p, x, y).items():
        p[k] -= LR * gk
    return p


# ----------------------------------------------------------------------------- PyTorch
def torch_step_fn(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    try:
        import torch
    except Exception:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    c1, _, c2, _, _, d = model
    tp = [torch.tensor(a, requires_grad=True) for a in
          (c1.weight, c1.bias, c2.weight, c2.bias, d.weight, d.bias)]
    tx, ty = torch.tensor(x), torch.tensor(y)
    F = torch.nn.functional

    def step() -> None:
        w1, b1, w2, b2, wd, bd = tp
        h = F.max_pool2d(F.relu(F.conv2d(tx, w1, b1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2)), 2)
        out = F.cross_entropy(F.linear(h.flatten(1), wd, bd), ty)
        grads = torch.autograd.grad(out, tp)
        with torch.no_grad():
            for t, gt in zip(tp, grads):
                t -= LR * gt
    return step


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="run every contender once (smoke test)")
    ap.add_argument("--no-peers", action="store_true", help="skip PyTorch")
    ap.add_argument("--system-malloc", action="store_true",
                    help="leave glibc's allocator settings alone (no ff.tune_allocator())")
    args = ap.parse_args(argv)
    print(allocator(args.system_malloc))

    rng = np.random.default_rng(0)
    model = make_model()
    x = rng.standard_normal((BATCH, 1, 28, 28)).astype(F32)
    y = rng.integers(0, N_CLASSES, BATCH)

    # Same gradients first: a benchmark of a wrong answer is worthless.
    g_ff = ff.grad(loss)(model, x, y)
    g_np = np_grads(params_of(model), x, y)
    got = {"w1": g_ff[0].weight, "b1": g_ff[0].bias, "w2": g_ff[2].weight, "b2": g_ff[2].bias,
           "wd": g_ff[5].weight, "bd": g_ff[5].bias}
    for k, v in got.items():
        assert v.dtype == F32, (k, v.dtype)
        np.testing.assert_allclose(v, g_np[k], rtol=2e-3, atol=2e-5, err_msg=k)

    st = {"ff": model, "np": params_of(model)}

    def run_ff() -> None:
        st["ff"] = ff_step(st["ff"], x, y)

    def run_np() -> None:
        np_step(st["np"], x, y)

    fns = {"funcflux": run_ff, "numpy": run_np}
    t_step = None if args.no_peers else torch_step_fn(model, x, y)
    if t_step is not None:
        fns["torch"] = t_step
    samples = measure(fns, args.quick, min_time=0.3, rounds=11)
    # Ratios paired round by round (both ran back to back), then the median: robust to the
    # load swings of a shared machine, like bench_core.
    base = samples["numpy"]
    blas, _ = blas_info()
    print(f"CNN SGD step, batch {BATCH}, 28x28, float32 | NumPy {np.__version__}, BLAS {blas} | "
          f"{cpu_model()}, {os.cpu_count()} cores")
    ratios = {}
    for name, ts in samples.items():
        ratios[name] = statistics.median(t / b for t, b in zip(ts, base))
        print(f"  {name:9s} {fmt_time(min(ts))} per step (median {fmt_time(statistics.median(ts)).strip()}), "
              f"{ratios[name]:5.2f}x NumPy (median of paired rounds)")
    if "torch" not in samples:
        print("  torch     not measured" + (" (--no-peers)" if args.no_peers else
                                             " (not importable)"))
    ratio = ratios["funcflux"]
    print(f"funcflux / NumPy = {ratio:.2f}x (target <= {TARGET}x): "
          f"{'met' if ratio <= TARGET else 'NOT met'}" + (" [--quick: one call each, not a "
                                                         "measurement]" if args.quick else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
