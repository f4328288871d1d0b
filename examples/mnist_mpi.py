"""Data-parallel MNIST over MPI: every rank trains on its shard, gradients averaged.

    mpiexec -n 2 python examples/mnist_mpi.py --fake            # generated digits, seconds
    mpiexec -n 4 python examples/mnist_mpi.py --data ~/mnist    # the four MNIST IDX files
    python examples/mnist_mpi.py --fake                         # one rank: the same script
    srun -n 8 python examples/mnist_mpi.py --data ~/mnist       # under Slurm

Each rank holds the whole model (a 784-256-10 MLP) and takes ``--batchsize``
examples per step, so the global batch is ``batchsize * ranks``. Needs mpi4py
for more than one rank: ``pip install mpi4py mpich``.
"""
import argparse
import os
import sys
import time

import numpy as np

try:
    import funcflux as ff
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import funcflux as ff
from funcflux import data, distributed as dist, losses, nn, optim

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fake", action="store_true",
                     help="generated digit-like images (no download; a check that it trains)")
    src.add_argument("--data", help="folder holding the MNIST IDX files")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batchsize", type=int, default=64, help="examples per rank per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--n", type=int, default=6000, help="training examples with --fake")
    p.add_argument("--save", help="write the trained model here (rank 0 only)")
    args = p.parse_args(argv)
    rank, size = dist.rank(), dist.size()

    if args.fake:  # every rank draws the same images from the same seed
        from _fake_digits import fake_mnist  # examples/_fake_digits.py
        (X, y), (Xt, yt) = fake_mnist(args.n, 1000, seed=0)
    else:
        (X, y), (Xt, yt) = data.load_mnist(args.data)
    X, Xt = X.reshape(len(X), -1), Xt.reshape(len(Xt), -1)

    # Every rank builds a model from its own seed; the broadcast makes them all rank 0's.
    model = nn.Chain(nn.Dense(784, 256, nn.relu, rng=rank), nn.Dense(256, 10, rng=1000 + rank))
    model = dist.broadcast(model, root=0)
    opt = optim.chain(dist.average_gradients(), optim.adam(args.lr))
    loader = data.DataLoader((X, y), batchsize=args.batchsize, shuffle=True, rng=0,
                             shard=(rank, size))

    def loss(m, x, labels):
        return losses.logitcrossentropy(m(x), labels)

    t0 = time.perf_counter()
    model, state, history = ff.train(loss, model, loader, opt, epochs=args.epochs)
    seconds = time.perf_counter() - t0

    # Each rank scores every size-th test image; the counts add up over ranks.
    part = slice(rank, None, size)
    correct = dist.allreduce(int(np.sum(data.onecold(model(Xt[part])) == yt[part])))
    if rank == 0:
        print(f"{size} rank(s), global batch {args.batchsize * size}, {len(loader)} steps per "
              f"epoch, {args.epochs * len(X) / seconds:.0f} samples/s")
        for e, l in enumerate(history["loss"], 1):
            print(f"epoch {e} loss {l:.4f}")
        print(f"test accuracy {correct / len(Xt):.4f}")
        if args.save:
            ff.save(args.save, model)
            print(f"saved {args.save}")


if __name__ == "__main__":
    main()
