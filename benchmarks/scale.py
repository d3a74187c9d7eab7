"""NCA and LMNN in memory and on a dask ``LocalCluster`` of this machine's cores, at
growing n.

For each n of ``--sizes``: ``make_classification(n, 50 features, 10 informative,
10 classes, class_sep=--class-sep, random_state=0)``, standardised; for each learner of ``--learners``,
``NCA`` or ``LMNN`` with ``n_components=--n-components, init='pca',
max_iter=--max-iter, tol=0`` (every fit runs ``max_iter`` iterations):

- in memory, ``n_jobs=2`` (both cores), in this process;
- on ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``, ``X`` a
  ``dask.array`` of ``--chunks`` row chunks (one task per chunk and evaluation), a
  fresh cluster per n.

Printed per n and mode: seconds per iteration (the mean gap between the
``callback`` calls of iterations 1 and ``max_iter``: start-up, gathering and
initialisation excluded, shown apart as *setup*), the peak memory (in memory: this
process's peak RSS during ``fit`` above its RSS before; on the cluster: the largest
worker's peak RSS during ``fit`` above its RSS before, and the driver's), the ratio of
the cluster's time per iteration to the in-memory one, and the relative difference
of the objectives (NCA's two fits follow the same iterates to rounding, LMNN's to
the bit); then, per learner and mode, the growth exponent of the time per
iteration in n between consecutive sizes.

Usage::

    PYTHONPATH=. python benchmarks/scale.py [--sizes 10000 100000] [--max-iter 3]
        [--n-components 10] [--chunks 8] [--learners nca lmnn] [--class-sep 1]
"""

import argparse
import math
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _memory import _reset_hwm, _status_kib, measure  # noqa: E402


def _data(n, class_sep=1.0):
    from sklearn.datasets import make_classification
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=n, n_features=50, n_informative=10,
                               n_classes=10, class_sep=class_sep, random_state=0)
    return StandardScaler().fit_transform(X), y


def _timed_fit(make, X, y):
    """``(estimator, seconds per iteration, setup seconds, total seconds, peak
    bytes of this process)``."""
    stamps = []
    est = make(lambda L, n_iter: stamps.append(time.perf_counter()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        _, total, peak, _ = measure(lambda: est.fit(X, y))
    per_iter = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    setup = stamps[0] - start - per_iter
    return est, per_iter, setup, total, peak


def _worker_reset():
    import gc

    gc.collect()
    _reset_hwm()
    return _status_kib("VmRSS")


def _worker_peak():
    return _status_kib("VmHWM")


def _objective(learner, est, X, y):
    """The fitted learner's objective on ``(X, y)``."""
    if learner == "nca":
        return est.objective_
    from mahal._lmnn_problem import lmnn_loss_grad

    return lmnn_loss_grad(est.components_, X, y, est.target_neighbors_)[0]


def _warm_up(learner):
    """Imports, and for LMNN the numba kernels loaded from their cache (a small
    fit), outside the timed fits."""
    if learner == "lmnn":
        from mahal import LMNN

        X, y = _data(600)
        LMNN(n_components=3, max_iter=2).fit(X, y)
    else:
        __import__("mahal.nca")


def growth(rows):
    """``(learner, mode, n₁, n₂, exponent)``: the slope of log(time per iteration)
    against log(n) between consecutive sizes of each learner and mode."""
    out = []
    for (learner, mode) in dict.fromkeys((r[0], r[2]) for r in rows):
        runs = sorted((r[1], r[3]) for r in rows if r[0] == learner and r[2] == mode)
        for (n1, t1), (n2, t2) in zip(runs, runs[1:]):
            out.append((learner, mode, n1, n2, math.log(t2 / t1) / math.log(n2 / n1)))
    return out


def run(sizes, max_iter, n_components, n_chunks, learners=("nca", "lmnn"),
        class_sep=1.0):
    import dask.array as da
    from distributed import Client, LocalCluster

    from mahal import LMNN, NCA

    def make(learner, n_jobs):
        cls = NCA if learner == "nca" else LMNN
        return lambda cb: cls(n_components=n_components, init="pca",
                              max_iter=max_iter, tol=0, n_jobs=n_jobs, callback=cb)

    rows = []
    for learner in learners:
        _warm_up(learner)
        for n in sizes:
            X, y = _data(n, class_sep)
            mem, mem_it, mem_setup, mem_total, mem_peak = _timed_fit(
                make(learner, 2), X, y)
            rows.append((learner.upper(), n, "in memory (2 threads)", mem_it,
                         mem_setup, mem_peak, None, 1.0, 0.0))
            print(rows[-1], flush=True)
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, \
                    Client(cluster) as client:
                client.run(_warm_up, learner)  # (outside the fit)
                Xd = da.from_array(X, chunks=(-(-n // n_chunks), 50))
                before = client.run(_worker_reset)
                dist, it, setup, total, driver_peak = _timed_fit(
                    make(learner, None), Xd, y)
                after = client.run(_worker_peak)
                worker_peak = max(after[w] - before[w] for w in after) * 1024
            f_mem = _objective(learner, mem, X, y)
            rel = abs(_objective(learner, dist, X, y) - f_mem) / abs(f_mem)
            rows.append((learner.upper(), n, "LocalCluster (2 workers)", it, setup,
                         worker_peak, driver_peak, it / mem_it, rel))
            print(rows[-1], flush=True)
    rule = ("=======  =========  ========================  ==========  =========  "
            "==============  ===========  =======  =============")
    print()
    print(rule)
    print("learner  n          mode                      s / iter    setup (s)  "
          "peak / worker   driver peak  ratio    objective Δ")
    print(rule)
    for learner, n, mode, it, setup, peak, driver, ratio, rel in rows:
        driver = "" if driver is None else f"{driver / 2**20:.0f} MiB"
        print(f"{learner:<7}  {n:<9}  {mode:<24}  {it:<10.3g}  {setup:<9.2f}  "
              f"{peak / 2**20:<9.0f} MiB   {driver:<11}  {ratio:<7.2f}  {rel:.1e}")
    print(rule)
    for learner, mode, n1, n2, slope in growth(rows):
        print(f"{learner} {mode}: time per iteration grows as n^{slope:.2f} "
              f"from n = {n1} to {n2}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--n-components", type=int, default=10)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--class-sep", type=float, default=1.0,
                        help="make_classification's class_sep: larger gives classes "
                             "further apart, and LMNN fewer impostors")
    parser.add_argument("--learners", nargs="+", choices=["nca", "lmnn"],
                        default=["nca", "lmnn"])
    args = parser.parse_args()
    run(args.sizes, args.max_iter, args.n_components, args.chunks, args.learners,
        args.class_sep)


if __name__ == "__main__":
    main()
