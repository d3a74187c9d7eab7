"""Tests of the benchmark harness (benchmarks/run.py); fast, no peer venv needed."""

import csv
import json
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import run as bench_run  # noqa: E402


def _run(tmp_path, *args, out="out"):
    out_dir = tmp_path / out
    code = bench_run.main(["--out", str(out_dir), "--quiet", *args])
    return code, out_dir


def _summary(out_dir):
    with open(out_dir / "results_summary.csv") as f:
        return list(csv.DictReader(f))


def _fake_python(tmp_path, body, name="python"):
    path = tmp_path / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def test_table_rows_and_errors_match_independent_knn(tmp_path):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from mahal import Covariance
    from mahal.datasets import load_dataset

    code, out = _run(tmp_path, "--datasets", "iris", "--learners",
                     "euclidean,covariance", "--repeats", "2", "--seed", "3")
    assert code == 0
    rows = _summary(out)
    assert [(r["dataset"], r["learner"]) for r in rows] == [
        ("iris", "euclidean"), ("iris", "covariance")]
    assert all(r["status"] == "ok" for r in rows)

    records = json.loads((out / "results.json").read_text())["records"]
    assert len(records) == 4  # 2 learners x 2 repeats
    for rec in records:
        b = load_dataset("iris", random_state=3 + rec["repeat"])
        sc = StandardScaler().fit(b.X_train)
        Xtr, Xte = sc.transform(b.X_train), sc.transform(b.X_test)
        if rec["learner"] == "covariance":
            cov = Covariance().fit(Xtr, b.y_train)
            Xtr, Xte = cov.transform(Xtr), cov.transform(Xte)
        clf = KNeighborsClassifier(n_neighbors=3).fit(Xtr, b.y_train)
        expected = 1.0 - clf.score(Xte, b.y_test)
        assert rec["error"] == pytest.approx(expected, abs=1e-12)
        assert rec["status"] == "ok"
        assert 0.0 <= rec["fit_time"] < 60
        assert rec["peak_mem_mb"] >= 0
        assert -1.0 <= rec["ari"] <= 1.0
    cov_row = rows[1]
    assert float(cov_row["error_mean"]) == pytest.approx(np.mean(
        [r["error"] for r in records if r["learner"] == "covariance"]))
    md = (out / "results.md").read_text()
    assert "| iris | covariance | mahal |" in md
    for name in ("results.csv", "error.png", "fit_time.png", "embedding_iris.png"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize("body", [
    "#!/bin/sh\nexit 1\n",
    "#!{python}\nraise RuntimeError('peer is broken')\n",
])
def test_failing_peer_interpreter_is_reported_and_run_goes_on(tmp_path, body):
    fake = _fake_python(tmp_path, body.format(python=sys.executable))
    code, out = _run(tmp_path, "--datasets", "iris", "--learners",
                     "euclidean,ml_covariance,pylmnn", "--repeats", "1",
                     "--peer-python", fake, "--no-plots")
    assert code == 0
    rows = {r["learner"]: r for r in _summary(out)}
    assert set(rows) == {"euclidean", "ml_covariance", "pylmnn"}
    assert rows["euclidean"]["status"] == "ok"
    for name in ("ml_covariance", "pylmnn"):
        assert rows[name]["status"].startswith("failed"), rows[name]["status"]
        assert rows[name]["error_mean"] in ("", "nan")


def test_import_error_names_the_missing_module(tmp_path):
    # the real worker under our interpreter, where metric-learn is not installed
    # (or hidden): the row says which import failed
    fake = _fake_python(tmp_path, (
        f"#!{sys.executable}\nimport sys\nsys.modules['metric_learn'] = None\n"
        "sys.argv = sys.argv[1:]\nimport runpy\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"))
    code, out = _run(tmp_path, "--datasets", "iris", "--learners", "ml_covariance",
                     "--repeats", "1", "--peer-python", fake, "--no-plots")
    assert code == 0
    (row,) = _summary(out)
    assert row["status"].startswith("failed: import")
    assert "metric_learn" in row["status"]


def test_missing_peer_python_and_no_peer_python(tmp_path):
    missing = str(tmp_path / "no" / "such" / "python")
    code, out = _run(tmp_path, "--datasets", "iris", "--learners",
                     "euclidean,ml_mmc", "--repeats", "1", "--peer-python", missing,
                     "--no-plots")
    assert code == 0
    rows = {r["learner"]: r for r in _summary(out)}
    assert rows["euclidean"]["status"] == "ok"
    assert rows["ml_mmc"]["status"] == f"failed: peer python not found: {missing}"

    code, out = _run(tmp_path, "--datasets", "iris", "--learners", "euclidean,ml_mmc",
                     "--repeats", "1", "--no-plots", out="out2")
    assert code == 0
    rows = {r["learner"]: r for r in _summary(out)}
    assert rows["ml_mmc"]["status"].startswith("skipped")


def test_peer_timeout_is_reported(tmp_path):
    fake = _fake_python(tmp_path, "#!/bin/sh\nexec sleep 30\n")
    code, out = _run(tmp_path, "--datasets", "iris", "--learners", "ml_covariance",
                     "--repeats", "1", "--peer-python", fake, "--timeout", "1",
                     "--no-plots")
    assert code == 0
    (row,) = _summary(out)
    assert row["status"].startswith("timeout"), row["status"]


def test_missing_data_file_is_a_clear_message(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    # with another data set: the run goes on and says why letter was skipped
    code, out = _run(tmp_path, "--datasets", "iris,letter", "--learners",
                     "euclidean", "--repeats", "1", "--data-home", str(empty),
                     "--no-plots")
    assert code == 0
    assert [r["dataset"] for r in _summary(out)] == ["iris"]
    err = capsys.readouterr().err
    assert "letter" in err and "letter.npz" in err and str(empty) in err
    assert "letter.npz" in (out / "results.md").read_text()

    # alone, as the command line: exit with the message, no traceback
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--datasets", "letter",
         "--data-home", str(empty), "--out", str(tmp_path / "o3"), "--quiet"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "letter.npz" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_arguments_are_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_run.main(["--datasets", "nope", "--out", str(tmp_path)])
    assert "unknown data set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_run.main(["--learners", "nope", "--out", str(tmp_path)])
    assert "unknown learner" in capsys.readouterr().err


def test_clustering_report(tmp_path):
    code, out = _run(tmp_path, "--report", "clustering", "--datasets", "synthetic",
                     "--learners", "euclidean,ml_mmc", "--repeats", "1")
    assert code == 0
    text = (out / "clustering.md").read_text()
    assert "| synthetic | euclidean | baseline |" in text
    assert "skipped" in text  # ml_mmc without --peer-python
    assert (out / "clustering_synthetic.png").stat().st_size > 0


def test_synthetic_clusters_are_elongated():
    import _harness as H
    X, y = H.make_synthetic()
    assert X.shape == (300, 3)
    # raw k-means does not find the classes (it cuts along z)
    assert H.kmeans_ari(X, y) < 0.3
    # k-means on x alone does
    assert H.kmeans_ari(X[:, :1], y) > 0.9


def test_child_hanging_on_one_fit_is_killed_and_the_rest_goes_on(tmp_path):
    # a fake peer that speaks the worker protocol, fits the first item of its job
    # quickly and hangs on item 0 (the first split) only
    fake = _fake_python(tmp_path, f"""#!{sys.executable}
import json, sys, time
import numpy as np
job = json.load(open(sys.argv[2]))
def emit(o):
    print(json.dumps(o), flush=True)
emit({{"event": "ready", "versions": {{}}}})
emit({{"event": "warmup", "skipped": True}})
for item in job["items"]:
    emit({{"event": "start", "item": item["id"]}})
    if item["id"] == 0:
        time.sleep(60)
    d = np.load(item["data"])
    path = job["out"] + "/item%d.npz" % item["id"]
    np.savez(path, Z_train=d["X_train"], Z_test=d["X_test"])
    emit({{"event": "fit", "item": item["id"], "fit_time": 0.5, "peak_bytes": 2**20,
           "file": path}})
emit({{"event": "done"}})
""")
    code, out = _run(tmp_path, "--datasets", "iris", "--learners",
                     "euclidean,ml_covariance", "--repeats", "3", "--peer-python",
                     fake, "--timeout", "2", "--no-plots")
    assert code == 0
    records = json.loads((out / "results.json").read_text())["records"]
    peer = [r for r in records if r["learner"] == "ml_covariance"]
    base = [r for r in records if r["learner"] == "euclidean"]
    assert [r["repeat"] for r in peer] == [0, 1, 2]
    assert peer[0]["status"].startswith("timeout")
    assert [r["status"] for r in peer[1:]] == ["ok", "ok"]
    # identity transform: same error as the baseline on the same split
    assert [r["error"] for r in peer[1:]] == [r["error"] for r in base[1:]]
    assert peer[1]["fit_time"] == 0.5 and peer[1]["peak_mem_mb"] == 1.0


def test_paper_protocol_deskews_mnist(monkeypatch):
    # The paper protocol's mnist: deskewed images, / 255, PCA to 164 fitted on the
    # training images; the quick protocol does not deskew.  A stand-in for the
    # data file (200 + 50 random images) keeps the test fast.
    import _harness
    import mahal.datasets as mds
    from sklearn.decomposition import PCA
    from sklearn.utils import Bunch

    rng = np.random.RandomState(0)
    sparse = lambda n: rng.randint(0, 256, (n, 784)) * (rng.rand(n, 784) < .2)  # noqa: E731
    raw = Bunch(X_train=sparse(200).astype(float), X_test=sparse(50).astype(float),
                y_train=rng.randint(0, 10, 200), y_test=rng.randint(0, 10, 50))
    calls = []

    def fake_load(name, data_home=None, random_state=0, download_if_missing=True,
                  deskew=False):
        calls.append((name, deskew))
        if not deskew:
            return raw
        return Bunch(**{**raw, "X_train": mds.deskew(raw.X_train),
                        "X_test": mds.deskew(raw.X_test)})

    monkeypatch.setattr(mds, "load_dataset", fake_load)
    split, = _harness.load_splits("mnist", "paper")
    assert calls == [("mnist", True)]
    pca = PCA(n_components=164, random_state=0).fit(mds.deskew(raw.X_train) / 255.0)
    np.testing.assert_allclose(split["Xtr"], pca.transform(mds.deskew(raw.X_train) / 255.0),
                               atol=1e-10)
    np.testing.assert_allclose(split["Xte"], pca.transform(mds.deskew(raw.X_test) / 255.0),
                               atol=1e-10)
    assert "deskewed" in _harness.preprocessing_for("mnist", "paper")
    _harness.load_splits("mnist", "quick")
    assert calls[-1] == ("mnist", False)


def test_scale_growth_exponent_is_the_log_log_slope():
    import scale

    # time per iteration t = 2e-9 n²  in memory, 3e-7 n^1.5 on the cluster
    rows = [("LMNN", n, mode, c * n ** p, 0.0, 0, None, 1.0, 0.0)
            for mode, c, p in (("memory", 2e-9, 2.0), ("cluster", 3e-7, 1.5))
            for n in (10_000, 100_000, 1_000_000)]
    slopes = {(mode, n1): s for _, mode, n1, _, s in scale.growth(rows)}
    assert len(slopes) == 4
    for n1 in (10_000, 100_000):
        assert slopes[("memory", n1)] == pytest.approx(2.0)
        assert slopes[("cluster", n1)] == pytest.approx(1.5)


def test_worker_builds_an_estimator_parameter_from_its_spec():
    # lmnn_multimetric's metric_learner is a spec {"estimator": ..., "params": ...}
    # (a learner spec travels as JSON), built as that mahal estimator
    import _harness
    import _worker

    spec = _harness.mahal_learners()["lmnn_multimetric"].spec()
    json.dumps(spec)  # (what the harness sends the worker)
    factory, _ = _worker._make(spec)
    est = factory(7)
    assert type(est.metric_learner).__name__ == "LMNN"
    assert est.metric_learner.get_params()["n_neighbors"] == 5
    assert est.get_params()["n_neighbors"] == 3 and est.random_state == 7
