"""Differentially private SGD: per-example gradients with ``vmap(grad)``, clipped and noised.

    python examples/per_example_grads.py

DP-SGD (Abadi et al., 2016) bounds how much any one example can move the
model: at every step it takes each example's gradient separately, scales
each down to a norm of at most ``C`` (``--clip``), sums them, adds Gaussian
noise of standard deviation ``sigma * C`` (``--noise``), and divides by the
batch size. The per-example gradients come from one vectorised call,
``ff.vmap(ff.grad(loss), in_axes=(None, 0, 0))``: the loss is written for one
example, and vmap runs it over the batch without a Python loop. The script
prints the gradient norms of a few examples before and after clipping, checks
one of them against a plain ``ff.grad`` on that example alone, and trains a
small classifier on the two-moons data. (It does not compute the privacy
budget epsilon that a given noise, batch size and number of steps buy; a
privacy accountant does that.)
"""
import argparse
import sys

import numpy as np

import funcflux as ff
from funcflux import data, losses, nn, optim


def example_loss(model, x, y):
    """Cross-entropy of ONE example: x of shape (2,), y an integer label."""
    return losses.logitcrossentropy(model(x), y)


def batch_loss(model, X, Y):
    return losses.logitcrossentropy(model(X), Y)


def per_example_norms(grads):
    """The global L2 norm of each example's gradient: a vector of length batch."""
    return np.sqrt(sum(np.sum(g.reshape(g.shape[0], -1) ** 2, axis=1)
                       for g in ff.tree.leaves(grads)))


def private_gradient(model, x, y, clip, noise, rng, show=False):
    """One DP-SGD gradient: clip each example's gradient to norm <= clip, sum, noise, average."""
    grads = ff.vmap(ff.grad(example_loss), in_axes=(None, 0, 0))(model, x, y)
    norms = per_example_norms(grads)                       # (B,)
    scale = np.minimum(1.0, clip / (norms + 1e-12))        # (B,)
    clipped = ff.tree.map(lambda g: g * scale.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype),
                          grads)
    if show:
        print("per-example gradient norms, first 6 examples:")
        print("  before clipping:", np.round(norms[:6], 3))
        print("  after clipping: ", np.round(per_example_norms(clipped)[:6], 3))
    batch = x.shape[0]
    return ff.tree.map(
        lambda g: ((np.sum(g, axis=0) + rng.normal(0.0, noise * clip, g.shape[1:])) / batch
                   ).astype(g.dtype),
        clipped)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batchsize", type=int, default=64)
    p.add_argument("--clip", type=float, default=2.0, help="per-example norm bound C")
    p.add_argument("--noise", type=float, default=0.5, help="noise multiplier sigma")
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    X, Y = data.make_moons(2000, noise=0.15, rng=rng)
    model = nn.Chain(nn.Dense(2, 32, nn.tanh, rng=rng), nn.Dense(32, 2, rng=rng))

    # vmap(grad) agrees with grad on one example at a time.
    many = ff.vmap(ff.grad(example_loss), in_axes=(None, 0, 0))(model, X[:8], Y[:8])
    one = ff.grad(example_loss)(model, X[3], Y[3])
    err = max(float(np.max(np.abs(a[3] - b))) for a, b in zip(ff.tree.leaves(many),
                                                                ff.tree.leaves(one)))
    print(f"vmap(grad) vs grad of example 3 alone: max difference {err:.1e}")
    assert err < 1e-5, err

    state = optim.setup(optim.sgd(args.lr, momentum=0.9), model)
    loader = data.DataLoader((X, Y), batchsize=args.batchsize, shuffle=True, rng=rng,
                             partial=False)
    step = 0
    while step < args.steps:
        for x, y in loader:
            g = private_gradient(model, x, y, args.clip, args.noise, rng, show=step == 0)
            state, model = optim.step(state, model, g)
            step += 1
            if step % 100 == 0 or step == args.steps:
                acc = float(np.mean(np.argmax(model(X), axis=-1) == Y))
                print(f"step {step:4d}  loss {float(batch_loss(model, X, Y)):.4f}  "
                      f"accuracy {acc:.1%}")
            if step == args.steps:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
