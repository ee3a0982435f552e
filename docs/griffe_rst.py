"""A griffe extension for the API pages: reStructuredText markup in the docstrings, shown as Markdown.

braintrace's docstrings are NumPy style with reStructuredText roles
(``:func:`x```, ``:math:`x```), ``.. math::`` blocks and ``.. [1]``
references, as the style guide asks. mkdocstrings renders Markdown, so before
the docstrings are parsed this extension turns roles into code spans, keeps
``.. math::`` blocks as indented (code) blocks and reference labels as text.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|math|ref|doc):`~?([^`]+)`")
_MATH_LINE = re.compile(r"^(\s*)\.\. math::\s*(\S.*)$", re.M)
_MATH_BLOCK = re.compile(r"^(\s*)\.\. math::\s*$", re.M)
_DIRECTIVE = re.compile(r"^(\s*)\.\. (warning|note|seealso)::\s*", re.M)
_CITATION = re.compile(r"^(\s*)\.\. \[(\w+)\]\s*", re.M)
_LITERAL = re.compile(r"``([^`]+)``")
# "a, b, c" alone on a line, its description indented below: NumPy's shared parameter entry
_SHARED = re.compile(r"^(?P<indent>[ \t]*)(?P<names>\w+(?:, \w+)+)[ \t]*\n(?P<desc>(?:(?P=indent)[ \t]+\S.*\n?)+)", re.M)


def _split_shared(text: str) -> str:
    """One entry per name (griffe would give every name of a shared entry the first one's default)."""

    def repl(m: re.Match) -> str:
        desc = m.group("desc") if m.group("desc").endswith("\n") else m.group("desc") + "\n"
        return "".join(f"{m.group('indent')}{name}\n{desc}" for name in m.group("names").split(", "))

    return _SHARED.sub(repl, text)


def rst_to_markdown(text: str) -> str:
    """The Markdown rendering of the reStructuredText constructs used in braintrace's docstrings."""
    text = _split_shared(_ROLE.sub(r"`\1`", text))
    text = _MATH_LINE.sub(lambda m: f"{m.group(1)}`{m.group(2).strip()}`", text)
    text = _MATH_BLOCK.sub(r"", text)
    text = _DIRECTIVE.sub(lambda m: f"{m.group(1)}**{m.group(2).capitalize()}:** ", text)
    text = _CITATION.sub(lambda m: f"{m.group(1)}[{m.group(2)}] ", text)
    return _LITERAL.sub(r"`\1`", text)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring with :func:`rst_to_markdown` as soon as its object is loaded."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
