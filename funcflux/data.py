"""Data: mini-batches over arrays and pytrees, one-hot labels, small datasets.

``DataLoader`` cuts data whose observations lie along the first axis into
batches (Flux's ``DataLoader``, batch-first as everywhere in funcflux).
``onehotbatch``/``onecold`` turn labels into ``(N, C)`` targets and back.
``make_moons`` and ``load_mnist`` give data with no download: the first is
generated, the second reads the IDX files from a folder you point it at.

>>> import numpy as np
>>> from funcflux import data
>>> X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
>>> [(xb.shape, yb.tolist()) for xb, yb in data.DataLoader((X, y), batchsize=2)]
[((2, 2), [0, 1]), ((2, 2), [2, 3]), ((1, 2), [4])]
"""
from __future__ import annotations

import gzip
import os
from typing import Any, Iterator, Sequence

import numpy as np

from . import tree
from .core.backend import array_module

__all__ = ["DataLoader", "onehot", "onehotbatch", "onecold", "make_moons", "load_mnist",
           "read_idx"]

LEAVES_DISAGREE = ("DataLoader: every leaf of the data must hold the same number of observations "
                   "along its first axis, but {sizes}. Observations go first (batch-first).")
SHARD_NEEDS_SEED = ("DataLoader: shard={shard} with shuffle=True needs rng=<seed>, the same seed "
                    "on every rank, so that all ranks draw the same shuffled order and their "
                    "parts stay disjoint.")
STATE_MISMATCH = ("DataLoader.load_state_dict: {what}. Load a state saved from a loader built the "
                  "same way (same data size, batchsize, partial, shard and shuffle).")
MNIST_MISSING = ("load_mnist: {name} (or {name}.gz) is missing from {folder}. Download the four "
                 "MNIST IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                 "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, gzipped or not) from "
                 "https://yann.lecun.com/exdb/mnist/ or a mirror such as "
                 "https://ossci-datasets.s3.amazonaws.com/mnist/ into that folder.")


# ----------------------------------------------------------------------------- DataLoader
def _as_rng(rng: Any) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class DataLoader:
    """Mini-batches of ``data``: an array, or a pytree of arrays sharing their first axis.

    Args:
      data: an array of shape ``(N, ...)`` or a pytree (tuple, dict, functor...)
        whose leaves all have ``N`` observations along axis 0. Batches have the
        same structure, each leaf cut along axis 0.
      batchsize: observations per batch (an int >= 1).
      shuffle: draw a new random order at every epoch, i.e. every ``iter()``.
      partial: keep the last, smaller batch; ``partial=False`` drops it.
      rng: a seed or ``np.random.Generator`` for the shuffling. A seed makes the
        sequence of epochs reproducible: two loaders built with the same seed
        give the same batches, epoch after epoch.
      shard: ``(rank, size)`` for data-parallel training (see below).
      device: where each batch goes: ``None`` (stay where the data is),
        ``"cpu"`` (``ff.cpu``), ``"gpu"`` or ``"gpu:N"`` (``ff.gpu``, which
        warns once and keeps the batch on the CPU when there is no GPU), or a
        function applied to every batch. Keep the data on the host and let
        the loader move one batch at a time when the dataset does not fit
        in GPU memory; move the whole dataset once (``ff.gpu(data)``) when
        it does.

    ``len(loader)`` is the number of batches per epoch.

    Resuming. ``loader.state_dict()`` is the loader's position: the epochs
    done, the batches handed out in the current epoch and the state of its
    random generator (a dict of numbers and strings, which ``ff.save`` stores
    with the model and the optimiser state). ``load_state_dict`` on a loader
    built the same way makes its next ``iter()`` give the rest of that epoch
    (the same order), and the epochs after it those of the uninterrupted
    loader. A batch counts as done once it is handed out: save after its step
    (``ff.train`` stopped before a batch's step gives that batch back).

    Sharding. With ``shard=(rank, size)`` every rank draws the *same* order of
    the N observations (same seed on every rank when shuffling) and the
    epoch is cut into global steps of ``batchsize * size`` observations. At
    each step rank ``r`` takes the ``r``-th of ``size`` near-equal parts of
    the step (``np.array_split``: when a step does not divide evenly, its
    first ``m % size`` ranks get one observation more). So the parts are
    disjoint, their union over ranks is the whole epoch, and every rank
    yields the same number of batches (``len`` agrees across ranks, which
    collective gradient averaging needs). Only the last step can be short:
    with ``partial=True`` it is split as above, and when it holds fewer
    observations than there are ranks, the last ranks get an empty batch
    (first axis 0) -- weight gradients by batch size when averaging (a loss
    with ``agg=np.sum`` gives 0 there; the default mean over no examples is
    an error), or use ``partial=False``, which drops the short last step on
    every rank.

    >>> import numpy as np
    >>> loader = DataLoader({"x": np.zeros((10, 3)), "y": np.arange(10)}, batchsize=4,
    ...                     shuffle=True, rng=0)
    >>> len(loader), [b["x"].shape[0] for b in loader]
    (3, [4, 4, 2])
    >>> len(DataLoader(np.zeros((10, 3)), batchsize=4, partial=False))
    2
    """

    def __init__(self, data: Any, batchsize: int = 1, shuffle: bool = False, partial: bool = True,
                 rng: Any = None, *, shard: tuple[int, int] | None = None, device: Any = None):
        if isinstance(batchsize, bool) or not isinstance(batchsize, (int, np.integer)) \
                or batchsize < 1:
            raise ValueError(f"DataLoader: batchsize must be an int >= 1, got {batchsize!r}")
        self._move = _mover(device)
        pl, self._treedef = tree.flatten_with_path(data)
        if not pl:
            raise ValueError("DataLoader: the data holds no arrays")
        self._leaves = [x if hasattr(x, "shape") and hasattr(x, "__getitem__") else np.asarray(x)
                        for _, x in pl]
        for (p, _), x in zip(pl, self._leaves):
            if len(x.shape) == 0:
                raise ValueError(f"DataLoader: the leaf at {tree.keystr(p)} is a scalar; every "
                                 "leaf needs a first axis of observations.")
        sizes = [(tree.keystr(p), int(x.shape[0])) for (p, _), x in zip(pl, self._leaves)]
        if len({n for _, n in sizes}) > 1:
            raise ValueError(LEAVES_DISAGREE.format(
                sizes=", ".join(f"{p} has {n}" for p, n in sizes)))
        self.data = data
        self.nobs = sizes[0][1]
        self.batchsize = int(batchsize)
        self.shuffle = bool(shuffle)
        self.partial = bool(partial)
        self.device = device
        self.shard = _check_shard(shard)
        if self.shard is not None and self.shuffle and rng is None and self.shard[1] > 1:
            raise ValueError(SHARD_NEEDS_SEED.format(shard=self.shard))
        self._rng = _as_rng(rng) if self.shuffle else None
        self._epoch = 0          # epochs finished
        self._pos = 0            # batches handed out in the current epoch
        self._start_state = None  # the generator's state when the current epoch drew its order
        self._skip = 0           # batches the next epoch skips (set by load_state_dict)
        self._drawn = False      # whether the current epoch has started (its order drawn)

    # -- sizes ---------------------------------------------------------------------------
    def _step(self) -> int:
        return self.batchsize * (self.shard[1] if self.shard else 1)

    def __len__(self) -> int:
        step = self._step()
        return -(-self.nobs // step) if self.partial else self.nobs // step

    def __repr__(self) -> str:
        extra = "".join([", shuffle=True" if self.shuffle else "",
                         ", partial=False" if not self.partial else "",
                         f", shard={self.shard}" if self.shard else ""])
        return f"DataLoader({self.nobs} observations, batchsize={self.batchsize}{extra})"

    # -- resuming ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where the loader is: ``{"epoch", "batch", "num_batches", "rng"}`` (plain numbers,
        and the generator's state as NumPy gives it; ``None`` without shuffling).

        >>> import numpy as np
        >>> loader = DataLoader(np.arange(6), batchsize=2, shuffle=True, rng=0)
        >>> it = iter(loader); first = next(it)
        >>> state = loader.state_dict()
        >>> state["epoch"], state["batch"], state["num_batches"]
        (0, 1, 3)
        >>> again = DataLoader(np.arange(6), batchsize=2, shuffle=True, rng=123)
        >>> again.load_state_dict(state)
        >>> [b.tolist() for b in again] == [b.tolist() for b in it]   # the rest of the epoch
        True
        """
        n = len(self)
        if self._skip:  # loaded, not iterated yet: the generator is at the epoch's start
            rng = None if self._rng is None else self._rng.bit_generator.state
            return {"epoch": self._epoch, "batch": self._skip, "num_batches": n, "rng": rng}
        if not self._drawn or self._pos >= n:  # between epochs: the next starts from here
            epoch = self._epoch + (1 if self._drawn else 0)
            rng = None if self._rng is None else self._rng.bit_generator.state
            return {"epoch": epoch, "batch": 0, "num_batches": n, "rng": rng}
        return {"epoch": self._epoch, "batch": self._pos, "num_batches": n,
                "rng": self._start_state}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from :meth:`state_dict`, possibly read back by ``ff.load``):
        the next ``iter()`` gives the batches of that epoch not yet handed out.

        Raises ``ValueError`` if the state is of a loader built differently.
        """
        try:
            epoch, batch, n, rng = (state["epoch"], state["batch"], state["num_batches"],
                                    state["rng"])
        except (TypeError, KeyError):
            raise ValueError(STATE_MISMATCH.format(
                what="the state must be a dict with epoch, batch, num_batches and rng, from "
                     "DataLoader.state_dict()")) from None
        if int(n) != len(self):
            raise ValueError(STATE_MISMATCH.format(
                what=f"the state is of a loader with {int(n)} batches per epoch, this one has "
                     f"{len(self)}"))
        if (rng is None) != (self._rng is None):
            raise ValueError(STATE_MISMATCH.format(
                what="the state is of a loader with shuffle="
                     f"{rng is not None}, this one has shuffle={self.shuffle}"))
        if not 0 <= int(batch) <= len(self):
            raise ValueError(STATE_MISMATCH.format(what=f"batch={batch} is out of range"))
        if rng is not None:
            try:
                self._rng.bit_generator.state = rng
            except (TypeError, ValueError) as e:
                raise ValueError(STATE_MISMATCH.format(
                    what=f"the generator state does not fit this loader's generator "
                         f"({type(self._rng.bit_generator).__name__}): {e}")) from None
        self._epoch, self._pos, self._skip = int(epoch), 0, int(batch)
        self._start_state, self._drawn = None, False

    def _give_back(self) -> None:
        """Count the last batch handed out as not done: ``ff.train`` calls it when an error
        or Ctrl-C came before that batch's step was applied, so that ``state_dict`` then
        resumes with that batch."""
        if self._pos > 0:
            self._pos -= 1

    # -- iteration -----------------------------------------------------------------------
    def _batches(self) -> list:
        """The index of each of this rank's batches in this epoch (slices or index arrays)."""
        if self.shuffle:
            self._start_state = self._rng.bit_generator.state
        order = self._rng.permutation(self.nobs) if self.shuffle else None
        step, n = self._step(), self.nobs
        out = []
        for k in range(len(self)):
            lo, hi = k * step, min((k + 1) * step, n)
            if self.shard is not None:
                rank, size = self.shard
                q, r = divmod(hi - lo, size)  # np.array_split's sizes: the first r get one more
                lo += rank * q + min(rank, r)
                hi = lo + q + (rank < r)
            out.append(slice(lo, hi) if order is None else order[lo:hi])
        return out

    def __iter__(self) -> Iterator[Any]:
        # The order is drawn here, when the epoch starts, not at the first next().
        if self._drawn:  # the last epoch is over (an epoch left before its end counts)
            self._epoch += 1
        idxs = self._batches()
        self._drawn = True
        skip, self._skip = self._skip, 0
        self._pos = skip
        return self._serve(idxs[skip:])

    def _serve(self, idxs: list) -> Iterator[Any]:
        leaves, td, move = self._leaves, self._treedef, self._move
        for i in idxs:
            batch = tree.unflatten(td, [x[i] for x in leaves])
            self._pos += 1
            yield batch if move is None else move(batch)


def _mover(device: Any) -> Any:
    """The function that moves one batch to ``device`` (None: batches stay put)."""
    if device is None:
        return None
    if callable(device):
        return device
    from . import device as _device
    if device == "cpu":
        return _device.cpu
    if isinstance(device, str) and (device == "gpu" or device.startswith("gpu:")):
        try:
            n = None if device == "gpu" else int(device[4:])
        except ValueError:
            n = -1
        if n is not None and n < 0:
            raise ValueError(f"DataLoader: device={device!r}; use 'gpu' or 'gpu:N' with N >= 0")
        return lambda batch: _device.gpu(batch, n)
    raise ValueError(f"DataLoader: device must be None, 'cpu', 'gpu', 'gpu:N' or a function "
                     f"applied to each batch, got {device!r}")


def _check_shard(shard: Any) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        rank, size = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise ValueError(f"DataLoader: shard must be (rank, size), got {shard!r}") from None
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"DataLoader: shard=(rank, size) needs 0 <= rank < size, got {shard!r}")
    return rank, size


# ----------------------------------------------------------------------------- one-hot
def _show(cls: np.ndarray) -> str:
    items = cls.tolist()
    if len(items) <= 12:
        return repr(items)
    return repr(items[:10])[:-1] + f", ... ({len(items)} in all)]"


def _class_index(labels: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """The position of each label in ``classes``; a label not there is a ValueError."""
    cls = np.asarray(classes)
    if cls.ndim != 1 or cls.size == 0:
        raise ValueError(f"classes must be a non-empty sequence, got {classes!r}")
    if len(np.unique(cls)) != cls.size:
        raise ValueError(f"classes must be distinct, got {_show(cls)}")
    if cls.dtype.kind in "biuf" and labels.dtype.kind in "biuf":
        # Vectorised: one search for the whole batch (MNIST labels are 60_000 long).
        order = np.argsort(cls, kind="stable")
        pos = np.clip(np.searchsorted(cls[order], labels), 0, cls.size - 1)
        idx = order[pos]
        bad = cls[idx] != labels
        if np.any(bad):
            raise ValueError(f"label {labels[bad].flat[0].item()!r} is not one of the classes "
                             f"{_show(cls)}")
        return idx
    lookup = {c: i for i, c in enumerate(cls.tolist())}
    flat = []
    for lab in labels.ravel().tolist():
        if lab not in lookup:
            raise ValueError(f"label {lab!r} is not one of the classes {_show(cls)}")
        flat.append(lookup[lab])
    return np.asarray(flat, dtype=np.intp).reshape(labels.shape)


def onehotbatch(labels: Any, classes: Sequence[Any]) -> np.ndarray:
    """One-hot rows, batch-first: ``labels`` of shape ``(N,)`` give ``(N, len(classes))`` float32.

    (Flux puts the classes first; funcflux is batch-first, so classes go last.)

    >>> onehotbatch([2, 0], range(3))
    array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
    """
    labels = np.asarray(labels)
    idx = _class_index(labels, classes)
    out = np.zeros(labels.shape + (len(classes),), dtype=np.float32)
    np.put_along_axis(out, idx[..., None], 1.0, axis=-1)
    return out


def onehot(label: Any, classes: Sequence[Any]) -> np.ndarray:
    """One label as a float32 vector of length ``len(classes)``.

    >>> onehot("b", ["a", "b", "c"])
    array([0., 1., 0.], dtype=float32)
    """
    return onehotbatch(np.asarray([label]), classes)[0]


def onecold(y: Any, classes: Sequence[Any] | None = None) -> Any:
    """The inverse of ``onehotbatch``: argmax along the last axis, mapped to ``classes``.

    Scores on a GPU give the indices there (``classes=None``) or, with
    ``classes``, the labels on the host (labels may be strings).

    >>> onecold(np.array([[0.1, 0.9], [0.8, 0.2]]), ["no", "yes"]).tolist()
    ['yes', 'no']
    """
    xp = array_module(y)
    y = np.asarray(y) if xp is np else y
    if y.ndim == 0:
        raise ValueError("onecold needs scores along a last axis, got a scalar")
    idx = xp.argmax(y, axis=-1)
    if classes is None:
        return idx
    cls = np.asarray(classes)
    if cls.shape != (y.shape[-1],):
        raise ValueError(f"onecold: {len(cls)} classes for scores with {y.shape[-1]} entries "
                         "along the last axis")
    return cls[idx if xp is np else idx.get()]


# ----------------------------------------------------------------------------- datasets
def make_moons(n: int, noise: float = 0.0, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: ``X`` of shape ``(n, 2)`` float32, labels ``y`` (n,) int64.

    Class 0 is the upper half of the unit circle centred at the origin, class 1
    the lower half circle centred at ``(1, 0.5)``; ``n // 2`` points on the
    first, the rest on the second, evenly spaced along each arc, shuffled, and
    moved by Gaussian noise of standard deviation ``noise``. The geometry is
    scikit-learn's ``make_moons``.

    >>> X, y = make_moons(100, noise=0.1, rng=0)
    >>> X.shape, X.dtype, np.bincount(y).tolist()
    ((100, 2), dtype('float32'), [50, 50])
    """
    if int(n) != n or n < 1:
        raise ValueError(f"make_moons: n must be a positive int, got {n!r}")
    n = int(n)
    g = _as_rng(rng)
    n0 = n // 2
    t0 = np.linspace(0.0, np.pi, n0)
    t1 = np.linspace(0.0, np.pi, n - n0)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], axis=1),
                        np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)])
    y = np.concatenate([np.zeros(n0, np.int64), np.ones(n - n0, np.int64)])
    if noise:
        X = X + g.normal(scale=noise, size=X.shape)
    perm = g.permutation(n)
    return X[perm].astype(np.float32), y[perm]


# IDX: two zero bytes, a type code, the number of dimensions, then one big-endian
# uint32 per dimension, then the values (big-endian) in C order.
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain, or gzipped when the name ends in ``.gz``) into an array.

    A wrong magic number, an unknown type code or a size that disagrees with
    the dimensions is a ``ValueError`` naming the file.
    """
    path = os.fspath(path)
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (gzip.BadGzipFile, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable gzipped IDX file ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; "
                         "expected 0000 then a type code 08-0e and the number of dimensions)")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes for {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = head + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX dimensions {dims} need {expected} bytes, but the file has "
                         f"{len(raw)} (truncated or corrupt)")
    return np.frombuffer(raw, dtype, offset=head).reshape(dims).astype(dtype.newbyteorder("="))


_MNIST_FILES = {"train_images": "train-images-idx3-ubyte",
                "train_labels": "train-labels-idx1-ubyte",
                "test_images": "t10k-images-idx3-ubyte",
                "test_labels": "t10k-labels-idx1-ubyte"}


def _find(folder: str, name: str) -> str:
    # Some mirrors spell the names with a dot ("train-images.idx3-ubyte").
    dotted = name.replace("-idx", ".idx")
    for cand in (name, name + ".gz", dotted, dotted + ".gz"):
        p = os.path.join(folder, cand)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(MNIST_MISSING.format(name=name, folder=folder))


def load_mnist(path: str | os.PathLike) -> tuple[tuple[np.ndarray, np.ndarray],
                                                 tuple[np.ndarray, np.ndarray]]:
    """MNIST from the four IDX files in the folder ``path``: ``((Xtrain, ytrain), (Xtest, ytest))``.

    Images come as float32 in [0, 1] shaped ``(N, 28, 28)`` (``(N, rows, cols)``
    as stored, so Fashion-MNIST's files work too); add a channel axis or
    flatten as your model needs. Labels are int64. Files may be gzipped
    (``.gz``). A missing file is a ``FileNotFoundError`` that names it and says
    where to get it; a corrupt one a ``ValueError``.
    """
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        detail = MNIST_MISSING.format(name=_MNIST_FILES["train_images"], folder=folder)
        raise FileNotFoundError(f"load_mnist: {folder} is not a folder, so "
                                + detail[len("load_mnist: "):])
    files = {k: _find(folder, v) for k, v in _MNIST_FILES.items()}  # all missing ones fail first
    out = []
    for part in ("train", "test"):
        imgs, labs = read_idx(files[f"{part}_images"]), read_idx(files[f"{part}_labels"])
        if imgs.ndim != 3 or imgs.dtype != np.uint8:
            raise ValueError(f"{files[f'{part}_images']}: expected unsigned bytes of shape "
                             f"(N, rows, cols), got {imgs.dtype} of shape {imgs.shape}")
        if labs.ndim != 1 or labs.shape[0] != imgs.shape[0]:
            raise ValueError(f"{files[f'{part}_labels']}: expected {imgs.shape[0]} labels (one per "
                             f"image), got shape {labs.shape}")
        out.append((imgs.astype(np.float32) / np.float32(255.0), labs.astype(np.int64)))
    return out[0], out[1]
