"""NCMML's L-BFGS: mahal's line-oracle L-BFGS against scipy's L-BFGS-B.

The same objective (:func:`mahal._ncmml_solver.ncmml_loss_grad`), the same start
(``init='auto'`` of :class:`mahal.NCMML`) and the same stopping tolerance
(``ftol = 1e-5``, relative decrease per iteration; scipy's ``gtol`` set to 0 so
both stop on it). mahal's L-BFGS runs its line searches on the oracle
:class:`mahal._ncmml_solver.NCMMLLine` (a trial step costs ``O(n K r)``, ``X`` is
not touched); scipy's evaluates the full value and gradient at every trial point.
Reported per problem: the median time of each (fits alternating, one thread of
BLAS), their ratio, the final objectives and the iterations.

Problems: letter's 16 base classes (A–P, standardised on them; batch loss over
all their points), and isolet's 16 base classes (standardised, PCA-100; the
episodic loss on 500 5-way 1-shot episodes), as in ``benchmarks/fewshot.py``.

Usage::

    MAHAL_DATA=/path/to/datasets python benchmarks/ncmml_solver.py [--repeats 3]
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def problems(data_home):
    from fewshot import load
    from sklearn.utils import check_random_state

    from mahal.base import initialize_components
    from mahal.fewshot import sample_episodes

    out = {}
    d = load("letter", data_home)
    X, y = d["Xb"], np.unique(d["yb"], return_inverse=True)[1]
    means = np.array([X[y == c].mean(axis=0) for c in range(16)])
    L0 = initialize_components(16, X, y, "auto")
    out["letter batch"] = ((X, means, np.arange(16), y), L0)
    d = load("isolet", data_home)
    X, y = d["Xb"], np.unique(d["yb"], return_inverse=True)[1]
    ep = sample_episodes(y, 5, 1, 15, 500, check_random_state(0))
    protos = X[ep.support]                             # (E, 5, d): one shot
    yq = np.tile(np.repeat(np.arange(5), 15), (500, 1))
    cc = np.tile(np.arange(5), (500, 1))
    L0 = initialize_components(100, X, y, "auto")
    out["isolet episodic"] = ((X[ep.query], protos, cc, yq), L0)
    return out


def run_mahal(args, L0, tol):
    from mahal._ncmml_solver import ncmml_solve
    L, nit, _, info = ncmml_solve(*args, L0, max_iter=1000, tol=tol)
    return info["loss"], nit


def run_scipy(args, L0, tol):
    from scipy.optimize import minimize

    from mahal._ncmml_solver import ncmml_loss_grad
    res = minimize(lambda v: ncmml_loss_grad(v.reshape(L0.shape), *args), L0.ravel(),
                   jac=True, method="L-BFGS-B",
                   options={"ftol": tol, "gtol": 0.0, "maxiter": 1000})
    return res.fun, res.nit


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data-home", default=os.environ.get("MAHAL_DATA",
                                                         "/work/shared/datasets"))
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    print("| problem | mahal (s) | scipy (s) | scipy / mahal | objective mahal | "
          "objective scipy | iterations mahal / scipy |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with threadpool_limits(1, user_api="blas"):
        for name, (pargs, L0) in problems(args.data_home).items():
            times = {"mahal": [], "scipy": []}
            for _ in range(args.repeats):
                for who, fn in (("mahal", run_mahal), ("scipy", run_scipy)):
                    t0 = time.perf_counter()
                    f, nit = fn(pargs, L0, 1e-5)
                    times[who].append(time.perf_counter() - t0)
                    if who == "mahal":
                        fm, nm = f, nit
                    else:
                        fs, ns = f, nit
            tm, ts = np.median(times["mahal"]), np.median(times["scipy"])
            print(f"| {name} | {tm:.2f} | {ts:.2f} | {ts / tm:.2f} | {fm:.5f} | "
                  f"{fs:.5f} | {nm} / {ns} |", flush=True)


if __name__ == "__main__":
    main()
