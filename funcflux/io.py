"""Checkpoints: save a model (and optimiser state) by pytree path; load it back safely.

A checkpoint is an ``.npz`` file (a zip of ``.npy`` arrays, readable with
``np.load``) holding one array per leaf, named by the leaf's path as
``ff.tree.keystr`` writes it (``[0].weight``, ``['w']``; a bare array is
``<root>``), the optimiser state's under ``opt_state`` followed by its path,
and a JSON manifest (``__funcflux__``) saying what each entry was. With a
path ending in ``.safetensors`` and the ``safetensors`` package installed,
the same entries go into a safetensors file instead.

- Only arrays and numbers are stored. Python numbers become 0-d arrays and
  come back as the number type found in ``like``; other leaves (strings,
  functions) and a functor's non-child fields are configuration: they are not
  stored, and ``load`` takes them from ``like``.
- Loading never executes code: no pickle is written or read, and a file
  holding an object array is refused.
- ``like`` is the authority on structure. Its paths, shapes and dtypes must
  match the file's; a difference is a ``CheckpointError`` naming the path and
  both values. Arrays tied in ``like`` (one object in two places) come back
  tied.
- Arrays on a device (CuPy) are copied to the host to be written; ``load``
  puts each array where the matching leaf of ``like`` lives (NumPy, or the
  GPU that leaf is on).
- Writes are atomic: the file is written under a temporary name in the same
  folder (``.<name>.<random>.tmp``) and renamed over ``path`` at the end, so a
  crash mid-save leaves the previous checkpoint intact. An exception removes
  the temporary file; a killed process may leave it behind.

>>> import os, tempfile, numpy as np, funcflux as ff
>>> params = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3), "step": 7}
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
>>> ff.save(path, params)
>>> restored = ff.load(path, like=params)
>>> restored["w"].dtype, restored["step"]
(dtype('float32'), 7)
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import zipfile
from typing import Any, Callable

import numpy as np

from . import device as _device
from . import tree as _tree
from .core import backend as _backend

__all__ = ["save", "load", "CheckpointError"]

MANIFEST = "__funcflux__"
FORMAT_VERSION = 1
OPT_PREFIX = "opt_state"

# Module attribute so that a test can make the writer fail half way.
_write_array = np.lib.format.write_array

NOT_A_CHECKPOINT = ("{path} is not a readable checkpoint: {why}. It may be truncated (an "
                    "interrupted copy) or of another format.")
PICKLED = ("{path}: refusing to load {name!r}, an array of Python objects: reading it would "
           "unpickle, which can run arbitrary code. funcflux checkpoints hold plain numeric "
           "arrays only; do not load this file unless you trust its source (np.load with "
           "allow_pickle=True).")
STRUCTURE = ("{path}: the checkpoint's structure differs from `like`{what}. {details} Load into "
             "a `like` built the way the saved tree was (same layers, same optimiser).")
NO_SAFETENSORS = ("{path}: .safetensors checkpoints need the safetensors package (pip install "
                  "safetensors); or save to a .npz path.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not match ``like``."""


# ----------------------------------------------------------------------------- leaves
_PY_SCALARS = {bool: "bool", int: "int", float: "float", complex: "complex"}
_PY_TYPES = {v: k for k, v in _PY_SCALARS.items()}
_NUMBER_KINDS = {"bool": "b", "int": "iu", "float": "f", "complex": "c"}


def _kind(x: Any) -> str:
    """How a leaf is stored: "array", "numpy_scalar", a Python number type, or "skipped"."""
    if isinstance(x, np.ndarray) or type(x) in _backend._MODULES:  # NumPy, CuPy...
        return "array"
    if isinstance(x, np.generic):
        return "numpy_scalar"
    t = _PY_SCALARS.get(type(x))
    return t if t is not None else "skipped"


def _host(x: Any) -> np.ndarray:
    """A device array (CuPy...) copied to the host: checkpoints are written from NumPy."""
    return x.get()


def _name(prefix: str, path: tuple) -> str:
    return prefix + "".join(str(k) for k in path) or "<root>"


def _describe(kind: str, x: Any) -> str:
    if kind in ("array", "numpy_scalar"):
        return f"{np.dtype(x.dtype)} array of shape {tuple(x.shape)}"
    if kind == "skipped":
        return f"a {type(x).__name__} (configuration, not stored)"
    return f"a Python {kind}"


def _collect(t: Any, prefix: str, arrays: dict, entries: list, ids: dict, seen: set) -> str:
    """Add ``t``'s leaves to ``arrays`` (name -> ndarray) and ``entries`` (the manifest)."""
    pl, td = _tree.flatten_with_path(t)
    for p, x in pl:
        name = _name(prefix, p)
        if name in seen:
            raise CheckpointError(f"save: two leaves share the path {name}; give them distinct "
                                  "keys")
        seen.add(name)
        kind = _kind(x)
        if kind == "array" and id(x) in ids:  # tied: store once, remember the alias
            entries.append({"path": name, "same_as": ids[id(x)]})
            continue
        entry: dict = {"path": name, "kind": kind}
        if kind == "skipped":
            entry["type"] = type(x).__name__
        else:
            a = _host(x) if type(x) in _backend._MODULES else np.asarray(x)
            if a.dtype.hasobject:
                raise TypeError(f"save: the leaf at {name} is an array of Python objects; only "
                                "numeric arrays can be saved (no pickle).")
            arrays[name] = a
            entry.update(dtype=a.dtype.str, shape=list(a.shape))
            if kind == "array":
                ids[id(x)] = name
        entries.append(entry)
    return repr(td)


# ----------------------------------------------------------------------------- save
def save(path: str | os.PathLike, tree: Any, *, opt_state: Any = None) -> None:
    """Write ``tree`` (a model, a dict of arrays...) and optionally ``opt_state`` to ``path``.

    ``path`` is used as given (no suffix is added); it ends in ``.safetensors``
    for that format, anything else writes ``.npz``. The write is atomic.
    """
    path = os.fspath(path)
    arrays: dict = {}
    ids: dict = {}
    seen: set = set()
    manifest: dict = {"format": "funcflux", "version": FORMAT_VERSION, "model": []}
    manifest["structure"] = _collect(tree, "", arrays, manifest["model"], ids, seen)
    if opt_state is not None:
        manifest["opt_state"] = []
        manifest["opt_state_structure"] = _collect(opt_state, OPT_PREFIX, arrays,
                                                   manifest["opt_state"], ids, seen)
    meta = json.dumps(manifest)
    if path.endswith(".safetensors"):
        st = _safetensors(path)
        # safetensors wants contiguous arrays in its own dtype set; it raises for others.
        blob = st.save({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                       metadata={MANIFEST: meta})
        _atomic_write(path, lambda f: f.write(blob))
    else:
        arrays[MANIFEST] = np.frombuffer(meta.encode(), np.uint8)
        _atomic_write(path, lambda f: _write_npz(f, arrays))


def _write_npz(f: Any, arrays: dict) -> None:
    # What np.savez does, with allow_pickle=False and a file object we control.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, a in arrays.items():
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                _write_array(member, a, allow_pickle=False)


def _atomic_write(path: str, write: Callable[[Any], None]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _mode_for(path: str) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _safetensors(path: str) -> Any:
    try:
        import safetensors.numpy as st
    except ImportError:
        raise ImportError(NO_SAFETENSORS.format(path=path)) from None
    return st


# ----------------------------------------------------------------------------- read
def _read(path: str) -> tuple[dict | None, dict]:
    """``(manifest or None, {name: ndarray})`` from a checkpoint file."""
    if path.endswith(".safetensors"):
        return _read_safetensors(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no checkpoint at {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(NOT_A_CHECKPOINT.format(path=path, why="not an .npz (zip) file"))
    arrays: dict = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for name in z.files:
                try:
                    arrays[name] = z[name]
                    if not isinstance(arrays[name], np.ndarray):  # a zip member that is no .npy
                        raise CheckpointError(NOT_A_CHECKPOINT.format(
                            path=path, why=f"its entry {name!r} is not a .npy array"))
                except ValueError as e:
                    if isinstance(e, CheckpointError):
                        raise
                    if "allow_pickle" in str(e) or "Object arrays" in str(e):
                        raise CheckpointError(PICKLED.format(path=path, name=name)) from None
                    raise CheckpointError(NOT_A_CHECKPOINT.format(
                        path=path, why=f"entry {name!r} is damaged ({e})")) from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
        raise CheckpointError(NOT_A_CHECKPOINT.format(path=path, why=f"{type(e).__name__}: {e}")
                              ) from None
    manifest = None
    if MANIFEST in arrays:
        raw = arrays.pop(MANIFEST)
        manifest = _parse_manifest(path, raw.tobytes() if raw.dtype == np.uint8 else b"")
    return manifest, arrays


def _read_safetensors(path: str) -> tuple[dict | None, dict]:
    st = _safetensors(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        arrays = st.load(raw)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(NOT_A_CHECKPOINT.format(path=path, why=f"{type(e).__name__}: {e}")
                              ) from None
    meta = (header.get("__metadata__") or {}).get(MANIFEST)
    return (_parse_manifest(path, meta.encode()) if meta is not None else None), dict(arrays)


def _parse_manifest(path: str, raw: bytes) -> dict:
    try:
        m = json.loads(raw.decode())
        ok = isinstance(m, dict) and m.get("format") == "funcflux" and isinstance(m.get("model"),
                                                                                   list)
    except (UnicodeDecodeError, ValueError):
        ok = False
    if not ok:
        raise CheckpointError(NOT_A_CHECKPOINT.format(path=path, why="its manifest is damaged"))
    if m.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer funcflux (checkpoint format "
                              f"{m['version']}; this one reads up to {FORMAT_VERSION}).")
    return m


# ----------------------------------------------------------------------------- load
def load(path: str | os.PathLike, like: Any = None, *, opt_state_like: Any = None) -> Any:
    """Read a checkpoint into the structure of ``like``; with ``opt_state_like``, also the state.

    Returns the model, or ``(model, opt_state)`` when ``opt_state_like`` is
    given (an error if the file holds no optimiser state). Without ``like``,
    returns ``{path: array}`` of the stored model leaves, for inspection.

    >>> import os, tempfile, numpy as np, funcflux as ff
    >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
    >>> ff.save(path, [np.arange(3.0)])
    >>> ff.load(path)
    {'[0]': array([0., 1., 2.])}
    """
    path = os.fspath(path)
    manifest, arrays = _read(path)
    if manifest is None:  # a plain .npz named by paths: every member is an array
        manifest = {"model": [{"path": k, "kind": "array"} for k in arrays
                              if not k.startswith(OPT_PREFIX)]}
        if any(k.startswith(OPT_PREFIX) for k in arrays):
            manifest["opt_state"] = [{"path": k, "kind": "array"} for k in arrays
                                     if k.startswith(OPT_PREFIX)]
    if like is None:
        return {e["path"]: _value(path, e, arrays, None) for e in _resolved(path, manifest["model"])
                if e["kind"] != "skipped"}
    model = _restore(path, manifest["model"], arrays, like, "", "")
    if opt_state_like is None:
        return model
    if manifest.get("opt_state") is None:
        raise CheckpointError(f"{path} holds no optimiser state (it was saved without "
                              "opt_state=...); load it without opt_state_like.")
    return model, _restore(path, manifest["opt_state"], arrays, opt_state_like, OPT_PREFIX,
                           " (optimiser state)")


def _resolved(path: str, entries: list) -> list:
    """The manifest entries with aliases (``same_as``) replaced by what they point to."""
    by = {e["path"]: e for e in entries if "same_as" not in e}
    out = []
    for e in entries:
        if "same_as" in e:
            target = by.get(e["same_as"])
            if target is None:
                raise CheckpointError(NOT_A_CHECKPOINT.format(
                    path=path, why=f"{e['path']} refers to a missing entry {e['same_as']}"))
            e = dict(target, path=e["path"], stored=e["same_as"])
        out.append(e)
    return out


def _value(path: str, e: dict, arrays: dict, like_leaf: Any) -> Any:
    name = e.get("stored", e["path"])
    if name not in arrays:
        raise CheckpointError(NOT_A_CHECKPOINT.format(
            path=path, why=f"the manifest lists {name} but the file holds no such array"))
    a = arrays[name]
    kind = e["kind"]
    if kind in _PY_TYPES:
        return _PY_TYPES[kind](a.item())
    if kind == "numpy_scalar":
        return a[()]
    return a


def _restore(path: str, entries: list, arrays: dict, like: Any, prefix: str, what: str) -> Any:
    pl, td = _tree.flatten_with_path(like)
    names = [_name(prefix, p) for p, _ in pl]
    by = {e["path"]: e for e in _resolved(path, entries)}
    missing = [n for n in names if n not in by]
    extra = [n for n in by if n not in set(names)]
    if missing or extra:
        details = []
        if missing:
            details.append(f"In `like` but not in the file: {_few(missing)}.")
        if extra:
            details.append(f"In the file but not in `like`: {_few(extra)}.")
        raise CheckpointError(STRUCTURE.format(path=path, what=what, details=" ".join(details)))
    done: dict = {}  # id of a like array -> the loaded array, so ties survive
    out = []
    for (p, x), name in zip(pl, names):
        v = _check(path, name, by[name], arrays, x)
        if _kind(x) == "array":
            if id(x) not in done and not isinstance(x, np.ndarray):
                v = _device._to_like(v, x)  # back to the device (and GPU) where like's leaf is
            v = done.setdefault(id(x), v)
        out.append(v)
    return _tree.unflatten(td, out)


def _few(names: list, n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _check(path: str, name: str, e: dict, arrays: dict, x: Any) -> Any:
    """The stored value at ``name``, after checking it against ``like``'s leaf ``x``."""
    want = _kind(x)
    if want == "skipped" or e["kind"] == "skipped":
        if want != e["kind"]:
            stored = (f"a {e.get('type', 'non-array')} (not stored)" if e["kind"] == "skipped"
                      else "a stored value")
            raise CheckpointError(f"{path}: at {name} the file holds {stored}, but `like` holds "
                                  f"{_describe(want, x)}.")
        return x  # configuration comes from like
    v = _value(path, e, arrays, x)
    a = np.asarray(v)
    if want in _PY_TYPES:
        if e["kind"] == want:
            return v
        if e["kind"] == "array" and a.shape == () and a.dtype.kind in _NUMBER_KINDS[want]:
            return _PY_TYPES[want](a.item())  # e.g. a plain .npz: a 0-d array for a number
        got = f"a Python {e['kind']}" if e["kind"] in _PY_TYPES else _describe("array", a)
        raise CheckpointError(f"{path}: at {name} the file holds {got}, but `like` holds a "
                              f"Python {want}.")
    like_shape, like_dtype = tuple(np.shape(x)), np.dtype(x.dtype)
    if a.shape != like_shape:
        raise CheckpointError(f"{path}: shape mismatch at {name}: the file holds shape {a.shape}, "
                              f"`like` has shape {like_shape}.")
    if a.dtype != like_dtype:
        raise CheckpointError(f"{path}: dtype mismatch at {name}: the file holds {a.dtype}, "
                              f"`like` has {like_dtype} (cast the loaded tree, or build `like` "
                              "with the saved dtype).")
    return a[()] if want == "numpy_scalar" else a
