"""MMC_Supervised: mahal vs metric-learn 0.7 on digits, measured in the same run.

Data: sklearn's load_digits, 70/30 stratified split (random_state=0), StandardScaler
fitted on the training part. Both libraries fit with default parameters (and
random_state=0). metric-learn runs in its own virtualenv (it does not import with the
current scikit-learn) on the same arrays, saved to an npz file.

Reports fit time (mahal: first fit, which may include numba compilation, and the best
of a few repeated fits), the speed ratio, 3-NN test error and k-means ARI
(n_clusters=10) on the transformed test set, the rank of A and the MMC objective reached
on all training pairs, next to the Euclidean baseline.

Usage::

    python benchmarks/mmc_vs_metric_learn.py [--peer-python /work/peer-venv/bin/python]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

PEER_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from metric_learn import MMC_Supervised
data = np.load(sys.argv[1])
t = time.perf_counter()
m = MMC_Supervised(random_state=0).fit(data["X_train"], data["y_train"])
fit_time = time.perf_counter() - t
np.savez(sys.argv[2], Z_train=m.transform(data["X_train"]),
         Z_test=m.transform(data["X_test"]), A=m.get_mahalanobis_matrix())
print(json.dumps({"fit_time": fit_time}))
"""


def scores(Z_train, y_train, Z_test, y_test):
    knn = KNeighborsClassifier(n_neighbors=3).fit(Z_train, y_train)
    err = 1.0 - knn.score(Z_test, y_test)
    labels = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(Z_test)
    return err, adjusted_rand_score(y_test, labels)


def mmc_objective(Z_train, y_train):
    """MMC objective over all training pairs, rescaled to the constraint:
    Σ_D ‖δ‖_A / sqrt(Σ_S ‖δ‖²_A) (the value of A / Σ_S d_A, which is feasible)."""
    from sklearn.metrics import pairwise_distances

    dist = pairwise_distances(Z_train)
    same = y_train[:, None] == y_train[None, :]
    upper = np.triu(np.ones_like(same), 1)
    return dist[~same & upper].sum() / np.sqrt((dist[same & upper] ** 2).sum())


def rank(A, rtol=1e-6):
    w = np.linalg.eigvalsh(A)
    return int(np.sum(w > rtol * w.max()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default="/work/peer-venv/bin/python")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-blas-threads", type=int, default=None,
                        help="set OPENBLAS/OMP/MKL_NUM_THREADS for metric-learn (mahal "
                             "fits with single-threaded BLAS; default: inherit)")
    args = parser.parse_args()

    from mahal import MMC_Supervised

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

    rows = {}
    err, ari = scores(X_train, y_train, X_test, y_test)
    rows["Euclidean"] = dict(fit_time=float("nan"), err=err, ari=ari, rank=X.shape[1],
                             obj=mmc_objective(X_train, y_train))

    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "digits.npz")
        out_path = os.path.join(tmp, "peer_out.npz")
        np.savez(data_path, X_train=X_train, y_train=y_train, X_test=X_test)
        env = dict(os.environ)
        if args.peer_blas_threads is not None:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(args.peer_blas_threads)
        proc = subprocess.run([args.peer_python, "-c", PEER_SCRIPT, data_path, out_path],
                              capture_output=True, text=True, check=True, env=env)
        peer = json.loads(proc.stdout.strip().splitlines()[-1])
        out = np.load(out_path)
        err, ari = scores(out["Z_train"], y_train, out["Z_test"], y_test)
        rows["metric-learn 0.7"] = dict(fit_time=peer["fit_time"], err=err, ari=ari,
                                        rank=rank(out["A"]),
                                        obj=mmc_objective(out["Z_train"], y_train))

    times = []
    for _ in range(args.repeats):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = time.perf_counter()
            model = MMC_Supervised(random_state=0).fit(X_train, y_train)
            times.append(time.perf_counter() - t)
    err, ari = scores(model.transform(X_train), y_train, model.transform(X_test),
                      y_test)
    rows["mahal"] = dict(fit_time=min(times), err=err, ari=ari,
                         rank=rank(model.get_mahalanobis_matrix()),
                         obj=mmc_objective(model.transform(X_train), y_train))

    print(f"digits: {X_train.shape[0]} train / {X_test.shape[0]} test, "
          f"{X.shape[1]} features; metric-learn BLAS threads: "
          f"{args.peer_blas_threads or 'inherited'}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'method':<18}{'fit (s)':>10}{'3-NN err':>10}{'ARI':>8}{'rank A':>8}"
          f"{'MMC objective':>15}")
    for name, r in rows.items():
        print(f"{name:<18}{r['fit_time']:>10.3f}{r['err']:>10.3%}{r['ari']:>8.3f}"
              f"{r['rank']:>8d}{r['obj']:>15.2f}")
    print("(MMC objective: Σ_D ‖δ‖_A / sqrt(Σ_S ‖δ‖²_A) over all training pairs; "
          "higher is better)")
    print(f"mahal first fit (incl. any numba compilation): {times[0]:.3f} s; "
          f"n_iter_={model.n_iter_}; warnings: "
          f"{sorted({type(w.message).__name__ for w in caught}) or 'none'}")
    ratio = rows["metric-learn 0.7"]["fit_time"] / rows["mahal"]["fit_time"]
    print(f"speed-up (metric-learn / mahal best): {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
