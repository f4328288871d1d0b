"""Worker for ``mpiexec -n 2 python tests/mpi/faults.py MODE``: one rank fails, none may hang.

Each mode makes rank 1 leave in a different way while rank 0 goes on into a
collective that waits for it; tests/test_distributed.py asserts that the job
ends (within its timeout) with a message naming rank 1:

- ``nan``: rank 1's shard holds a NaN, so ``ff.train`` raises FloatingPointError
  there (uncaught) while rank 0 averages gradients.
- ``caught``: the same, but rank 1 catches the error, keeps ``err.train_result``
  and ends its program normally.
- ``early``: rank 1 raises after asking its rank but before the first collective
  (it cannot read its shard) while rank 0 broadcasts the model.
- ``exit``: rank 1 calls ``sys.exit(0)`` while rank 0 waits in ``dist.barrier()``.

Rank 0 prints ``rank 0 was not stopped`` if it ever gets past the collective.
"""
import sys

import numpy as np


def main(mode):
    import funcflux as ff
    from funcflux import data, distributed as dist, optim

    if mode == "early":
        if dist.rank() == 1:
            raise RuntimeError("rank one cannot read its data")
        dist.broadcast({"w": np.zeros(3)})
    elif mode == "exit":
        if dist.rank() == 1:
            sys.exit(0)
        dist.barrier()
    else:
        r, n = dist.rank(), dist.size()
        g = np.random.default_rng(0)
        X, Y = g.normal(size=(32, 3)), g.normal(size=32)
        X[13, 1] = np.nan  # global step 2 (samples 8..15), rank 1's part (12..15)
        loader = data.DataLoader((X, Y), batchsize=4, shard=(r, n))
        loss = lambda p, x, y: np.mean((x @ p["w"] - y) ** 2)
        opt = optim.chain(dist.average_gradients(), optim.sgd(0.1))
        try:
            ff.train(loss, {"w": np.zeros(3)}, loader, opt, epochs=2, progress=False)
        except FloatingPointError as err:
            if mode != "caught":
                raise
            model = err.train_result[0]
            print(f"rank {r} kept the model of the last finished step: "
                  f"{np.isfinite(model['w']).all()}", flush=True)
            return
    print(f"rank {dist.rank()} was not stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
