"""Every ```python block in README.md, docs/*.md and docs/api/*.md runs.

Blocks of one file share a namespace and run in order, so a page reads like a
session. A block whose first line is ``# skip-test`` is not run (for code that
needs hardware the test machine lacks); use it sparingly. A warning fails a page
under ``-W error`` like anywhere else, except ``ff.gpu``'s ``DeviceWarning`` on a
machine without a GPU: the pages are written for a GPU and say that it warns.

The pages are also checked without MkDocs: every ``ff.name``, ``nn.name``,
``optim.name``... they mention in code exists, every page is in the site's
navigation (``mkdocs.yml``) and every navigation entry is a page, and every
``::: target`` of the API pages imports. ``tests/test_docs_build.py`` builds the
site itself when MkDocs is installed.
"""
import glob
import importlib
import os
import re
import traceback
import warnings

import pytest

import funcflux as ff

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
API_PAGES = sorted(glob.glob(os.path.join(DOCS, "api", "*.md")))
PAGES = sorted([os.path.join(ROOT, "README.md")] + glob.glob(os.path.join(DOCS, "*.md"))
               + API_PAGES)
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
            with warnings.catch_warnings():  # a page's filters do not outlive it
                if not ff.device.is_available():
                    # The pages are written for a GPU; on a machine without one, ff.gpu's
                    # fallback warning is what docs/gpu.md says a user sees, not a fault.
                    warnings.filterwarnings("ignore", category=ff.device.DeviceWarning)
                exec(compile(code, f"{rel}:{line}", "exec"), namespace)
        except Exception:  # name the block, keep the traceback into it
            error = traceback.format_exc()
        if error is not None:
            pytest.fail(f"the python block at {rel}:{line} failed:\n{error}", pytrace=False)


def test_fence_parser():
    text = "x\n```python\na = 1\n```\n```bash\nls\n```\n```python\n# skip-test\nb\n```\n"
    blocks = [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in FENCE.finditer(text)]
    assert blocks == [(3, "a = 1\n"), (9, "# skip-test\nb\n")]


# ----------------------------------------------------------------------------- names
# The short module names the pages use in code (``from funcflux import nn, optim, ...``).
MODULES = {"ff": "funcflux", "nn": "funcflux.nn", "optim": "funcflux.optim",
           "losses": "funcflux.losses", "data": "funcflux.data", "fnp": "funcflux.numpy"}
# (Not ``dist``: pages that compare with PyTorch use it for torch.distributed.)
QUALIFIED = re.compile(r"(?<![\w.])(ff|nn|optim|losses|data|fnp)\.([^\W\d]\w*(?:\.[^\W\d]\w*)*)")
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
# Names that are not attributes: a file name, and the function adding_a_primitive.md
# teaches how to add (its example spec line names it).
NOT_NAMES = {"nn.py", "fnp.softplus"}


def mentioned_names(text: str) -> set[str]:
    """``ff.grad``, ``nn.Dense.from_arrays``... as written in the code of a page."""
    return {m.group(0) for code in CODE.finditer(text) for m in QUALIFIED.finditer(code.group(0))}


def missing_name(qualified: str) -> str | None:
    """The first part of ``qualified`` that does not exist, or None."""
    head, *parts = qualified.split(".")
    obj = importlib.import_module(MODULES[head])
    for part in parts:
        if not hasattr(obj, part):
            return part
        obj = getattr(obj, part)
    return None


@pytest.mark.parametrize("path", PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_mentioned_names_exist(path):
    with open(path, encoding="utf-8") as f:
        names = mentioned_names(f.read())
    missing = {n: missing_name(n) for n in sorted(names - NOT_NAMES)}
    missing = {n: part for n, part in missing.items() if part is not None}
    assert not missing, f"{os.path.relpath(path, ROOT)} names what does not exist: {missing}"


def test_name_scanner():
    text = "`ff.grad` and `jax.nn.relu`, ```python\nnn.Dense(2, 3).weight\n```, not nn.Chain"
    assert mentioned_names(text) == {"ff.grad", "nn.Dense"}
    assert missing_name("nn.Dense.from_arrays") is None
    assert missing_name("optim.no_such_optimiser") == "no_such_optimiser"


# ----------------------------------------------------------------------------- site
def nav_pages() -> set[str]:
    """The pages named in mkdocs.yml's nav, relative to docs/."""
    with open(os.path.join(ROOT, "mkdocs.yml"), encoding="utf-8") as f:
        text = f.read()
    nav = text[text.index("\nnav:"):]
    nav = nav[:re.search(r"\n\S", nav[1:]).start() + 1]  # up to the next top-level key
    return set(re.findall(r"[\w./-]+\.md\b", nav))


def test_every_page_is_in_the_nav():
    pages = {os.path.relpath(p, DOCS).replace(os.sep, "/")
             for p in glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)}
    nav = nav_pages()
    assert not nav - pages, f"mkdocs.yml's nav names pages that do not exist: {nav - pages}"
    assert not pages - nav, f"pages missing from mkdocs.yml's nav: {pages - nav}"


API_TARGET = re.compile(r"^:::\s*([\w.]+)\s*$", re.M)


@pytest.mark.parametrize("path", API_PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_api_targets_import(path):
    with open(path, encoding="utf-8") as f:
        targets = API_TARGET.findall(f.read())
    for target in targets:
        module, _, attr = target.rpartition(".")
        try:
            importlib.import_module(target)
        except ImportError:
            assert module and hasattr(importlib.import_module(module), attr), target


def test_every_public_name_has_an_api_page():
    """Each name in funcflux.__all__ is rendered by a ``:::`` target of docs/api/."""
    import types

    text = ""
    for p in API_PAGES:
        with open(p, encoding="utf-8") as f:
            text += f.read() + "\n"
    targets = set(re.findall(r"^::: ([\w.]+)", text, re.M))
    missing = []
    for name in ff.__all__:
        obj = getattr(ff, name)
        if isinstance(obj, types.ModuleType):
            ok = any(t == obj.__name__ or t.startswith(obj.__name__ + ".") for t in targets)
        else:
            ok = any(t.endswith("." + name) or t == getattr(obj, "__module__", "")
                     for t in targets)
        if not ok:
            missing.append(name)
    assert not missing, f"no API page renders {missing}: add a ::: line to docs/api/"
