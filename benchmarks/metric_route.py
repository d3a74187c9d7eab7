"""kNN with a learned metric: the routes to scikit-learn's neighbours, timed in one run.

Issue 19 §3. Data: sklearn's load_digits, 70/30 stratified split (random_state=0):
LMNN (default parameters, random_state=0) is fitted on the 1257 training points, then
``KNeighborsClassifier(n_neighbors=3)`` predicts the 540 test points by each route:

* ``pipeline``: ``make_pipeline(lmnn, KNeighborsClassifier())`` (transform, then
  Euclidean neighbours); the timed predict includes transforming the test points.
* ``compiled``: scikit-learn's compiled ``metric="mahalanobis"`` with
  ``metric_params={"VI": lmnn.get_mahalanobis_matrix()}`` (the reference).
* ``metric_kwargs``: ``KNeighborsClassifier(**lmnn.get_metric_kwargs())``, the
  documented route for a metric in the input space.
* ``callable``: ``KNeighborsClassifier(metric=lmnn.get_metric())`` (a Python function
  called once per pair of points).

Each round times every route once, in a rotated order; the median over rounds is
reported, with each route's ratio to ``compiled``. The routes' predictions are checked
to agree. The machine is shared: compare ratios, not seconds.

Usage::

    PYTHONPATH=. python benchmarks/metric_route.py [--rounds 5]
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from mahal import LMNN


def routes(lmnn, X_train, y_train):
    """Fitted predictors by route name (fitting is not timed)."""
    A = lmnn.get_mahalanobis_matrix()
    knn = {
        "pipeline": make_pipeline(lmnn, KNeighborsClassifier(n_neighbors=3)),
        "compiled": KNeighborsClassifier(n_neighbors=3, metric="mahalanobis",
                                         metric_params={"VI": A}),
        "metric_kwargs": KNeighborsClassifier(n_neighbors=3,
                                              **lmnn.get_metric_kwargs()),
        "callable": KNeighborsClassifier(n_neighbors=3, metric=lmnn.get_metric()),
    }
    for name, est in knn.items():
        if name == "pipeline":
            est[-1].fit(lmnn.transform(X_train), y_train)   # lmnn is already fitted
        else:
            est.fit(X_train, y_train)
    return knn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lmnn = LMNN(random_state=0).fit(X_train, y_train)
    knn = routes(lmnn, X_train, y_train)
    names = list(knn)
    times = {name: [] for name in names}
    predictions = {}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            predictions[name] = knn[name].predict(X_test)
            times[name].append(time.perf_counter() - t0)
    reference = predictions["compiled"]
    print(f"digits: LMNN fitted on {len(X_train)} points, {len(X_test)} predicted "
          f"(3-NN), median of {args.rounds} rounds")
    base = np.median(times["compiled"])
    print(f"{'route':>14} {'seconds':>9} {'/ compiled':>11} {'accuracy':>9} "
          f"{'same labels':>12}")
    for name in names:
        t = np.median(times[name])
        acc = np.mean(predictions[name] == y_test)
        same = np.mean(predictions[name] == reference)
        print(f"{name:>14} {t:9.3f} {t / base:11.2f} {acc:9.4f} {same:12.4f}")


if __name__ == "__main__":
    main()
