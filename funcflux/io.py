"""Checkpoints: save a model (and optimiser state) by pytree path; load it back safely.

A checkpoint is an ``.npz`` file (a zip of ``.npy`` arrays, readable with
``np.load``) holding one array per array leaf, named by the leaf's path as
``ff.tree.keystr`` writes it (``[0].weight``, ``['w']``; a bare array is
``<root>``), the optimiser state's under ``opt_state`` followed by its path,
and a JSON manifest (``__funcflux__``) saying what each leaf was and how the
tree was built. With a path ending in ``.safetensors`` and the
``safetensors`` package installed, the same entries go into a safetensors
file instead.

- Every leaf is stored or refused, never dropped. Arrays (NumPy, CuPy, or
  anything with ``__array__``), NumPy scalars and Python numbers become
  arrays; strings go into the manifest; bytes become a ``uint8`` array.
  Functions (a ``Chain``'s activation, any callable leaf) are code: the
  manifest records their name, and ``load`` takes them from ``like``. Any
  other leaf (a date, an arbitrary object, an object array, an ``__array__``
  that raises) makes ``save`` raise a ``TypeError`` naming its path and type,
  and the file at ``path`` is left as it was. A functor's non-child fields
  (sizes, activations) are configuration: not stored, taken from ``like``.
- Loading never executes code: no pickle is written or read, a file holding
  an object array is refused, and without ``like`` nothing is imported.
- ``load`` checks the manifest (names, kinds, shapes, dtypes) against
  ``like`` and every declared size against the file before it inflates any
  array; a damaged or foreign file is a ``CheckpointError``.
- ``like`` is the authority on structure. Its paths, shapes and dtypes must
  match the file's; a difference is a ``CheckpointError`` naming the path and
  both values. Arrays tied in ``like`` (one object in two places) come back
  tied. Without ``like``, ``load`` rebuilds the saved tree from the manifest
  (dicts, lists, tuples; a functor or namedtuple as a dict of its fields).
- Arrays on a device (CuPy) are copied to the host to be written; ``load``
  puts each array where the matching leaf of ``like`` lives (NumPy, or the
  GPU that leaf is on).
- Writes are atomic: the file is written under a temporary name in the same
  folder and renamed over ``path`` at the end, so a crash mid-save leaves the
  previous checkpoint intact. Temporaries left by killed saves of the same
  path are removed by the next save, never those of a save still running.

>>> import os, tempfile, numpy as np, funcflux as ff
>>> params = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3), "step": 7, "note": "run 1"}
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
>>> ff.save(path, params)
>>> restored = ff.load(path, like=params)
>>> restored["w"].dtype, restored["step"], restored["note"]
(dtype('float32'), 7, 'run 1')
"""
from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import re
import socket
import struct
import tempfile
import time
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import device as _device
from . import tree as _tree
from .core import backend as _backend

__all__ = ["CheckpointError", "NotStored", "load", "save"]

MANIFEST = "__funcflux__"
FORMAT_VERSION = 2  # 2: strings, bytes and callables recorded; the tree's structure as JSON
OPT_PREFIX = "opt_state"

# Module attribute so that a test can make the writer fail half way.
_write_array = np.lib.format.write_array

NOT_A_CHECKPOINT = ("{path} is not a readable checkpoint: {why}. It may be truncated (an "
                    "interrupted copy), damaged, or of another format.")
PICKLED = ("{path}: refusing to load {name!r}, an array of Python objects: reading it would "
           "unpickle, which can run arbitrary code. funcflux checkpoints hold plain numeric "
           "arrays only; do not load this file unless you trust its source (np.load with "
           "allow_pickle=True).")
STRUCTURE = ("{path}: the checkpoint's structure differs from `like`{what}. {details} Load into "
             "a `like` built the way the saved tree was (same layers, same optimiser).")
NO_SAFETENSORS = ("{path}: .safetensors checkpoints need the safetensors package (pip install "
                  "safetensors); or save to a .npz path.")
UNSTORABLE = ("save: cannot store the leaf at {name}, of type {type}{why}. A checkpoint holds arrays "
              "(anything with __array__), numbers, strings and bytes, and records functions by "
              "name; anything else could only be read back by running code. Convert it (to a "
              "str, a number or an array), or make it a configuration field of a functor "
              "class.{kept}")

# A stored deflate stream inflates at most ~1032 times (RFC 1951's longest match per
# bit); a member declaring more is lying, and inflating it would only waste memory.
_MAX_RATIO = 1100
_HEADER_MAX = 10_000 + 12  # np.lib.format's default max_header_size, plus magic and length
_CHUNK = 1 << 24
_STALE_AFTER = 3600.0  # seconds without a write after which any temporary counts as abandoned


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not match ``like``."""


class NotStored:
    """What ``load`` without ``like`` returns for a leaf that is code (a function).

    A checkpoint records a function's name, not the function: loading never
    imports or runs anything. ``load(path, like=model)`` takes the function
    from ``like`` instead.

    >>> import funcflux as ff
    >>> ff.io.NotStored("function", "numpy.tanh")
    NotStored(function numpy.tanh)
    """

    __slots__ = ("name", "type")

    def __init__(self, type: str, name: str):
        self.type, self.name = type, name

    def __repr__(self) -> str:
        return f"NotStored({self.type} {self.name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotStored) and (self.type, self.name) == (other.type, other.name)

    def __hash__(self) -> int:
        return hash((self.type, self.name))


# ----------------------------------------------------------------------------- leaves
_PY_SCALARS = {bool: "bool", int: "int", float: "float", complex: "complex"}
_PY_TYPES = {v: k for k, v in _PY_SCALARS.items()}
_NUMBER_KINDS = {"bool": "b", "int": "iu", "float": "f", "complex": "c"}
_ARRAY_KINDS = {"array", "numpy_scalar", "bytes", *_PY_TYPES}  # kept as a member of the file
_INT64 = range(-2 ** 63, 2 ** 63)


def _kind(x: Any) -> str:
    """How a leaf is stored: "array", "numpy_scalar", a Python number type, "str", "bytes",
    "arraylike" (stored as an array), "callable" (recorded by name) or "refused"."""
    t = type(x)
    if isinstance(x, np.ma.MaskedArray):
        return "refused"  # np.asarray would drop the mask
    if isinstance(x, np.ndarray) or t in _backend._MODULES:  # NumPy, CuPy...
        return "array"
    if isinstance(x, np.generic):
        return "numpy_scalar"
    k = _PY_SCALARS.get(t)
    if k is not None:
        return k
    if t is str or t is bytes:
        return t.__name__
    if hasattr(t, "__array__"):
        return "arraylike"
    return "callable" if callable(x) else "refused"


def _type_name(x: Any) -> str:
    t = type(x)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _callable_name(x: Any) -> str:
    qual = getattr(x, "__qualname__", None) or getattr(x, "__name__", None)
    if not isinstance(qual, str):
        return _type_name(x) + " instance"
    mod = getattr(x, "__module__", None)
    return f"{mod}.{qual}" if isinstance(mod, str) else qual


def _name(prefix: str, path: tuple) -> str:
    return prefix + "".join(str(k) for k in path) or "<root>"


def _describe(kind: str, x: Any) -> str:
    if kind in ("array", "numpy_scalar"):
        return f"{np.dtype(x.dtype)} array of shape {tuple(x.shape)}"
    if kind in _PY_TYPES:
        return f"a Python {kind}"
    return f"a {_type_name(x)}"


def _entry_text(e: dict) -> str:
    """What a manifest entry holds, as an error message says it."""
    k = e["kind"]
    if k in ("callable", "skipped"):
        return f"a {e.get('type', 'function')} (not stored)"
    if k in _PY_TYPES or k in ("str", "bytes"):
        return f"a Python {k}"
    if "dtype" in e:
        return f"{np.dtype(e['dtype'])} array of shape {tuple(e['shape'])}"
    return "an array"


def _host_array(name: str, x: Any, kind: str, kept: str) -> np.ndarray:
    if kind == "array" and type(x) in _backend._MODULES:
        return x.get()  # a device array (CuPy...) copied to the host
    try:
        a = np.asarray(x)
    except Exception as e:
        raise TypeError(UNSTORABLE.format(name=name, type=_type_name(x), kept=kept,
                                          why=f", whose __array__ raised {type(e).__name__}: {e}")
                        ) from e
    if a.dtype.hasobject:
        raise TypeError(UNSTORABLE.format(name=name, type=_type_name(x), kept=kept,
                                          why=", holding Python objects (object dtype; storing it "
                                              "would need pickle)"))
    return a


# ----------------------------------------------------------------------------- save
class _Saver:
    """One walk over a tree: the arrays to write, the manifest entries, the JSON structure."""

    def __init__(self, path: str):
        self.path = path
        self.kept = (f" Nothing was written; the file at {path} is unchanged."
                     if os.path.exists(path) else " Nothing was written.")
        self.arrays: dict[str, np.ndarray] = {}
        self.ids: dict[int, str] = {}
        self.seen: set[str] = set()

    def collect(self, t: Any, prefix: str) -> tuple[list, dict]:
        entries: list = []
        return entries, self._walk(t, prefix, (), entries)

    def _walk(self, x: Any, prefix: str, path: tuple, entries: list) -> dict:
        nt = _tree._node_type(x)
        if nt is None:
            return {"t": "leaf", "p": self._leaf(x, _name(prefix, path), entries)}
        t = type(x)
        if t is type(None):
            return {"t": "none"}
        if t in (dict, collections.OrderedDict, collections.defaultdict):
            keys = [_tree.DictKey(k) for k in x]  # the dict's own order, not flatten's sorted one
            children = [x[k.key] for k in keys]
        else:
            children, aux = nt.flatten(x)
            children = list(children)
            keys = list(nt.keys(x, aux))
        kids = [self._walk(c, prefix, path + (k,), entries) for c, k in zip(children, keys)]
        if t is list or t is tuple:
            return {"t": t.__name__, "c": kids}
        if t is dict or t is collections.defaultdict:
            return {"t": "dict", "k": [_encode_key(k.key) for k in keys], "c": kids}
        if t is collections.OrderedDict:
            return {"t": "odict", "k": [_encode_key(k.key) for k in keys], "c": kids}
        return {"t": "node", "type": f"{t.__module__}.{t.__qualname__}",
                "k": [_encode_child_key(k) for k in keys], "c": kids}

    def _leaf(self, x: Any, name: str, entries: list) -> str:
        if name in self.seen:
            raise CheckpointError(f"save: two leaves share the path {name}; give them distinct "
                                  "keys")
        self.seen.add(name)
        kind = _kind(x)
        if kind in ("array", "arraylike") and id(x) in self.ids:  # tied: store once
            entries.append({"path": name, "same_as": self.ids[id(x)]})
            return name
        entry: dict = {"path": name, "kind": kind}
        if kind == "refused":
            raise TypeError(UNSTORABLE.format(name=name, type=_type_name(x), why="",
                                              kept=self.kept))
        if kind == "callable":
            entry.update(type=_type_name(x), name=_callable_name(x))
        elif kind == "str" or (kind == "int" and x not in _INT64):
            entry["value"] = x  # JSON: any string, any integer
        else:
            if kind == "bytes":
                a = np.frombuffer(x, np.uint8).copy()
            else:
                a = _host_array(name, x, kind, self.kept)
            if kind == "arraylike":
                entry["kind"] = kind = "array"
            self.arrays[name] = a
            entry.update(dtype=a.dtype.str, shape=list(a.shape))
            if kind == "array":
                self.ids[id(x)] = name
        entries.append(entry)
        return name


def _encode_key(k: Any) -> list:
    """A dict key as JSON that says its type: ``["int", 3]``, ``["str", "w"]``..."""
    if isinstance(k, bool):
        return ["bool", k]
    if isinstance(k, int):
        return ["int", int(k)]
    if isinstance(k, float):
        return ["float", k] if math.isfinite(k) else ["repr", repr(k)]
    if isinstance(k, str):
        return ["str", str(k)]
    if k is None:
        return ["none", None]
    if type(k) is tuple:
        return ["tuple", [_encode_key(i) for i in k]]
    return ["repr", repr(k)]  # an object key comes back as its repr, a str


def _encode_child_key(k: Any) -> list:
    if isinstance(k, _tree.AttrKey):
        return ["attr", k.name]
    if isinstance(k, _tree.SequenceKey):
        return ["index", k.idx]
    if isinstance(k, _tree.DictKey):
        return ["key", _encode_key(k.key)]
    return ["repr", str(k)]


def save(path: str | os.PathLike, tree: Any, *, opt_state: Any = None) -> None:
    """Write ``tree`` (a model, a dict of arrays...) and optionally ``opt_state`` to ``path``.

    ``path`` is used as given (no suffix is added); it ends in ``.safetensors``
    for that format, anything else writes ``.npz``. Every leaf is stored or
    refused with a ``TypeError`` naming its path (functions are recorded by
    name); a refused save leaves ``path`` as it was. The write is atomic.

    >>> import os, tempfile, datetime, numpy as np, funcflux as ff
    >>> path = os.path.join(tempfile.mkdtemp(), "c.npz")
    >>> ff.save(path, {"when": datetime.date(2024, 1, 1)})
    Traceback (most recent call last):
    TypeError: save: cannot store the leaf at ['when'], of type datetime.date. ...
    """
    path = os.fspath(path)
    s = _Saver(path)
    manifest: dict = {"format": "funcflux", "version": FORMAT_VERSION}
    manifest["model"], manifest["structure"] = s.collect(tree, "")
    if opt_state is not None:
        manifest["opt_state"], manifest["opt_state_structure"] = s.collect(opt_state, OPT_PREFIX)
    meta = json.dumps(manifest)
    arrays = s.arrays
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


# ----------------------------------------------------------------------------- atomic writes
# A temporary is named ".<target>.<pid>-<host>.<random>.tmp": the pid and a hash of the host
# name say whose save it is. A save first removes the temporaries of its own target that are
# abandoned (_stale): written by a process of this host that no longer runs, or not written
# to for an hour (a save in progress keeps writing; a process on another host cannot be
# asked). Temporaries of other targets, and of live saves, are never touched.
def _host_id() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def _stale(folder: str, base: str, now: float | None = None) -> list[str]:
    """The abandoned temporaries of target ``base`` in ``folder`` (full paths)."""
    ours = re.compile(re.escape(f".{base}.") + r"(\d+)-([0-9a-f]{8})\.[a-z0-9_]+\.tmp")
    old = re.compile(re.escape(f".{base}.") + r"[a-z0-9_]{8}\.tmp")  # before pids were in names
    host, now = _host_id(), time.time() if now is None else now
    out = []
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for n in names:
        m = ours.fullmatch(n)
        if m is None and old.fullmatch(n) is None:
            continue
        full = os.path.join(folder, n)
        try:
            age = now - os.stat(full).st_mtime
        except OSError:
            continue
        if age > _STALE_AFTER or (m is not None and m.group(2) == host
                                  and not _running(int(m.group(1)))):
            out.append(full)
    return out


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (True when unsure)."""
    if os.name == "nt" or pid <= 0:  # os.kill would terminate a process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, as another user
        return True
    return True


def _atomic_write(path: str, write: Callable[[Any], None]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    for old in _stale(folder, base):
        with contextlib.suppress(OSError):  # another save may have removed it first
            os.unlink(old)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}-{_host_id()}.", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
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


# ----------------------------------------------------------------------------- reading files
# What reading a damaged file can raise, from zipfile, zlib, np.lib.format and json, besides
# CheckpointError; each becomes a CheckpointError naming the file. OSErrors that are about
# the path (missing, no permission) stay what they are.
_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, struct.error,
           ValueError, NotImplementedError, RuntimeError, OverflowError, UnicodeError,
           MemoryError, OSError, SyntaxError, tokenize.TokenError)  # the last two: .npy headers
_NOT_DAMAGE = (CheckpointError, FileNotFoundError, PermissionError, IsADirectoryError)


@contextlib.contextmanager
def _damage(path: str, what: str = "") -> Iterator[None]:
    try:
        yield
    except _NOT_DAMAGE:
        raise
    except RecursionError:
        raise CheckpointError(NOT_A_CHECKPOINT.format(
            path=path, why=f"{what or 'its manifest'} is nested too deeply")) from None
    except _DAMAGE as e:
        why = f"{what} is damaged ({type(e).__name__}: {e})" if what else f"{type(e).__name__}: {e}"
        raise CheckpointError(NOT_A_CHECKPOINT.format(path=path, why=why)) from None


def _damaged(path: str, why: str) -> CheckpointError:
    return CheckpointError(NOT_A_CHECKPOINT.format(path=path, why=why))


class _Npz:
    """An ``.npz`` opened for checking before reading: its members' sizes and ``.npy`` headers
    are looked at before any data is inflated."""

    def __init__(self, path: str):
        self.path = path
        if not zipfile.is_zipfile(path):
            raise _damaged(path, "not an .npz (zip) file")
        with _damage(path):
            self.size = os.path.getsize(path)
            self.zf = zipfile.ZipFile(path)
        try:
            self.members = self._members()
        except BaseException:
            self.zf.close()
            raise

    def _members(self) -> dict[str, zipfile.ZipInfo]:
        infos = self.zf.infolist()
        # zipfile stops reading a damaged directory early without a word: count the members
        # against the end record (zipfile's reader of it is private, but decades old).
        with _damage(self.path):
            end = getattr(zipfile, "_EndRecData", lambda fp: None)(self.zf.fp)
        if end and end[zipfile._ECD_ENTRIES_TOTAL] != len(infos):
            raise _damaged(self.path, f"its directory lists {end[zipfile._ECD_ENTRIES_TOTAL]} "
                                      f"members, of which {len(infos)} could be read")
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename.removesuffix(".npy")
            if name in members:
                raise _damaged(self.path, f"it holds two members named {info.filename!r}")
            members[name] = info
        return members

    def close(self) -> None:
        self.zf.close()

    def manifest_bytes(self) -> bytes | None:
        if MANIFEST not in self.members:
            return None
        with _damage(self.path, "its manifest"):
            dtype, shape, _ = self.header(MANIFEST)
            if dtype != np.uint8 or len(shape) != 1:
                raise _damaged(self.path, "its manifest is damaged (not a byte string)")
            return self.read(MANIFEST, dtype, shape).tobytes()

    def names(self) -> list[str]:
        return [n for n in self.members if n != MANIFEST]

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = self.members.get(name)
        if info is None:
            raise _damaged(self.path, f"the manifest lists {name} but the file holds no such "
                                      "array")
        if not info.filename.endswith(".npy"):
            raise _damaged(self.path, f"its entry {name!r} is not a .npy array")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _damaged(self.path, f"{name} uses zip compression method {info.compress_type} "
                                      "(only stored and deflated, as np.savez and "
                                      "np.savez_compressed write, are read)")
        too_big = (info.file_size != info.compress_size if info.compress_type == zipfile.ZIP_STORED
                   else info.file_size > _MAX_RATIO * info.compress_size + _HEADER_MAX)
        if too_big or info.header_offset + info.compress_size > self.size:
            raise _damaged(self.path, f"{name} declares {info.file_size} bytes "
                                      f"({info.compress_size} stored) in a file of {self.size}")
        return info

    def check_size(self, name: str, dtype: np.dtype, shape: tuple) -> None:
        """Before anything is inflated: the member's declared size fits ``dtype`` and ``shape``."""
        info = self._info(name)
        data = math.prod(shape) * dtype.itemsize
        if not 10 <= info.file_size - data <= _HEADER_MAX:
            raise _damaged(self.path, f"its member {name} declares {info.file_size} bytes, but "
                                      f"an array of shape {shape} and dtype {dtype} takes {data}")

    def header(self, name: str) -> tuple[np.dtype, tuple, int]:
        """``(dtype, shape, header length)`` from the ``.npy`` header (a few bytes inflated)."""
        info = self._info(name)
        with _damage(self.path, f"its entry {name!r}"), self.zf.open(info) as f:
            return self._header(f, name)[:3]

    def _header(self, f: Any, name: str) -> tuple[np.dtype, tuple, int, bool]:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _damaged(self.path, f"{name} is a .npy of format {version}, which is not read")
        if dtype.hasobject:
            raise CheckpointError(PICKLED.format(path=self.path, name=name))
        return dtype, tuple(shape), f.tell(), fortran

    def read(self, name: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
        """The array ``name``, after checking its header and size against ``dtype, shape``."""
        self.check_size(name, dtype, shape)
        info = self._info(name)
        with _damage(self.path, f"its entry {name!r}"), self.zf.open(info) as f:
            hdtype, hshape, start, fortran = self._header(f, name)
            if (hdtype, hshape) != (dtype, shape):
                raise _damaged(self.path, f"{name} holds {hdtype} of shape {hshape} where the "
                                          f"manifest says {dtype} of shape {shape}")
            count = math.prod(shape)
            nbytes = count * dtype.itemsize
            if info.file_size != start + nbytes:
                raise _damaged(self.path, f"its member {name} declares {info.file_size} bytes, "
                                          f"its header and shape need {start + nbytes}")
            a = np.empty(count, dtype)
            if nbytes:
                raw = a.view(np.uint8)
                pos = 0
                while pos < nbytes:
                    chunk = f.read(min(_CHUNK, nbytes - pos))
                    if not chunk:
                        raise _damaged(self.path, f"{name} ends early")
                    raw[pos:pos + len(chunk)] = np.frombuffer(chunk, np.uint8)
                    pos += len(chunk)
            f.read(1)  # at the end: zipfile checks the CRC
        return a.reshape(shape[::-1]).transpose() if fortran else a.reshape(shape)


class _SafeTensors:
    """A ``.safetensors`` file: read whole (its size is its size: nothing inflates)."""

    def __init__(self, path: str):
        self.path = path
        st = _safetensors(path)
        with open(path, "rb") as f:
            self.raw = f.read()
        with _damage(path):
            (n,) = struct.unpack("<Q", self.raw[:8])
            header = json.loads(self.raw[8:8 + n])
            if not isinstance(header, dict):
                raise _damaged(path, "its header is not a JSON object")
            meta = header.get("__metadata__") or {}
            self.meta = meta.get(MANIFEST) if isinstance(meta, dict) else None
            self.st = st
        self.arrays: dict | None = None

    def close(self) -> None:
        self.raw = b""

    def manifest_bytes(self) -> bytes | None:
        return self.meta.encode() if isinstance(self.meta, str) else None

    def names(self) -> list[str]:
        return list(self._load())

    def _load(self) -> dict:
        if self.arrays is None:
            try:
                self.arrays = dict(self.st.load(self.raw))
            except Exception as e:  # noqa: BLE001 (safetensors raises its own error types)
                raise _damaged(self.path, f"{type(e).__name__}: {e}") from None
        return self.arrays

    def check_size(self, name: str, dtype: np.dtype, shape: tuple) -> None:
        pass  # the header's offsets are checked by safetensors against the file's length

    def header(self, name: str) -> tuple[np.dtype, tuple, int]:
        a = self._get(name)
        return a.dtype, a.shape, 0

    def _get(self, name: str) -> np.ndarray:
        a = self._load().get(name)
        if a is None:
            raise _damaged(self.path, f"the manifest lists {name} but the file holds no such "
                                      "array")
        return a

    def read(self, name: str, dtype: np.dtype, shape: tuple) -> np.ndarray:
        a = self._get(name)
        if (a.dtype, a.shape) != (dtype, shape):
            raise _damaged(self.path, f"{name} holds {a.dtype} of shape {a.shape} where the "
                                      f"manifest says {dtype} of shape {shape}")
        return a


@contextlib.contextmanager
def _open(path: str) -> Iterator[Any]:
    if path.endswith(".safetensors"):
        src: Any = _SafeTensors(path)
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"load: no checkpoint at {path}")
        src = _Npz(path)
    try:
        yield src
    finally:
        src.close()


# ----------------------------------------------------------------------------- the manifest
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _manifest(src: Any) -> dict:
    """The file's manifest, checked field by field; one made from the members' names (every
    member an array of unknown shape) for a plain ``.npz``."""
    path = src.path
    raw = src.manifest_bytes()
    if raw is None:
        names = src.names()
        m: dict = {"model": [{"path": k, "kind": "array"} for k in names
                             if not k.startswith(OPT_PREFIX)]}
        if any(k.startswith(OPT_PREFIX) for k in names):
            m["opt_state"] = [{"path": k, "kind": "array"} for k in names
                              if k.startswith(OPT_PREFIX)]
        return m
    with _damage(path, "its manifest"):
        m = json.loads(raw.decode())
    if not (isinstance(m, dict) and m.get("format") == "funcflux"
            and isinstance(m.get("model"), list)):
        raise _damaged(path, "its manifest is damaged")
    version = m.get("version")
    if not _is_int(version) or version < 1:
        raise _damaged(path, "its manifest is damaged (no version)")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer funcflux (checkpoint format "
                              f"{version}; this one reads up to {FORMAT_VERSION}).")
    if m.get("opt_state") is not None and not isinstance(m["opt_state"], list):
        raise _damaged(path, "its manifest is damaged (opt_state)")
    seen: set = set()
    for part in ("model", "opt_state"):
        for e in m.get(part) or []:
            _check_entry(path, e, version, seen)
    _resolve(path, m)
    return m


def _resolve(path: str, m: dict) -> None:
    """Replace each alias (``same_as``, maybe into the other part) by what it points to."""
    stored = {e["path"]: e for part in ("model", "opt_state") for e in m.get(part) or []
              if "same_as" not in e}
    for part in ("model", "opt_state"):
        out = []
        for e in m.get(part) or []:
            if "same_as" in e:
                t = stored.get(e["same_as"])
                if t is None or t["kind"] != "array":
                    raise _damaged(path, f"{e['path']} refers to a missing entry {e['same_as']}")
                e = dict(t, path=e["path"], stored=e["same_as"])
            out.append(e)
        if part in m and m[part] is not None:
            m[part] = out


def _check_entry(path: str, e: Any, version: int, seen: set) -> None:
    """One manifest entry has the fields its kind needs, of the right types."""
    bad = _damaged(path, f"its manifest has a damaged entry {str(e)[:80]}")
    if not isinstance(e, dict) or not isinstance(e.get("path"), str) or e["path"] in seen:
        raise bad
    seen.add(e["path"])
    if "same_as" in e:
        if not isinstance(e["same_as"], str):
            raise bad
        return
    kind = e.get("kind")
    if kind in ("str", "int") and "value" in e:
        if not (isinstance(e["value"], str) if kind == "str" else _is_int(e["value"])):
            raise bad
        return
    if kind in ("callable", "skipped"):
        if not all(isinstance(e.get(f, ""), str) for f in ("type", "name")) or (
                kind == "skipped" and version > 1):
            raise bad
        return
    if kind not in _ARRAY_KINDS:
        raise bad
    if "dtype" not in e and "shape" not in e:
        return  # as in a plain .npz: read from the array's header
    shape = e.get("shape")
    if not (isinstance(e.get("dtype"), str) and isinstance(shape, list)
            and all(_is_int(d) and d >= 0 for d in shape)):
        raise bad
    try:
        dtype = np.dtype(e["dtype"])
    except (TypeError, ValueError, SyntaxError):
        raise bad from None
    if dtype.hasobject:
        raise CheckpointError(PICKLED.format(path=path, name=e["path"]))
    if not _fits(kind, dtype, tuple(shape)):
        raise bad
    e["dtype"], e["shape"] = dtype, tuple(shape)


def _fits(kind: str, dtype: np.dtype, shape: tuple) -> bool:
    """Whether an array of ``dtype`` and ``shape`` can be a leaf of ``kind``."""
    if kind in _NUMBER_KINDS:
        return shape == () and dtype.kind in _NUMBER_KINDS[kind]
    if kind == "bytes":
        return dtype == np.uint8 and len(shape) == 1
    return kind != "numpy_scalar" or shape == ()


def _declared(src: Any, e: dict) -> tuple[np.dtype, tuple]:
    """The dtype and shape of the stored array of ``e`` (from the header in a plain .npz)."""
    if "dtype" not in e:
        dtype, shape, _ = src.header(e.get("stored", e["path"]))
        if not _fits(e["kind"], dtype, shape):
            raise _damaged(src.path, f"{e['path']} holds {dtype} of shape {shape}, which "
                                     f"cannot be a {e['kind']}")
        e["dtype"], e["shape"] = dtype, shape
    return e["dtype"], e["shape"]


def _stored(e: dict) -> bool:
    return e["kind"] in _ARRAY_KINDS and "value" not in e


class _Values:
    """The stored arrays, read once each (so ties come back as one array)."""

    def __init__(self, src: Any):
        self.src, self.cache = src, {}

    def check(self, entries: list) -> None:
        for e in entries:
            if _stored(e):
                self.src.check_size(e.get("stored", e["path"]), *_declared(self.src, e))

    def value(self, e: dict) -> Any:
        kind = e["kind"]
        if "value" in e:
            return e["value"]
        if kind in ("callable", "skipped"):
            return NotStored(e.get("type", "function"), e.get("name", "?"))
        name = e.get("stored", e["path"])
        a = self.cache.get(name)
        if a is None:
            a = self.cache[name] = self.src.read(name, *_declared(self.src, e))
        if kind in _PY_TYPES:
            return _PY_TYPES[kind](a.item())
        if kind == "numpy_scalar":
            return a[()]
        if kind == "bytes":
            return a.tobytes()
        return a


# ----------------------------------------------------------------------------- load
def load(path: str | os.PathLike, like: Any = None, *, opt_state_like: Any = None) -> Any:
    """Read a checkpoint into the structure of ``like``; with ``opt_state_like``, also the state.

    Returns the model, or ``(model, opt_state)`` when ``opt_state_like`` is
    given (an error if the file holds no optimiser state). Without ``like``,
    returns the saved tree rebuilt from the manifest: dicts, lists, tuples and
    ``None`` as saved, a functor or namedtuple as a dict of its fields, a
    function as :class:`NotStored` (files from before format 2, and plain
    ``.npz`` files, give ``{path: value}``). A damaged file is a
    :class:`CheckpointError`; nothing is inflated before the manifest and the
    declared sizes are checked.

    >>> import os, tempfile, numpy as np, funcflux as ff
    >>> path = os.path.join(tempfile.mkdtemp(), "m.npz")
    >>> ff.save(path, {"w": [np.arange(3.0)], "name": "mlp"})
    >>> ff.load(path)
    {'w': [array([0., 1., 2.])], 'name': 'mlp'}
    """
    path = os.fspath(path)
    with _open(path) as src:
        manifest = _manifest(src)
        if like is None:
            model = _rebuild(src, manifest)
        else:
            model = _restore(src, manifest["model"], like, "", "")
        if opt_state_like is None:
            return model
        if manifest.get("opt_state") is None:
            raise CheckpointError(f"{path} holds no optimiser state (it was saved without "
                                  "opt_state=...); load it without opt_state_like.")
        return model, _restore(src, manifest["opt_state"], opt_state_like, OPT_PREFIX,
                               " (optimiser state)")


def _rebuild(src: Any, manifest: dict) -> Any:
    """The saved model without ``like``: from the manifest's structure (format 2)."""
    entries = manifest["model"]
    values = _Values(src)
    values.check(entries)  # every declared size, before anything is inflated
    got = {e["path"]: values.value(e) for e in entries}
    structure = manifest.get("structure")
    if not isinstance(structure, dict):  # format 1 or a plain .npz: {path: value}
        return {k: v for k, v in got.items() if not isinstance(v, NotStored)}
    with _damage(src.path, "its structure"):
        return _decode(src.path, structure, got)


def _decode(path: str, node: Any, got: dict) -> Any:
    bad = _damaged(path, "its manifest's structure is damaged")
    if not isinstance(node, dict):
        raise bad
    t = node.get("t")
    if t == "leaf":
        if not isinstance(node.get("p"), str) or node["p"] not in got:
            raise bad
        return got[node["p"]]
    if t == "none":
        return None
    kids = node.get("c")
    if not isinstance(kids, list):
        raise bad
    kids = [_decode(path, c, got) for c in kids]
    if t == "list":
        return kids
    if t == "tuple":
        return tuple(kids)
    keys = node.get("k")
    if t not in ("dict", "odict", "node") or not isinstance(keys, list) or len(keys) != len(kids):
        raise bad
    keys = [_decode_key(path, k, child=t == "node") for k in keys]
    out = (collections.OrderedDict if t == "odict" else dict)(zip(keys, kids))
    if len(out) != len(kids):
        raise bad
    return out


def _decode_key(path: str, k: Any, child: bool = False) -> Any:
    if not (isinstance(k, list) and len(k) == 2 and isinstance(k[0], str)):
        raise _damaged(path, "its manifest's structure is damaged")
    tag, v = k
    if child:
        if tag in ("attr", "repr") and isinstance(v, str) or tag == "index" and _is_int(v):
            return v
        if tag == "key":
            return _decode_key(path, v)
        raise _damaged(path, "its manifest's structure is damaged")
    ok = {"bool": lambda: isinstance(v, bool), "int": lambda: _is_int(v),
          "float": lambda: isinstance(v, float), "str": lambda: isinstance(v, str),
          "none": lambda: v is None, "repr": lambda: isinstance(v, str),
          "tuple": lambda: isinstance(v, list)}.get(tag)
    if ok is None or not ok():
        raise _damaged(path, "its manifest's structure is damaged")
    return tuple(_decode_key(path, i) for i in v) if tag == "tuple" else v


def _restore(src: Any, entries: list, like: Any, prefix: str, what: str) -> Any:
    path = src.path
    pl, td = _tree.flatten_with_path(like)
    names = [_name(prefix, p) for p, _ in pl]
    by = {e["path"]: e for e in entries}
    missing = [n for n in names if n not in by]
    extra = [n for n in by if n not in set(names)]
    if missing or extra:
        details = []
        if missing:
            details.append(f"In `like` but not in the file: {_few(missing)}.")
        if extra:
            details.append(f"In the file but not in `like`: {_few(extra)}.")
        raise CheckpointError(STRUCTURE.format(path=path, what=what, details=" ".join(details)))
    # Everything is checked against `like` and the file's declared sizes before any array
    # is read: a file that would inflate to more than `like` holds is refused unread.
    plan = [_check(src, name, by[name], x) for (_, x), name in zip(pl, names)]
    values = _Values(src)
    values.check([by[n] for n, (how, _) in zip(names, plan) if how != "like"])
    done: dict = {}  # id of a like array -> the loaded array, so ties survive
    out = []
    for (_, x), name, (how, post) in zip(pl, names, plan):
        if how == "like":
            out.append(x)
            continue
        v = post(values.value(by[name]))
        if how == "array":
            if id(x) not in done and not isinstance(x, np.ndarray) and \
                    type(x) in _backend._MODULES:
                v = _device._to_like(v, x)  # back to the device (and GPU) where like's leaf is
            v = done.setdefault(id(x), v)
        out.append(v)
    return _tree.unflatten(td, out)


def _few(names: list, n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _same(v: Any) -> Any:
    return v


def _check(src: Any, name: str, e: dict, x: Any) -> tuple[str, Callable[[Any], Any]]:
    """How to make the leaf at ``name`` from entry ``e``, after checking it against ``like``'s
    leaf ``x``: ``("like", _)`` (take ``x``), ``("value", post)`` or ``("array", post)``."""
    path = src.path
    want, have = _kind(x), e["kind"]
    if have in ("callable", "skipped") or want == "callable":
        if have == "skipped" and want not in _ARRAY_KINDS | {"arraylike"} or have == want:
            return "like", _same  # configuration comes from like
    elif want in ("str", "bytes") and have == want:
        return "value", _same
    elif want in _PY_TYPES:
        if have == want:
            return "value", _same
        if have == "array" and _stored(e):
            dtype, shape = _declared(src, e)
            if shape == () and dtype.kind in _NUMBER_KINDS[want]:
                return "value", lambda a: _PY_TYPES[want](a.item())  # a 0-d array for a number
    elif want in ("array", "numpy_scalar", "arraylike") and _stored(e) and have != "bytes":
        dtype, shape = _declared(src, e)
        ref = np.asarray(x) if want == "arraylike" else x
        like_shape, like_dtype = tuple(np.shape(ref)), np.dtype(ref.dtype)
        if shape != like_shape:
            raise CheckpointError(f"{path}: shape mismatch at {name}: the file holds shape "
                                  f"{shape}, `like` has shape {like_shape}.")
        if dtype != like_dtype:
            raise CheckpointError(f"{path}: dtype mismatch at {name}: the file holds {dtype}, "
                                  f"`like` has {like_dtype} (cast the loaded tree, or build "
                                  "`like` with the saved dtype).")
        if want == "numpy_scalar":
            return "value", lambda a: np.asarray(a)[()]
        return "array", np.asarray  # a 0-d array where the file holds a number
    if have in _ARRAY_KINDS and "value" not in e and "dtype" not in e:
        _declared(src, e)
    raise CheckpointError(f"{path}: at {name} the file holds {_entry_text(e)}, but `like` holds "
                          f"{_describe(want, x)}.")
