"""First-fit latency: imports, numba compilation, cache.

Every measurement runs in a fresh Python process (``python cold_start.py --child
LEARNER``), with the package imported from this checkout:

* **cold**: ``NUMBA_CACHE_DIR`` points to a new, empty temporary directory, so every
  kernel the fit needs is compiled;
* **warm**: a second fresh process with that same (now filled) cache directory, as a
  user's second session.

Each child reports the time of ``import mahal`` plus the learner's module (numpy,
scikit-learn and numba included), the time of the first ``fit`` (after imports and
data loading; this is the figure with the compilation), the steady-state ``fit``
time (median of further fits in the same process). Data: standardised wine (178 × 13,
scikit-learn's copy) with its labels, for every public learner; the learners on tuples
fit 200 pairs (MMC, ITML, SDML, Contrastive), 200 triplets (TripletMargin, SCML), 200
quadruplets (LSML) or 40 chunklets of 2 (RCA) drawn from it (seed 0), their
``*_Supervised`` forms the labels. The last column says whether the first fit
imported numba (small problems run in plain NumPy without it; a process that keeps
fitting may load it later, when its NumPy budget is spent). Warnings (e.g.
``ConvergenceWarning``) are ignored.

With ``--profile``, the cold child also lists numba's compilation time (event API
``numba:compile``) per mahal function: its own compilation and that of the library
code (numpy overloads, string formatting of error messages, ...) compiled for it,
excluding the other mahal functions it calls (listed separately).

Usage::

    PYTHONPATH=$PWD python benchmarks/cold_start.py            # all learners
    PYTHONPATH=$PWD python benchmarks/cold_start.py LMNN --profile
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# Every public learner of mahal (mahal._PUBLIC less Constraints, MahalanobisDistance,
# load_dataset), by the input it fits on (see _data).
_INPUT = {
    "LMNN": "labels", "LMNNEnergyClassifier": "labels", "Covariance": "points",
    "MMC": "pairs", "MMC_Supervised": "labels",
    "ITML": "pairs", "ITML_Supervised": "labels",
    "SDML": "pairs", "SDML_Supervised": "labels",
    "Contrastive": "pairs", "Contrastive_Supervised": "labels",
    "TripletMargin": "triplets", "TripletMargin_Supervised": "labels",
    "SCML": "triplets", "SCML_Supervised": "labels",
    "LSML": "quadruplets", "LSML_Supervised": "labels",
    "RCA": "chunklets", "RCA_Supervised": "labels",
    "NCA": "labels", "MLKR": "targets", "LFDA": "labels",
    "NCMML": "labels", "PrototypeClassifier": "labels",
}
LEARNERS = tuple(_INPUT)


def _data(name):
    """Arguments of ``fit`` for learner ``name``: standardised wine, or tuples drawn
    from it with seed 0 (200 pairs, 200 triplets, 200 quadruplets, 40 chunklets)."""
    import numpy as np
    from sklearn.datasets import load_wine
    from sklearn.preprocessing import StandardScaler

    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    kind = _INPUT[name]
    rng = np.random.default_rng(0)
    if kind == "labels":
        return X, y
    if kind == "points":
        return (X,)
    if kind == "targets":           # MLKR is a regressor: the label as a number
        return X, y.astype(float)
    if kind == "chunklets":
        from mahal import Constraints
        return X, Constraints(y).chunks(n_chunks=40, chunk_size=2, random_state=0)
    i, j, k, m = rng.integers(0, X.shape[0], size=(4, 2000))
    if kind == "pairs":
        keep = (i != j).nonzero()[0][:200]
        i, j = i[keep], j[keep]
        return np.stack([X[i], X[j]], axis=1), np.where(y[i] == y[j], 1, -1)
    # anchor i, a classmate j, a point k of another class (and m, classmate of k)
    keep = ((i != j) & (y[i] == y[j]) & (y[k] != y[i])).nonzero()[0][:200]
    if kind == "triplets":
        return (np.stack([X[i[keep]], X[j[keep]], X[k[keep]]], axis=1),)
    keep = ((i != j) & (y[i] == y[j]) & (y[k] != y[m])).nonzero()[0][:200]
    return (np.stack([X[i[keep]], X[j[keep]], X[k[keep]], X[m[keep]]], axis=1),)


def _profile():
    """Register a numba compile listener; returns the dict it fills: per mahal
    function, the seconds of its compilations (each compilation's own time, nested
    compilations excluded, added to the nearest mahal function it was compiled for)."""
    from numba.core import event

    totals = {}
    stack = []  # [name, start, seconds of nested compilations]

    class Listener(event.Listener):
        def on_start(self, ev):
            f = getattr(ev.data["dispatcher"], "py_func", None)
            name = f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', '?')}"
            stack.append([name, time.thread_time(), 0.0])

        def on_end(self, ev):
            name, t0, nested = stack.pop()
            inclusive = time.thread_time() - t0
            if stack:
                stack[-1][2] += inclusive
            owner = next((s[0] for s in reversed(stack + [[name]])
                          if s[0].startswith("mahal.")), name)
            totals[owner] = totals.get(owner, 0.0) + inclusive - nested

    event.register("numba:compile", Listener())
    return totals


def child(name, repeats, profile):
    import warnings

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    import mahal

    cls = getattr(mahal, name)
    t_import = time.perf_counter() - t0
    data = _data(name)
    events = _profile() if profile else None
    params = {"random_state": 0} if "random_state" in cls().get_params() else {}
    t = time.perf_counter()
    cls(**params).fit(*data)
    t_first = time.perf_counter() - t
    numba_first = "numba" in sys.modules
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        cls(**params).fit(*data)
        times.append(time.perf_counter() - t)
    times.sort()
    out = {"import": t_import, "first": t_first,
           "steady": times[len(times) // 2] if times else float("nan"),
           "numba": numba_first}
    if events is not None:
        out["compile"] = events
    print(json.dumps(out))


def run_child(name, cache, repeats, profile):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    res = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name,
                          "--repeats", str(repeats)] + (["--profile"] if profile else []),
                         env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{name}: child failed\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("learners", nargs="*", default=LEARNERS)
    ap.add_argument("--repeats", type=int, default=5,
                    help="fits after the first, for the steady-state median")
    ap.add_argument("--profile", action="store_true",
                    help="list numba compilations of the cold fit")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.repeats, args.profile)
    print(f"{'learner':24s} {'import':>7s} {'cold 1st':>9s} {'warm 1st':>9s} "
          f"{'steady':>8s} {'numba':>6s}   (seconds; fresh process each)")
    for name in args.learners:
        cache = tempfile.mkdtemp(prefix="mahal-numba-cache-")
        try:
            cold = run_child(name, cache, args.repeats, args.profile)
            warm = run_child(name, cache, args.repeats, False)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        print(f"{name:24s} {warm['import']:7.2f} {cold['first']:9.2f} "
              f"{warm['first']:9.3f} {warm['steady']:8.4f} "
              f"{'yes' if warm['numba'] else 'no':>6s}", flush=True)
        if args.profile:
            comp = cold["compile"]
            print(f"    {sum(comp.values()):7.3f}  compiling, in all; by function "
                  "(with the library code compiled for it):")
            for fn, sec in sorted(comp.items(), key=lambda e: -e[1]):
                print(f"    {sec:7.3f}  {fn}")


if __name__ == "__main__":
    main()
