"""Packaging: ``python -m build`` gives an sdist and a wheel; the wheel ships ``py.typed`` and no tests,
and installs into a fresh virtual environment.

``python -m build`` builds the sdist first and the wheel *from the unpacked
sdist*, so a wheel with every module also shows the sdist is complete. The
build runs on a copy of the checkout (setuptools writes ``*.egg-info`` and
``build/`` next to the sources). Skipped, with the reason, when the ``build``
package is missing and cannot be installed, or when the isolated build
environment cannot be set up (no package index reachable).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_IGNORE = shutil.ignore_patterns(
    ".git", "*.egg-info", "build", "dist", "__pycache__", "*.pyc", ".venv*", ".style-venv",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", "outputs",
)


def _have_build() -> bool:
    try:
        import build  # noqa: F401

        return True
    except ImportError:
        pass
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "build"], capture_output=True, text=True, timeout=300
    )
    return install.returncode == 0


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """``(sdist, wheel)`` built by ``python -m build`` from a copy of the checkout."""
    if not _have_build():
        pytest.skip("the `build` package is not installed and `pip install build` failed (no network?)")
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    out = tmp / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    if result.returncode != 0:
        log = result.stdout + result.stderr
        if "Could not find a version" in log or "No matching distribution" in log or "Network" in log:
            pytest.skip(f"`python -m build` could not set up its isolated environment:\n{log[-2000:]}")
        pytest.fail(f"`python -m build` failed:\n{log[-4000:]}")
    (sdist,) = out.glob("braintrace-*.tar.gz")
    (wheel,) = out.glob("braintrace-*.whl")
    return sdist, wheel


def _wheel_names(wheel):
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_ships_py_typed_and_every_module(dists):
    _, wheel = dists
    names = set(_wheel_names(wheel))
    assert "braintrace/py.typed" in names
    sources = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "braintrace").rglob("*.py")
        if "__pycache__" not in p.parts and (p.parent / "__init__.py").exists()
    }
    assert sources <= names, f"modules missing from the wheel: {sorted(sources - names)}"
    assert "braintrace/legacy.py" in names


def test_wheel_contains_no_tests(dists):
    _, wheel = dists
    offending = [
        n for n in _wheel_names(wheel)
        if n.startswith("tests/") or "/tests/" in n or n.rsplit("/", 1)[-1] in ("conftest.py", "oracle.py")
        or n.rsplit("/", 1)[-1].startswith("test_") or n.endswith("_test.py")
    ]
    assert not offending, f"the wheel ships test files: {offending}"
    top_level = {n.split("/", 1)[0] for n in _wheel_names(wheel)}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"braintrace"}


def test_sdist_has_the_sources_and_metadata(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "braintrace/__init__.py", "braintrace/py.typed"} <= names


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv(dists, tmp_path):
    """Install the wheel with ``--no-deps`` into a new venv that borrows this interpreter's dependencies."""
    _, wheel = dists
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # jax, brainstate, saiunit come from the current environment: a plain path line in a .pth file
    # (appended after the venv's own site-packages, and without processing that directory's own .pth
    # files, so the editable install of this checkout stays invisible)
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_braintrace_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    smoke = (
        "import pathlib, braintrace, jax.numpy as jnp\n"
        "pkg = pathlib.Path(braintrace.__file__).parent\n"
        f"assert str(pkg).startswith({str(venv)!r}), pkg\n"
        "assert (pkg / 'py.typed').exists()\n"
        "y = braintrace.matmul(jnp.ones(3), jnp.ones((3, 2)))\n"
        "assert y.tolist() == [3.0, 3.0], y\n"
        "assert braintrace.legacy.DEPRECATIONS\n"
        "print(braintrace.__version__)\n"
    )
    result = subprocess.run(
        [str(py), "-W", "error::DeprecationWarning", "-c", smoke],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().startswith("0.")


def test_ci_runs_mypy_codespell_and_the_readme_test_command():
    """``.ci/run`` runs the static checks, then exactly the README's test command (doctests and build included)."""
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    readme = (ROOT / "README.md").read_text()
    (readme_cmd,) = [line.strip() for line in readme.splitlines() if "python -m pytest" in line]
    test = readme_cmd.split("&&")[-1].strip()
    assert test in ci, f"{test!r} (README) is not a line of .ci/run"
    assert any('-e ".[dev]"' in line for line in ci[: ci.index(test)]), "CI must install the dev extra first"
    assert ci.index("python -m mypy braintrace") < ci.index(test)
    assert "python -m pytest -n 2 -q -m slow" in ci[ci.index(test):], "CI must also run the tests marked slow"
    assert any(line.startswith("python -m codespell_lib braintrace docs README.md") for line in ci)
    assert (ROOT / "tests" / "test_doctests.py").exists() and (ROOT / "tests" / "test_packaging.py").exists()
