"""An MkDocs hook: the mathematics of every page rendered as MathML when the site is built.

``pymdownx.arithmatex`` (generic mode) finds the TeX in the Markdown
(``$...$`` or ``\\(...\\)`` inline, ``$$...$$`` blocks; ``griffe_rst.py`` turns
the docstrings' ``:math:`` roles and ``.. math::`` blocks into these) and
leaves it as ``<span class="arithmatex">\\(...\\)</span>`` or
``<div class="arithmatex">\\[...\\]</div>``. This hook converts the TeX inside
to MathML with ``latex2mathml``, which browsers render natively: the built
pages need no script and no network, and the build needs neither.

A formula that ``latex2mathml`` cannot convert, or that uses a command it does
not know (it would show the command as text), is a warning naming the page
and the formula, so ``mkdocs build --strict`` fails on it.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from latex2mathml.converter import convert

log = logging.getLogger("mkdocs.hooks.mathml")

_MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
_WRAP = {"span": ("\\(", "\\)"), "div": ("\\[", "\\]")}
# what latex2mathml emits for TeX it does not understand: an unknown \command or a stray & as an identifier
_NOT_CONVERTED = re.compile(r"<mi>(\\[A-Za-z]+|&)</mi>")


# latex2mathml writes \mathrel{+} as an <mo> holding an <mrow> of <mo>s (not valid MathML): one <mo>
_NESTED_MO = re.compile(r"<mo><mrow>((?:<mo>[^<]*</mo>)+)</mrow></mo>")
_PLUS_EQUALS = "<mo>&#x0002B;</mo><mo>&#x0003D;</mo>"  # \mathrel{+}= : one operator, +=


def _tidy(mathml: str) -> str:
    mathml = _NESTED_MO.sub(lambda m: "<mo>" + "".join(re.findall(r"<mo>([^<]*)</mo>", m.group(1))) + "</mo>", mathml)
    return mathml.replace(_PLUS_EQUALS, "<mo>&#x0002B;&#x0003D;</mo>")


def tex_to_mathml(tex: str, display: bool) -> str:
    """The MathML of one formula; ``ValueError`` if ``latex2mathml`` cannot render it."""
    try:
        mathml = convert(tex, display="block" if display else "inline")
    except Exception as err:  # latex2mathml raises its own exception types
        raise ValueError(f"{type(err).__name__}: {err}") from err
    bad = _NOT_CONVERTED.findall(mathml)
    if bad:
        raise ValueError(f"not converted: {', '.join(sorted(set(bad)))}")
    return _tidy(mathml)


def on_page_content(html_text: str, page: Any, **kwargs: Any) -> str:
    """Replace the TeX of every arithmatex element of the page by MathML."""

    def render(m: re.Match) -> str:
        tag, tex = m.group(1), html.unescape(m.group(2)).strip()
        start, end = _WRAP[tag]
        if tex.startswith(start) and tex.endswith(end):
            tex = tex[len(start) : -len(end)].strip()
        try:
            mathml = tex_to_mathml(tex, display=tag == "div")
        except ValueError as err:
            log.warning(f"{page.file.src_uri}: cannot render the formula {tex!r} as MathML ({err})")
            return m.group(0)
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _MATH.sub(render, html_text)
