"""funcflux.data: DataLoader edge cases, one-hot encoding, make_moons, IDX/MNIST parsing."""
import gzip
import os
import struct

import numpy as np
import pytest

import funcflux as ff
from funcflux import data, nn, optim
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


# -- resuming: state_dict / load_state_dict ---------------------------------------------
def _batches(it):
    return [np.asarray(b[0]).tolist() for b in it]


def test_loader_state_resumes_mid_epoch_and_later_epochs(tmp_path):
    X, Y = np.arange(20.0)[:, None], np.arange(20)
    make = lambda seed: data.DataLoader((X, Y), batchsize=3, shuffle=True, rng=seed)  # noqa
    straight = make(0)
    want = [_batches(straight) for _ in range(3)]
    loader = make(0)
    it = iter(loader)
    first = [np.asarray(next(it)[0]).tolist() for _ in range(4)]
    assert first == want[0][:4]
    ff.save(tmp_path / "c.npz", {"loader": loader.state_dict()})
    again = make(99)   # another seed: the state decides
    state = ff.load(tmp_path / "c.npz", like={"loader": again.state_dict()})["loader"]
    assert state["epoch"] == 0 and state["batch"] == 4
    again.load_state_dict(state)
    assert again.state_dict() == loader.state_dict()
    assert _batches(again) == want[0][4:]
    assert _batches(again) == want[1] and _batches(again) == want[2]


def test_loader_state_between_epochs_and_without_shuffle():
    X = np.arange(10.0)
    loader = data.DataLoader(X, batchsize=4, shuffle=True, rng=1)
    list(loader)
    s = loader.state_dict()
    assert (s["epoch"], s["batch"]) == (1, 0)
    nxt = [b.tolist() for b in loader]
    other = data.DataLoader(X, batchsize=4, shuffle=True, rng=2)
    other.load_state_dict(s)
    assert [b.tolist() for b in other] == nxt
    plain = data.DataLoader(X, batchsize=4)
    it = iter(plain)
    next(it)
    s = plain.state_dict()
    assert s == {"epoch": 0, "batch": 1, "num_batches": 3, "rng": None}
    fresh = data.DataLoader(X, batchsize=4)
    fresh.load_state_dict(s)
    assert [b.tolist() for b in fresh] == [[4.0, 5.0, 6.0, 7.0], [8.0, 9.0]]


def test_loader_state_errors():
    X = np.arange(10.0)
    s = data.DataLoader(X, batchsize=4, shuffle=True, rng=1).state_dict()
    with pytest.raises(ValueError, match="3 batches per epoch, this one has 5"):
        data.DataLoader(X, batchsize=2, shuffle=True, rng=1).load_state_dict(s)
    with pytest.raises(ValueError, match="shuffle=True, this one has shuffle=False"):
        data.DataLoader(X, batchsize=4).load_state_dict(s)
    with pytest.raises(ValueError, match="state_dict"):
        data.DataLoader(X, batchsize=4).load_state_dict({"epoch": 0})


def _resume_problem():
    g = np.random.default_rng(3)
    X = g.normal(size=(30, 3))
    Y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * g.normal(size=(30, 1))
    model = nn.Chain(nn.Dense(3, 4, np.tanh, rng=1), nn.Dense(4, 1, rng=2))
    loss = lambda m, x, y: np.mean((m(x) - y) ** 2)  # noqa: E731
    return X, Y, model, loss


def test_interrupted_run_resumed_from_a_checkpoint_equals_the_straight_run(tmp_path):
    X, Y, model0, loss = _resume_problem()

    def build():
        return (data.DataLoader((X, Y), batchsize=7, shuffle=True, rng=0),
                optim.setup(optim.adam(0.05), model0))

    def steps(loader, state, model, n, it=None):
        losses_ = []
        while len(losses_) < n:
            it = iter(loader) if it is None else it
            for x, y in it:
                v, g = ff.value_and_grad(loss)(model, x, y)
                state, model = optim.step(state, model, g)
                losses_.append(float(v))
                if len(losses_) == n:
                    return state, model, losses_, it
            it = None
        return state, model, losses_, None

    loader, state = build()
    _, straight, straight_losses, _ = steps(loader, state, model0, 23)  # 5 batches per epoch

    loader, state = build()
    state, model, first, _ = steps(loader, state, model0, 12)           # stop mid-epoch 3
    path = tmp_path / "ckpt.npz"
    ff.save(path, {"model": model, "loader": loader.state_dict()}, opt_state=state)
    loader, state = build()                                              # from scratch
    saved, state = ff.load(path, like={"model": model0, "loader": loader.state_dict()},
                           opt_state_like=state)
    loader.load_state_dict(saved["loader"])
    _, resumed, rest, _ = steps(loader, state, saved["model"], 11)
    assert first + rest == straight_losses
    for a, b in zip(ff.tree.leaves(resumed), ff.tree.leaves(straight)):
        np.testing.assert_array_equal(a, b)


def test_train_resumed_at_an_epoch_boundary_equals_the_straight_run(tmp_path):
    X, Y, model0, loss = _resume_problem()
    make = lambda: data.DataLoader((X, Y), batchsize=8, shuffle=True, rng=5)  # noqa: E731
    straight, _, hist = ff.train(loss, model0, make(), optim.adam(0.05), epochs=4,
                                 progress=False)
    loader = make()
    path = tmp_path / "ckpt.npz"

    def checkpoint(info):
        ff.save(path, {"model": info.model, "loader": loader.state_dict()},
                opt_state=info.state)
    ff.train(loss, model0, loader, optim.adam(0.05), epochs=2, progress=False,
             callbacks=[checkpoint])
    loader = make()
    like_state = optim.setup(optim.adam(0.05), model0)
    saved, state = ff.load(path, like={"model": model0, "loader": loader.state_dict()},
                           opt_state_like=like_state)
    loader.load_state_dict(saved["loader"])
    resumed, _, h2 = ff.train(loss, saved["model"], loader, state, epochs=2, progress=False)
    assert h2["loss"] == hist["loss"][2:]
    for a, b in zip(ff.tree.leaves(resumed), ff.tree.leaves(straight)):
        np.testing.assert_array_equal(a, b)
