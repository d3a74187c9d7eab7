"""The documentation builds without a single warning: a broken docstring, a dangling
reference or a failing gallery example fails the test suite (README.rst gives the same
command to run by hand)."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

pytest.importorskip("sphinx")
pytest.importorskip("sphinx_gallery")
pytest.importorskip("numpydoc")


def test_docs_build_without_warnings(tmp_path):
    # the same command as README.rst's "Build the documentation", into a temporary folder
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    # every public name has its page, every example its page with a figure
    import mahal
    generated = {p.stem for p in (out / "generated").glob("*.html")}
    for name in mahal.__all__:
        assert f"mahal.{name}" in generated, name
    for example in (ROOT / "examples").glob("plot_*.py"):
        page = (out / "auto_examples" / f"{example.stem}.html").read_text("utf-8")
        assert f"sphx_glr_{example.stem}_001.png" in page, example.name


def test_readme_says_how_to_build_the_docs():
    readme = (ROOT / "README.rst").read_text("utf-8")
    assert "python -m sphinx -W --keep-going -b html docs docs/_build/html" in readme


def _md_rows(text):
    return {tuple(c.strip() for c in line.strip().strip("|").split("|"))
            for line in text.splitlines() if line.strip().startswith("| ")}


def test_benchmark_csvs_transcribe_the_benchmarks_page():
    """The gallery's benchmark plots draw docs/benchmark_results/*.csv; every row there is
    a measured row of docs/benchmarks.rst (nothing invented, nothing stale)."""
    page = (DOCS / "benchmarks.rst").read_text("utf-8")
    rows = _md_rows(page)
    with open(DOCS / "benchmark_results" / "quick_suite.csv", newline="") as f:
        quick = list(csv.DictReader(f))
    assert len(quick) == 30
    for r in quick:
        err = f"{r['knn_error_mean']} ± {r['knn_error_std']}"
        assert any(row[:3] == (r["dataset"], r["learner"], err)
                   and row[5] == r["kmeans_ari"] for row in rows if len(row) == 6), r
    with open(DOCS / "benchmark_results" / "lmnn_peers.csv", newline="") as f:
        peers = list(csv.DictReader(f))
    for r in peers:
        line = next(row for row in rows if row[0] == r["dataset"] and " × " in row[1])
        cell = line[2 + ["mahal", "pylmnn", "metric-learn"].index(r["library"])]
        if r["knn_error_pct"]:
            assert cell.endswith(f"{r['knn_error_pct']}%"), (r, cell)
        if r["library"] != "mahal" and r["time_ratio_to_mahal"]:
            assert re.search(rf"\(×{re.escape(r['time_ratio_to_mahal'])}[,)]", cell), (r, cell)


@pytest.mark.parametrize("page", ["index.rst", "getting_started.rst", "user_guide.rst"])
def test_guide_examples_run(page):
    """The guides' code blocks run as printed, in order, each page in one namespace."""
    text = (DOCS / page).read_text("utf-8")
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    assert blocks
    namespace = {}
    for block in blocks:
        code = "\n".join(line[4:] for line in block.splitlines())
        exec(compile(code, page, "exec"), namespace)


@pytest.mark.parametrize("module", ["base", "constraints", "covariance", "datasets",
                                    "linalg", "lmnn", "mmc", "reference"])
def test_docstring_examples_run(module):
    """The Examples sections the API reference shows give the output they print."""
    import doctest
    import importlib

    mod = importlib.import_module(f"mahal.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
