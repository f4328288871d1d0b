"""Checkpoints: round trips, ties, mismatches, corrupted and malicious files, atomic writes."""
import collections
import datetime
import decimal
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from io import BytesIO

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import funcflux as ff
from funcflux import io, nn, optim
from funcflux.io import CheckpointError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    inside = ff.load(tmp_path / "m.npz")  # without like: the saved tree, a functor as a dict
    assert set(inside) == {"layers"} and type(inside["layers"]) is tuple
    assert set(inside["layers"][0]) == {"weight", "bias"}
    np.testing.assert_array_equal(inside["layers"][1]["bias"], m[1].bias)


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
     r"at \['b'\] the file holds float64 array of shape \(3,\), but `like` holds a str"),
    ({"w": np.zeros((2, 3)), "b": np.zeros(3), "n": np.tanh},
     r"at \['n'\] the file holds a Python int, but `like` holds a numpy.ufunc"),
])
def test_mismatch_names_path_and_values(tmp_path, like, msg):
    ff.save(tmp_path / "c.npz", {"w": np.ones((2, 3)), "b": np.ones(3), "n": 4})
    with pytest.raises(CheckpointError, match=msg):
        ff.load(tmp_path / "c.npz", like=like)


def test_configuration_leaf_where_like_has_array(tmp_path):
    ff.save(tmp_path / "c.npz", {"act": "relu", "f": np.tanh})
    with pytest.raises(CheckpointError, match=r"at \['act'\] the file holds a Python str, but"):
        ff.load(tmp_path / "c.npz", like={"act": np.ones(1), "f": np.tanh})
    with pytest.raises(CheckpointError, match=r"at \['f'\] the file holds a numpy.ufunc \(not "
                                              r"stored\), but `like` holds float64 array"):
        ff.load(tmp_path / "c.npz", like={"act": "", "f": np.ones(1)})


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


# ----------------------------------------------------------------------------- every leaf
class _ArrayLike:
    """Not a NumPy array, but NumPy reads it through __array__ (a JAX or Torch array would)."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a


class _ArrayRaises:
    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("cannot convert")


def test_strings_bytes_and_big_ints_are_stored(tmp_path):
    # Regression: save stored only arrays and numbers; "s" vanished without a word.
    t = {"a": np.arange(3.0), "s": "hello", "n": 3, "raw": b"\x00\xff", "big": 2 ** 70,
         "neg": -(2 ** 80), "uni": "h\u00e9llo \u2603", "empty": ""}
    ff.save(tmp_path / "c.npz", t)
    _same(ff.load(tmp_path / "c.npz"), t)
    like = {"a": np.zeros(3), "s": "", "n": 0, "raw": b"", "big": 0, "neg": 0, "uni": "",
            "empty": "x"}
    _same(ff.load(tmp_path / "c.npz", like=like), t)


def test_array_likes_are_stored_as_numpy_arrays(tmp_path):
    ff.save(tmp_path / "c.npz", {"x": _ArrayLike(np.arange(4.0))})
    back = ff.load(tmp_path / "c.npz", like={"x": _ArrayLike(np.zeros(4))})
    assert type(back["x"]) is np.ndarray and back["x"].tolist() == [0, 1, 2, 3]
    with pytest.raises(CheckpointError, match=r"shape mismatch at \['x'\]"):
        ff.load(tmp_path / "c.npz", like={"x": _ArrayLike(np.zeros(5))})


@pytest.mark.parametrize("leaf,type_name", [
    (datetime.date(2024, 1, 1), "datetime.date"),
    (object(), "object"),
    (_ArrayRaises(), "_ArrayRaises, whose __array__ raised RuntimeError: cannot convert"),
    (np.array([1, "x", None], dtype=object), "numpy.ndarray, holding Python objects"),
    (np.ma.masked_array([1.0, 2.0], mask=[0, 1]), "numpy.ma.MaskedArray"),
    ({1, 2}, "set"),
    (decimal.Decimal("1.5"), "decimal.Decimal"),
])
def test_unstorable_leaf_refuses_the_save_and_keeps_the_old_file(tmp_path, leaf, type_name):
    # Regression: such leaves were skipped, and the checkpoint written without them.
    path = tmp_path / "c.npz"
    ff.save(path, {"a": np.ones(2)})
    before = path.read_bytes()
    with pytest.raises(TypeError, match=r"leaf at \['data'\]\['when'\], of type .*" + re.escape(type_name)
                       + r".*file at .*c.npz is unchanged"):
        ff.save(path, {"a": np.zeros(2), "data": {"when": leaf, "n": 3}})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.npz"]


def test_functions_are_configuration(tmp_path):
    m = nn.Chain(nn.Dense(2, 3, rng=0), nn.relu, nn.SkipConnection(nn.Dense(3, 3, rng=1), np.add))
    ff.save(tmp_path / "m.npz", m)
    like = nn.Chain(nn.Dense(2, 3, rng=5), nn.relu, nn.SkipConnection(nn.Dense(3, 3, rng=6), np.add))
    back = ff.load(tmp_path / "m.npz", like=like)
    assert back[1] is nn.relu and back[2].connection is np.add
    x = np.ones((2, 2), np.float32)
    np.testing.assert_array_equal(back(x), m(x))
    inside = ff.load(tmp_path / "m.npz")
    assert inside["layers"][1] == io.NotStored("function", "funcflux.nn.activations.relu")
    assert inside["layers"][2]["connection"] == io.NotStored("numpy.ufunc", "numpy.add")
    assert "NotStored(function funcflux.nn.activations.relu)" == repr(inside["layers"][1])


# ----------------------------------------------------------------------------- without like
Point = collections.namedtuple("Point", "x y")


def test_load_without_like_rebuilds_the_saved_tree(tmp_path):
    # Regression: load(path) gave {"['b']": ..., "['a'][0]": ...}, a flat dict of path strings.
    w = np.arange(4.0)
    t = {"z": [w, (np.float32(2.0), None, [])], "a": {"s": "x", 3: 1.5, (1, "k"): w},
         "od": collections.OrderedDict([("b", 1), ("a", 2)]), "empty": {}, "p": Point(1, w)}
    ff.save(tmp_path / "c.npz", t)
    back = ff.load(tmp_path / "c.npz")
    assert list(back) == ["z", "a", "od", "empty", "p"]  # the saved dict's own order
    assert type(back["z"]) is list and type(back["z"][1]) is tuple and back["z"][1][1] is None
    assert back["z"][1][2] == [] and back["empty"] == {} and back["z"][1][0] == np.float32(2)
    assert back["a"]["s"] == "x" and back["a"][3] == 1.5 and set(back["a"]) == {"s", 3, (1, "k")}
    assert type(back["od"]) is collections.OrderedDict and list(back["od"]) == ["b", "a"]
    assert back["p"] == {"x": 1, "y": back["z"][0]}  # a namedtuple: a dict of its fields
    assert back["z"][0] is back["a"][(1, "k")] is back["p"]["y"]  # tied: one array again
    np.testing.assert_array_equal(back["z"][0], w)
    ff.save(tmp_path / "bare.npz", w)
    np.testing.assert_array_equal(ff.load(tmp_path / "bare.npz"), w)


def test_load_without_like_functors_and_state(tmp_path):
    model = nn.Chain(nn.Dense(2, 3, rng=0), nn.BatchNorm(3))
    state = optim.setup(optim.adam(1e-3), model)
    ff.save(tmp_path / "c.npz", model, opt_state=state)
    inside, st = ff.load(tmp_path / "c.npz", opt_state_like=state)
    assert set(inside["layers"][1]) == {"weight", "bias", "running_mean", "running_var"}
    _same(ff.tree.leaves(st), ff.tree.leaves(state))


def test_format_1_files_still_load(tmp_path):
    manifest = {"format": "funcflux", "version": 1, "structure": "PyTreeDef(...)", "model": [
        {"path": "['w']", "kind": "array", "dtype": "<f8", "shape": [2]},
        {"path": "['v']", "same_as": "['w']"},
        {"path": "['n']", "kind": "int", "dtype": "<i8", "shape": []},
        {"path": "['act']", "kind": "skipped", "type": "str"}]}
    np.savez(tmp_path / "v1.npz", **{"['w']": np.ones(2), "['n']": np.array(4),
                                     io.MANIFEST: np.frombuffer(json.dumps(manifest).encode(),
                                                                np.uint8)})
    back = ff.load(tmp_path / "v1.npz", like={"w": np.zeros(2), "v": np.zeros(2), "n": 0,
                                              "act": "relu"})
    assert back["act"] == "relu" and back["n"] == 4 and back["v"].tolist() == [1, 1]
    flat = ff.load(tmp_path / "v1.npz")
    assert set(flat) == {"['w']", "['v']", "['n']"} and flat["['n']"] == 4


def test_state_tied_to_the_model(tmp_path):
    w = np.ones(3)
    ff.save(tmp_path / "c.npz", {"w": w}, opt_state={"ema": w, "m": np.zeros(3)})
    back, st = ff.load(tmp_path / "c.npz", like={"w": np.zeros(3)},
                       opt_state_like={"ema": np.zeros(3), "m": np.zeros(3)})
    assert st["ema"].tolist() == [1, 1, 1] and back["w"].tolist() == [1, 1, 1]


def test_fortran_order_arrays(tmp_path):
    a = np.arange(6.0).reshape(2, 3).T  # written as a Fortran-order .npy
    ff.save(tmp_path / "c.npz", {"a": a})
    np.testing.assert_array_equal(ff.load(tmp_path / "c.npz", like={"a": np.zeros((3, 2))})["a"], a)
    np.testing.assert_array_equal(ff.load(tmp_path / "c.npz")["a"], a)


# ----------------------------------------------------------------------------- check first
def _npy_header(dtype, shape) -> bytes:
    buf = BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str,
                                               "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _bomb_npz(path, manifest_model, bomb_name, zeros=64 << 20):
    """An .npz whose member ``bomb_name`` inflates to ``zeros`` bytes from about 1/1000 of that."""
    manifest = json.dumps({"format": "funcflux", "version": 2, "model": manifest_model})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(io.MANIFEST + ".npy", "w") as f:
            np.lib.format.write_array(f, np.frombuffer(manifest.encode(), np.uint8))
        with zf.open("['w'].npy", "w") as f:
            np.lib.format.write_array(f, np.ones(10))
        with zf.open(bomb_name + ".npy", "w") as f:
            f.write(_npy_header(np.float64, (zeros // 8,)))
            chunk = bytes(1 << 20)
            for _ in range(zeros >> 20):
                f.write(chunk)
    assert os.path.getsize(path) < zeros // 500


@pytest.fixture
def opened(monkeypatch):
    """The names of the zip members opened (and so inflated, at least in part)."""
    names = []
    real = zipfile.ZipFile.open

    def spy(self, name, *args, **kw):
        names.append(getattr(name, "filename", name))
        return real(self, name, *args, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    return names


def _peak_bytes(f):
    tracemalloc.start()
    try:
        f()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_size_disagreeing_with_the_manifest_is_refused_unread(tmp_path, opened):
    # Regression: load inflated every member before checking anything (64 MiB here).
    path = tmp_path / "bomb.npz"
    model = [{"path": "['w']", "kind": "array", "dtype": "<f8", "shape": [10]},
             {"path": "['v']", "kind": "array", "dtype": "<f8", "shape": [10]}]
    _bomb_npz(path, model, "['v']")
    for like in ({"w": np.zeros(10), "v": np.zeros(10)}, None):
        opened.clear()

        def load(like=like):
            with pytest.raises(CheckpointError, match=r"member \['v'\] declares 6710\d+ bytes"):
                ff.load(path, like=like)
        assert _peak_bytes(load) < 4 << 20
        assert "['v'].npy" not in opened and "['w'].npy" not in opened


def test_entries_like_lacks_are_refused_unread(tmp_path, opened):
    path = tmp_path / "bomb.npz"
    model = [{"path": "['w']", "kind": "array", "dtype": "<f8", "shape": [10]},
             {"path": "['big']", "kind": "array", "dtype": "<f8", "shape": [8 << 20]}]
    _bomb_npz(path, model, "['big']")
    opened.clear()

    def load():
        with pytest.raises(CheckpointError, match=r"In the file but not in `like`: \['big'\]"):
            ff.load(path, like={"w": np.zeros(10)})
    assert _peak_bytes(load) < 4 << 20
    assert set(opened) == {io.MANIFEST + ".npy"}
    assert ff.load(path)["['big']"].shape == (8 << 20,)  # a genuine (if large) array loads


@pytest.mark.parametrize("manifest", [True, False])
def test_huge_declared_shape(tmp_path, manifest):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("['w'].npy", _npy_header(np.float64, (1 << 40,)) + bytes(64))
        if manifest:
            zf.writestr(io.MANIFEST + ".npy", _manifest_npy(
                [{"path": "['w']", "kind": "array", "dtype": "<f8", "shape": [1 << 40]}]))

    def load():
        with pytest.raises(CheckpointError, match=r"declares \d+ bytes, but an array of shape "
                                                  r"\(1099511627776,\)"):
            ff.load(path)
    assert _peak_bytes(load) < 4 << 20
    with pytest.raises(CheckpointError, match="shape mismatch"):
        ff.load(path, like={"w": np.zeros(8)})


def _manifest_npy(model) -> bytes:
    m = {"format": "funcflux", "version": 2, "model": model}
    buf = BytesIO()
    np.lib.format.write_array(buf, np.frombuffer(json.dumps(m).encode(), np.uint8))
    return buf.getvalue()


W = {"path": "['w']", "kind": "array", "dtype": "<f8", "shape": [2]}
BAD_MANIFESTS = {
    "not json": b"{not json",
    "not utf-8": b"\xff\xfe{}",
    "a list": b"[]",
    "version a str": b'{"format": "funcflux", "version": "2", "model": []}',
    "version a bool": b'{"format": "funcflux", "version": true, "model": []}',
    "model a dict": b'{"format": "funcflux", "version": 2, "model": {}}',
    "entry a number": [3],
    "path a number": [dict(W, path=3)],
    "dtype a number": [dict(W, dtype=5)],
    "dtype unknown": [dict(W, dtype="<q17")],
    "dtype huge": [dict(W, dtype="V99999999999999999999")],
    "shape negative": [dict(W, shape=[-2])],
    "shape a float": [dict(W, shape=[2.0])],
    "shape a bool": [dict(W, shape=[True, True])],
    "shape a str": [dict(W, shape="2")],
    "shape differs from the member's": [dict(W, shape=[3])],
    "dtype differs from the member's": [dict(W, dtype="<i8")],
    "kind unknown": [dict(W, kind="pickle")],
    "int of shape (2,)": [dict(W, kind="int")],
    "str without value": [{"path": "['w']", "kind": "str"}],
    "str value a number": [{"path": "['w']", "kind": "str", "value": 3}],
    "callable name a list": [{"path": "['w']", "kind": "callable", "name": []}],
    "alias to nothing": [W, {"path": "['v']", "same_as": "['x']"}],
    "alias to an alias": [W, {"path": "['v']", "same_as": "['w']"},
                          {"path": "['u']", "same_as": "['v']"}],
    "alias a number": [W, {"path": "['v']", "same_as": 1}],
    "two entries, one path": [W, W],
    "listed, not stored": [dict(W, path="['x']")],
    "object dtype": [dict(W, dtype="|O")],
    "skipped in format 2": [W, {"path": "['a']", "kind": "skipped"}],
    "opt_state a number": ([W], {"opt_state": 5}),
    "structure, wrong length": ([W], {"structure": {"t": "dict", "k": [["str", "w"]], "c": []}}),
    "structure, unknown leaf": ([W], {"structure": {"t": "leaf", "p": "['x']"}}),
    "structure, unknown node": ([W], {"structure": {"t": "set", "c": []}}),
    "structure, key type": ([W], {"structure": {"t": "dict", "k": [["set", 1]],
                                                "c": [{"t": "leaf", "p": "['w']"}]}}),
    "structure, children": ([W], {"structure": {"t": "list", "c": 5}}),
    "structure, same key twice": ([W], {"structure": {
        "t": "dict", "k": [["str", "w"], ["str", "w"]],
        "c": [{"t": "leaf", "p": "['w']"}, {"t": "leaf", "p": "['w']"}]}}),
    "structure, deep": ([W], {"structure": functools.reduce(
        lambda n, _: {"t": "list", "c": [n]}, range(50_000), {"t": "leaf", "p": "['w']"})}),
    "json, deep": b'{"format": "funcflux", "version": 2, "model": ' + b"[" * 100_000,
}


@pytest.mark.parametrize("name", list(BAD_MANIFESTS))
def test_damaged_manifests_are_checkpoint_errors(tmp_path, name):
    bad = BAD_MANIFESTS[name]
    if isinstance(bad, bytes):
        raw = bad
    else:
        model, extra = bad if isinstance(bad, tuple) else (bad, {})
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
        try:
            raw = json.dumps({"format": "funcflux", "version": 2, "model": model, **extra}).encode()
        except RecursionError:  # json cannot write it nested that deep: write it by hand
            raw = (b'{"format": "funcflux", "version": 2, "model": ' + json.dumps(model).encode()
                   + b', "structure": ' + b'{"t": "list", "c": [' * 50_000
                   + b'{"t": "leaf", "p": "[\'w\']"}' + b"]}" * 50_000 + b"}")
    path = tmp_path / "c.npz"
    np.savez(path, **{"['w']": np.ones(2), io.MANIFEST: np.frombuffer(raw, np.uint8)})
    for like in ({"w": np.zeros(2)}, None):
        try:
            ff.load(path, like=like)
        except CheckpointError:
            continue
        # A manifest whose damage `like` makes irrelevant (its structure) may load: correctly.
        assert like is not None and name.startswith("structure"), name


def test_damaged_manifest_in_a_non_byte_member(tmp_path):
    np.savez(tmp_path / "c.npz", **{"['w']": np.ones(2), io.MANIFEST: np.ones(3)})
    with pytest.raises(CheckpointError, match="manifest is damaged"):
        ff.load(tmp_path / "c.npz")


# ----------------------------------------------------------------------------- corruption
def _fuzz_checkpoint(folder, deflated=False):
    w = np.arange(6.0).reshape(2, 3)
    model = nn.Chain(nn.Dense(2, 3, nn.relu, rng=0), nn.relu)
    tree = {"model": model, "w": w, "tied": w, "s": "hello", "n": 3, "b": b"xy",
            "t": (np.float32(1.5), [np.ones(2, np.int32), None])}
    state = optim.setup(optim.sgd(0.1, momentum=0.9), model)
    path = os.path.join(folder, "c.npz")
    ff.save(path, tree, opt_state=state)
    if deflated:  # the same members compressed, as np.savez_compressed writes them
        with zipfile.ZipFile(path) as src:
            members = {i.filename: src.read(i) for i in src.infolist()}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
            for name, data in members.items():
                dst.writestr(name, data)
    with open(path, "rb") as f:
        raw = f.read()
    return path, raw, tree, state, ff.load(path)


def _load_is_right_or_refused(path, tree, state, inside):
    """Loading gives exactly what was saved, or a CheckpointError: nothing else."""
    for like in (tree, None):
        try:
            back = ff.load(path, like=like, opt_state_like=state)
        except CheckpointError:
            continue
        _same(back[0], tree if like is not None else inside)
        _same(ff.tree.leaves(back[1]), ff.tree.leaves(state))


# Every byte with HYPOTHESIS_PROFILE=thorough (about 20 s); every 23rd in a quick run.
FUZZ_STRIDE = 1 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 23


@pytest.mark.parametrize("deflated", [False, True])
def test_every_flipped_bit_and_truncation_is_caught(tmp_path, deflated):
    # Regression: about one damaged file in ten raised a raw TypeError, KeyError,
    # RecursionError or MemoryError, or zipfile's and zlib's own errors.
    path, raw, tree, state, inside = _fuzz_checkpoint(str(tmp_path), deflated)
    for i in range(0, len(raw), FUZZ_STRIDE):  # coprime with 8: each bit of a byte has its turn
        damaged = bytearray(raw)
        damaged[i] ^= 1 << (i % 8)
        with open(path, "wb") as f:
            f.write(damaged)
        _load_is_right_or_refused(path, tree, state, inside)
    for n in range(0, len(raw), 4 * FUZZ_STRIDE):
        with open(path, "wb") as f:
            f.write(raw[:n])
        with pytest.raises(CheckpointError):
            ff.load(path, like=tree)


@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
                      max_size=6),
       cut=st.none() | st.floats(0, 1), deflated=st.booleans())
def test_random_damage_is_caught(flips, cut, deflated):
    folder = tempfile.mkdtemp()
    try:
        path, raw, tree, state, inside = _fuzz_checkpoint(folder, deflated)
        damaged = bytearray(raw)
        for where, bit in flips:
            damaged[int(where * len(raw))] ^= 1 << bit
        if cut is not None:
            damaged = damaged[:int(cut * len(raw))]
        with open(path, "wb") as f:
            f.write(damaged)
        _load_is_right_or_refused(path, tree, state, inside)
    finally:
        shutil.rmtree(folder)


# ----------------------------------------------------------------------------- temporaries
def test_a_killed_save_leaves_a_temporary_the_next_save_removes(tmp_path):
    # Regression: a save killed midway left its .tmp file behind forever.
    path = tmp_path / "c.npz"
    ff.save(path, {"a": np.ones(3)})
    script = ("import os, signal, numpy as np, funcflux as ff\n"
              "from funcflux import io\n"
              "def die(f, a, **kw):\n"
              "    f.write(b'partial')\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "io._write_array = die\n"
              f"ff.save({str(path)!r}, {{'a': np.zeros(3)}})\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, PYTHONPATH=ROOT), check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = [n for n in os.listdir(tmp_path) if n != "c.npz"]
    assert len(left) == 1 and left[0].startswith(".c.npz.") and left[0].endswith(".tmp")
    assert ff.load(path, like={"a": np.zeros(3)})["a"].tolist() == [1, 1, 1]  # intact
    ff.save(path, {"a": np.full(3, 2.0)})
    assert os.listdir(tmp_path) == ["c.npz"]
    assert ff.load(path, like={"a": np.zeros(3)})["a"].tolist() == [2, 2, 2]


def test_which_temporaries_are_stale(tmp_path):
    host, other = io._host_id(), "0badc0de" if io._host_id() != "0badc0de" else "0badc0df"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    names = {
        f".c.npz.{dead}-{host}.abc_1234.tmp": True,          # this host, process gone
        f".c.npz.{os.getpid()}-{host}.abc_1234.tmp": False,  # this host, process running
        f".c.npz.{dead}-{other}.abc_1234.tmp": False,        # another host: only by age
        ".c.npz.abcd1234.tmp": False,                        # older naming: only by age
        f".c.npz.bak.{dead}-{host}.abc_1234.tmp": False,     # another target's
        f".d.npz.{dead}-{host}.abc_1234.tmp": False,
        "c.npz.tmp": False,
    }
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    stale = {os.path.basename(p) for p in io._stale(str(tmp_path), "c.npz")}
    assert stale == {n for n, s in names.items() if s}
    hours = time.time() + 2 * io._STALE_AFTER  # nothing written to them for two hours
    stale = {os.path.basename(p) for p in io._stale(str(tmp_path), "c.npz", now=hours)}
    assert stale == {n for n in names if n.startswith(".c.npz.") and not n.startswith(".c.npz.bak")}
