"""Steady-state fit time with this checkout's kernels against another revision's.

Loads the kernel modules (``_lmnn_kernels``, ``_optimize``, ``_mmc_kernels``) of
``--against`` (a git revision) beside this checkout's, then fits alternately with
one set and the other (order swapped every round, a first round untimed) in this one
process, and prints the median of the per-round ratios new / old of wall and of
process CPU time (less disturbed by other processes) and both fits'
objective (LMNN's loss; ``tr A`` for the others): they should agree to rounding. The solvers are this checkout's; only
the kernels are swapped, so the revision's kernels must keep the signatures.

Usage::

    PYTHONPATH=$PWD python benchmarks/paired_kernels.py --against bba09a1 \\
        wine digits letter --learner LMNN MMC_Supervised --rounds 9
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ("_lmnn_kernels", "_optimize", "_mmc_kernels")


def load_old(rev, tmp):
    """The kernel modules of ``rev`` as standalone modules (name -> module)."""
    out = {}
    for name in MODULES:
        src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:mahal/{name}.py"],
                             capture_output=True, text=True, check=True).stdout
        src = src.replace("from ._jit import njit", "from numba import njit")
        path = os.path.join(tmp, f"old{name}.py")
        with open(path, "w") as f:
            f.write(src)
        spec = importlib.util.spec_from_file_location(f"old{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out[name] = mod
    return out


def swap_sets(old):
    """``{"new": [(namespace, attr, fn)], "old": [...]}``: every kernel function of the
    three modules, where the solvers look it up."""
    import mahal._lmnn_kernels as K
    import mahal._mmc_small as MS
    import mahal._optimize as O
    import mahal._mmc_solver as mmc

    # (this checkout's MMC steps are those of _mmc_small: NumPy or kernel by size)
    places = [(K, K, old["_lmnn_kernels"]), (O, O, old["_optimize"]),
              (MS, mmc, old["_mmc_kernels"])]
    sets = {"new": [], "old": []}
    for mod, namespace, old_mod in places:
        for attr in dir(mod):
            fn = getattr(mod, attr)
            if (hasattr(fn, "py_func") or callable(fn)) and hasattr(old_mod, attr) \
                    and hasattr(namespace, attr) and getattr(fn, "__module__", "") \
                    == mod.__name__:
                sets["new"].append((namespace, attr, fn))
                sets["old"].append((namespace, attr, getattr(old_mod, attr)))
    return sets


def data(name):
    from sklearn.preprocessing import StandardScaler

    if name == "wine":
        from sklearn.datasets import load_wine
        X, y = load_wine(return_X_y=True)
    elif name == "digits":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
    else:
        d = np.load(os.path.join(os.environ.get("MAHAL_DATA", "/work/shared/datasets"),
                                 f"{name}.npz"))
        X, y = d["X"], d["y"]
    X = StandardScaler().fit_transform(X)
    return X[:, X.std(axis=0) > 0], y


def objective(name, est, X, y):
    """LMNN's loss; for the others ``tr A`` (MMC's scale is set by its constraint)."""
    if name == "LMNN":
        from mahal.lmnn import lmnn_loss_grad, select_target_neighbors
        return lmnn_loss_grad(est.components_, X, y,
                              select_target_neighbors(X, y, est.n_neighbors))[0]
    A = est.get_mahalanobis_matrix()
    return float(np.trace(A))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--against", required=True, help="git revision of the old kernels")
    ap.add_argument("--learner", nargs="+", default=["LMNN"])
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    import mahal

    with tempfile.TemporaryDirectory() as tmp:
        sets = swap_sets(load_old(args.against, tmp))
    warnings.simplefilter("ignore")
    for ds in args.datasets:
        X, y = data(ds)
        for learner in args.learner:
            cls = getattr(mahal, learner)
            times = {"new": [], "old": []}
            cpu = {"new": [], "old": []}
            obj = {}
            for rnd in range(args.rounds + 1):
                for which in (("new", "old") if rnd % 2 else ("old", "new")):
                    for namespace, attr, fn in sets[which]:
                        setattr(namespace, attr, fn)
                    t, c = time.perf_counter(), time.process_time()
                    est = cls(random_state=0).fit(X, y)
                    t, c = time.perf_counter() - t, time.process_time() - c
                    if rnd:
                        times[which].append(t)
                        cpu[which].append(c)
                        obj[which] = objective(learner, est, X, y)
            for namespace, attr, fn in sets["new"]:
                setattr(namespace, attr, fn)
            r = np.array(times["new"]) / np.array(times["old"])
            rc = np.array(cpu["new"]) / np.array(cpu["old"])
            print(f"{ds:8s} {learner:15s} old {np.median(times['old']):.4f} s  new "
                  f"{np.median(times['new']):.4f} s  new/old median {np.median(r):.3f} "
                  f"(range {r.min():.2f}-{r.max():.2f}), CPU time {np.median(rc):.3f} "
                  f"(range {rc.min():.2f}-{rc.max():.2f}); objective old "
                  f"{obj['old']:.10g} new {obj['new']:.10g}", flush=True)


if __name__ == "__main__":
    main()
