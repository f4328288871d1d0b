"""MkDocs hook: read the docstrings' reST habits as Markdown.

The docstrings are written for ``pytest --doctest-modules`` and for reading in a
terminal: their examples are bare ``>>>`` lines, which Markdown would read as nested
block quotes (and an output such as ``[(2, 2), [0, 1]]`` as a reference link), and
they use reST's ``:func:`name``` roles and ``::`` before literal blocks. This hook
adds a Markdown preprocessor that

- wraps each run of doctest lines (from a ``>>>`` line to the next blank line) in a
  ```` ```pycon ```` fence, before the fenced-code extension runs;
- turns ``:func:`name``` (and ``:class:``, ``:meth:``...) into ``name`` in code;
- ends a line that ends in ``::`` with one colon (the indented block after it is a
  code block in Markdown already).

mkdocstrings renders docstrings with the site's Markdown extensions, so the API pages
get it too. Lines inside code fences are left alone.
"""
from __future__ import annotations

import re
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_PROMPT = re.compile(r"^(\s*)>>>(\s|$)")
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"(?<=[^:\s])::$")


class _DoctestFence(Preprocessor):
    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        fence: str | None = None  # the marker of the code fence we are inside, if any
        i = 0
        while i < len(lines):
            line = lines[i]
            m = _FENCE.match(line)
            if m:
                if fence is None:
                    fence = m.group(1)
                elif m.group(1).startswith(fence):
                    fence = None
            prompt = _PROMPT.match(line) if fence is None else None
            if prompt is None:
                if fence is None and not m:
                    line = _LITERAL.sub(":", _ROLE.sub(r"`\1`", line))
                out.append(line)
                i += 1
                continue
            indent = prompt.group(1)
            block = []
            while i < len(lines) and lines[i].strip():
                text = lines[i]
                block.append(text[len(indent):] if text.startswith(indent) else text.lstrip())
                i += 1
            out += ["", indent + "```pycon", *(indent + b for b in block), indent + "```", ""]
        return out


class _DoctestFenceExtension(Extension):
    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 (Markdown's name)
        # Before the fenced-code preprocessors (priority 25), after whitespace normalisation.
        md.preprocessors.register(_DoctestFence(md), "funcflux_doctest_fence", 27)


@event_priority(100)  # before mkdocstrings copies the extension list
def on_config(config: Any) -> Any:
    config.markdown_extensions.append(_DoctestFenceExtension())
    return config
