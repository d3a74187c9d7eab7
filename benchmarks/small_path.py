"""Steady-state fit time of small problems: the NumPy small path against the numba
kernels, alternating in one process.

The small path (:mod:`mahal._lmnn_dense`, with the NumPy twins of the L-BFGS steps in
:mod:`mahal._optimize`) is chosen by problem size; here its bounds are set to 0 for
the kernel fits, so both paths run the same solver on the same data. The column
``dense`` says whether the problem is within the bounds (else both fits take the
kernels, and the ratio measures noise). (A plain process uses the small path for its
first small fits only: ``mahal._lmnn_dense.in_budget``; here it is forced.) Prints, per data set and ``k``,
the median per-round ratio small / kernel of wall and process CPU time, and both
fits' objective (they should agree closely: the paths differ by rounding only).

Usage::

    PYTHONPATH=$PWD python benchmarks/small_path.py --rounds 11
"""

import argparse
import time
import warnings

import numpy as np


def _data(name):
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    if name.startswith("blobs"):  # blobsN: N points, 10 features, 3 classes
        n = int(name[5:] or 800)
        rng = np.random.default_rng(0)
        y = np.arange(n) % 3
        X = rng.normal(size=(n, 10)) + 1.5 * rng.normal(size=(3, 10))[y]
        return X, y
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="*", default=["iris", "wine", "breast_cancer", "blobs300",
                                                "blobs500", "blobs800"])
    ap.add_argument("--rounds", type=int, default=11)
    args = ap.parse_args()
    from mahal import LMNN, _lmnn_dense
    from mahal._lmnn_problem import lmnn_loss_grad

    bounds = {(_lmnn_dense, "_MAX_N"): _lmnn_dense._MAX_N,
              (_lmnn_dense, "_MAX_TARGET_ELEMS"): _lmnn_dense._MAX_TARGET_ELEMS}

    def fit(X, y, small):
        for (mod, name), value in bounds.items():
            setattr(mod, name, value if small else 0)
        # (the small path for every small fit here, whatever the process's budget)
        _lmnn_dense.in_budget = lambda: small
        w, c = time.perf_counter(), time.process_time()
        est = LMNN(random_state=0).fit(X, y)
        w, c = time.perf_counter() - w, time.process_time() - c
        f = lmnn_loss_grad(est.components_, X, y, est.target_neighbors_)[0]
        return w, c, f, est.n_iter_

    print(f"{'data':>14} {'n x d':>10} {'dense':>6} {'wall s/k':>9} {'cpu s/k':>8} "
          f"{'ms small':>9} {'ms kernel':>9} {'f small':>12} {'f kernel':>12} its")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.data:
            X, y = _data(name)
            fit(X, y, True)  # (the bounds as in a plain fit)
            dense = _lmnn_dense.use_dense(X.shape[0], 3, X.shape[1])
            fit(X, y, False)  # (both untimed once: compilation, caches)
            rw, rc, ts, tk = [], [], [], []
            for r in range(args.rounds):
                order = (True, False) if r % 2 else (False, True)
                res = {small: fit(X, y, small) for small in order}
                rw.append(res[True][0] / res[False][0])
                rc.append(res[True][1] / res[False][1])
                ts.append(res[True][0])
                tk.append(res[False][0])
            print(f"{name:>14} {f'{X.shape[0]}x{X.shape[1]}':>10} {dense!s:>6} "
                  f"{np.median(rw):9.2f} "
                  f"{np.median(rc):8.2f} {1e3 * np.median(ts):9.1f} "
                  f"{1e3 * np.median(tk):9.1f} {res[True][2]:12.6g} "
                  f"{res[False][2]:12.6g} {res[True][3]}/{res[False][3]}", flush=True)


if __name__ == "__main__":
    main()
