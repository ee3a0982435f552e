"""The documentation: it builds strictly offline with its mathematics rendered, every documented
parameter has a description, and the README and docs point only at files a clone contains."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted((REPO / "docs").rglob("*.md"))
# the folders of a clone that the README and docs name as paths (`examples/digits_snn.py`)
TOP = ("braintrace", "benchmarks", "docs", "examples", "tests")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """``mkdocs build --strict`` of this checkout into a temporary folder (as CI builds it)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("latex2mathml")
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "--site-dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _html(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text(encoding="utf-8")


_MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)


@pytest.mark.slow  # the build: 6-15 s on 2 cores
def test_the_docs_render_their_mathematics_as_mathml(site):
    """Every formula arithmatex found is MathML (which browsers render without a script); no TeX is
    left behind as text, on the pages written in Markdown and on the API pages from docstrings."""
    counts = {}
    for page in ("concepts", "api/algorithms", "api/nn", "api/primitives"):
        html = _html(site, page)
        found = _MATH.findall(html)
        assert found, f"no mathematics on {page}"
        for tag, body in found:
            assert body.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML"'), (page, body[:200])
            assert f'display="{"block" if tag == "div" else "inline"}"' in body[:120]
        counts[page] = len(found)
    for path in site.rglob("*.html"):
        text = _MATH.sub("", path.read_text(encoding="utf-8"))
        text = re.sub(r"<(code|pre)\b.*?</\1>", "", text, flags=re.S)  # code may show TeX on purpose
        for leftover in ("$$", "\\(", "\\[", ".. math::", ":math:`"):
            assert leftover not in text, f"unrendered {leftover!r} in {path.relative_to(site)}"
    assert counts["concepts"] >= 20 and counts["api/algorithms"] >= 20


@pytest.mark.slow  # the build: 6-15 s on 2 cores
def test_no_page_loads_a_script_or_style_from_outside(site):
    for path in site.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        outside = re.findall(r'<(?:script|link|img)\b[^>]*(?:src|href)="(?:https?:)?//[^"]*"', text)
        assert not outside, f"{path.relative_to(site)} loads {outside}"


@pytest.mark.slow  # the build: 6-15 s on 2 cores
def test_api_pages_are_titled_by_the_learner_names_and_the_migration_guide_is_in_the_navigation(site):
    html = _html(site, "api/algorithms")
    sections = {re.sub(r"<[^>]+>|\s+", " ", m[0]).strip(): m[1]
                for m in re.findall(r"<h2[^>]*>(.*?)</h2>(.*?)(?=<h2|$)", html, re.S)}
    # titled by the name users call, the class behind it documented right under it
    for name, cls in (("D_RTRL", "ParamDimVjpAlgorithm"), ("ES_D_RTRL", "IODimVjpAlgorithm")):
        title = next((t for t in sections if t.split()[0] == name), None)
        assert title is not None, list(sections)
        assert re.search(rf"<h3[^>]*>.*?{cls}", sections[title], re.S), f"no {cls} under {name}"
    assert 'href="../migration/"' in _html(site, "concepts")  # a link of the navigation
    assert (site / "migration" / "index.html").is_file()


# ------------------------------------------------------------------ parameters


def _documented_objects():
    """The griffe objects of the API pages' ``:::`` entries (the docstrings as the pages show them)."""
    griffe = pytest.importorskip("griffe")
    sys.path.insert(0, str(REPO / "docs"))
    try:
        from griffe_rst import RstToMarkdown
    finally:
        sys.path.remove(str(REPO / "docs"))
    loader = griffe.GriffeLoader(extensions=griffe.load_extensions(RstToMarkdown()), search_paths=[str(REPO)])
    package = loader.load("braintrace")
    loader.resolve_aliases(implicit=False, external=False)
    for page in sorted((REPO / "docs" / "api").glob("*.md")):
        for ident in re.findall(r"^::: (\S+)", page.read_text(), re.M):
            obj = package
            for part in ident.split(".")[1:]:
                obj = obj.members[part]
            yield ident, (obj.final_target if obj.is_alias else obj)


def _described(obj) -> dict[str, str]:
    """``{parameter: description}`` from the Parameters (and, for records, Attributes) sections."""
    out: dict[str, str] = {}
    for holder in (obj, obj.members.get("__init__") if obj.is_class else None):
        if holder is None or holder.docstring is None:
            continue
        for section in holder.docstring.parse("numpy"):
            if section.kind.value in ("parameters", "other parameters", "attributes"):
                for item in section.value:
                    out.setdefault(item.name.lstrip("*"), item.description.strip())
    return out


def _gaps(obj, label: str) -> list[str]:
    if obj.is_class:
        init = obj.members.get("__init__")
        params = init.parameters if init is not None and init.is_function else []
    elif obj.is_function:
        params = obj.parameters
    else:
        return []
    described = _described(obj)
    return [f"{label}: {p.name}" for p in params if p.name not in ("self", "cls") and not described.get(p.name)]


#: Parameters without a description in files outside this change (the learners, the compiler and
#: the training loops, being reworked elsewhere); the test fails when one of them gets described,
#: so that it is struck off here, and on any other parameter without a description.
KNOWN_GAPS = frozenset({
    "braintrace.algorithms.base.ETraceAlgorithm: name",
    "braintrace.algorithms.base.ETraceAlgorithm.init_etrace_state: args",
    "braintrace.algorithms.base.ETraceAlgorithm.init_etrace_state: kwargs",
    "braintrace.algorithms.base.ETraceAlgorithm.init_traces: data",
    "braintrace.algorithms.base.ETraceAlgorithm.reset_state: batch_size",
    "braintrace.algorithms.base.ETraceAlgorithm.reset_state: kwargs",
    "braintrace.algorithms.base.ETraceAlgorithm.update: args",
    "braintrace.algorithms.eprop.EProp: feedback",
    "braintrace.algorithms.eprop.EProp: name",
    "braintrace.algorithms.ostl.OSTLFeedforward: fast_solve",
    "braintrace.algorithms.ostl.OSTLFeedforward: model",
    "braintrace.algorithms.ostl.OSTLFeedforward: name",
    "braintrace.algorithms.ostl.OSTLFeedforward: vjp_method",
    "braintrace.algorithms.ostl.OSTLRecurrent: fast_solve",
    "braintrace.algorithms.ostl.OSTLRecurrent: model",
    "braintrace.algorithms.ostl.OSTLRecurrent: name",
    "braintrace.algorithms.ostl.OSTLRecurrent: vjp_method",
    "braintrace.algorithms.osttp.OSTTP: fast_solve",
    "braintrace.algorithms.osttp.OSTTP: model",
    "braintrace.algorithms.osttp.OSTTP: name",
    "braintrace.algorithms.otpe.OTPE: mode",
    "braintrace.algorithms.otpe.OTPE: model",
    "braintrace.algorithms.otpe.OTPE: name",
    "braintrace.algorithms.otpe.OTPE: vjp_method",
    "braintrace.algorithms.ottt.OTTT: mode",
    "braintrace.algorithms.ottt.OTTT: model",
    "braintrace.algorithms.ottt.OTTT: name",
    "braintrace.compiler.ETraceGraph: hidden_groups",
    "braintrace.compiler.ETraceGraph: hidden_perturbation",
    "braintrace.compiler.ETraceGraph.explain: kind",
    "braintrace.compiler.ETraceGraph.select: hidden_path",
    "braintrace.compiler.ETraceGraph.select: kind",
    "braintrace.compiler.ETraceGraph.select: min_level",
    "braintrace.compiler.ETraceGraph.select: weight_path",
})


def test_every_documented_parameter_has_a_description():
    gaps = set()
    for ident, obj in _documented_objects():
        gaps.update(_gaps(obj, ident))
        if obj.is_class:  # the public methods the page shows (those with a docstring)
            for name, member in obj.members.items():
                member = member.final_target if member.is_alias else member
                if not name.startswith("_") and member.is_function and member.docstring is not None:
                    gaps.update(_gaps(member, f"{ident}.{name}"))
    new = sorted(gaps - KNOWN_GAPS)
    assert not new, "parameters without a description on the API pages:\n" + "\n".join(new)
    fixed = sorted(KNOWN_GAPS - gaps)
    assert not fixed, "described now, strike off KNOWN_GAPS in tests/test_docs.py:\n" + "\n".join(fixed)


# ------------------------------------------------------------------ links


def _sources() -> list[Path]:
    return [REPO / "README.md", *PAGES]


def test_readme_and_docs_link_to_nothing_outside_the_repository():
    for path in _sources():
        urls = re.findall(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", path.read_text(encoding="utf-8"))
        assert not urls, f"{path.relative_to(REPO)} links outside the repository: {urls}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_readme_and_docs_point_only_at_files_a_clone_contains(path):
    text = path.read_text(encoding="utf-8")
    named = [path.parent / t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)]  # links, images
    for span in re.findall(r"`([^`\s]+)`", text):  # paths in code spans: `examples/digits_snn.py`
        if span.startswith("../") or (span.split("/", 1)[0] in TOP and "/" in span):
            if not re.search(r"[*?<>{}$]|\.\.\.", span):
                named.append((path.parent if span.startswith("../") else REPO) / span.split(":", 1)[0])
    bad = [str(p) for p in named if not p.exists() or REPO not in p.resolve().parents]
    assert not bad, f"{path.relative_to(REPO)} names {bad}: not files of a clone"
