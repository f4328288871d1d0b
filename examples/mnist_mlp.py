"""MNIST with a multi-layer perceptron: Flatten, Dense(784 => 256, relu), Dense(256 => 10).

    python examples/mnist_mlp.py --data path/to/mnist   # the four IDX files, gzipped or not
    python examples/mnist_mlp.py --fake                 # generated digits, no download

Trains with Adam on mini-batches through ``ff.train`` and prints the accuracy
on the training and test sets every 2 epochs. ``--fake`` uses digit-like
images drawn by ``examples/_fake_digits.py`` (deterministic; a check that the
code trains, not a measure of the model). Without ``--fake``, a missing data
folder is an error (exit status 2) that says where to get the files.
"""
import argparse
import sys
import time

import numpy as np

import funcflux as ff
from funcflux import data, losses, nn, optim


def get_data(args):
    """``((X_train, y_train), (X_test, y_test))``: images (N, 28, 28) in [0, 1], int labels."""
    if args.fake:
        from _fake_digits import fake_mnist
        return fake_mnist(args.limit or 6000, 1000, seed=args.seed)
    try:
        (xtr, ytr), test = data.load_mnist(args.data)
    except FileNotFoundError as e:
        print(f"{e}\nOr run with --fake to train on generated digits.", file=sys.stderr)
        sys.exit(2)
    return (xtr[:args.limit], ytr[:args.limit]) if args.limit else (xtr, ytr), test


def build_model(seed: int) -> nn.Chain:
    return nn.Chain(nn.Flatten(),
                    nn.Dense(784, 256, nn.relu, rng=seed),
                    nn.Dense(256, 10, rng=seed + 1))


def loss(model, x, y):
    return losses.logitcrossentropy(model(x), y)


def accuracy(model, x, y, batch: int = 5000) -> float:
    hits = sum(int(np.sum(np.argmax(model(x[i:i + batch]), axis=-1) == y[i:i + batch]))
               for i in range(0, len(y), batch))
    return hits / len(y)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/mnist", help="folder with the MNIST IDX files")
    p.add_argument("--fake", action="store_true", help="train on generated digits")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batchsize", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = get_data(args)
    print(f"{len(y_train)} training and {len(y_test)} test images"
          + (" (generated)" if args.fake else ""))
    model = build_model(args.seed)
    print(model)

    def report(info):
        if info.epoch % 2 == 0 or info.epoch == args.epochs:
            print(f"epoch {info.epoch:2d}  loss {info.loss:.4f}  "
                  f"train accuracy {accuracy(info.model, x_train, y_train):.2%}  "
                  f"test accuracy {accuracy(info.model, x_test, y_test):.2%}", flush=True)

    loader = data.DataLoader((x_train, y_train), batchsize=args.batchsize, shuffle=True,
                             rng=args.seed)
    t0 = time.perf_counter()
    model, _, _ = ff.train(loss, model, loader, optim.adam(args.lr), epochs=args.epochs,
                           callbacks=[report], progress=not args.quiet)
    print(f"trained in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
