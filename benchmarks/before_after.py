"""LMNN and MMC_Supervised before and after a change: same objectives, fit times.

Runs the same fits with two checkouts of mahal — ``--before`` (a path to another
checkout, e.g. ``git worktree add /tmp/before bba09a1``) and this one — alternating
in fresh child processes (one child per checkout and data set per round), so that a
load change on the shared machine hits both. Every child fits once on the data set
as a warm-up (compiling or loading kernels), then ``--fits`` timed fits; reported
are the median time per checkout over all rounds, the ratio before / after (> 1:
the change made it faster), and each result's objective, computed here by this
checkout's code on both results:

- LMNN: ``LMNN(n_neighbors=3, max_iter=50, tol=1e-5, n_jobs=-1)`` (the settings
  both versions take with the same meaning); the exact loss with μ = 0.5 and the
  input-space target neighbours;
- MMC_Supervised: ``MMC_Supervised(random_state=0, n_jobs=-1)`` (0.1.0 has no
  ``n_jobs``: it is left out there); the objective ``Σ_D ‖δ‖_A`` over all pairs of
  the training set, with the constraint value ``Σ_S ‖δ‖²_A`` beside it.

Data: standardised iris, wine, digits (scikit-learn's copies) and letter
(``$MAHAL_DATA/letter.npz``, the first 16000 rows).

Usage::

    git worktree add /tmp/before bba09a1
    python benchmarks/before_after.py --before /tmp/before --rounds 3
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def load(name):
    from sklearn.preprocessing import StandardScaler
    if name == "letter":
        d = np.load(os.path.join(os.environ["MAHAL_DATA"], "letter.npz"))
        X, y = d["X"][:16000].astype(float), d["y"][:16000]
    else:
        from sklearn import datasets
        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    _, y = np.unique(y, return_inverse=True)
    return StandardScaler().fit_transform(X), y


def make(learner):
    import inspect
    import mahal
    if learner == "LMNN":
        return mahal.LMNN(n_neighbors=3, max_iter=50, tol=1e-5, n_jobs=-1)
    params = {"random_state": 0}
    if "n_jobs" in inspect.signature(mahal.MMC_Supervised).parameters:
        params["n_jobs"] = -1
    return mahal.MMC_Supervised(**params)


def child(learner, name, fits):
    import warnings
    X, y = load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make(learner).fit(X, y)  # warm-up
        times = []
        for _ in range(fits):
            est = make(learner)
            t0 = time.perf_counter()
            est.fit(X, y)
            times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "L": np.asarray(est.components_).tolist()}))


def objective(learner, L, X, y):
    if learner == "LMNN":
        sys.path.insert(0, HERE)
        from memory import objective as lmnn_objective  # (μ = 0.5, k = 3)
        return lmnn_objective(L, X, y), None
    Z = X @ L.T
    sq = (Z ** 2).sum(1)
    far = same = 0.0
    for s in range(0, len(y), 512):  # all pairs i < j, in row blocks
        D = np.maximum(sq[s:s + 512, None] + sq[None] - 2 * Z[s:s + 512] @ Z.T, 0)
        upper = np.arange(s, min(s + 512, len(y)))[:, None] < np.arange(len(y))[None]
        eq = y[s:s + 512, None] == y[None]
        far += np.sqrt(D[upper & ~eq]).sum()
        same += D[upper & eq].sum()
    return far, same


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=False)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fits", type=int, default=3)
    ap.add_argument("--datasets", default="iris,wine,digits,letter")
    ap.add_argument("--learners", default="LMNN,MMC_Supervised")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child[0], args.child[1], int(args.child[2]))
    if not args.before:
        ap.error("--before PATH is required")
    sides = {"before": os.path.abspath(args.before), "after": ROOT}
    print(f"# before: {sides['before']}  after: {ROOT}; load average "
          f"{os.getloadavg()[0]:.1f}; {args.rounds} rounds x {args.fits} fits")
    print(f"{'learner':<15} {'data':<7} {'before s':>9} {'after s':>9} {'ratio':>6}  "
          f"objective before / after")
    for learner in args.learners.split(","):
        for name in args.datasets.split(","):
            times = {"before": [], "after": []}
            Ls = {}
            for _ in range(args.rounds):
                for side, path in sides.items():
                    env = dict(os.environ, PYTHONPATH=path)
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", learner, name,
                         str(args.fits)], capture_output=True, text=True, env=env)
                    if out.returncode:
                        sys.exit(f"{side} {learner} {name} failed:\n{out.stderr[-3000:]}")
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    times[side] += res["times"]
                    Ls[side] = np.array(res["L"])
            X, y = load(name)
            objs = {s: objective(learner, Ls[s], X, y) for s in sides}
            tb, ta = np.median(times["before"]), np.median(times["after"])
            obj = " / ".join(f"{objs[s][0]:.6g}" + (f" (S {objs[s][1]:.4g})"
                                                    if objs[s][1] is not None else "")
                             for s in sides)
            print(f"{learner:<15} {name:<7} {tb:>9.3f} {ta:>9.3f} {tb / ta:>6.2f}  {obj}",
                  flush=True)


if __name__ == "__main__":
    main()
