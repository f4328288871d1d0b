"""The MNIST MLP on a GPU: ``ff.gpu`` moves the model and the batches to CuPy.

    pip install cupy-cuda12x        # the CuPy build for your CUDA version
    python examples/gpu.py          # generated digits; --data DIR for real MNIST

``ff.gpu(tree)`` returns the tree with every NumPy array replaced by a CuPy
array on the GPU (a model, a batch, an optimiser state); ``ff.cpu(tree)``
brings it back. Nothing else changes: the layers, the losses, ``ff.grad`` and
the optimisers compute in the array module of their inputs, so the training
code is the CPU code. Batches are cut on the host by a ``DataLoader`` and
moved one at a time (``device="gpu"``), as a data pipeline would.

Without CuPy or without a CUDA GPU the script says so and exits with status 0
(nothing to do). ``--cpu`` runs the very same code on the CPU instead, to
compare the times or to check the script anywhere.
"""
import argparse
import sys
import time

import numpy as np

import funcflux as ff
from funcflux import data, losses, nn, optim


def gpu_available() -> bool:
    device = getattr(ff, "device", None)
    return device is not None and hasattr(ff, "gpu") and device.is_available()


def loss(model, x, y):
    return losses.logitcrossentropy(model(x), y)


def accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model(x), axis=-1) == y))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu", action="store_true", help="run on the CPU (no GPU needed)")
    p.add_argument("--data", default=None, help="folder with the MNIST IDX files "
                                                "(default: generated digits)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--limit", type=int, default=6000, help="training images to use")
    p.add_argument("--batchsize", type=int, default=256)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    if not args.cpu and not gpu_available():
        why = ("this funcflux has no ff.gpu" if not hasattr(ff, "gpu")
               else "CuPy is not installed, or it finds no CUDA GPU")
        print(f"gpu.py: skipped, {why}. Install CuPy for your CUDA version "
              "(pip install cupy-cuda12x) on a machine with an NVIDIA GPU, or run with --cpu.")
        return 0
    move = (lambda tree: tree) if args.cpu else ff.gpu

    if args.data:
        (x_train, y_train), (x_test, y_test) = data.load_mnist(args.data)
    else:
        from _fake_digits import fake_mnist
        (x_train, y_train), (x_test, y_test) = fake_mnist(args.limit, 1000)
    x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    model = nn.Chain(nn.Flatten(), nn.Dense(784, 256, nn.relu, rng=0), nn.Dense(256, 10, rng=1))
    model = move(model)                      # the model's arrays now live on the GPU
    where = "cpu" if args.cpu else ff.device.device_of(model)
    print(f"model on {where}: {model}")
    # The loader cuts batches on the host and moves each one to the GPU as it is drawn.
    loader = data.DataLoader((x_train, y_train), batchsize=args.batchsize, shuffle=True, rng=0,
                             device=None if args.cpu else "gpu")
    t0 = time.perf_counter()
    model, state, history = ff.train(loss, model, loader, optim.adam(1e-3), epochs=args.epochs,
                                     progress=not args.quiet)
    seconds = time.perf_counter() - t0
    test_acc = accuracy(model, *move((x_test, y_test)))
    print(f"{args.epochs} epochs on {where} in {seconds:.2f} s; final loss "
          f"{history['loss'][-1]:.4f}, test accuracy {test_acc:.1%}")

    host = model if args.cpu else ff.cpu(model)   # back to NumPy, e.g. to save or inspect
    print("back on the CPU:", type(host.layers[1].weight).__name__,
          f"test accuracy {accuracy(host, x_test, y_test):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
