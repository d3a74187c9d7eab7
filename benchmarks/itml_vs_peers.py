"""ITML: mahal vs metric-learn 0.7 on the same pairs and bounds, in the same run.

For each data set (the harness's splits: digits 70/30 stratified with seed 0, letter's
fixed split; standardised on the training part), both libraries fit ``ITML`` (the pair
learner) on the same pairs — ``Constraints(y_train).positive_negative_pairs(20 ·
n_classes², random_state=0)``, metric-learn's default count for ``ITML_Supervised`` —
with the same bounds (metric-learn's default formula on the distinct training points:
the 5th and 95th percentiles of their Euclidean distances, given to both as ``bounds``,
so that metric-learn does not build the n × n distance matrix), the
identity prior and the default ``gamma``, ``max_iter`` and ``tol``. metric-learn runs in
its own virtualenv (``--peer-python``) on the same arrays, with one BLAS thread (mahal
fits with one thread).

Reported per library: fit time (mahal: before and after metric-learn, and the ratio to
each), sweeps done, the ITML objective (:func:`mahal._itml_solver.itml_objective`,
lower is better) of the learned matrix on those pairs, and the 3-NN test error in the
learned space.

Usage::

    python benchmarks/itml_vs_peers.py --peer-python /work/peers/bin/python \\
        [--datasets digits,letter] [--max-iter N]
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as H  # noqa: E402

PEER_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from metric_learn import ITML
d = np.load(sys.argv[1])
t = time.perf_counter()
m = ITML(gamma=float(d["gamma"]), max_iter=int(d["max_iter"]), tol=float(d["tol"]))
m.fit(d["pairs"], d["y"], bounds=d["bounds"])
fit_time = time.perf_counter() - t
np.save(sys.argv[2], m.get_mahalanobis_matrix())
print(json.dumps({"fit_time": fit_time, "n_iter": int(m.n_iter_)}))
"""


def knn_error_with(M, s):
    from mahal.linalg import components_from_metric
    G = components_from_metric(M)
    return H.knn_error(s["Xtr"] @ G.T, s["ytr"], s["Xte"] @ G.T, s["yte"], 3)


def run_peer(python, pairs, y, bounds, gamma, max_iter, tol, tmp):
    data = os.path.join(tmp, "itml_in.npz")
    out = os.path.join(tmp, "itml_out.npy")
    np.savez(data, pairs=pairs, y=y, bounds=bounds, gamma=gamma, max_iter=max_iter,
             tol=tol)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    proc = subprocess.run([python, "-c", PEER_SCRIPT, data, out], capture_output=True,
                          text=True, check=True, env=env)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    # (metric-learn's n_iter_ is the index of its last sweep: sweeps = n_iter_ + 1)
    return np.load(out), res["fit_time"], res["n_iter"] + 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default="/work/peers/bin/python")
    parser.add_argument("--datasets", default="digits,letter")
    parser.add_argument("--max-iter", type=int, default=1000)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--gamma", type=float, default=1.0)
    args = parser.parse_args(argv)

    from mahal import ITML
    from mahal._itml_solver import default_bounds, itml_objective
    from mahal.constraints import Constraints, wrap_pairs
    from sklearn.exceptions import ConvergenceWarning

    print(f"ITML, same pairs and bounds; gamma={args.gamma}, max_iter={args.max_iter}, "
          f"tol={args.tol}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'data set':<9}{'library':<14}{'pairs':>7}{'d':>4}{'fit (s)':>10}"
          f"{'sweeps':>8}{'objective':>18}{'3-NN err':>10}")
    for name in args.datasets.split(","):
        s = H.load_splits(name, "quick", 1, 0)[0]
        n_classes = np.unique(s["ytr"]).shape[0]
        abcd = Constraints(s["ytr"]).positive_negative_pairs(20 * n_classes ** 2,
                                                             random_state=0)
        pairs, y = wrap_pairs(s["Xtr"], abcd)
        d = pairs.shape[2]
        bounds = default_bounds(np.unique(s["Xtr"], axis=0), random_state=0)
        diffs, similar = pairs[:, 0] - pairs[:, 1], y == 1

        def fit_mahal():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t = time.perf_counter()
                est = ITML(gamma=args.gamma, max_iter=args.max_iter, tol=args.tol
                           ).fit(pairs, y, bounds=bounds)
                return est, time.perf_counter() - t

        fit_mahal()  # (warm-up: numba's cached kernel loaded; not timed)
        est, t_before = fit_mahal()
        with tempfile.TemporaryDirectory() as tmp:
            M_peer, t_peer, sweeps_peer = run_peer(args.peer_python, pairs, y, bounds,
                                                   args.gamma, args.max_iter, args.tol,
                                                   tmp)
        est2, t_after = fit_mahal()
        M = est.get_mahalanobis_matrix()
        assert np.array_equal(M, est2.get_mahalanobis_matrix())  # (deterministic)
        rows = [("mahal", t_before, est.n_iter_, M),
                ("metric-learn", t_peer, sweeps_peer, M_peer)]
        for lib, t, sweeps, A in rows:
            f = itml_objective(A, diffs, similar, bounds, args.gamma, np.eye(d))
            print(f"{name:<9}{lib:<14}{len(y):>7}{d:>4}{t:>10.3f}{sweeps:>8}"
                  f"  {f:>16.6f}{knn_error_with(A, s):>10.4f}")
        print(f"{name:<9}mahal again{'':>28}{t_after:>10.3f}   speed-up "
              f"{t_peer / t_before:.1f}x (before), {t_peer / t_after:.1f}x (after); "
              f"bounds {bounds[0]:.4g}, {bounds[1]:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
