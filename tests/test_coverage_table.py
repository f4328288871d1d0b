"""docs/numpy.md's coverage table has one row per routed function, and no other.

The routing tables (``funcflux.numpy.FUNCTIONS`` for ``__array_function__``,
``UFUNCS`` for ``__array_ufunc__``, and the SciPy ufuncs found by name) are the
source of truth; the table says, for each, what a user gets. Adding a function
without its row, or removing one and leaving the row, fails here.
"""
import os
import re

import numpy as np

import funcflux.numpy as fnp
from funcflux.ops.special import SCIPY_UFUNCS

PAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                    "numpy.md")
HEADING = re.compile(r"^### `([\w.]+)`\s*$")
ROW = re.compile(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|")


def table() -> dict[str, dict[str, tuple]]:
    with open(PAGE, encoding="utf-8") as f:
        text = f.read()
    text = text[text.index("## Coverage"):]
    out: dict[str, dict[str, tuple]] = {}
    module = None
    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            module = out.setdefault(m.group(1), {})
            continue
        m = ROW.match(line)
        if m and module is not None:
            assert m.group(1) not in module, f"two rows for {m.group(1)}"
            module[m.group(1)] = tuple(c.strip() for c in m.groups()[1:])
    return out


def routed() -> dict[str, set]:
    out: dict[str, set] = {"numpy": set(), "numpy.linalg": set(), "numpy.fft": set(),
                           "scipy.special": set(SCIPY_UFUNCS)}
    for f in fnp.FUNCTIONS:
        out[getattr(f, "__module__", "numpy")].add(f.__name__)
    for u in fnp.UFUNCS:
        if getattr(np, u.__name__, None) is u:
            out["numpy"].add(u.__name__)
    return out


def test_every_routed_function_has_a_row_and_every_row_is_routed():
    rows, want = table(), routed()
    assert set(rows) == set(want), f"sections {sorted(rows)} != {sorted(want)}"
    for module, names in want.items():
        missing = sorted(names - set(rows[module]))
        stale = sorted(set(rows[module]) - names)
        assert not missing, f"docs/numpy.md has no row for {module}: {missing}"
        assert not stale, f"docs/numpy.md has rows for functions {module} does not route: {stale}"


def test_cells_use_the_documented_words():
    allowed = re.compile(r"^(yes|no|n/a|none|error|zero)\b")
    for module, rows in table().items():
        for name, cells in rows.items():
            for c in cells:
                assert allowed.match(c), f"{module}.{name}: cell {c!r}"
