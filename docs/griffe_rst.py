"""A griffe extension for the API pages: reStructuredText markup in the docstrings, shown as Markdown.

braintrace's docstrings are NumPy style with reStructuredText roles
(``:func:`x```, ``:math:`x```), ``.. math::`` blocks and ``.. [1]``
references, as the style guide asks. mkdocstrings renders Markdown, so before
the docstrings are parsed this extension turns roles into code spans, math
into the delimiters of ``pymdownx.arithmatex`` (``\\(x\\)`` inline, a ``$$``
block for ``.. math::``; ``docs/mathml.py`` renders both as MathML) and
reference labels into text.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|ref|doc):`~?([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
# `.. math:: TEX` on one line, or `.. math::` and an indented block (blank lines inside it included)
# ".. math:: <tex>", its continuation lines indented deeper than the directive
_MATH_LINE = re.compile(r"^([ \t]*)\.\. math::[ \t]*(\S.*(?:\n\1[ \t]+\S.*)*)$", re.M)
_MATH_BLOCK = re.compile(r"^([ \t]*)\.\. math::[ \t]*\n((?:(?:\1[ \t]+\S.*)?\n)*(?:\1[ \t]+\S.*\n?))", re.M)
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


def _dedent_continuation(tex: str) -> str:
    """The first line and its continuation lines, stripped, one per line (TeX reads them as one)."""
    return "\n".join(line.strip() for line in tex.splitlines())


def _display(indent: str, tex: str) -> str:
    return f"{indent}$$\n" + "".join(f"{indent}{line}\n" for line in tex.strip("\n").splitlines()) + f"{indent}$$\n"


_ENVIRONMENT = re.compile(r"\\begin\{(\w+\*?)\}.*?\\end\{\1\}", re.S)


def _equation(tex: str) -> str:
    """``tex`` as one display equation; lines broken by a ``\\\\`` outside any environment are
    aligned at their ``&`` (a ``split`` environment, as Sphinx wraps a ``.. math::`` block)."""
    outside = tex
    while _ENVIRONMENT.search(outside):
        outside = _ENVIRONMENT.sub("", outside)
    return f"\\begin{{split}}\n{tex}\n\\end{{split}}" if "\\\\" in outside else tex


def _math_block(m: re.Match) -> str:
    lines = m.group(2).splitlines()
    cut = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    text = "\n".join(line[cut:] for line in lines)
    # blank lines separate equations, as in Sphinx
    equations = [part.strip("\n") for part in re.split(r"\n[ \t]*\n", text) if part.strip()]
    return "\n".join(_display(m.group(1), _equation(part)) for part in equations)


def rst_to_markdown(text: str) -> str:
    """The Markdown rendering of the reStructuredText constructs used in braintrace's docstrings."""
    text = _MATH_ROLE.sub(lambda m: f"\\({m.group(1)}\\)", text)
    text = _split_shared(_ROLE.sub(r"`\1`", text))
    text = _MATH_LINE.sub(lambda m: _display(m.group(1), _equation(_dedent_continuation(m.group(2)))).rstrip("\n"),
                          text)
    text = _MATH_BLOCK.sub(_math_block, text)
    text = _DIRECTIVE.sub(lambda m: f"{m.group(1)}**{m.group(2).capitalize()}:** ", text)
    text = _CITATION.sub(lambda m: f"{m.group(1)}[{m.group(2)}] ", text)
    return _LITERAL.sub(r"`\1`", text)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring with :func:`rst_to_markdown` as soon as its object is loaded."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
