#!/usr/bin/env python
"""SDML: mahal vs metric-learn 0.7 on the same pairs, measured in the same run.

metric-learn 0.7's SDML calls ``sklearn.covariance.graphical_lasso(..., cov_init=...)``,
an argument scikit-learn has since removed: with the peers' scikit-learn (1.5) every
fit raises ("got an unexpected keyword argument 'cov_init'"), whatever the data. The
harness (``run.py``, rows ``ml_sdml``) reports metric-learn as installed. To measure its
*algorithm*, this script also runs it with a shim: ``metric_learn.sdml.graphical_lasso``
replaced by scikit-learn's ``_graphical_lasso`` with ``cov_init`` (the function the old
public one wrapped), so that metric-learn runs as it did with the scikit-learn it was
written for.

For each data set (quick protocol: split 0, standardised; letter: its fixed split), the
pairs are sampled once (mahal's ``Constraints``, ``20 · n_classes²`` of each kind, as
``SDML_Supervised``'s default) and both libraries fit ``SDML`` on them, with
``balance_param`` 0.5 (metric-learn's default; ``P`` is then indefinite) and 1e-5
(``P`` positive definite on all these data sets). Reported: fit time of each (best of
``--repeats``; mahal timed before and after the peer's child process), the ratio, the
SDML objective ``tr(M P) − log det M + λ Σ_{i≠j} |M_ij|`` of each learned ``M`` on the
``P`` of the given ``balance_param`` (for mahal's repaired fits, on the ``P`` it solved:
the given one is unbounded below), and the 3-NN test error in each learned space.
Then ``SDML_Supervised`` end to end (``sup``; each library samples its own pairs, with
``random_state=0``), with the same two ``balance_param``: fit time and 3-NN error.

Usage::

    PYTHONPATH=. python benchmarks/sdml_vs_peers.py --peer-python /work/peers/bin/python
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
import metric_learn
from metric_learn import SDML, SDML_Supervised
shim = sys.argv[3] == "shim"
if shim:
    from sklearn.covariance._graph_lasso import _graphical_lasso

    def graphical_lasso(emp_cov, alpha, verbose=False, cov_init=None):
        return _graphical_lasso(emp_cov, alpha, cov_init=cov_init, verbose=verbose)[:2]

    metric_learn.sdml.graphical_lasso = graphical_lasso
d = np.load(sys.argv[1])
repeats = int(d["repeats"])
out, res = {}, {}
for eta in d["etas"]:
    key = f"pairs_{eta:g}"
    times, M, err = [], None, None
    for _ in range(repeats):
        try:
            t = time.perf_counter()
            m = SDML(balance_param=float(eta)).fit(d["pairs"], d["y"])
            times.append(time.perf_counter() - t)
            M = m.get_mahalanobis_matrix()
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"
            break
    res[key] = {"time": min(times) if times else None, "error": err}
    if M is not None:
        out[key] = M
    key = f"sup_{eta:g}"
    times, err = [], None
    for _ in range(repeats):
        try:
            t = time.perf_counter()
            m = SDML_Supervised(balance_param=float(eta), random_state=0).fit(
                d["X_train"], d["y_train"])
            times.append(time.perf_counter() - t)
            out[key] = m.get_mahalanobis_matrix()
        except Exception as exc:
            err = f"{type(exc).__name__}: {exc}"
            break
    res[key] = {"time": min(times) if times else None, "error": err}
np.savez(sys.argv[2], **out)
print(json.dumps(res))
"""


def short_error(msg):
    """metric-learn's long RuntimeError, in a few words."""
    if "cov_init" in msg:
        return "TypeError: graphical_lasso() got an unexpected keyword 'cov_init'"
    if "problem in SDML" in msg:
        return "RuntimeError: graphical lasso failed (non-finite or non-PSD result)"
    return msg[:80]


def knn_error(M, s):
    from mahal.linalg import components_from_metric
    G = components_from_metric(M)
    return H.knn_error(s["Xtr"] @ G.T, s["ytr"], s["Xte"] @ G.T, s["yte"], 3)


def best_time(fit, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - t)
    return min(times), model


def run_peer(python, path, mode):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npz")
        proc = subprocess.run([python, "-c", PEER_SCRIPT, path, out, mode],
                              capture_output=True, text=True,
                              env=H._child_env(python))
        if proc.returncode != 0:
            return {"failed": proc.stderr.strip().splitlines()[-1][:200]}, {}
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(out) as f:
            return res, dict(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default="/work/peers/bin/python")
    parser.add_argument("--datasets", default="iris,wine,balance,breast_cancer,digits,"
                        "letter")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from mahal import SDML, SDML_Supervised, reference
    from mahal.constraints import Constraints

    etas = (0.5, 1e-5)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"best of {args.repeats} fits; objective: tr(M P) − log det M + λ Σ|M_ij| "
          "(lower is better)")
    head = (f"{'data set':<14}{'fit':<12}{'mahal s':>9}{'ml s':>9}{'ml/mahal':>9}"
            f"{'obj mahal':>12}{'obj ml':>12}{'err mahal':>10}{'err ml':>9}  notes")
    print(head)
    for name in args.datasets.split(","):
        try:
            s = H.load_splits(name, "quick", 1, 0)[0]
        except H.DataMissing as exc:
            print(f"{name}: skipped: {exc}")
            continue
        n_classes = len(np.unique(s["ytr"]))
        a, b, c, d = Constraints(s["ytr"]).positive_negative_pairs(
            20 * n_classes ** 2, random_state=np.random.RandomState(0))
        X = s["Xtr"]
        pairs = np.concatenate([np.stack([X[a], X[b]], 1), np.stack([X[c], X[d]], 1)])
        y = np.concatenate([np.ones(len(a)), -np.ones(len(c))])
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "data.npz")
            np.savez(path, pairs=pairs, y=y, X_train=X, y_train=s["ytr"],
                     etas=np.array(etas), repeats=args.repeats)

            def mahal_fits():
                fits = {}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for eta in etas:
                        fits[f"pairs_{eta:g}"] = best_time(
                            lambda: SDML(balance_param=eta).fit(pairs, y), args.repeats)
                        fits[f"sup_{eta:g}"] = best_time(
                            lambda: SDML_Supervised(balance_param=eta, random_state=0
                                                    ).fit(X, s["ytr"]), args.repeats)
                return fits

            before = mahal_fits()
            peers = {mode: run_peer(args.peer_python, path, mode)
                     for mode in ("as_installed", "shim")}
            after = mahal_fits()
        for key in [f"{kind}_{eta:g}" for eta in etas for kind in ("pairs", "sup")]:
            t_mahal = min(before[key][0], after[key][0])
            model = after[key][1]
            M = model.get_mahalanobis_matrix()
            res, mats = peers["shim"]
            installed = peers["as_installed"][0].get(key, {})
            notes = []
            if installed.get("error"):
                notes.append("ml as installed: " + short_error(installed["error"]))
            peer = res.get(key, {})
            if key.startswith("pairs"):
                eta_given = float(key.split("_")[1])
                P = reference.sdml_matrix(pairs, y, np.eye(X.shape[1]),
                                          model.balance_param_)
                if model.balance_param_ != eta_given:
                    notes.append(f"mahal repaired balance_param to "
                                 f"{model.balance_param_:.3g}")
                obj_mahal = reference.sdml_objective(M, P, 0.01)
                P_given = reference.sdml_matrix(pairs, y, np.eye(X.shape[1]), eta_given)
                obj_ml = (reference.sdml_objective(mats[key], P_given, 0.01)
                          if key in mats else float("nan"))
            else:
                obj_mahal = obj_ml = float("nan")
            t_ml = peer.get("time") or float("nan")
            err_ml = knn_error(mats[key], s) if key in mats else float("nan")
            if peer.get("error"):
                notes.append("ml (shim): " + short_error(peer["error"]))
            print(f"{name:<14}{key:<12}{t_mahal:>9.4f}{t_ml:>9.4f}"
                  f"{t_ml / t_mahal:>9.2f}{obj_mahal:>12.5g}{obj_ml:>12.5g}"
                  f"{knn_error(M, s):>10.4f}{err_ml:>9.4f}  {'; '.join(notes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
