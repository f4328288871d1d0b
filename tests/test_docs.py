"""Every ```python block in README.md and docs/*.md runs.

Blocks of one file share a namespace and run in order, so a page reads like a
session. A block whose first line is ``# skip-test`` is not run (for code that
needs hardware the test machine lacks); use it sparingly.
"""
import glob
import os
import re
import traceback

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted([os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(ROOT, "docs", "*.md")))
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)


def python_blocks(path: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of each python block in the page."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]


def test_pages_exist():
    names = {os.path.relpath(p, ROOT) for p in PAGES}
    assert "README.md" in names
    assert any(n.startswith("docs") for n in names)


@pytest.fixture
def restored_tables():
    """Pages may declare example primitives; the registry and routing tables get them back out."""
    import funcflux.numpy as fnp
    from funcflux.core.primitive import REGISTRY
    saved = [(t, dict(t)) for t in (REGISTRY, fnp.FUNCTIONS, fnp.UFUNCS)]
    yield
    for table, copy in saved:
        table.clear()
        table.update(copy)


@pytest.mark.parametrize("path", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_code_blocks_run(path, monkeypatch, restored_tables):
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "__docs__"}
    rel = os.path.relpath(path, ROOT)
    for line, code in python_blocks(path):
        if code.lstrip().startswith("# skip-test"):
            continue
        error = None
        try:
            exec(compile(code, f"{rel}:{line}", "exec"), namespace)
        except Exception:  # name the block, keep the traceback into it
            error = traceback.format_exc()
        if error is not None:
            pytest.fail(f"the python block at {rel}:{line} failed:\n{error}", pytrace=False)


def test_fence_parser():
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\n# skip-test\nb\n```\n"
    blocks = [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]
    assert blocks == [(3, "a = 1\n"), (9, "# skip-test\nb\n")]
