"""Every docstring example in ``braintrace`` runs as a doctest (one test per docstring).

Equivalent to ``pytest --doctest-modules braintrace``, but collected from
``tests/`` so that the README's test command (and CI) runs them, and split per
docstring so ``-n 2`` spreads them over workers.
"""

import doctest
import importlib
import io
import pkgutil

import pytest

import braintrace
from braintrace.errors import OptionalDependencyError


def _modules():
    names = [braintrace.__name__]
    for info in pkgutil.walk_packages(braintrace.__path__, prefix=f"{braintrace.__name__}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue
        names.append(info.name)
    return names


def _collect():
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for name in _modules():
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            if test.examples:
                tests.append(test)
    return sorted(tests, key=lambda t: t.name)


DOCTESTS = _collect()


def test_doctests_were_collected():
    assert len(DOCTESTS) > 50
    names = {t.name for t in DOCTESTS}
    assert "braintrace.legacy.MatMulOp" in names and "braintrace" in names


class _Runner(doctest.DocTestRunner):
    """Notes an example that needs an optional package which is not installed (the test is then skipped)."""

    missing: str | None = None

    def report_unexpected_exception(self, out, test, example, exc_info):
        if isinstance(exc_info[1], OptionalDependencyError) and self.missing is None:
            self.missing = str(exc_info[1])
        super().report_unexpected_exception(out, test, example, exc_info)


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test):
    out = io.StringIO()
    runner = _Runner(verbose=False)
    test.globs = dict(test.globs)  # a fresh namespace per run
    result = runner.run(test, out=out.write)
    if runner.missing is not None:  # e.g. braintrace.datasets without the `datasets` extra
        pytest.skip(runner.missing)
    assert result.failed == 0, f"\n{out.getvalue()}"
