"""funcflux.data: DataLoader edge cases, one-hot encoding, make_moons, IDX/MNIST parsing."""
import gzip
import os
import struct

import numpy as np
import pytest

import funcflux as ff
from funcflux import data
from funcflux.data import DataLoader


# ----------------------------------------------------------------------------- DataLoader
@pytest.mark.parametrize("n,bs,partial,sizes", [
    (10, 3, True, [3, 3, 3, 1]),
    (10, 3, False, [3, 3, 3]),
    (9, 3, False, [3, 3, 3]),
    (10, 10, True, [10]),
    (10, 20, True, [10]),
    (10, 20, False, []),
    (1, 1, True, [1]),
])
def test_batch_sizes_and_len(n, bs, partial, sizes):
    loader = DataLoader(np.arange(n), batchsize=bs, partial=partial)
    got = [b.shape[0] for b in loader]
    assert got == sizes and len(loader) == len(sizes)
    if partial:
        assert np.concatenate(list(loader)).tolist() == list(range(n))


def test_pytree_structure_is_kept():
    X, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    d = {"x": X, "pair": (y, y * 10), "none": None}
    batches = list(DataLoader(d, batchsize=4))
    assert [sorted(b) for b in batches] == [["none", "pair", "x"]] * 2
    b = batches[1]
    assert b["none"] is None and isinstance(b["pair"], tuple)
    np.testing.assert_array_equal(b["x"], X[4:])
    np.testing.assert_array_equal(b["pair"][1], y[4:] * 10)


def test_functor_data():
    @ff.functor("a", "b")
    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b
    batches = list(DataLoader(Pair(np.arange(5), np.ones((5, 2))), batchsize=2))
    assert type(batches[0]) is Pair and batches[2].a.tolist() == [4]


def test_single_array_gives_arrays():
    b = next(iter(DataLoader(np.ones((4, 3)), batchsize=2)))
    assert isinstance(b, np.ndarray) and b.shape == (2, 3)


def test_shuffle_every_epoch_and_reproducible():
    a = DataLoader(np.arange(50), batchsize=50, shuffle=True, rng=3)
    b = DataLoader(np.arange(50), batchsize=50, shuffle=True, rng=3)
    ea = [next(iter(a)).tolist() for _ in range(3)]
    eb = [next(iter(b)).tolist() for _ in range(3)]
    assert ea == eb                            # same seed, same sequence of epochs
    assert ea[0] != ea[1] != ea[2]             # a new order every epoch
    assert all(sorted(e) == list(range(50)) for e in ea)
    gen = DataLoader(np.arange(50), batchsize=50, shuffle=True, rng=np.random.default_rng(3))
    assert next(iter(gen)).tolist() == ea[0]   # a Generator works like its seed


def test_shuffled_leaves_stay_aligned():
    X = np.arange(20)
    for xb, yb in DataLoader((X, X * 2), batchsize=6, shuffle=True, rng=0):
        np.testing.assert_array_equal(yb, xb * 2)


def test_no_shuffle_gives_views_in_order():
    X = np.arange(10)
    first = next(iter(DataLoader(X, batchsize=4)))
    assert np.shares_memory(first, X) and first.tolist() == [0, 1, 2, 3]


def test_leaves_disagree_names_paths_and_sizes():
    with pytest.raises(ValueError, match=r"\['x'\] has 5.*\['y'\] has 4"):
        DataLoader({"x": np.ones((5, 2)), "y": np.ones(4)})


@pytest.mark.parametrize("bs", [0, -1, 2.0, True, None])
def test_bad_batchsize(bs):
    with pytest.raises(ValueError, match="batchsize"):
        DataLoader(np.ones(4), batchsize=bs)


def test_scalar_and_empty_data():
    with pytest.raises(ValueError, match=r"\['b'\] is a scalar"):
        DataLoader({"a": np.ones(3), "b": 1.0})
    with pytest.raises(ValueError, match="no arrays"):
        DataLoader({})


def test_device_choices():
    # Moving batches is tested in tests/test_device.py; here: what the argument accepts.
    assert [b.tolist() for b in DataLoader(np.arange(3.0), 2, device="cpu")] == [[0, 1], [2]]
    assert [b.tolist() for b in DataLoader(np.arange(3.0), 2, device=lambda b: b * 2)] == \
        [[0, 2], [4]]
    for bad in ("tpu", "gpu:x", "gpu:-1", 3):
        with pytest.raises(ValueError, match="device"):
            DataLoader(np.ones(3), device=bad)


@pytest.mark.parametrize("n,bs,size,partial", [
    (10, 2, 3, True), (10, 2, 3, False), (12, 2, 3, True), (7, 3, 4, True), (2, 1, 4, True),
    (23, 4, 2, True), (23, 4, 2, False),
])
@pytest.mark.parametrize("shuffle", [False, True])
def test_shard_disjoint_union_equal_len(n, bs, size, partial, shuffle):
    loaders = [DataLoader(np.arange(n), batchsize=bs, shuffle=shuffle, partial=partial, rng=7,
                          shard=(r, size)) for r in range(size)]
    lens = {len(l) for l in loaders}
    assert len(lens) == 1                           # every rank takes the same number of steps
    epochs = [[b.tolist() for b in l] for l in loaders]
    assert all(len(e) == len(loaders[0]) for e in epochs)
    seen = [i for e in epochs for b in e for i in b]
    assert len(seen) == len(set(seen))              # disjoint
    if partial:
        assert sorted(seen) == list(range(n))       # union is one epoch
    else:
        assert len(seen) == (n // (bs * size)) * bs * size
    for e in epochs:                                # full steps give full local batches
        assert all(len(b) == bs for b in e[:-1])


def test_shard_union_is_the_unsharded_order():
    n, bs, size = 17, 3, 2
    full = [b.tolist() for b in DataLoader(np.arange(n), batchsize=bs * size, shuffle=True, rng=1)]
    parts = [[b.tolist() for b in DataLoader(np.arange(n), batchsize=bs, shuffle=True, rng=1,
                                             shard=(r, size))] for r in range(size)]
    assert [p0 + p1 for p0, p1 in zip(*parts)] == full


def test_shard_errors():
    with pytest.raises(ValueError, match="same seed"):
        DataLoader(np.ones(4), shuffle=True, shard=(0, 2))
    for bad in [(2, 2), (-1, 2), (0, 0), "ab", 3]:
        with pytest.raises(ValueError, match="shard"):
            DataLoader(np.ones(4), shard=bad)


# ----------------------------------------------------------------------------- one-hot
def test_onehotbatch_and_onecold_roundtrip():
    labels = np.array([3, 1, 4, 1, 5])
    y = data.onehotbatch(labels, range(1, 6))
    assert y.shape == (5, 5) and y.dtype == np.float32 and y.sum() == 5
    assert data.onecold(y, range(1, 6)).tolist() == labels.tolist()
    assert data.onecold(y).tolist() == (labels - 1).tolist()


def test_onehot_strings_and_unsorted_classes():
    assert data.onehot("c", ["b", "c", "a"]).tolist() == [0, 1, 0]
    assert data.onehotbatch([10, 2], [10, 5, 2]).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert data.onehotbatch(np.array([[0, 1]]), [0, 1]).shape == (1, 2, 2)


@pytest.mark.parametrize("labels,classes,bad", [
    ([0, 7, 1], range(3), "7"), (["x", "q"], ["x", "y"], "'q'"), ([2.5], [1.0, 2.0], "2.5"),
])
def test_label_not_in_classes(labels, classes, bad):
    with pytest.raises(ValueError, match=f"label {bad} is not one of the classes"):
        data.onehotbatch(labels, classes)


def test_onehot_class_errors():
    with pytest.raises(ValueError, match="distinct"):
        data.onehotbatch([0], [0, 0, 1])
    with pytest.raises(ValueError, match="2 classes"):
        data.onecold(np.ones((4, 3)), ["a", "b"])


# ----------------------------------------------------------------------------- moons
def test_make_moons():
    X, y = data.make_moons(101, rng=0)
    assert X.shape == (101, 2) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [50, 51]
    # Without noise, class 0 lies on the unit circle, class 1 on the circle around (1, 0.5).
    np.testing.assert_allclose(np.hypot(*X[y == 0].T), 1, rtol=1e-6)
    np.testing.assert_allclose(np.hypot(X[y == 1, 0] - 1, X[y == 1, 1] - 0.5), 1, rtol=1e-6)
    assert (X[y == 0, 1] >= -1e-6).all() and (X[y == 1, 1] <= 0.5 + 1e-6).all()
    a, b = data.make_moons(50, noise=0.2, rng=3), data.make_moons(50, noise=0.2, rng=3)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], data.make_moons(50, noise=0.2, rng=4)[0])


# ----------------------------------------------------------------------------- IDX / MNIST
def _idx_bytes(arr, code=0x08):
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype({0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[code]).tobytes()


def _write(path, raw, gz=False):
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        with open(path, "wb") as f:
            f.write(raw)


def _fake_mnist(folder, gz=False, n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    arrays = {}
    for part, n in [("train", n_train), ("t10k", n_test)]:
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labs = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write(folder / f"{part}-images-idx3-ubyte", _idx_bytes(imgs), gz)
        _write(folder / f"{part}-labels-idx1-ubyte", _idx_bytes(labs), gz)
        arrays[part] = (imgs, labs)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist(tmp_path, gz):
    ref = _fake_mnist(tmp_path, gz)
    (Xtr, ytr), (Xte, yte) = data.load_mnist(tmp_path)
    assert Xtr.shape == (5, 28, 28) and Xte.shape == (3, 28, 28)
    assert Xtr.dtype == np.float32 and ytr.dtype == np.int64
    assert 0 <= Xtr.min() and Xtr.max() <= 1
    np.testing.assert_allclose(Xtr * 255, ref["train"][0], atol=1e-4)
    assert ytr.tolist() == ref["train"][1].tolist() and yte.tolist() == ref["t10k"][1].tolist()


def test_mnist_missing_file_named(tmp_path):
    _fake_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*yann.lecun"):
        data.load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        data.load_mnist(tmp_path / "nowhere")


def test_read_idx_types(tmp_path):
    a = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    _write(tmp_path / "i", _idx_bytes(a, 0x0C))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "i"), a)
    f = np.linspace(0, 1, 4, dtype=np.float32)
    _write(tmp_path / "f", _idx_bytes(f, 0x0D), gz=True)
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / "f") + ".gz"), f)


@pytest.mark.parametrize("raw,msg", [
    (b"", "bad magic"),
    (b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00", "bad magic"),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"\x00\x00", "bad magic"),
    (b"\x00\x00\x08\x03\x00\x00", "header truncated"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x00", r"need 13 bytes.*has 10"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00\x00", r"need 9 bytes.*has 10"),
])
def test_corrupt_idx(tmp_path, raw, msg):
    _write(tmp_path / "bad", raw)
    with pytest.raises(ValueError, match=msg):
        data.read_idx(tmp_path / "bad")


def test_corrupt_gzip_and_wrong_shapes(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="gzipped"):
        data.read_idx(tmp_path / "x.gz")
    _fake_mnist(tmp_path)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="expected 5 labels"):
        data.load_mnist(tmp_path)
    _write(tmp_path / "train-images-idx3-ubyte", _idx_bytes(np.zeros((5, 784), np.uint8)))
    with pytest.raises(ValueError, match=r"\(N, rows, cols\)"):
        data.load_mnist(tmp_path)
