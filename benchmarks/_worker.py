"""Fit one learner on a list of splits, in this fresh process.

Run as ``python _worker.py JOB.json``.  Plain Python: it imports only numpy, the
standard library, ``_memory`` (beside it) and the learner's own library, so that the
same script runs under the mahal virtualenv (learners ``mahal.*``) and under a peer
virtualenv (``metric-learn``, ``pylmnn``) without importing mahal.

The job file names the learner, its parameters, an output folder and the items to fit:
each item is an npz file with ``X_train, X_test, y_train, y_test`` (one split of one
data set, already preprocessed) and a ``random_state`` for the learner.  Protocol on
stdout, one JSON object per line:

* ``{"event": "ready", "import_time": s, "versions": {...}}`` after the imports;
* ``{"event": "warmup", "time": s}`` (or ``"error"``, or ``"skipped"``) after a
  warm-up fit on a small subset of the first item (up to 30 points per class, at
  least 600 in all) that triggers numba compilation and lazy imports, so that they
  are not counted in the timed fits (skipped when the job says ``"warmup": false``);
* ``{"event": "start", "item": j}`` before and ``{"event": "fit", "item": j,
  "fit_time": s, "peak_bytes": b, "file": path}`` (or ``"error"``) after each item;
* ``{"event": "done"}``.

Each timed fit is measured by :func:`_memory.measure` (wall time of ``fit`` alone;
peak RSS above the RSS before the fit).  After the fit the worker transforms the
training and test sets (and, for classifiers, predicts the test set) and saves them to
``<out>/item<j>.npz``; the harness computes the k-NN error itself.
"""

import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _memory import measure  # noqa: E402


def _make(spec):
    """Return ``(factory, kind, library_module)`` for a learner spec."""
    lib, cls = spec["library"], spec["class"]
    params = dict(spec.get("params", {}))
    if lib == "mahal":
        import mahal
        klass = getattr(mahal, cls)
        mod = mahal
        # a parameter that is an estimator: {"estimator": name, "params": {...}}
        params = {key: getattr(mahal, v["estimator"])(**v.get("params", {}))
                  if isinstance(v, dict) and "estimator" in v else v
                  for key, v in params.items()}
    elif lib == "metric-learn":
        import metric_learn
        klass = getattr(metric_learn, cls)
        mod = metric_learn
    elif lib == "scikit-learn":
        import sklearn.neighbors
        klass = getattr(sklearn.neighbors, cls)
        mod = sklearn
    elif lib == "pylmnn":
        import pylmnn
        klass = getattr(pylmnn, cls)
        mod = pylmnn
    else:
        raise ValueError(f"unknown library {lib!r}")
    return (lambda seed: klass(**dict(params, **({"random_state": seed}
                                                  if spec.get("seeded", True)
                                                  else {})))), mod


def _emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _tiny_subset(X, y, per_class=30, min_points=600):
    # Up to ``per_class`` points of each class, and at least ``min_points`` (or all)
    # in all: a smaller subset takes only the NumPy paths of mahal's small problems
    # (LMNN: up to 500 points), so the first timed fit on digits would still compile
    # the kernels (10 s of a 0.8 s fit in a fresh checkout).
    import numpy as np
    per_class = max(per_class, -(-min_points // max(1, np.unique(y).size)))
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])
    return X[idx], y[idx]


def _short(exc):
    msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return msg[:300]


def main(job_path):
    with open(job_path) as f:
        job = json.load(f)
    spec = job["learner"]
    t0 = time.perf_counter()
    try:
        import numpy as np
        factory, mod = _make(spec)
        import sklearn
    except Exception as exc:  # import failures are reported, not raised
        _emit({"event": "import_error", "error": _short(exc)})
        return 3
    versions = {"python": sys.version.split()[0], "numpy": np.__version__,
                "sklearn": sklearn.__version__,
                spec["library"]: getattr(mod, "__version__", "?")}
    _emit({"event": "ready", "import_time": time.perf_counter() - t0,
           "versions": versions})

    items = job["items"]
    predicts = bool(spec.get("predicts", False))

    # Warm-up: numba compilation, lazy imports, first-call caches.  The harness skips
    # it for metric-learn's MMC (no JIT, and a tiny subset can take it longer than the
    # real data), whose first timed fit then includes any lazy imports.
    if spec.get("warmup", True) and items:
        with np.load(items[0]["data"], allow_pickle=False) as d:
            Xw, yw = _tiny_subset(d["X_train"], d["y_train"])
        try:
            t = time.perf_counter()
            est = factory(items[0]["seed"]).fit(Xw, yw)
            est.transform(Xw[:2]) if not predicts else est.predict(Xw[:2])
            _emit({"event": "warmup", "time": time.perf_counter() - t})
        except Exception as exc:
            _emit({"event": "warmup", "error": _short(exc)})
    else:
        _emit({"event": "warmup", "skipped": True})

    for item in items:
        j = item["id"]
        _emit({"event": "start", "item": j})
        try:
            with np.load(item["data"], allow_pickle=False) as d:
                X_train, y_train = d["X_train"], d["y_train"]
                X_test = d["X_test"]
            est = factory(item["seed"])
            _, fit_time, peak, method = measure(lambda: est.fit(X_train, y_train))
            out = {}
            if predicts:
                out["y_pred"] = np.asarray(est.predict(X_test))
            # a classifier without transform: its fitted metric learner's
            # (e.g. LMNNEnergyClassifier.metric_learner_), for the k-means ARI
            tr = est if hasattr(est, "transform") else getattr(
                est, "metric_learner_", None)
            if tr is not None:
                try:
                    out["Z_train"] = np.asarray(tr.transform(X_train), dtype=float)
                    out["Z_test"] = np.asarray(tr.transform(X_test), dtype=float)
                except Exception:
                    if not predicts:
                        raise
            path = os.path.join(job["out"], f"item{j}.npz")
            np.savez(path, **out)
            del est, out
            _emit({"event": "fit", "item": j, "fit_time": fit_time,
                   "peak_bytes": peak, "memory_method": method, "file": path})
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            _emit({"event": "fit", "item": j, "error": _short(exc)})
    _emit({"event": "done"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
