"""LMNN's defaults and stopping rule: old against new, and against pylmnn.

Data: the quick suite (iris, wine, balance, breast_cancer, digits) in 5-fold
stratified cross-validation (shuffled, seed 0), and letter on its fixed split
(first 16000 rows train); features standardised on each training fold. Per fold,
three mahal fits (one thread, after a warm-up fit):

- ``old``: the defaults of 0.1.0 (``max_iter=50, tol=1e-5``, a stage stopping on
  one iteration's relative decrease: the same solver with a window of 1);
- ``window``: the defaults of the first converging release (``max_iter=1000,
  tol=1e-5``, the decrease averaged over 10 iterations);
- ``new``: today's defaults (``window``'s, and a stage also stops when the objective
  fell by less than ``0.1 · tol`` in all over 3 iterations);
- ``long``: ``max_iter=3000, tol=0`` (no decrease test: runs until the line search
  fails or 3000 iterations), the reference optimum of the gaps.

Reported per data set: iterations (range over the folds), fit time (sum over the
folds, old and new fits alternating), the largest and mean relative gap of the
objective to ``long``'s on the same fold, the mean 3-NN test error, and the
number of ``ConvergenceWarning``s. The objective is mahal's exact loss (k = 3,
μ = 0.5) with the input-space target neighbours.

With ``--peer`` (pylmnn 1.6.4 under $PEER_PYTHON, default
``/work/peers/bin/python``): pylmnn at its defaults (``max_iter=50``) on each
fold, its time, its solution's objective (the same loss) and error; and the time
mahal's default fit takes to reach that objective (the time of the first
iteration whose exact objective is at most pylmnn's, from a second fit whose
``callback`` records every iterate; "-" if it never does).

Usage::

    python benchmarks/lmnn_convergence.py                    # quick suite + letter
    python benchmarks/lmnn_convergence.py wine digits --peer
    python benchmarks/lmnn_convergence.py --folds 2 letter   # the first 2 folds only
"""

import argparse
import os
import sys
import time
import warnings
from contextlib import contextmanager

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
os.environ.setdefault("PEER_PYTHON", "/work/peers/bin/python")

from lmnn_speed import knn_error, run_peer, warm_up  # noqa: E402

DATASETS = ("iris", "wine", "balance", "breast_cancer", "digits", "letter")
CONFIGS = {
    "old": dict(params=dict(max_iter=50, tol=1e-5), window=1, stall=None),
    "window": dict(params={}, window=None, stall=None),
    "new": dict(params={}, window=None, stall="default"),
    "long": dict(params=dict(max_iter=3000, tol=0.0), window=None, stall="default"),
}


def folds(name, n_folds=5):
    """``[(Xtr, ytr, Xte, yte), ...]``, standardised on the training part."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    from mahal.datasets import load_dataset

    b = load_dataset(name, download_if_missing=False)
    if name == "letter":
        splits = [(b.X_train, b.y_train, b.X_test, b.y_test)]
    else:
        X = np.vstack([b.X_train, b.X_test])
        y = np.concatenate([b.y_train, b.y_test])
        cv = StratifiedKFold(n_folds, shuffle=True, random_state=0)
        splits = [(X[tr], y[tr], X[te], y[te]) for tr, te in cv.split(X, y)]
    out = []
    for Xtr, ytr, Xte, yte in splits:
        sc = StandardScaler().fit(Xtr)
        out.append((sc.transform(Xtr), np.asarray(ytr), sc.transform(Xte),
                    np.asarray(yte)))
    return out


@contextmanager
def solver_rule(window, stall):
    """The solver's averaging window (None: unchanged) and stall test ("default":
    unchanged, None: none) for the duration."""
    from mahal import _lmnn_solver

    saved = _lmnn_solver._WINDOW, _lmnn_solver._STALL
    if window is not None:
        _lmnn_solver._WINDOW = window
    if stall != "default":
        _lmnn_solver._STALL = stall
    try:
        yield
    finally:
        _lmnn_solver._WINDOW, _lmnn_solver._STALL = saved


def objective(L, Xtr, ytr, targets):
    from mahal._lmnn_problem import lmnn_loss_grad

    return lmnn_loss_grad(L, Xtr, ytr, targets, 0.5)[0]


def fit(config, Xtr, ytr, Xte, yte, targets):
    from sklearn.exceptions import ConvergenceWarning

    from mahal import LMNN

    with warnings.catch_warnings(record=True) as caught, \
            solver_rule(config["window"], config["stall"]):
        warnings.simplefilter("always", ConvergenceWarning)
        t = time.perf_counter()
        m = LMNN(n_jobs=1, **config["params"]).fit(Xtr, ytr)
        t = time.perf_counter() - t
    n_warn = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return dict(n_iter=m.n_iter_, time=t, warnings=n_warn,
                obj=objective(m.components_, Xtr, ytr, targets),
                err=knn_error(m.transform(Xtr), ytr, m.transform(Xte), yte))


def time_to_objective(target, Xtr, ytr, targets):
    """Seconds until mahal's default fit first reaches ``target`` (exact
    objective), or None (the fit's ``callback`` records every iterate)."""
    from mahal import LMNN

    log = []
    t0 = time.perf_counter()
    LMNN(n_jobs=1, callback=lambda L, n_iter: log.append(
        (time.perf_counter() - t0, L))).fit(Xtr, ytr)
    for t, L in log:
        if objective(L, Xtr, ytr, targets) <= target:
            return t
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("datasets", nargs="*", default=list(DATASETS))
    ap.add_argument("--folds", type=int, default=5,
                    help="run only the first FOLDS of the 5 folds")
    ap.add_argument("--peer", action="store_true", help="also pylmnn")
    a = ap.parse_args()
    from mahal._lmnn_neighbors import select_target_neighbors

    print(f"warm-up (numba compile/cache load): {warm_up():.2f} s")
    print(f"{'data':13} {'config':6} {'iter':>9} {'time s':>8} {'gap max':>9} "
          f"{'gap mean':>9} {'err%':>6} {'warn':>4}")
    for name in a.datasets:
        rows = {c: [] for c in CONFIGS}
        peer = []
        for Xtr, ytr, Xte, yte in folds(name)[:a.folds]:
            y_enc = np.unique(ytr, return_inverse=True)[1].astype(np.int64)
            targets = select_target_neighbors(Xtr, y_enc, 3)
            for c, config in CONFIGS.items():
                rows[c].append(fit(config, Xtr, ytr, Xte, yte, targets))
            if a.peer:
                pr = run_peer(Xtr, ytr, Xte, yte)
                f_peer = objective(pr["L"], Xtr, ytr, targets)
                peer.append(dict(time=pr["time"], n_iter=pr["n_iter"], obj=f_peer,
                                 err=pr["err"], reach=time_to_objective(
                                     f_peer, Xtr, ytr, targets)))
        f_long = np.array([r["obj"] for r in rows["long"]])
        for c, rs in rows.items():
            its = [r["n_iter"] for r in rs]
            gap = (np.array([r["obj"] for r in rs]) - f_long) / f_long
            print(f"{name:13} {c:6} {min(its):4}-{max(its):<4} "
                  f"{sum(r['time'] for r in rs):8.2f} {gap.max():9.1e} "
                  f"{gap.mean():9.1e} {100 * np.mean([r['err'] for r in rs]):6.2f} "
                  f"{sum(r['warnings'] for r in rs):4}")
        if peer:
            gap = (np.array([p["obj"] for p in peer]) - f_long) / f_long
            reach = [p["reach"] for p in peer]
            reached = ("-" if any(t is None for t in reach)
                       else f"{sum(reach):.2f}")
            print(f"{name:13} {'pylmnn':6} {min(p['n_iter'] for p in peer):4}-"
                  f"{max(p['n_iter'] for p in peer):<4} "
                  f"{sum(p['time'] for p in peer):8.2f} {gap.max():9.1e} "
                  f"{gap.mean():9.1e} {100 * np.mean([p['err'] for p in peer]):6.2f}"
                  f"      mahal to pylmnn's objective: {reached} s "
                  f"(per fold: {', '.join('-' if t is None else f'{t:.3f}' for t in reach)})")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
