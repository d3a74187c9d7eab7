"""LFDA: mahal vs metric-learn 0.7, fit time in alternating rounds, on the same arrays.

The harness (``run.py``) fits each fixed-split data set once per learner; on a shared
machine one fit is noisy. Here each round runs one child process per library (mahal
under this interpreter, metric-learn under ``--peer-python``), each fitting the same
training set ``--fits`` times after a warm-up fit on 200 points; a round's time is
the child's best fit, and the rounds alternate between the libraries. Reported: 3-NN
test error (Euclidean, and on each library's transformation), the
median over rounds of each library's time, the median of the per-round ratios
(metric-learn / mahal), and whether metric-learn's transformation is finite (its
failures: NaN components, exceptions). Both with default parameters
(``n_components = n_features``, 'weighted'; k: mahal 7, metric-learn
``min(7, n_features − 1)``).

Data (the harness's preprocessing, ``_harness.load_splits``): digits (quick protocol,
standardised, split seed 0), isolet617 (isolet standardised, 617 features; and its
first 5 and 20 points per class of a random permutation, fewer points than
features, standardised on them), and the
paper protocol's letter, isolet (PCA 172) and mnist (first ``--mnist-train`` training
points, PCA 164).

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/lfda_vs_peers.py \\
        --peer-python /work/peers/bin/python --data-home /path/to/npz

(BLAS threads: set them equal for both, e.g. one, on a shared machine.)
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as H  # noqa: E402

CHILD = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
lib, path, fits = sys.argv[1], sys.argv[2], int(sys.argv[3])
if lib == "mahal":
    from mahal import LFDA
else:
    from metric_learn import LFDA
d = np.load(path)
X, y = d["X"], d["y"]
from sklearn.neighbors import KNeighborsClassifier
idx = np.concatenate([np.flatnonzero(y == c)[:20] for c in np.unique(y)])
try:
    LFDA().fit(X[idx], y[idx])
except Exception:
    pass
times, status, error = [], "ok", None
for _ in range(fits):
    t = time.perf_counter()
    try:
        est = LFDA().fit(X, y)
    except Exception as exc:
        status = "failed: %s: %s" % (type(exc).__name__, str(exc)[:80])
        break
    times.append(time.perf_counter() - t)
    if not np.all(np.isfinite(est.components_)):
        status = "failed: non-finite components"
if status == "ok":
    L = est.components_
    knn = KNeighborsClassifier(3).fit(X @ L.T, y)
    error = 1.0 - knn.score(d["X_test"] @ L.T, d["y_test"])
print(json.dumps({"times": times, "status": status, "error": error}))
"""


def _fewer_points(s, per_class, seed=0):
    """The first ``per_class`` points of each class of a random permutation of the
    training set, standardised again on them (more features than points)."""
    from sklearn.preprocessing import StandardScaler
    rng = np.random.default_rng(seed)
    y = s["ytr"]
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class]
                          for c in np.unique(y)])
    sc = StandardScaler().fit(s["Xtr"][idx])
    return {"Xtr": sc.transform(s["Xtr"][idx]), "ytr": y[idx],
            "Xte": sc.transform(s["Xte"]), "yte": s["yte"]}


def _datasets(data_home, mnist_train):
    yield "digits", H.load_splits("digits", "quick", 1, 0, data_home)[0]
    isolet = H.load_splits("isolet", "quick", 1, 0, data_home)[0]
    yield "isolet617", isolet
    for per_class in (5, 20):   # d = 617 > n
        yield f"isolet617, {per_class} per class", _fewer_points(isolet, per_class)
    for name in ("letter", "isolet", "mnist"):
        yield name, H.load_splits(name, "paper", 1, 0, data_home, mnist_train)[0]


def _child(python, lib, path, fits):
    env = dict(os.environ)
    if python != sys.executable:
        env.pop("PYTHONPATH", None)
    out = subprocess.run([python, "-c", CHILD, lib, path, str(fits)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"times": [], "status": f"failed: exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-python", required=True)
    p.add_argument("--data-home", default=None)
    p.add_argument("--mnist-train", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fits", type=int, default=3)
    args = p.parse_args(argv)
    print("| data set | n×d | 3-NN error: Euclidean / mahal / metric-learn | mahal (s) "
          "| metric-learn (s) | metric-learn / mahal | metric-learn status |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in _datasets(args.data_home, args.mnist_train):
            path = os.path.join(tmp, f"{name}.npz")
            np.savez(path, X=s["Xtr"], y=s["ytr"], X_test=s["Xte"], y_test=s["yte"])
            ours, peer, ratios, status = [], [], [], "ok"
            errors = [H.knn_error(s["Xtr"], s["ytr"], s["Xte"], s["yte"]), None, None]
            for _ in range(args.rounds):
                a = _child(sys.executable, "mahal", path, args.fits)
                b = _child(args.peer_python, "ml", path, args.fits)
                if a["status"] != "ok":
                    raise RuntimeError(f"mahal's LFDA failed on {name}: {a['status']}")
                ours.append(min(a["times"]))
                errors[1:] = a["error"], b.get("error")
                if b["status"] != "ok":
                    status = b["status"]
                if b["times"]:
                    peer.append(min(b["times"]))
                    ratios.append(peer[-1] / ours[-1])
            med = (lambda xs: f"{statistics.median(xs):.3f}" if xs else "—")
            err = " / ".join("—" if e is None else f"{e:.3f}" for e in errors)
            print(f"| {name} | {s['Xtr'].shape[0]}×{s['Xtr'].shape[1]} | {err} "
                  f"| {med(ours)} "
                  f"| {med(peer)} | "
                  f"{'×%.2f' % statistics.median(ratios) if ratios else '—'} "
                  f"| {status} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
