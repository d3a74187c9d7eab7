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


def test_readme_examples_run():
    blocks = _code_blocks()
    assert len(blocks) >= 3
    namespace = {}
    for block in blocks:
        code = "\n".join(line[4:] for line in block.splitlines())
        exec(compile(code, "README.rst", "exec"), namespace)
    # The objects the examples promise exist and are what they say.
    assert namespace["knn"].predict(namespace["X"][:3]).shape == (3,)
    assert 0.5 < namespace["mmc"].score(namespace["pairs"], namespace["y_pairs"]) <= 1
