"""What the two MNIST examples share: data (IDX files or generated digits), loss,
accuracy, and a command line around ``ff.train``. Each example supplies its model."""
import argparse
import sys
import time

import numpy as np

import funcflux as ff
from funcflux import data, losses, optim


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


def loss(model, x, y):
    return losses.logitcrossentropy(model(x), y)


def accuracy(model, x, y, batch: int = 5000) -> float:
    hits = sum(int(np.sum(np.argmax(model(x[i:i + batch]), axis=-1) == y[i:i + batch]))
               for i in range(0, len(y), batch))
    return hits / len(y)


def main(doc: str, build_model, *, lr: float, prepare=lambda x: x, argv=None) -> int:
    """Parse the command line, load or generate the digits, train ``build_model(seed)``.

    ``prepare`` reshapes the (N, 28, 28) images for the model (the CNN adds a channel axis).
    """
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--data", default="data/mnist", help="folder with the MNIST IDX files")
    p.add_argument("--fake", action="store_true", help="train on generated digits")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batchsize", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = get_data(args)
    x_train, x_test = prepare(x_train), prepare(x_test)
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

