"""README.rst tells the truth: its set-up commands are the ones CI runs, and its code
examples run as printed."""

import re
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.rst").read_text(encoding="utf-8")


def _command_after(title):
    m = re.search(re.escape(title) + r"::\n\n    (.+)\n", README)
    assert m, f"README.rst has no '{title}::' block"
    return m.group(1).strip()


def test_ci_runs_the_readme_test_command():
    command = _command_after("Run the tests")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_main_job_command_names_an_existing_script():
    command = _command_after("results in ``benchmark-results/``)")
    script = re.search(r"python (\S+\.py)", command).group(1)
    assert (ROOT / script).is_file()
    assert '".[bench]"' in command


def _code_blocks():
    return re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", README)


def test_readme_examples_run(capsys):
    blocks = _code_blocks()
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks:
        code = "\n".join(line[4:] for line in block.splitlines())
        exec(compile(code, "README.rst", "exec"), namespace)
    # The figures the first example's comment quotes are the ones it prints, and the
    # Euclidean figure is that of the same pipeline without LMNN.
    comment = re.search(r"print\(cross_val_score.*# ([\d.]+) \(Euclidean 3-NN: ([\d.]+)\)",
                        README)
    assert comment, "README's first example no longer quotes its result"
    printed = float(capsys.readouterr().out.split()[0])
    assert f"{printed:.3f}" == comment.group(1)
    from sklearn.datasets import load_wine
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    euclidean = cross_val_score(make_pipeline(StandardScaler(), KNeighborsClassifier(3)),
                                *load_wine(return_X_y=True), cv=5).mean()
    assert f"{euclidean:.3f}" == comment.group(2)
    # The objects the examples promise exist and are what they say.
    mmc, X = namespace["mmc"], namespace["X"]
    assert set(mmc.predict(namespace["pairs"][:5])) <= {-1, 1}
    assert 0.5 < mmc.score(namespace["pairs"], namespace["y_pairs"]) <= 1
    assert namespace["X_mmc"].shape == X.shape


def test_readme_results_are_the_measured_ones():
    """Each row of README's results table is a row of the LMNN table of
    docs/benchmarks.rst, where the measurement and its command are recorded."""
    page = (ROOT / "docs" / "benchmarks.rst").read_text(encoding="utf-8")
    measured = {tuple(c.strip() for c in line.strip().strip("|").split("|"))
                for line in page.splitlines() if line.strip().startswith("| ")}
    section = README[README.index("\nResults\n"):README.index("\nSwitching from")]
    rows = [re.split(r"\s{2,}", line.strip()) for line in section.splitlines()
            if " × " in line and not line.startswith(("=", "data set"))]
    assert len(rows) >= 5
    for row in rows:
        assert tuple(row) in measured, row
