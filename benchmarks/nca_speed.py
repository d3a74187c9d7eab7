"""NCA and MLKR against scikit-learn's NCA and metric-learn 0.7, in one run.

Every fit runs in a fresh child process (fit time and peak memory by
``_memory.measure``: peak RSS during ``fit`` above the RSS before it), watched by
the parent, which kills a child whose RSS passes ``--mem-cap-gb`` (scikit-learn's
NCA holds several ``n × n`` float64 matrices: 2 GB each on letter). Both sides of a
comparison start from the same initial ``L`` (computed here and passed as
``init``) and run the same ``max_iter``; timed pairs alternate (mahal, peer,
mahal, peer, ...) and ratios are medians of the pairs. mahal runs with
``n_jobs=-1``; the peers with their BLAS's default threads.

Sections:

1. NCA vs scikit-learn's NeighborhoodComponentsAnalysis on digits (70/30 split,
   standardised) and letter (16000 training points, standardised), ``tol=0`` on
   both (every run goes to ``max_iter`` or a failed line search): fit time ratio,
   NCA objective Σ p_i at the result (computed here, in float64, for both), peak
   memory ratio.
2. NCA and MLKR vs metric-learn's (``--peer-python``), both with ``tol=None``
   (scipy's defaults, metric-learn's default) and the same ``max_iter``: NCA on
   digits, MLKR on the regression sets of 3. Two readings: the fit time ratio at
   the same ``max_iter``, and at equal objective (mahal stopped at its first
   iteration whose objective is at least as good as metric-learn's final one,
   found by an untimed fit with a callback, within 3 × ``max_iter``; timed in
   the same alternation). With
   the loss evaluations of each fit (counted in the child) and the time per
   evaluation.
3. MLKR for k-NN regression: scikit-learn's diabetes and make_friedman1 (1000
   points, 5 relevant features and 20 irrelevant ones), 70/30 splits,
   standardised: test mean squared error of KNeighborsRegressor(n_neighbors=5)
   in the input space, after mahal's MLKR and after metric-learn's.
4. (``--optimizers``) the evaluations each L-BFGS takes on digits (NCA, MLKR):
   scipy's L-BFGS-B against :func:`mahal._optimize.lbfgs`.

Usage::

    PYTHONPATH=. python benchmarks/nca_speed.py --peer-python /work/peers/bin/python \\
        [--letter-max-iter 10] [--mem-cap-gb 9] [--repeats 3] [--no-letter]
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

CHILD = r"""
import json, sys, warnings
import numpy as np
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[2])
from _memory import measure
job = json.load(open(sys.argv[1]))
lib, name = job["library"], job["class"]
if lib == "mahal":
    import mahal as module
elif lib == "scikit-learn":
    import sklearn.neighbors as module
else:
    import metric_learn as module
klass = getattr(module, name)
# count the loss evaluations (each library's loss-and-gradient function)
if lib == "mahal":
    from mahal._softmax_blocks import SoftmaxProblem as counted
    method = "loss_grad"
else:
    counted = klass
    method = "_loss" if name == "MLKR" else "_loss_grad_lbfgs"
n_evals = [0]
loss = getattr(counted, method)
def counting(*a, **k):
    n_evals[0] += 1
    return loss(*a, **k)
setattr(counted, method, counting)
with np.load(job["data"]) as d:
    X, y = d["X"], d["y"]
params = dict(job["params"])
params["init"] = np.load(job["init"])
# warm-up, not timed: one iteration on the same data, so that the timed fit's code
# path (lazy imports, numba's cached kernels: small problems would take the NumPy
# path and load none) is loaded; the first fit in a process is cold_start.py's
klass(**dict(params, max_iter=1)).fit(X, y)
est = klass(**params)
n_evals[0] = 0
_, seconds, peak, how = measure(lambda: est.fit(X, y))
np.save(job["out"], est.components_)
print(json.dumps({"fit_time": seconds, "peak_bytes": peak, "method": how,
                  "n_iter": int(getattr(est, "n_iter_", -1)), "n_evals": n_evals[0]}))
"""


def _rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def _mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def run_fit(python, library, cls, params, X, y, L0, tmp, cap_bytes, timeout=7200):
    """Fit in a child process; return a dict (fit_time, peak_bytes, L) or with
    ``error`` (killed past the memory cap, timed out, or failed)."""
    tag = f"{library}-{cls}-{time.monotonic_ns()}"
    data, init, out = (os.path.join(tmp, f"{tag}{s}") for s in (".npz", "-L0.npy",
                                                                 "-L.npy"))
    np.savez(data, X=X, y=y)
    np.save(init, L0)
    job = os.path.join(tmp, f"{tag}.json")
    with open(job, "w") as f:
        json.dump({"library": library, "class": cls, "params": params, "data": data,
                   "init": init, "out": out}, f)
    env = dict(os.environ)
    if library != "mahal":
        env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([python, "-c", CHILD, job, HERE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    killed = {"why": None, "peak": 0}

    def watch():
        t0 = time.monotonic()
        while proc.poll() is None:
            rss = _rss_bytes(proc.pid)
            killed["peak"] = max(killed["peak"], rss)
            if rss > cap_bytes:
                killed["why"] = f"killed at the memory cap ({cap_bytes / 2**30:.1f} GB)"
                proc.kill()
                return
            if time.monotonic() - t0 > timeout:
                killed["why"] = f"killed after {timeout} s"
                proc.kill()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    watcher.join()
    if killed["why"]:
        return {"error": killed["why"], "peak_bytes": killed["peak"]}
    if proc.returncode != 0:
        return {"error": stderr.strip().splitlines()[-1] if stderr.strip() else
                f"exit {proc.returncode}"}
    res = json.loads(stdout.strip().splitlines()[-1])
    res["L"] = np.load(out)
    return res


def standardised_split(X, y, seed=0, stratify=True):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed,
                                          stratify=y if stratify else None)
    sc = StandardScaler().fit(Xtr)
    return sc.transform(Xtr), sc.transform(Xte), ytr, yte


def load_classification(name):
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        Xtr, _, ytr, _ = standardised_split(X, y)
        return Xtr, ytr
    path = os.path.join(os.environ.get("MAHAL_DATA", "/work/shared/datasets"),
                        "letter.npz")
    with np.load(path, allow_pickle=False) as d:
        X, y = d["X"][:16000].astype(float), d["y"][:16000]
    _, y = np.unique(y, return_inverse=True)
    return StandardScaler().fit_transform(X), y


def load_regression(name):
    if name == "diabetes":
        from sklearn.datasets import load_diabetes

        X, y = load_diabetes(return_X_y=True)
    else:
        from sklearn.datasets import make_friedman1

        X, y = make_friedman1(n_samples=1000, n_features=25, noise=1.0,
                              random_state=0)
    return standardised_split(X, y, stratify=False)


def _mb(b):
    return b / 2**20


def _median_ratio(pairs):
    return float(np.median([a / b for a, b in pairs]))


def nca_vs_sklearn(args, tmp, cap):
    from mahal._nca_solver import nca_objective_grad
    from mahal.base import initialize_components

    rows = []
    sets = [("digits", args.digits_max_iter, args.repeats)]
    if not args.no_letter:
        sets.append(("letter", args.letter_max_iter, 1))
    for name, max_iter, repeats in sets:
        X, y = load_classification(name)
        L0 = initialize_components(X.shape[1], X, y, "auto")
        mine, peer = [], []
        for _ in range(repeats):
            mine.append(run_fit(sys.executable, "mahal", "NCA",
                                {"max_iter": max_iter, "tol": 0.0, "n_jobs": -1},
                                X, y, L0, tmp, cap))
            peer.append(run_fit(sys.executable, "scikit-learn",
                                "NeighborhoodComponentsAnalysis",
                                {"max_iter": max_iter, "tol": 0.0}, X, y, L0, tmp, cap))
        rows.append(_compare(name, "NCA vs scikit-learn", mine, peer,
                             lambda L: nca_objective_grad(L, X, y)[0], max_iter,
                             higher_is_better=True))
    return rows


def _compare(name, what, mine, peer, objective, max_iter, higher_is_better):
    ok = [(m, p) for m, p in zip(mine, peer) if "error" not in m and "error" not in p]
    row = {"data": name, "comparison": what, "max_iter": max_iter,
           "n_iter": (mine[0].get("n_iter"), peer[0].get("n_iter"))}
    if not ok:
        m, p = mine[0], peer[0]
        row.update(mahal_error=m.get("error"), peer_error=p.get("error"),
                   mahal_time=m.get("fit_time"), mahal_mb=_mb(m.get("peak_bytes", 0)),
                   peer_peak_mb_at_kill=_mb(p.get("peak_bytes", 0)))
        if "error" not in m:
            row["mahal_objective"] = objective(m["L"])
            # the peer was killed: its peak is at least the cap
            row["memory_ratio_at_most"] = m["peak_bytes"] / max(p.get("peak_bytes", 1), 1)
        return row
    row.update(
        speedup=_median_ratio([(p["fit_time"], m["fit_time"]) for m, p in ok]),
        mahal_time=float(np.median([m["fit_time"] for m, _ in ok])),
        peer_time=float(np.median([p["fit_time"] for _, p in ok])),
        mahal_mb=_mb(max(m["peak_bytes"] for m, _ in ok)),
        peer_mb=_mb(max(p["peak_bytes"] for _, p in ok)),
        mahal_objective=objective(ok[0][0]["L"]),
        peer_objective=objective(ok[0][1]["L"]))
    row["memory_ratio"] = row["mahal_mb"] / max(row["peer_mb"], 1e-9)
    sign = 1 if higher_is_better else -1
    row["objective_at_least_as_good"] = bool(
        sign * (row["mahal_objective"] - row["peer_objective"])
        >= -1e-9 * abs(row["peer_objective"]))
    return row


_EQUAL_BUDGET = 3


def _first_iteration_reaching(cls, params, X, y, L0, objective, target, higher):
    """The first L-BFGS iteration of mahal's ``cls`` (fitted here, untimed, with a
    callback, up to ``_EQUAL_BUDGET`` times ``params['max_iter']``: the
    trajectories part by rounding, and mahal's may need longer) whose objective is
    at least as good as ``target``; None if none is."""
    import warnings

    import mahal

    iterates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(mahal, cls)(**dict(params, init=L0,
                                   max_iter=_EQUAL_BUDGET * params["max_iter"]),
                            callback=lambda L, k: iterates.append(L)).fit(X, y)
    sign = 1 if higher else -1
    for k, L in enumerate(iterates, start=1):
        if sign * (objective(L) - target) >= -1e-12 * abs(target):
            return k
    return None


def _vs_peer(args, tmp, cap, name, what, cls, max_iter, X, y, L0, objective, higher):
    """mahal's ``cls`` against metric-learn's, ``tol=None`` on both, in alternating
    pairs at the same ``max_iter``; and, in the same alternation, mahal stopped at
    the first iteration that reaches the peer's final objective (equal objective)."""
    mine_params = {"max_iter": max_iter, "tol": None, "n_jobs": -1}
    peer_params = {"max_iter": max_iter, "tol": None}
    mine, peer, equal = [], [], []
    k_equal = None
    for rep in range(args.repeats):
        mine.append(run_fit(sys.executable, "mahal", cls, mine_params, X, y, L0, tmp,
                            cap))
        peer.append(run_fit(args.peer_python, "metric-learn", cls, peer_params, X, y,
                            L0, tmp, cap))
        if rep == 0 and "error" not in peer[0]:
            k_equal = _first_iteration_reaching(cls, mine_params, X, y, L0, objective,
                                                objective(peer[0]["L"]), higher)
        if k_equal is not None:
            equal.append(run_fit(sys.executable, "mahal", cls,
                                 dict(mine_params, max_iter=k_equal), X, y, L0, tmp,
                                 cap))
    row = _compare(name, what, mine, peer, objective, max_iter, higher)
    row["n_evals"] = (mine[0].get("n_evals"), peer[0].get("n_evals"))
    ok = [m for m in mine if "error" not in m]
    ok_peer = [p for p in peer if "error" not in p]
    if ok and ok_peer:
        row["ms_per_eval"] = (
            1e3 * float(np.median([m["fit_time"] / m["n_evals"] for m in ok])),
            1e3 * float(np.median([p["fit_time"] / p["n_evals"] for p in ok_peer])))
    row["equal_objective_iter"] = k_equal
    if equal and ok_peer:
        row["equal_objective_evals"] = equal[0].get("n_evals")
        row["equal_objective_time"] = float(np.median([e["fit_time"] for e in equal]))
        row["equal_objective_speedup"] = _median_ratio(
            [(p["fit_time"], e["fit_time"]) for e, p in zip(equal, peer)
             if "error" not in e and "error" not in p])
        row["equal_objective_value"] = objective(equal[0]["L"])
    row["_mine_L"], row["_peer_L"] = mine[0].get("L"), peer[0].get("L")
    return row


def vs_metric_learn(args, tmp, cap):
    from mahal._mlkr_solver import mlkr_loss_grad
    from mahal._nca_solver import nca_objective_grad
    from mahal.base import initialize_components

    rows = []
    if not args.peer_python:
        return rows, {}
    X, y = load_classification("digits")
    L0 = initialize_components(X.shape[1], X, y, "auto")
    row = _vs_peer(args, tmp, cap, "digits", "NCA vs metric-learn", "NCA", 100, X, y,
                   L0, lambda L: nca_objective_grad(L, X, y)[0], True)
    del row["_mine_L"], row["_peer_L"]
    rows.append(row)
    fitted = {}
    for name in ("diabetes", "friedman1"):
        Xtr, Xte, ytr, yte = load_regression(name)
        L0 = np.eye(Xtr.shape[1])
        row = _vs_peer(args, tmp, cap, name, "MLKR vs metric-learn", "MLKR", 1000, Xtr,
                       ytr, L0, lambda L: mlkr_loss_grad(L, Xtr, ytr)[0], False)
        rows.append(row)
        fitted[name] = (row.pop("_mine_L", None), row.pop("_peer_L", None))
    return rows, fitted


def regression_errors(fitted, k=5):
    from sklearn.metrics import mean_squared_error
    from sklearn.neighbors import KNeighborsRegressor

    rows = []
    for name in ("diabetes", "friedman1"):
        Xtr, Xte, ytr, yte = load_regression(name)

        def mse(L):
            knn = KNeighborsRegressor(n_neighbors=k).fit(Xtr @ L.T, ytr)
            return float(mean_squared_error(yte, knn.predict(Xte @ L.T)))

        row = {"data": name, "n_train": Xtr.shape[0], "n_features": Xtr.shape[1],
               "euclidean_mse": mse(np.eye(Xtr.shape[1]))}
        mine, peer = fitted.get(name, (None, None))
        if mine is None:
            import warnings

            from mahal import MLKR

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mine = MLKR(tol=None, n_jobs=-1).fit(Xtr, ytr).components_
        row["mlkr_mse"] = mse(mine)
        if peer is not None:
            row["ml_mlkr_mse"] = mse(peer)
        rows.append(row)
    return rows


def optimizer_counts():
    from mahal._mlkr_solver import mlkr_solve
    from mahal._nca_solver import nca_solve
    from mahal.base import initialize_components

    X, y = load_classification("digits")
    L0 = initialize_components(X.shape[1], X, y, "auto")
    Xr, _, yr, _ = load_regression("friedman1")
    rows = []
    for tol in (1e-5, None):
        for opt in ("scipy", "mahal"):
            _, it, _, info = nca_solve(X, y, L0, max_iter=100, tol=tol, n_threads=2,
                                       optimizer=opt)
            rows.append({"learner": "NCA digits", "tol": tol, "optimizer": opt,
                         "n_iter": it, "n_evals": info["n_evals"],
                         "objective": info["objective"]})
            _, it, _, info = mlkr_solve(Xr, yr, np.eye(Xr.shape[1]), max_iter=1000,
                                        tol=tol, n_threads=2, optimizer=opt)
            rows.append({"learner": "MLKR friedman1", "tol": tol, "optimizer": opt,
                         "n_iter": it, "n_evals": info["n_evals"],
                         "objective": info["objective"]})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-python", default=None)
    p.add_argument("--repeats", type=int, default=3,
                   help="alternating pairs of fits per small data set (default 3)")
    p.add_argument("--digits-max-iter", type=int, default=50)
    p.add_argument("--letter-max-iter", type=int, default=10)
    p.add_argument("--mem-cap-gb", type=float, default=9.0,
                   help="kill a child past this RSS (default 9; lowered to what the "
                        "machine has available minus 2 GB)")
    p.add_argument("--no-letter", action="store_true")
    p.add_argument("--optimizers", action="store_true")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    cap = min(args.mem_cap_gb * 2**30, _mem_available() - 2 * 2**30)
    print(f"memory cap per child: {cap / 2**30:.1f} GB; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    out = {}
    with tempfile.TemporaryDirectory(prefix="nca-speed-") as tmp:
        out["nca_vs_sklearn"] = nca_vs_sklearn(args, tmp, cap)
        _print("NCA vs scikit-learn's NCA (same init, same max_iter, tol=0)",
               out["nca_vs_sklearn"])
        out["vs_metric_learn"], fitted = vs_metric_learn(args, tmp, cap)
        _print("NCA and MLKR vs metric-learn 0.7 (same init, same max_iter, tol=None)",
               out["vs_metric_learn"])
    out["regression"] = regression_errors(fitted)
    _print("MLKR: 5-NN regression test MSE", out["regression"])
    if args.optimizers:
        out["optimizers"] = optimizer_counts()
        _print("L-BFGS evaluations (digits NCA, friedman1 MLKR)", out["optimizers"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=float)


def _print(title, rows):
    print(f"\n## {title}\n")
    for r in rows:
        print("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in r.items()))
    sys.stdout.flush()


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


if __name__ == "__main__":
    main()
