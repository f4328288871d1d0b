"""The documentation site builds with ``mkdocs build --strict`` (skipped without MkDocs).

Install the toolchain with ``pip install ".[docs]"``; CI does. Strict mode turns
every warning into an error: a broken link or anchor, a page missing from the
navigation, a docstring mkdocstrings cannot read.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")


def _missing_tool() -> str | None:
    for name in TOOLS:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError:  # a parent package is missing
            return name
    return None


@pytest.mark.skipif(_missing_tool() is not None,
                    reason=f"{_missing_tool()} is not installed (pip install '.[docs]')")
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's notice on stderr, not a warning
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         os.path.join(ROOT, "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (site / "index.html").is_file()
    # The API pages were generated from the docstrings, their >>> examples highlighted
    # as Python console sessions (a prompt token), not read as nested block quotes.
    with open(site / "api" / "nn" / "index.html", encoding="utf-8") as f:
        api = f.read()
    assert 'id="funcflux.nn.layers.Dense"' in api
    assert '<span class="gp">&gt;&gt;&gt; </span>' in api
    assert "<blockquote>" not in api
