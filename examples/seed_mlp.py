"""The first tutorial: fit a three-layer MLP to one input-output pair by gradient descent.

    python examples/seed_mlp.py

``Chain(Dense(10, 5, relu), Dense(5, 5, relu), Dense(5, 2))`` and one random
pair ``(x, y)``; plain gradient descent, written out (no optimiser object),
until the mean squared error is below 1e-7. Everything is float32, the
layers' default: an error of 1e-7 is a distance of about 3e-4 between the
output and the target, far above float32's resolution (about 1e-7 relative),
so float32 gets there as reliably as float64 would. Exits with status 1 if
the loss is not below 1e-7 after ``--max-steps`` steps.
"""
import argparse
import sys

import numpy as np

import funcflux as ff
from funcflux import losses, nn

TARGET = 1e-7


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lr", type=float, default=0.1, help="gradient descent step size")
    p.add_argument("--max-steps", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    model = nn.Chain(nn.Dense(10, 5, nn.relu, rng=rng),
                     nn.Dense(5, 5, nn.relu, rng=rng),
                     nn.Dense(5, 2, rng=rng))
    x = rng.random(10, dtype=np.float32)
    y = rng.random(2, dtype=np.float32)
    print(model)

    def loss(model):
        return losses.mse(model(x), y)

    loss_and_grad = ff.value_and_grad(loss)
    for step in range(args.max_steps + 1):
        value, grads = loss_and_grad(model)  # grads is a Chain shaped like the model
        if step % 10 == 0 or value < TARGET:
            print(f"step {step:4d}  loss {float(value):.3e}")
        if value < TARGET:
            break
        model = ff.tree.map(lambda p, g: p - args.lr * g, model, grads)
    else:
        print(f"the loss is still {float(value):.3e} after {args.max_steps} steps",
              file=sys.stderr)
        return 1
    print(f"converged in {step} steps: model(x) = {model(x)}, y = {y}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
