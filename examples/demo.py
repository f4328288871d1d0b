"""funcflux in one minute: train a small MLP written in plain NumPy.

The model and its loss are ordinary NumPy functions of a dict of arrays; funcflux
differentiates them (``ff.grad``), vectorises per-example gradients (``ff.vmap``)
and takes a Hessian (``ff.hessian``). Runs in about a second::

    python examples/demo.py
"""
import numpy as np

import funcflux as ff


def make_data(rng, n=200):
    """Two interleaved spirals in 2-D, labels 0 and 1: built in, nothing downloaded."""
    t = rng.uniform(0.25, 1.0, n) * 3 * np.pi
    label = rng.integers(0, 2, n)
    r = t / (3 * np.pi)
    angle = t + np.pi * label
    x = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    x += 0.02 * rng.standard_normal(x.shape)
    return x.astype(np.float32), label


def init(rng, sizes=(2, 32, 32, 2)):
    params = {}
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        params[f"W{i}"] = (rng.standard_normal((m, n)) * np.sqrt(2.0 / m)).astype(np.float32)
        params[f"b{i}"] = np.zeros(n, np.float32)
    return params


def predict(params, x):
    """Log-probabilities of the classes: plain NumPy, nothing funcflux-specific."""
    n_layers = len(params) // 2
    h = x
    for i in range(n_layers):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_layers - 1:
            h = np.tanh(h)
    h = h - np.max(h, axis=-1, keepdims=True)
    return h - np.log(np.sum(np.exp(h), axis=-1, keepdims=True))


def loss(params, x, y):
    """Mean cross-entropy; works for a batch and, under vmap, for one example."""
    onehot = y[..., None] == np.arange(2)
    return -np.sum(predict(params, x) * onehot) / y.size


def accuracy(params, x, y):
    return float(np.mean(np.argmax(predict(params, x), axis=-1) == y))


def main():
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    params = init(rng)

    # Training: ff.grad returns a dict shaped like params; the update is a tree map.
    grad_fn = ff.value_and_grad(loss)
    lr = 0.5
    for step in range(301):
        value, grads = grad_fn(params, x, y)
        params = ff.tree.map(lambda p, g: p - lr * g, params, grads)
        if step % 50 == 0:
            print(f"step {step:3d}  loss {float(value):.4f}  accuracy {accuracy(params, x, y):.2f}")

    # Per-example gradients in one vectorised call (no Python loop over examples).
    per_example = ff.vmap(ff.grad(loss), in_axes=(None, 0, 0))(params, x[:8], y[:8])
    norms = np.sqrt(sum(np.sum(g.reshape(8, -1) ** 2, axis=1) for g in per_example.values()))
    print("per-example gradient norms (first 8):", np.round(norms, 3))

    # A Hessian of a small function of the inputs: curvature of the loss in x for one point.
    h = ff.hessian(lambda xi: loss(params, xi, y[0]))(x[0])
    print("Hessian of the loss w.r.t. one input point:",
          np.array2string(h, precision=3).replace("\n", ""))


if __name__ == "__main__":
    main()
