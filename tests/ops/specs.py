"""The primitive table seen from the tests: one ``Spec`` line per primitive.

Each family keeps its lines in ``specs_<family>.py`` (``SPECS = [...]``); this
module gathers them. ``test_sweep.py`` runs every line through ``check_grads``
(forward and reverse, order 2), ``vmap`` against a Python loop, and float32
dtype preservation; ``test_completeness.py`` fails when a registered primitive
appears in no line's ``prims``.

A spec names the arrays it needs by *dimension letters*: ``F("a b")`` is a
float array of shape ``(a, b)`` where hypothesis draws each letter's size
(1..4 by default) once per example, so ``F("a b"), F("b")`` broadcast.
A literal digit is a fixed size (``F("a 1")``). ``lo``/``hi`` bound the values
(keep away from kinks and singularities); ``I(...)`` makes integer arrays
(indices, never differentiated); ``B(...)`` boolean masks; ``C(...)`` complex
arrays whose real and imaginary parts both lie in ``[lo, hi]`` (complex128 in
the float64 checks, complex64 in the float32 check, differentiated with JAX's
convention: see ``funcflux.test_util``).

    Spec("tanh", lambda x: np.tanh(x), [F("a b")])
    Spec("add", lambda x, y: x + y, [F("a b"), F("b")])
    Spec("log", np.log, [F("a", lo=0.5, hi=3.0)])
    Spec(("sum",), lambda x: np.sum(x, axis=1), [F("a b c")])
    Spec("greater", lambda x, y: x > y, [F("a"), F("a")], nondiff=True)
    Spec("exp", np.exp, [C("a b")], id="exp_complex")
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from pathlib import Path
from typing import Any, Callable, Sequence


@dataclasses.dataclass(frozen=True)
class F:
    """A float array argument: dimension letters, value range."""
    dims: str = ""
    lo: float = -2.0
    hi: float = 2.0
    distinct: bool = False  # values pairwise apart (for max/sort/kinks)
    kind: str = "float"


def I(dims: str = "", lo: int = 0, hi: int = 3) -> F:  # noqa: E743
    """An integer array argument with values in ``[lo, hi]``."""
    return F(dims, lo, hi, kind="int")


def B(dims: str = "") -> F:
    """A boolean array argument."""
    return F(dims, 0, 1, kind="bool")


def C(dims: str = "", lo: float = -2.0, hi: float = 2.0) -> F:
    """A complex array argument: real and imaginary parts each in ``[lo, hi]``."""
    return F(dims, lo, hi, kind="complex")


@dataclasses.dataclass(frozen=True)
class Spec:
    prims: str | tuple[str, ...]  # the primitive(s) this line exercises
    fun: Callable[..., Any]
    args: Sequence[F]
    nondiff: bool = False     # output carries no derivative: check values and vmap only
    order: int = 2            # highest order for check_grads
    vmap: bool = True         # compare vmap with a Python loop
    sizes: tuple[int, int] = (1, 4)  # range of each dimension letter
    rtol: float = 1e-4
    atol: float = 1e-4
    id: str = ""              # a readable test id; defaults to the first prim name

    @property
    def prim_names(self) -> tuple[str, ...]:
        return (self.prims,) if isinstance(self.prims, str) else tuple(self.prims)

    @property
    def name(self) -> str:
        return self.id or self.prim_names[0]


def _gather() -> list[Spec]:
    out: list[Spec] = []
    here = Path(__file__).parent
    for m in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if m.name.startswith("specs_"):
            mod = importlib.import_module(f"{__package__}.{m.name}" if __package__ else m.name)
            out.extend(mod.SPECS)
    return out


SPECS: list[Spec] = _gather()
