"""Worker for ``mpiexec -n 2``: collectives, packing, mismatch errors, shards, training.

Run by tests/test_distributed.py (one launch for all of these checks, since each
launch costs about a second). Any failed assertion ends the job through the
abort hook, with the rank and the traceback in the output; the last line on
success is ``ALL OK``.
"""
import sys
from collections import namedtuple

import numpy as np

Pair = namedtuple("Pair", "a b")


class CountingComm:
    """Forwards to a communicator and records the name of every MPI call made through it."""

    def __init__(self, comm):
        self._comm = comm
        self.calls = []

    def __getattr__(self, name):
        attr = getattr(self._comm, name)
        if not callable(attr) or name in ("Get_rank", "Get_size", "Abort"):
            return attr

        def counted(*args, **kwargs):
            self.calls.append(name)
            return attr(*args, **kwargs)
        return counted

    def take(self):
        out, self.calls = self.calls, []
        return out


def make(r):
    """Rank ``r``'s tree: seven dtypes, NumPy and Python scalars, nested nodes, a None."""
    return {
        "f32": [np.full((2, 3), r + 1, np.float32), np.float32(r)],
        "f64": Pair(np.arange(4.0) * (r + 1), 2.5 * r),
        "i64": (np.array([r, 10]), r + 7),
        "i32": np.int32(r + 5),
        "u8": np.array([r, 3], np.uint8),
        "f16": np.array([0.5 * (r + 1)], np.float16),
        "c": np.array([1 + 1j * r]),
        "none": None,
    }


DTYPES_IN_MAKE = 7


def same(a, b, exact=True):
    """Trees equal leaf by leaf, with the same kinds of leaves and dtypes."""
    import funcflux as ff
    la, ta = ff.tree.flatten(a)
    lb, tb = ff.tree.flatten(b)
    assert ta == tb, (ta, tb)
    for x, y in zip(la, lb):
        assert type(x) is type(y), (x, y)
        if hasattr(x, "dtype"):
            assert x.dtype == y.dtype and np.shape(x) == np.shape(y), (x, y)
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-6)


def expect_mismatch(fn, *needles):
    try:
        fn()
    except ValueError as e:
        msg = str(e)
        for s in needles:
            assert s in msg, (s, msg)
        return msg
    raise AssertionError("no mismatch error")


def main():
    from mpi4py import MPI

    import funcflux as ff
    from funcflux import data, distributed as dist, optim

    world = MPI.COMM_WORLD
    if world.Get_size() != 2:
        print(f"expected 2 ranks, got {world.Get_size()}: the mpiexec used does not belong to "
              f"mpi4py's MPI ({MPI.Get_library_version().splitlines()[0]})", flush=True)
        sys.exit(3)
    comm = CountingComm(world)
    dist.init(comm)
    r, n = dist.rank(), dist.size()

    def ok(what):
        if r == 0:
            print("OK", what, flush=True)
    assert (r, n) == (world.Get_rank(), 2) and dist.is_initialized()
    tmap = ff.tree.map

    # -- allreduce over a tree of seven dtypes: one call per dtype, plus the check
    total = tmap(lambda *xs: sum(xs[1:], xs[0]), *[make(k) for k in range(n)])
    total = tmap(lambda t, x: type(x)(t) if isinstance(x, (int, float)) else t, total, make(0))
    got = dist.allreduce(make(r), "sum")
    same(got, total)
    assert comm.take() == ["Allreduce"] * (1 + DTYPES_IN_MAKE)
    assert dist.allreduce(make(r), "sum", check=False) is not None
    assert comm.take() == ["Allreduce"] * DTYPES_IN_MAKE

    floats = {"a": np.array([1.0, 2.0]) * (r + 1), "b": np.float32(r), "c": [3.0 * r],
              "h": np.array([r], np.float16)}
    same(dist.allreduce(floats, "mean"),
         {"a": np.array([1.5, 3.0]), "b": np.float32(0.5), "c": [1.5],
          "h": np.array([0.5], np.float16)})
    ordered = {"x": np.array([r, -r, 5]), "f": np.array([0.5 - r]), "b": np.array([r == 1, True]),
               "p": r}
    same(dist.allreduce(ordered, "max"), {"x": np.array([1, 0, 5]), "f": np.array([0.5]),
                                          "b": np.array([True, True]), "p": 1})
    same(dist.allreduce(ordered, "min"), {"x": np.array([0, -1, 5]), "f": np.array([-0.5]),
                                          "b": np.array([False, True]), "p": 0})
    mine = np.ones(3)
    dist.allreduce(mine, "sum")
    assert (mine == 1).all()  # inputs are never written to
    comm.take()
    ok("allreduce")

    # -- broadcast: bytes of every dtype in one call; Python objects pickled in one more
    tree = dict(make(r), name=f"rank {r}")
    got = dist.broadcast(tree, root=1)
    same(got, dict(make(1), name="rank 1"))
    assert comm.take() == ["Allreduce", "Bcast", "bcast"]
    got = dist.broadcast(make(r), root=0)
    same(got, make(0))
    assert comm.take() == ["Allreduce", "Bcast"]
    ok("broadcast")

    # -- allgather: leaf [k] is rank k's leaf
    got = dist.allgather(make(r))
    assert comm.take() == ["Allreduce", "Allgather"]
    for k in range(n):
        same(tmap(lambda g, x: g[k] if isinstance(x, np.ndarray) else type(x)(g[k]),
                  got, make(k)), make(k))
    assert got["i32"].shape == (2,) and got["f32"][0].shape == (2, 2, 3)
    got = dist.allgather({"tag": f"r{r}", "v": np.float64(r)})
    assert got["tag"] == ["r0", "r1"] and got["v"].tolist() == [0.0, 1.0]
    comm.take()
    ok("allgather")

    # -- device arrays go through host memory when MPI is not CUDA-aware; the strict
    #    stand-in for CuPy (tests/strict.py) refuses any implicit trip to NumPy
    from tests import strict
    strict.register()
    try:
        dev = {"w": strict.to_strict(np.arange(4.0) * (r + 1)),
               "h": strict.to_strict(np.full(2, r, np.float16)), "host": np.ones(2)}
        got = dist.allreduce(dev, "mean")
        assert strict.is_strict(got["w"]) and strict.is_strict(got["h"])
        same(strict.from_strict(got), {"w": np.arange(4.0) * 1.5,
                                       "h": np.full(2, 0.5, np.float16), "host": np.ones(2)})
        got = dist.broadcast(dev, root=1)
        assert strict.is_strict(got["w"])
        same(strict.from_strict(got), {"w": np.arange(4.0) * 2, "h": np.ones(2, np.float16),
                                       "host": np.ones(2)})
        got = dist.allgather(dev)
        assert strict.is_strict(got["w"]) and got["w"].shape == (2, 4)
        np.testing.assert_array_equal(got["w"].get()[1], np.arange(4.0) * 2)
    finally:
        strict.unregister()
    comm.take()
    ok("device arrays")

    # -- mismatches: an error naming the path and both shapes, on every rank, no hang
    expect_mismatch(lambda: dist.allreduce({"w": np.zeros((3, 2 + 2 * r)), "b": np.zeros(1)}),
                    "['w']", "rank 0 has float64 (3, 2)", "rank 1 has float64 (3, 4)")
    expect_mismatch(lambda: dist.allreduce({"w": np.zeros(3, [np.float32, np.float64][r])}),
                    "['w']", "float32 (3,)", "float64 (3,)")
    extra = {"w": np.zeros(2)} if r == 0 else {"w": np.zeros(2), "v": np.zeros(5)}
    expect_mismatch(lambda: dist.broadcast(extra), "['v']", "rank 0 has no leaf",
                    "rank 1 has float64 (5,)")
    expect_mismatch(lambda: dist.allreduce([np.zeros(2), None] if r else [None, np.zeros(2)]),
                    "at [1] rank 0 has float64 (2,) and rank 1 has no leaf")
    expect_mismatch(lambda: dist.allreduce((np.zeros(2),) if r else [np.zeros(2)]),
                    "rank 0 passed the structure PyTreeDef([*]) and rank 1 passed "
                    "PyTreeDef((*,))")
    expect_mismatch(lambda: dist.allreduce(np.zeros(2), ["sum", "max"][r]),
                    "rank 0 called allreduce(op='sum') but rank 1 called allreduce(op='max')")
    expect_mismatch(lambda: dist.broadcast(np.zeros(2)) if r == 0 else dist.allgather(np.zeros(2)),
                    "called broadcast(root=0)", "called allgather()")
    comm.take()
    same(dist.allreduce(np.ones(2)), np.full(2, 2.0))  # still in step after the errors
    assert comm.take() == ["Allreduce", "Allreduce"]
    ok("mismatch")

    # -- average_gradients: the mean over ranks, None skipped, first in a chain
    opt = optim.chain(dist.average_gradients(), optim.sgd(1.0))
    params = {"w": np.zeros(3), "frozen": np.zeros(2)}
    upd, _ = opt.update({"w": np.arange(3.0) * (r + 1), "frozen": None}, opt.init(params), params)
    same(upd, {"w": -np.arange(3.0) * 1.5, "frozen": None})
    assert comm.take() == ["Allreduce", "Allreduce"]  # the check, one dtype
    ok("average_gradients")

    # -- DataLoader shards: disjoint, the same count on every rank, union = one epoch
    for nobs, bs, partial in [(21, 4, True), (21, 4, False), (16, 8, True)]:
        loader = data.DataLoader(np.arange(nobs), batchsize=bs, shuffle=True, rng=3,
                                 partial=partial, shard=(r, n))
        orders = []
        for epoch in range(2):
            mine = [int(i) for b in loader for i in b]
            everyone = world.allgather((len(loader), mine))
            assert everyone[0][0] == everyone[1][0]
            seen = [i for _, ids in everyone for i in ids]
            assert len(seen) == len(set(seen)), "shards overlap"
            full = -(-nobs // (bs * n)) if partial else nobs // (bs * n)
            want = nobs if partial else full * bs * n
            assert len(seen) == want and (not partial or sorted(seen) == list(range(nobs)))
            orders.append(seen)
        assert orders[0] != orders[1]  # a new order each epoch
    ok("shards")

    # -- N ranks with average_gradients == one rank on N times the batch (float64)
    train_mod = sys.modules["funcflux.train"]  # (ff.train is the function)
    g = np.random.default_rng(0)
    X, Y = g.normal(size=(64, 3)), g.normal(size=(64, 2))

    def init(seed):
        q = np.random.default_rng(seed)
        return {"W0": q.normal(size=(3, 8)) / 2, "b0": np.zeros(8),
                "W1": q.normal(size=(8, 2)) / 3, "b1": np.zeros(2), "steps": 0}

    def loss(p, x, y):
        err = np.tanh(x @ p["W0"] + p["b0"]) @ p["W1"] + p["b1"] - y
        return np.mean(err ** 2), {"mae": np.mean(np.abs(err))}

    bars = []
    real_bar = train_mod._progress_bar
    train_mod._progress_bar = lambda total, enabled: bars.append(enabled)
    p0 = dist.broadcast(init(seed=r))  # each rank drew its own; rank 0's wins
    model, _, hist = ff.train(
        loss, p0, data.DataLoader((X, Y), batchsize=8, shuffle=True, rng=0, shard=(r, n)),
        optim.chain(dist.average_gradients(), optim.adam(1e-2)), epochs=3, has_aux=True)
    train_mod._progress_bar = real_bar
    assert bars == [r == 0], bars
    ref, _, ref_hist = ff.train(
        loss, init(seed=0), data.DataLoader((X, Y), batchsize=16, shuffle=True, rng=0),
        optim.adam(1e-2), epochs=3, has_aux=True, progress=False, distributed=False)
    for k in ("W0", "b0", "W1", "b1"):
        np.testing.assert_allclose(model[k], ref[k], rtol=0, atol=1e-6)
        assert np.abs(model[k] - ref[k]).max() < 1e-12
    np.testing.assert_allclose(hist["loss"], ref_hist["loss"], rtol=1e-12)
    np.testing.assert_allclose(hist["mae"], ref_hist["mae"], rtol=1e-12)
    both = dist.allgather({k: v for k, v in model.items() if k != "steps"})
    for v in both.values():
        assert np.array_equal(v[0], v[1])  # the ranks agree bit for bit
    local, _, local_hist = ff.train(
        lambda p, x, y: loss(p, x, y)[0], p0,
        data.DataLoader((X, Y), batchsize=8, shuffle=True, rng=0, shard=(r, n)),
        optim.adam(1e-2), epochs=1, progress=False, distributed=False)
    assert dist.allgather(local_hist["loss"][0]).std() > 0  # not averaged when told not to
    ok("training")

    dist.barrier()
    if r == 0:
        print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
