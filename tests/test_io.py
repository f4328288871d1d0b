"""Checkpoints: round trips, ties, mismatches, corrupted and malicious files, atomic writes."""
import os
import sys
import zipfile

import numpy as np
import pytest

import funcflux as ff
from funcflux import io, nn, optim
from funcflux.io import CheckpointError


def _same(a, b):
    la, ta = ff.tree.flatten(a)
    lb, tb = ff.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        assert type(x) is type(y)
        if isinstance(x, (np.ndarray, np.generic)):
            assert x.dtype == y.dtype and np.shape(x) == np.shape(y)
            np.testing.assert_array_equal(x, y)
        else:
            assert x == y


@ff.functor("w", "inner")
class Block:
    def __init__(self, w, inner, name="block"):
        self.w, self.inner, self.name = w, inner, name


def _zeros_like(t):
    return ff.tree.map(lambda x: np.zeros_like(x) if isinstance(x, np.ndarray)
                       else type(x)(0) if isinstance(x, (int, float, np.generic)) else x, t)


TREES = {
    "nested": {"a": [np.arange(3.0), (np.ones((2, 2), np.float32), None)],
               "b": {"c": np.arange(4, dtype=np.int32), "d": np.array(True)}},
    "scalars": {"f": 0.5, "i": 3, "b": True, "np32": np.float32(1.5), "i8": np.int8(-2),
                "zero_d": np.array(2.0), "empty": np.zeros((0, 3))},
    "functor": [Block(np.arange(6.0).reshape(2, 3), {"v": np.ones(2, np.float32)}, name="x")],
    "bare": np.arange(5, dtype=np.int64),
    "config": {"w": np.ones(2), "act": "relu", "f": np.tanh},
}


@pytest.mark.parametrize("name", list(TREES))
def test_round_trip(tmp_path, name):
    t = TREES[name]
    path = tmp_path / "c.npz"
    ff.save(path, t)
    _same(ff.load(path, like=_zeros_like(t)), t)


def test_round_trip_layers_and_paths(tmp_path):
    m = nn.Chain(nn.Dense(2, 3, np.tanh, rng=0), nn.Dense(3, 1, rng=1))
    ff.save(tmp_path / "m.npz", m)
    names = set(np.load(tmp_path / "m.npz", allow_pickle=False).files)
    assert ".layers[0].weight" in names and ".layers[1].bias" in names
    fresh = nn.Chain(nn.Dense(2, 3, np.tanh, rng=5), nn.Dense(3, 1, rng=6))
    back = ff.load(tmp_path / "m.npz", like=fresh)
    assert type(back) is nn.Chain and back[0].activation is np.tanh
    x = np.ones((4, 2), np.float32)
    np.testing.assert_array_equal(back(x), m(x))
    assert set(ff.load(tmp_path / "m.npz")) == names - {io.MANIFEST}


def test_input_not_modified_and_fresh_arrays(tmp_path):
    like = {"w": np.zeros(3)}
    ff.save(tmp_path / "c.npz", {"w": np.ones(3)})
    out = ff.load(tmp_path / "c.npz", like=like)
    assert like["w"].sum() == 0 and out["w"].sum() == 3


def test_tied_arrays_stay_tied(tmp_path):
    w = np.arange(4.0)
    ff.save(tmp_path / "t.npz", {"enc": w, "dec": w, "other": np.ones(1)})
    assert len(np.load(tmp_path / "t.npz").files) == 3  # stored once, plus one more and manifest
    v = np.zeros(4)
    back = ff.load(tmp_path / "t.npz", like={"enc": v, "dec": v, "other": np.zeros(1)})
    assert back["enc"] is back["dec"] and back["enc"].tolist() == [0, 1, 2, 3]
    untied = ff.load(tmp_path / "t.npz", like={"enc": np.zeros(4), "dec": np.zeros(4),
                                               "other": np.zeros(1)})
    assert untied["dec"].tolist() == [0, 1, 2, 3]


def test_optimiser_state_round_trip_resumes_exactly(tmp_path):
    model = nn.Chain(nn.Dense(2, 4, np.tanh, rng=0), nn.Dense(4, 1, rng=1))
    x, y = np.ones((8, 2), np.float32), np.zeros((8, 1), np.float32)
    loss = lambda m: np.mean((m(x) - y) ** 2)
    state = optim.setup(optim.adam(1e-2), model)
    for _ in range(3):
        state, model = optim.step(state, model, ff.grad(loss)(model))
    ff.save(tmp_path / "ck.npz", model, opt_state=state)

    like = nn.Chain(nn.Dense(2, 4, np.tanh, rng=9), nn.Dense(4, 1, rng=9))
    m2, s2 = ff.load(tmp_path / "ck.npz", like=like, opt_state_like=optim.setup(optim.adam(1e-2),
                                                                               like))
    _same(ff.tree.leaves(s2), ff.tree.leaves(state))
    a = optim.step(state, model, ff.grad(loss)(model))[1]
    b = optim.step(s2, m2, ff.grad(loss)(m2))[1]
    np.testing.assert_array_equal(a[0].weight, b[0].weight)
    assert ff.load(tmp_path / "ck.npz", like=like)[1].bias.shape == (1,)  # model only


def test_opt_state_like_without_saved_state(tmp_path):
    ff.save(tmp_path / "c.npz", {"w": np.ones(2)})
    with pytest.raises(CheckpointError, match="no optimiser state"):
        ff.load(tmp_path / "c.npz", like={"w": np.ones(2)}, opt_state_like={"m": np.ones(2)})


# ----------------------------------------------------------------------------- mismatches
@pytest.mark.parametrize("like,msg", [
    ({"w": np.zeros((2, 3)), "b": np.zeros(3), "n": 0, "extra": np.zeros(1)},
     r"In `like` but not in the file: \['extra'\]"),
    ({"w": np.zeros((2, 3)), "n": 0}, r"In the file but not in `like`: \['b'\]"),
    ({"w": np.zeros((3, 2)), "b": np.zeros(3), "n": 0},
     r"shape mismatch at \['w'\]: the file holds shape \(2, 3\), `like` has shape \(3, 2\)"),
    ({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3), "n": 0},
     r"dtype mismatch at \['w'\]: the file holds float64, `like` has float32"),
    ({"w": np.zeros((2, 3)), "b": np.zeros(3), "n": 0.0},
     r"at \['n'\] the file holds a Python int, but `like` holds a Python float"),
    ({"w": np.zeros((2, 3)), "b": "bias", "n": 0},
     r"at \['b'\] the file holds a stored value, but `like` holds a str"),
])
def test_mismatch_names_path_and_values(tmp_path, like, msg):
    ff.save(tmp_path / "c.npz", {"w": np.ones((2, 3)), "b": np.ones(3), "n": 4})
    with pytest.raises(CheckpointError, match=msg):
        ff.load(tmp_path / "c.npz", like=like)


def test_configuration_leaf_where_like_has_array(tmp_path):
    ff.save(tmp_path / "c.npz", {"act": "relu"})
    with pytest.raises(CheckpointError, match=r"at \['act'\] the file holds a str \(not stored\)"):
        ff.load(tmp_path / "c.npz", like={"act": np.ones(1)})


def test_object_leaf_refused_on_save(tmp_path):
    with pytest.raises(TypeError, match=r"\['o'\].*Python objects"):
        ff.save(tmp_path / "c.npz", {"o": np.array([{}, 1], dtype=object)})
    assert not os.listdir(tmp_path)


# ----------------------------------------------------------------------------- bad files
def test_truncated_file(tmp_path):
    path = tmp_path / "c.npz"
    ff.save(path, {"w": np.arange(1000.0)})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        ff.load(path, like={"w": np.zeros(1000)})


def test_not_a_zip(tmp_path):
    path = tmp_path / "c.npz"
    path.write_bytes(b"hello, this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not an .npz"):
        ff.load(path, like={})
    np.save(tmp_path / "plain.npy", np.ones(3))
    with pytest.raises(CheckpointError, match="not an .npz"):
        ff.load(tmp_path / "plain.npy", like=np.ones(3))
    with pytest.raises(FileNotFoundError):
        ff.load(tmp_path / "missing.npz", like={})
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("notes.txt", "just text")
    with pytest.raises(CheckpointError, match="'notes.txt' is not a .npy array"):
        ff.load(tmp_path / "other.zip")


def test_damaged_array_data(tmp_path):
    path = tmp_path / "c.npz"
    ff.save(path, {"w": np.arange(1000.0)})
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the array's bytes: the CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="c.npz"):
        ff.load(path, like={"w": np.zeros(1000)})


def test_damaged_manifest(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, **{"['w']": np.ones(2), io.MANIFEST: np.frombuffer(b"{not json", np.uint8)})
    with pytest.raises(CheckpointError, match="manifest is damaged"):
        ff.load(path, like={"w": np.ones(2)})


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("with_manifest", [False, True])
def test_malicious_pickle_refused(tmp_path, monkeypatch, with_manifest):
    monkeypatch.chdir(tmp_path)
    arrays = {"['w']": np.array([_Evil()], dtype=object)}
    if with_manifest:
        arrays[io.MANIFEST] = np.frombuffer(
            b'{"format": "funcflux", "version": 1, "model": [{"path": "[\'w\']", '
            b'"kind": "array"}]}', np.uint8)
    np.savez("evil.npz", **arrays)  # NumPy pickles the object array
    with pytest.raises(CheckpointError, match="refusing to load.*Python objects"):
        ff.load("evil.npz", like={"w": np.zeros(1)})
    with pytest.raises(CheckpointError, match="refusing"):
        ff.load("evil.npz")
    assert not os.path.exists("PWNED")


def test_plain_npz_by_path(tmp_path):
    np.savez(tmp_path / "p.npz", **{"['w']": np.ones(2), "['n']": np.array(3)})
    out = ff.load(tmp_path / "p.npz", like={"w": np.zeros(2), "n": 0})
    assert out["n"] == 3 and type(out["n"]) is int and out["w"].tolist() == [1, 1]


def test_newer_format_refused(tmp_path):
    np.savez(tmp_path / "p.npz", **{io.MANIFEST: np.frombuffer(
        b'{"format": "funcflux", "version": 99, "model": []}', np.uint8)})
    with pytest.raises(CheckpointError, match="newer funcflux"):
        ff.load(tmp_path / "p.npz", like={})


# ----------------------------------------------------------------------------- atomic writes
def test_crash_mid_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    ff.save(path, {"a": np.ones(3), "b": np.ones(3)})
    before = path.read_bytes()
    calls = []
    real = io._write_array

    def failing(f, a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(f, a, **kw)

    monkeypatch.setattr(io, "_write_array", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        ff.save(path, {"a": np.zeros(3), "b": np.zeros(3)})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]  # no temporary file left behind
    assert ff.load(path, like={"a": np.zeros(3), "b": np.zeros(3)})["a"].tolist() == [1, 1, 1]


def test_save_overwrites_and_keeps_permissions(tmp_path):
    path = tmp_path / "c.npz"
    ff.save(path, {"a": np.ones(1)})
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
    os.chmod(path, 0o640)
    ff.save(path, {"a": np.zeros(1)})
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert ff.load(path, like={"a": np.ones(1)})["a"].tolist() == [0]
    assert zipfile.is_zipfile(path)


# ----------------------------------------------------------------------------- safetensors
def test_safetensors_missing_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="pip install safetensors"):
        ff.save(tmp_path / "m.safetensors", {"w": np.ones(2)})


def test_safetensors_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    t = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": 2, "act": "relu",
         "tied": [np.ones(2)] * 2}
    path = tmp_path / "m.safetensors"
    ff.save(path, t, opt_state={"mu": np.zeros(2)})
    like = {"w": np.zeros((2, 3), np.float32), "n": 0, "act": "relu", "tied": [np.zeros(2)] * 2}
    back, st = ff.load(path, like=like, opt_state_like={"mu": np.ones(2)})
    _same(back, t)
    assert back["tied"][0] is back["tied"][1] and st["mu"].tolist() == [0, 0]
    with pytest.raises(CheckpointError, match="dtype mismatch"):
        ff.load(path, like=dict(like, w=np.zeros((2, 3))))
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ff.load(path, like=like)
