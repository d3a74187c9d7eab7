"""Peak memory on adversarial data: mahal.LMNN (and pylmnn), MMC_Supervised,
LMNNEnergyClassifier.

Every fit runs in a fresh child process (this script with ``--child``), under an
address-space limit (``prlimit --as``) and a watchdog that kills it once its
resident set passes ``--kill-rss`` (default 4 GB), so a runaway fit cannot take the
machine with it. Reported per fit: wall time of ``fit``, peak RSS above the RSS
before it (:func:`_memory.measure`), the exact LMNN objective of the learned ``L``
(mahal's ``lmnn_loss_grad`` with ``regularization`` 0.5 and the same target
neighbours, computed in this process for mahal's and pylmnn's ``L`` alike) and the
3-NN test error in the learned space (on a held-out third; the energy classifier:
its own predictions). pylmnn runs with its defaults (``max_impostors=500000``,
``max_iter=50``) under ``--peer-python``.

Cases (``--n`` points of ``--d`` features unless said):

- ``random``: ``randn(n, d)`` with 10 random labels (the classes overlap
  completely: almost every pair is an impostor; issue 18);
- ``overlap``: ``make_classification(class_sep=0.3)``, 10 classes;
- ``duplicates``: 500 distinct points, each repeated, 10 random labels;
- ``tiny-classes``: 100 classes of 5 points (500 points).

Each fit uses ``n`` points; the next ``min(5000, n // 2)`` of the same
distribution are the test set.

Usage::

    python benchmarks/memory.py --peer-python /work/peers/bin/python
    python benchmarks/memory.py --n 20000 --cases random overlap --max-iter 10
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def make_data(case, n, d, seed=0):
    """``(X, y)`` of one case (the same arrays in every process)."""
    rng = np.random.RandomState(seed)
    if case == "random":
        return rng.randn(n, d), rng.randint(0, 10, n)
    if case == "overlap":
        from sklearn.datasets import make_classification
        return make_classification(n_samples=n, n_features=d, n_informative=d // 2,
                                   n_classes=10, n_clusters_per_class=1,
                                   class_sep=0.3, random_state=seed)
    if case == "duplicates":
        m = min(500, n)
        base = rng.randn(m, d)
        idx = np.arange(n) % m
        return base[idx], rng.randint(0, 10, n)
    if case == "tiny-classes":  # 100 classes of 5 points to fit (n is ignored)
        y = np.concatenate([np.repeat(np.arange(100), 5), rng.randint(0, 100, 250)])
        return rng.randn(750, d), y
    raise ValueError(case)


def split(X, y, n):
    """The first ``n`` points to fit, the rest to test."""
    return X[:n], y[:n], X[n:], y[n:]


def n_test(n):
    return min(5000, n // 2)


def n_fit(case, n):
    return 500 if case == "tiny-classes" else n


# ---------------------------------------------------------------------------
# child: one fit, measured


def child(job):
    sys.path.insert(0, HERE)
    from _memory import measure

    n = n_fit(job["case"], job["n"])
    X, y = make_data(job["case"], n + n_test(n), job["d"])
    Xtr, ytr, Xte, _ = split(X, y, n)
    lib, learner = job["lib"], job["learner"]
    kw = {} if job["max_iter"] is None else {"max_iter": job["max_iter"]}
    if lib == "pylmnn":
        from pylmnn import LargeMarginNearestNeighbor
        est = LargeMarginNearestNeighbor(n_neighbors=3, random_state=0,
                                         verbose=job["verbose"], **kw)
    else:
        sys.path.insert(0, ROOT)
        import mahal
        if learner == "LMNN":
            # (all cores, as pylmnn's BLAS uses them; n_jobs=None would be one)
            est = mahal.LMNN(n_neighbors=3, verbose=job["verbose"], n_jobs=-1, **kw)
        elif learner == "MMC_Supervised":
            est = mahal.MMC_Supervised(random_state=0, **kw)
        else:
            est = mahal.LMNNEnergyClassifier(
                mahal.LMNN(n_neighbors=3, n_jobs=-1, **kw), n_neighbors=3, n_jobs=-1)
        # (numba compilation and lazy imports outside the measured fit)
        from sklearn.base import clone
        clone(est).fit(Xtr[:300], ytr[:300])
        if learner == "LMNNEnergyClassifier":
            clone(est).fit(Xtr[:300], ytr[:300]).predict(Xte[:5])
    _, seconds, peak, method = measure(lambda: est.fit(Xtr, ytr))
    out = {"time": seconds, "peak": peak, "method": method}
    if learner == "LMNNEnergyClassifier":
        _, t_pred, peak_pred, _ = measure(lambda: est.predict(Xte))
        out.update(pred=est.predict(Xte).tolist(), predict_time=t_pred,
                   predict_peak=peak_pred,
                   L=np.asarray(est.metric_learner_.components_).tolist())
    else:
        out["L"] = np.asarray(est.components_).tolist()
    return out


# ---------------------------------------------------------------------------
# parent


def run_child(python, job, kill_rss, address_space, timeout):
    """Run one fit; ``(result or None, error or None, peak RSS seen by the
    watchdog)``."""
    import psutil

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
        path = f.name
    env = dict(os.environ)
    if python == sys.executable:
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    else:
        env.pop("PYTHONPATH", None)
    cmd = ["prlimit", f"--as={address_space}", "--", python, os.path.abspath(__file__),
           "--child", path]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    seen = {"rss": 0, "killed": None}

    def watch():
        t0 = time.time()
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in
                          [psutil.Process(proc.pid)]
                          + psutil.Process(proc.pid).children(recursive=True))
            except psutil.Error:
                break
            seen["rss"] = max(seen["rss"], rss)
            why = ("RSS above the limit" if rss > kill_rss else
                   "timeout" if time.time() - t0 > timeout else None)
            if why:
                seen["killed"] = why
                for p in psutil.Process(proc.pid).children(recursive=True):
                    p.kill()
                proc.kill()
                break
            time.sleep(0.2)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    stdout, stderr = proc.communicate()
    w.join()
    os.unlink(path)
    if job["verbose"]:
        sys.stderr.write(stdout)
    if seen["killed"]:
        return None, f"killed: {seen['killed']} ({seen['rss'] / 2**30:.1f} GB)", seen
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["?"])[-1]
        return None, f"failed ({proc.returncode}): {tail[:160]}", seen
    return json.loads(lines[-1]), None, seen


def objective(L, Xtr, ytr):
    """The exact LMNN objective (μ = 0.5, 3 target neighbours) at ``L``."""
    sys.path.insert(0, ROOT)
    from mahal._lmnn_neighbors import select_target_neighbors
    from mahal._lmnn_problem import lmnn_loss_grad
    _, y_enc = np.unique(ytr, return_inverse=True)
    tn = select_target_neighbors(Xtr, y_enc, 3)
    return lmnn_loss_grad(L, Xtr, y_enc, tn, mu=0.5)[0]


def knn_error(L, Xtr, ytr, Xte, yte):
    from sklearn.neighbors import KNeighborsClassifier
    knn = KNeighborsClassifier(3).fit(Xtr @ L.T, ytr)
    return float(np.mean(knn.predict(Xte @ L.T) != yte))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--cases", nargs="+",
                    default=["random", "overlap", "duplicates", "tiny-classes"])
    ap.add_argument("--learners", nargs="+",
                    default=["LMNN", "MMC_Supervised", "LMNNEnergyClassifier"])
    ap.add_argument("--max-iter", type=int, default=None,
                    help="for every learner (default: each library's own)")
    ap.add_argument("--peer-python", default=None)
    ap.add_argument("--kill-rss", type=float, default=4e9)
    ap.add_argument("--address-space", type=int, default=6_000_000_000)
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--verbose", action="store_true",
                    help="the LMNN fits' iteration tables on stderr")
    ap.add_argument("--out", default=None, help="JSON file for the rows")
    args = ap.parse_args(argv)
    if args.child:
        with open(args.child) as f:
            job = json.load(f)
        print(json.dumps(child(job)), flush=True)
        return 0

    runs = []
    for case in args.cases:
        for learner in args.learners:
            runs.append(("mahal", learner, case))
            if learner == "LMNN" and args.peer_python:
                runs.append(("pylmnn", learner, case))
    rows = []
    header = ("| case | n | learner | fit time (s) | peak RSS (MB) | objective | "
              "3-NN error | note |\n|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    for lib, learner, case in runs:
        n = n_fit(case, args.n)
        X, y = make_data(case, n + n_test(n), args.d)
        Xtr, ytr, Xte, yte = split(X, y, n)
        job = {"lib": lib, "learner": learner, "case": case, "n": args.n,
               "d": args.d, "max_iter": args.max_iter, "verbose": args.verbose}
        python = args.peer_python if lib == "pylmnn" else sys.executable
        res, err, seen = run_child(python, job, args.kill_rss, args.address_space,
                                   args.timeout)
        row = {"case": case, "n": int(Xtr.shape[0]), "learner": learner, "lib": lib,
               "error_msg": err, "watchdog_rss": seen["rss"]}
        if res is not None:
            L = np.asarray(res["L"])
            row.update(time=res["time"], peak=res["peak"], method=res["method"])
            if learner == "LMNNEnergyClassifier":
                row["knn_error"] = float(np.mean(np.asarray(res["pred"]) != yte))
                row["note"] = (f"predict {res['predict_time']:.1f} s, "
                               f"{res['predict_peak'] / 2**20:.0f} MB")
            else:
                row["knn_error"] = knn_error(L, Xtr, ytr, Xte, yte)
            if learner != "MMC_Supervised":
                row["objective"] = objective(L, Xtr, ytr)
        rows.append(row)
        name = f"{learner} ({lib})"
        if res is None:
            print(f"| {case} | {row['n']} | {name} | – | "
                  f"≥ {seen['rss'] / 2**20:.0f} | – | – | {err} |", flush=True)
        else:
            obj = f"{row['objective']:.6g}" if "objective" in row else "–"
            print(f"| {case} | {row['n']} | {name} | {row['time']:.1f} | "
                  f"{row['peak'] / 2**20:.0f} | {obj} | {100 * row['knn_error']:.1f}% "
                  f"| {row.get('note', '')} |", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
