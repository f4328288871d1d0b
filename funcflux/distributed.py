"""Data-parallel training over MPI: ranks, collectives on pytrees, gradient averaging.

Every process (a *rank*) holds the whole model and trains on its own part of
each batch; after the backward pass the ranks average their gradients, so all
of them take the same step and their models stay identical::

    model = dist.broadcast(model, root=0)            # the same start everywhere
    opt = optim.chain(dist.average_gradients(), optim.adam(1e-3))
    loader = data.DataLoader((X, Y), batchsize=64, shuffle=True, rng=0,
                             shard=(dist.rank(), dist.size()))
    model, state, history = ff.train(loss, model, loader, opt, epochs=5)

Launch with ``mpiexec -n 4 python train.py`` (``srun`` under Slurm). Started
as ``python train.py``, the world is one rank and every collective returns
its input, so one script serves both.

MPI comes from mpi4py (``pip install "funcflux[distributed]"`` brings mpi4py
and an MPICH; on a cluster, build mpi4py against the site's MPI). It is
imported only when the process was started by an MPI launcher (which leaves
``PMI_RANK``, ``OMPI_COMM_WORLD_SIZE``, ``PMIX_RANK``... in the environment),
when MPI was already initialised by the program, or when ``FUNCFLUX_MPI=1``;
``FUNCFLUX_MPI=0`` keeps a launched process on its own. ``import funcflux``
never starts MPI.

A collective flattens the tree and packs its leaves into one contiguous
buffer per dtype (reductions must know the element type) or one byte buffer
in all (broadcast and gather only move bytes), so a model of a hundred
arrays costs one or two MPI calls, not a hundred. Before that, one small
reduction of a hash of the call (structure, shapes, dtypes, op) checks that
every rank passed matching trees, so a mismatch is an error naming the leaf
rather than a hang or a wrong sum.

>>> import numpy as np
>>> from funcflux import distributed as dist
>>> dist.rank(), dist.size()
(0, 1)
>>> dist.allreduce({"w": np.ones(2), "n": 3.0}, op="mean")
{'w': array([1., 1.]), 'n': 3.0}
>>> dist.allgather({"w": np.ones(2)})["w"].shape    # a leading axis of size()
(1, 2)
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any, Mapping

import numpy as np

from . import tree
from .core.backend import array_module
from .core.trace import Tracer
from .optim.base import EmptyState, GradientTransformation

__all__ = ["rank", "size", "is_initialized", "init", "barrier", "allreduce", "broadcast",
           "allgather", "average_gradients"]

OPS = ("sum", "mean", "max", "min")

NO_MPI4PY = ("funcflux.distributed: this process was started by an MPI launcher ({hint}), but "
             "mpi4py is not installed, so every process runs alone as rank 0 of 1 and trains "
             "its own model. Install it with `pip install mpi4py mpich` (or build mpi4py "
             "against your cluster's MPI), or set FUNCFLUX_MPI=0 to silence this.")
NEED_MPI4PY = ("funcflux.distributed.{what} needs mpi4py: `pip install mpi4py mpich` (or build "
               "mpi4py against your cluster's MPI).")
BAD_OP = "distributed.allreduce: op must be one of {ops}, got {op!r}"
BAD_ROOT = "distributed.broadcast: root must be a rank in [0, {size}), got {root!r}"
BAD_LEAF = "distributed.{fn}: the leaf at {path} is {kind}; {what}."
TRACED = ("distributed.{fn}: the leaf at {path} is a traced value (inside ff.grad, vmap...). "
          "Collectives work on concrete arrays: call them outside the transformed function, "
          "e.g. on the gradients ff.grad returns (dist.average_gradients() does this).")
MISMATCH = ("distributed.{fn}: the trees passed on different ranks do not match: {detail}. "
            "Every rank must make the same call with a tree of the same structure, whose "
            "leaves have the same shapes and dtypes.")

LEFT = ("{where}: {gone} of {size} ended {its} program (a normal end or sys.exit) while rank "
        "{rank} called {call}, which waits for every rank. Usually one rank caught an "
        "exception that the others did not have (such as ff.train's FloatingPointError for a "
        "non-finite loss on that rank's data): let it end the program (funcflux then aborts "
        "every rank) or handle it on every rank alike.")

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")
# Variables that MPI launchers set in every process they start: MPICH/Hydra, Intel MPI,
# MVAPICH, Cray and Slurm's PMI plugins (PMI_*), Open MPI (OMPI_*), PMIx (PMIX_*),
# MVAPICH2 (MV2_*), Cray ALPS (ALPS_APP_PE).
_LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE",
                  "SLURM_STEP_NUM_TASKS")
_LAUNCHER_ANY = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "ALPS_APP_PE")
_ALIGN = 16  # byte offset of every leaf in a packed buffer (any dtype's alignment)


# ----------------------------------------------------------------------------- the world
class _World:
    __slots__ = ("comm", "MPI", "rank", "size", "cuda")

    def __init__(self, comm: Any = None, MPI: Any = None, rank: int = 0, size: int = 1):
        self.comm, self.MPI, self.rank, self.size = comm, MPI, rank, size
        self.cuda: bool | None = None  # CUDA-aware MPI? asked on the first CuPy collective


_SINGLE = _World()
_world: _World | None = None


def _launcher_size(environ: Mapping[str, str]) -> int:
    """The world size a launcher announced in ``environ`` (0: no launcher seen)."""
    for k in _LAUNCHER_SIZE:
        v = environ.get(k, "")
        if v.isdigit():
            return int(v)
    return 1 if any(k in environ for k in _LAUNCHER_ANY) else 0


def _launched(environ: Mapping[str, str]) -> bool:
    """Whether an MPI launcher started this process (a Slurm step of one task does not count)."""
    if any(k in environ for k in _LAUNCHER_ANY) or any(
            k in environ for k in _LAUNCHER_SIZE if k != "SLURM_STEP_NUM_TASKS"):
        return True
    return _launcher_size({"SLURM_STEP_NUM_TASKS": environ.get("SLURM_STEP_NUM_TASKS", "")}) > 1


def _discover() -> _World:
    flag = os.environ.get("FUNCFLUX_MPI", "").strip().lower()
    if flag in _OFF:
        return _SINGLE
    mpi = sys.modules.get("mpi4py.MPI")
    started = mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized()
    if not (started or flag in _ON or _launched(os.environ)):
        return _SINGLE
    try:
        from mpi4py import MPI
    except ImportError:
        if flag in _ON:
            raise ImportError(NEED_MPI4PY.format(what="(FUNCFLUX_MPI=1)")) from None
        n = _launcher_size(os.environ)
        if n != 1:  # a launch of one process loses nothing: say nothing
            hint = f"world size {n}" if n > 1 else "launcher variables are set"
            warnings.warn(NO_MPI4PY.format(hint=hint), RuntimeWarning, stacklevel=4)
        return _SINGLE
    return _connect(MPI.COMM_WORLD, MPI)


def _connect(comm: Any, MPI: Any) -> _World:
    w = _World(comm, MPI, int(comm.Get_rank()), int(comm.Get_size()))
    if w.size > 1:
        _install_abort_hook()
        _register_exit_check()
    return w


def _get() -> _World:
    global _world
    if _world is None:
        _world = _discover()
    return _world


def init(comm: Any = None) -> None:
    """Use MPI now, over ``comm`` (an mpi4py communicator; ``MPI.COMM_WORLD`` by default).

    Not needed under ``mpiexec``: the first call of any function here finds
    the launcher itself. Call it to work over a sub-communicator, or to force
    MPI where no launcher is recognised.
    """
    global _world
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError(NEED_MPI4PY.format(what="init")) from None
    _world = _connect(MPI.COMM_WORLD if comm is None else comm, MPI)


def rank() -> int:
    """This process's rank, ``0 <= rank() < size()``; 0 when not under MPI."""
    return _get().rank


def size() -> int:
    """The number of processes training together; 1 when not under MPI."""
    return _get().size


def is_initialized() -> bool:
    """Whether this process talks to MPI (``False``: a one-rank world without MPI)."""
    return _get().comm is not None


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a one-rank world).

    It is the check that precedes every collective (one small allreduce), so
    ranks that meet it in different calls (``barrier`` against ``allreduce``,
    or a rank whose program ended) get an error instead of waiting forever.
    """
    w = _get()
    if w.size > 1:
        _check(w, "barrier", "barrier()", _Flat("barrier", ()))


# ----------------------------------------------------------------------------- faults
_hook_installed = False
_exit_registered = False
_PID = os.getpid()  # a forked child inherits the hooks; they act in this process only
# The call a rank whose program ends makes in the check: it matches the end of every other
# rank's program and no collective, so a rank that leaves while others wait is found.
_EXIT_CALL = "the end of its program"


def _install_abort_hook() -> None:
    """Make an uncaught exception on one rank end the whole job, not leave the others waiting.

    Without it, the failing rank exits while the others sit in their next
    collective forever. The hook prints the traceback, each line marked with
    the rank, then calls ``MPI_Abort``, which makes the launcher stop every rank.
    Installed when the world is first found (the first call of this module),
    never at import: importing funcflux changes nothing outside funcflux.
    """
    global _hook_installed
    if _hook_installed:
        return
    _hook_installed = True
    previous = sys.excepthook

    def hook(etype: type, value: BaseException, tb: Any) -> None:
        import traceback

        w = _world_to_abort()
        if w is None or w.comm is None or w.size == 1:
            previous(etype, value, tb)
            return
        try:
            head = (f"funcflux.distributed: rank {w.rank} of {w.size} raised "
                    f"{etype.__name__}; aborting all ranks (MPI_Abort) so that none waits in a "
                    f"collective.\n")
            body = "".join(traceback.format_exception(etype, value, tb))
            sys.stderr.write(head + "".join(f"[rank {w.rank}] {line}\n"
                                            for line in body.rstrip("\n").split("\n")))
            sys.stderr.flush()
        finally:
            _abort(w)

    sys.excepthook = hook


def _world_to_abort() -> _World | None:
    """The world to abort after an uncaught exception (``None``: nothing to abort)."""
    if os.getpid() != _PID:
        return None
    if _world is None:  # failed before the first collective, while others may wait in one
        if _launcher_size(os.environ) < 2:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return _get()
        except (ImportError, RuntimeError):  # no mpi4py, MPI fails to start: the default report
            return None
    return _world


def _register_exit_check() -> None:
    global _exit_registered
    if not _exit_registered:
        import atexit

        _exit_registered = True
        atexit.register(_exit_check)


#: Seconds between writing the message and MPI_Abort. The launcher forwards each rank's
#: output asynchronously, and an abort right after the write sometimes lost all of it
#: (seen about once in 20 runs of tests/mpi/faults.py under load, MPICH's hydra).
ABORT_GRACE = 0.5


def _abort(w: Any) -> None:
    """``MPI_Abort`` after a short pause that lets the launcher forward the message."""
    import time

    time.sleep(ABORT_GRACE)
    w.comm.Abort(1)


def _exit_check() -> None:
    """At the end of the program, meet the other ranks in one last check of the call.

    Every rank ends the same way, so the check passes. A rank that ends while
    the others wait in a collective (it caught an error that they did not have,
    or called ``sys.exit``) meets their check with another call: both sides
    learn it, this rank aborts the job with a message, and none hangs.
    """
    w = _world
    if w is None or w.comm is None or w.size == 1 or os.getpid() != _PID:
        return
    try:
        if w.MPI.Is_finalized():
            return
        _check(w, "exit", _EXIT_CALL, _Flat("exit", ()))
    except ValueError as e:
        sys.stderr.write(f"{e} Aborting all ranks (MPI_Abort) so that none waits forever.\n")
        sys.stderr.flush()
        _abort(w)
    except w.MPI.Exception:  # a communicator freed by the program...: nothing to protect
        return



# ----------------------------------------------------------------------------- leaves
_ARRAY, _NPSCALAR, _PYSCALAR, _OBJECT = range(4)


def _classify(x: Any) -> tuple[int, Any]:
    """``(kind, array)`` for one leaf; the array is ``None`` for an opaque object."""
    if isinstance(x, np.ndarray):
        return (_OBJECT, None) if x.dtype.hasobject else (_ARRAY, x)
    if isinstance(x, np.generic):
        return (_OBJECT, None) if x.dtype.hasobject else (_NPSCALAR, np.asarray(x))
    if isinstance(x, (bool, int, float, complex)):
        return _PYSCALAR, np.asarray(x)
    if hasattr(x, "__cuda_array_interface__") or array_module(x) is not np:
        return _ARRAY, x
    return _OBJECT, None


def _desc(kind: int, a: Any, x: Any) -> str:
    if kind == _OBJECT:
        return f"a {type(x).__name__} object"
    return f"{np.dtype(a.dtype).name} {tuple(a.shape)}"


class _Flat:
    """A tree taken apart: leaves, their kinds and arrays, and the treedef."""
    __slots__ = ("tree", "leaves", "td", "kinds", "arrays")

    def __init__(self, fn: str, x: Any):
        self.tree = x
        self.leaves, self.td = tree.flatten(x)
        self.kinds: list[int] = []
        self.arrays: list[Any] = []
        for i, leaf in enumerate(self.leaves):
            if isinstance(leaf, Tracer):
                raise TypeError(TRACED.format(fn=fn, path=self.path(i)))
            k, a = _classify(leaf)
            self.kinds.append(k)
            self.arrays.append(a)

    def path(self, i: int) -> str:
        return tree.keystr(tree.leaves_with_path(self.tree)[i][0])

    def descs(self) -> list[str]:
        return [_desc(k, a, x) for k, a, x in zip(self.kinds, self.arrays, self.leaves)]

    def rebuild(self, new: list) -> Any:
        return tree.unflatten(self.td, new)


def _restore(kind: int, a: Any) -> Any:
    """A result array back in the form of the leaf it replaces (NumPy scalar, Python number)."""
    if kind == _NPSCALAR:
        return a[()]
    if kind == _PYSCALAR:
        return a.item()
    return a


def _module(a: Any) -> Any:
    xp = array_module(a)
    if xp is np and hasattr(a, "__cuda_array_interface__"):  # CuPy not registered with funcflux
        import cupy as xp  # type: ignore[no-redef]
    return xp


# ----------------------------------------------------------------------------- the check
def _check(w: _World, fn: str, call: str, flat: _Flat) -> None:
    """One small allreduce of a hash of the call; on a mismatch, say where the trees differ."""
    import hashlib  # here: loading OpenSSL costs milliseconds at import

    descs = flat.descs()
    sig = "\x1f".join([call, repr(flat.td), *descs])
    h = int.from_bytes(hashlib.blake2b(sig.encode(), digest_size=7).digest(), "little")
    buf = np.array([h, -h], dtype=np.int64)
    w.comm.Allreduce(w.MPI.IN_PLACE, buf, op=w.MPI.MAX)  # max(h) and -min(h): equal iff all agree
    if buf[0] == -buf[1]:
        return
    paths = [tree.keystr(p) for p, _ in tree.leaves_with_path(flat.tree)]
    every = w.comm.allgather((call, repr(flat.td), list(zip(paths, descs))))
    calls = [c for c, _, _ in every]
    if _EXIT_CALL in calls:
        gone = [r for r, c in enumerate(calls) if c == _EXIT_CALL]
        stay = next(r for r, c in enumerate(calls) if c != _EXIT_CALL)
        where = f"funcflux.distributed, at the end of rank {w.rank}'s program" \
            if fn == "exit" else f"distributed.{fn}"
        raise ValueError(LEFT.format(where=where, gone=_ranks(gone), size=w.size, rank=stay,
                                     its="its" if len(gone) == 1 else "their",
                                     call=calls[stay]))
    raise ValueError(MISMATCH.format(fn=fn, detail=_difference(every)))


def _ranks(ranks: list[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))


def _difference(every: list) -> str:
    """Where the first rank unlike rank 0 differs from it (the same text on every rank)."""
    c0, t0, l0 = every[0]
    for r, (c, t, leaves) in enumerate(every[1:], start=1):
        if c != c0:
            return f"rank 0 called {c0} but rank {r} called {c}"
        d0, d = dict(l0), dict(leaves)
        for p in [p for p, _ in l0] + [p for p, _ in leaves if p not in d0]:
            if d0.get(p) != d.get(p):
                return (f"at {p} rank 0 has {d0.get(p, 'no leaf')} and rank {r} has "
                        f"{d.get(p, 'no leaf')}")
        if t != t0:
            return f"rank 0 passed the structure {t0} and rank {r} passed {t}"
    return "the ranks disagree, but their descriptions match (a hash collision?)"


# ----------------------------------------------------------------------------- the wire
def _cuda_aware(w: _World) -> bool:
    """Whether MPI reads GPU memory itself (``MPIX_Query_cuda_support``; FUNCFLUX_MPI_CUDA_AWARE
    overrides)."""
    if w.cuda is None:
        flag = os.environ.get("FUNCFLUX_MPI_CUDA_AWARE", "").strip().lower()
        if flag in _ON or flag in _OFF:
            w.cuda = flag in _ON
        else:
            import ctypes

            query = getattr(w.MPI, "Query_cuda_support", None)
            try:
                if query is None:  # Open MPI, MPICH and MVAPICH export this extension
                    query = ctypes.CDLL(w.MPI.__file__).MPIX_Query_cuda_support
                w.cuda = bool(query() == 1)
            except (AttributeError, OSError):
                w.cuda = False
    return w.cuda


def _to_wire(w: _World, xp: Any, buf: Any) -> tuple[Any, Any]:
    """``(buffer MPI can use, its array module)``: device arrays go through host memory
    (``.get()``, as in CuPy) unless MPI is CUDA-aware, in which case the stream is
    synchronised first so that MPI reads finished data."""
    if xp is np:
        return buf, np
    if _cuda_aware(w) and hasattr(xp, "cuda"):
        xp.cuda.get_current_stream().synchronize()
        return buf, xp
    return buf.get(), np


def _from_wire(xp: Any, wire_xp: Any, buf: Any, like: Any) -> Any:
    """``buf`` back in ``xp``, on the device (GPU) where ``like`` lives."""
    if wire_xp is xp:
        return buf
    dev = getattr(like, "device", None)
    if hasattr(dev, "__enter__"):  # a cupy.cuda.Device
        with dev:
            return xp.asarray(buf)
    return xp.asarray(buf)


def _groups(flat: _Flat, key: Any) -> dict:
    groups: dict = {}
    for i, (k, a) in enumerate(zip(flat.kinds, flat.arrays)):
        if k != _OBJECT:
            groups.setdefault(key(a), []).append(i)
    return groups


def _layout(arrays: list) -> tuple[list[int], int]:
    """Byte offsets (each a multiple of _ALIGN) and total size for packing ``arrays`` as bytes."""
    offs, total = [], 0
    for a in arrays:
        offs.append(total)
        total += -(-int(a.size) * a.dtype.itemsize // _ALIGN) * _ALIGN
    return offs, total


def _as_bytes(xp: Any, a: Any) -> Any:
    return xp.ascontiguousarray(a).reshape(-1).view(xp.uint8)


# ----------------------------------------------------------------------------- allreduce
def _check_op(flat: _Flat, op: str) -> None:
    for i, (k, a) in enumerate(zip(flat.kinds, flat.arrays)):
        if k == _OBJECT:
            what = (f"allreduce(op={op!r}) combines only arrays and numbers; keep other values "
                    "out of the tree")
            raise TypeError(BAD_LEAF.format(fn="allreduce", path=flat.path(i),
                                            kind=f"a {type(flat.leaves[i]).__name__} object",
                                            what=what))
        kind = np.dtype(a.dtype).kind
        bad = ("ints and bools have no mean here; use op='sum' and divide" if op == "mean"
               and kind in "biu" else
               "bools have no sum; use op='max' (any) or op='min' (all)" if op == "sum"
               and kind == "b" else
               "complex numbers are not ordered" if op in ("max", "min") and kind == "c" else
               None)
        if bad:
            raise TypeError(BAD_LEAF.format(fn="allreduce", path=flat.path(i),
                                            kind=f"of dtype {np.dtype(a.dtype).name}", what=bad))


def allreduce(x: Any, op: str = "sum", *, check: bool = True) -> Any:
    """Combine a pytree over all ranks, leaf by leaf: ``op`` is "sum", "mean", "max" or "min".

    Every rank gets the result. Leaves may be arrays, NumPy scalars or Python
    numbers (each comes back in its own form); ``"mean"`` needs floating
    leaves. ``check=False`` skips the structure check (one small collective).

    >>> import numpy as np
    >>> allreduce({"g": np.array([1.0, 2.0]), "n": 4}, op="sum")    # one rank: the same values
    {'g': array([1., 2.]), 'n': 4}
    """
    if op not in OPS:
        raise ValueError(BAD_OP.format(ops=", ".join(repr(o) for o in OPS), op=op))
    flat = _Flat("allreduce", x)
    _check_op(flat, op)
    w = _get()
    if w.size == 1:
        return x
    if check:
        _check(w, "allreduce", f"allreduce(op={op!r})", flat)
    MPI = w.MPI
    mpi_op = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]
    out = list(flat.leaves)
    for (_, dt), idx in _groups(flat, lambda a: (id(_module(a)), np.dtype(a.dtype))).items():
        xp = _module(flat.arrays[idx[0]])
        # float16 adds in float32 (MPI has no standard half type; float32 also rounds less);
        # bools travel as bytes, where max/min are "any"/"all".
        wire_dt = np.float32 if dt == np.float16 else np.uint8 if dt == np.bool_ else dt
        parts = [xp.ravel(flat.arrays[i]).astype(wire_dt, copy=False) for i in idx]
        if len(parts) == 1:
            send, wxp = _to_wire(w, xp, parts[0])
            recv = wxp.empty_like(send)
            w.comm.Allreduce(send, recv, op=mpi_op)
        else:
            recv, wxp = _to_wire(w, xp, xp.concatenate(parts))  # a fresh buffer: reduce in place
            w.comm.Allreduce(MPI.IN_PLACE, recv, op=mpi_op)
        res = _from_wire(xp, wxp, recv, flat.arrays[idx[0]])
        if op == "mean":
            res /= w.size
        if res.dtype != dt:
            res = res.astype(dt)
        start = 0
        for i in idx:
            a = flat.arrays[i]
            n = int(a.size)
            out[i] = _restore(flat.kinds[i], res[start:start + n].reshape(a.shape))
            start += n
    return flat.rebuild(out)


# ----------------------------------------------------------------------------- broadcast
def broadcast(x: Any, root: int = 0, *, check: bool = True) -> Any:
    """Rank ``root``'s tree, on every rank; the others pass a tree of the same shapes.

    Typical use: ``model = dist.broadcast(model, root=0)`` after every rank
    built its model, so all start from rank 0's initial weights. Leaves that
    are not numbers travel pickled.

    >>> import numpy as np
    >>> broadcast({"w": np.zeros(2)})
    {'w': array([0., 0.])}
    """
    w = _get()
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) \
            or not 0 <= root < w.size:
        raise ValueError(BAD_ROOT.format(size=w.size, root=root))
    flat = _Flat("broadcast", x)
    if w.size == 1:
        return x
    root = int(root)
    if check:
        _check(w, "broadcast", f"broadcast(root={root})", flat)
    mine = w.rank == root
    out = list(flat.leaves)
    for _, idx in _groups(flat, lambda a: id(_module(a))).items():
        xp = _module(flat.arrays[idx[0]])
        arrays = [flat.arrays[i] for i in idx]
        offs, total = _layout(arrays)
        buf = xp.empty(total, xp.uint8)
        if mine:
            for a, o in zip(arrays, offs):
                b = _as_bytes(xp, a)
                buf[o:o + b.size] = b
        wire, wxp = _to_wire(w, xp, buf)
        w.comm.Bcast(wire, root=root)
        if not mine:
            buf = _from_wire(xp, wxp, wire, arrays[0])
            for i, a, o in zip(idx, arrays, offs):
                nb = int(a.size) * a.dtype.itemsize
                out[i] = _restore(flat.kinds[i], buf[o:o + nb].view(a.dtype).reshape(a.shape))
    objects = [i for i, k in enumerate(flat.kinds) if k == _OBJECT]
    if objects:
        for i, v in zip(objects, w.comm.bcast([out[i] for i in objects], root=root)):
            out[i] = v
    return x if mine else flat.rebuild(out)


# ----------------------------------------------------------------------------- allgather
def allgather(x: Any, *, check: bool = True) -> Any:
    """Every rank's tree, stacked: each leaf gains a leading axis of length ``size()``.

    Leaf ``[r]`` is rank ``r``'s value; numbers become arrays of shape
    ``(size(),)``; other leaves become a list over ranks. Every rank must pass
    leaves of the same shapes.

    >>> import numpy as np
    >>> allgather({"loss": 0.5, "w": np.zeros(2)})
    {'loss': array([0.5]), 'w': array([[0., 0.]])}
    """
    flat = _Flat("allgather", x)
    w = _get()
    if w.size == 1:
        return flat.rebuild([[v] if k == _OBJECT else _module(a).asarray(a)[None]
                             for k, a, v in zip(flat.kinds, flat.arrays, flat.leaves)])
    if check:
        _check(w, "allgather", "allgather()", flat)
    out = list(flat.leaves)
    for _, idx in _groups(flat, lambda a: id(_module(a))).items():
        xp = _module(flat.arrays[idx[0]])
        arrays = [flat.arrays[i] for i in idx]
        offs, total = _layout(arrays)
        send = xp.zeros(total, xp.uint8)
        for a, o in zip(arrays, offs):
            b = _as_bytes(xp, a)
            send[o:o + b.size] = b
        wire, wxp = _to_wire(w, xp, send)
        recv = wxp.empty((w.size, total), wxp.uint8)
        w.comm.Allgather(wire, recv)
        recv = _from_wire(xp, wxp, recv, arrays[0])
        for i, a, o in zip(idx, arrays, offs):
            nb = int(a.size) * a.dtype.itemsize
            part = xp.ascontiguousarray(recv[:, o:o + nb])
            out[i] = part.view(a.dtype).reshape((w.size,) + tuple(a.shape))
    objects = [i for i, k in enumerate(flat.kinds) if k == _OBJECT]
    if objects:
        every = w.comm.allgather([flat.leaves[i] for i in objects])
        for j, i in enumerate(objects):
            out[i] = [vals[j] for vals in every]
    return flat.rebuild(out)


# ----------------------------------------------------------------------------- optimiser
def average_gradients() -> GradientTransformation:
    """An optimiser transformation that averages the gradients over ranks; put it first.

    ``optim.chain(dist.average_gradients(), optim.adam(1e-3))``: each rank's
    gradient of the mean loss over its shard becomes the mean over ranks,
    which for equal shards is the gradient of the whole global batch, so
    every rank takes the same step. ``None`` updates (frozen or integer
    leaves) are skipped; one MPI call per dtype. The identity in a one-rank
    world.

    >>> import numpy as np
    >>> from funcflux import optim
    >>> opt = optim.chain(average_gradients(), optim.sgd(0.1))
    >>> opt.update({"w": np.ones(2)}, opt.init({"w": np.zeros(2)}))[0]
    {'w': array([-0.1, -0.1])}
    """
    def init(params: Any) -> EmptyState:
        return EmptyState()

    def update(updates: Any, state: EmptyState, params: Any = None) -> tuple:
        return allreduce(updates, "mean"), state

    return GradientTransformation(init, update)
