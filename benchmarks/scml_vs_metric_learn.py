"""SCML: mahal vs metric-learn 0.7 on the same triplets and bases, measured in one run.

For each data set (digits; letter, a stratified subset of its training part), both
libraries see the same arrays: the training points (70/30 stratified split,
StandardScaler on the training part), metric-learn's k-NN triplets
(``k_genuine=3, k_impostor=10``) and the same LDA bases (built once by mahal with
``random_state=0``). Reported:

* **same problem** (``SCML.fit(triplets)`` with ``basis`` the array): fit time of each
  (alternating, ``--repeats`` times each, best taken), their ratio, and the objective
  ``(1/T) Σ [1 + d⁺ − d⁻]_+ + β‖w‖₁`` of each library's weights computed by
  :func:`mahal._scml_solver.scml_objective` (metric-learn's weights are read from
  its ``_components_from_basis_weights`` call, the best iterate it keeps);
* **equal objective**: the fewest solver rounds (``max_iter``) after which mahal's
  objective is at or below metric-learn's, and that fit's time (best of
  ``--repeats``) against metric-learn's, as the LMNN benchmark compares with pylmnn;
* **supervised** (``SCML_Supervised`` with default parameters, random_state=0): fit
  time and 3-NN test error of each.

metric-learn runs in its own interpreter (``--peer-python``) on arrays saved to npz.

Usage::

    python benchmarks/scml_vs_metric_learn.py --peer-python /work/peers/bin/python
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

PEER_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from metric_learn import SCML, SCML_Supervised
data = np.load(sys.argv[1])
mode = sys.argv[3]
if mode == "same":
    captured = {}

    class Capture(SCML):
        def _components_from_basis_weights(self, basis, w):
            captured["w"] = np.array(w).ravel()
            return super()._components_from_basis_weights(basis, w)

    X, trip, B = data["X"], data["triplets"], data["basis"]
    t = time.perf_counter()
    Capture(basis=B, n_basis=B.shape[0], random_state=0)._fit(X[trip], B, B.shape[0])
    fit_time = time.perf_counter() - t
    np.savez(sys.argv[2], w=captured["w"])
else:
    t = time.perf_counter()
    m = SCML_Supervised(random_state=0).fit(data["X_train"], data["y_train"])
    fit_time = time.perf_counter() - t
    np.savez(sys.argv[2], Z_train=m.transform(data["X_train"]),
             Z_test=m.transform(data["X_test"]))
print(json.dumps({"fit_time": fit_time}))
"""


def load(name, n_letter):
    if name == "digits":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
    else:
        path = os.path.join(os.environ.get("MAHAL_DATA", ""), "letter.npz")
        d = np.load(path)
        X, y = d["X"].astype(float), d["y"]
        if n_letter < X.shape[0]:
            X, _, y, _ = train_test_split(X, y, train_size=n_letter, stratify=y,
                                          random_state=0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y,
                                              random_state=0)
    sc = StandardScaler().fit(X_tr)
    return sc.transform(X_tr), sc.transform(X_te), y_tr, y_te


def run_peer(peer_python, data_path, mode, tmp):
    out = os.path.join(tmp, f"peer_{mode}.npz")
    script = os.path.join(tmp, "peer.py")
    with open(script, "w") as f:
        f.write(PEER_SCRIPT)
    res = subprocess.run([peer_python, script, data_path, out, mode], check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["fit_time"], np.load(out)


def knn_error(Z_tr, y_tr, Z_te, y_te):
    return 1.0 - KNeighborsClassifier(3).fit(Z_tr, y_tr).score(Z_te, y_te)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-python", default="/work/peers/bin/python")
    ap.add_argument("--datasets", default="digits,letter")
    ap.add_argument("--n-letter", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    from mahal import SCML, SCML_Supervised
    from mahal._scml_solver import lda_bases, scml_objective
    from mahal.constraints import Constraints

    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets.split(","):
            X_tr, X_te, y_tr, y_te = load(name, args.n_letter)
            _, codes = np.unique(y_tr, return_inverse=True)
            trip = Constraints(codes).generate_knntriplets(X_tr, 3, 10)
            d, r = X_tr.shape[1], min(np.unique(codes).shape[0] - 1, X_tr.shape[1])
            n_basis = min(20 * d, 2 * X_tr.shape[0] * r - 1)
            B = lda_bases(X_tr, codes, n_basis, np.random.RandomState(0))
            path = os.path.join(tmp, f"{name}.npz")
            np.savez(path, X=X_tr, triplets=trip, basis=B, X_train=X_tr,
                     y_train=codes, X_test=X_te)
            _, codes_te = np.unique(np.concatenate([y_tr, y_te]), return_inverse=True)
            codes_te = codes_te[len(y_tr):]
            # same problem, alternating
            t_ml, t_mh = [], []
            for _ in range(args.repeats):
                t, out = run_peer(args.peer_python, path, "same", tmp)
                t_ml.append(t)
                w_ml = out["w"]
                t0 = time.perf_counter()
                m = SCML(basis=B, preprocessor=X_tr).fit(trip)
                t_mh.append(time.perf_counter() - t0)
            obj_ml = scml_objective(w_ml, B, X_tr[trip], 1e-5)
            obj_mh = scml_objective(m.weights_, B, X_tr[trip], 1e-5)
            # at equal objective: the fewest rounds (max_iter) whose result is at
            # least as good as metric-learn's, timed as above
            for rounds in range(1, m.n_iter_ + 1):
                early = SCML(basis=B, preprocessor=X_tr, max_iter=rounds).fit(trip)
                obj_eq = scml_objective(early.weights_, B, X_tr[trip], 1e-5)
                if obj_eq <= obj_ml:
                    break
            t_eq = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                SCML(basis=B, preprocessor=X_tr, max_iter=rounds).fit(trip)
                t_eq.append(time.perf_counter() - t0)
            # supervised, alternating
            s_ml, s_mh = [], []
            for _ in range(args.repeats):
                t, out = run_peer(args.peer_python, path, "supervised", tmp)
                s_ml.append(t)
                err_ml = knn_error(out["Z_train"], codes, out["Z_test"], codes_te)
                t0 = time.perf_counter()
                sup = SCML_Supervised(random_state=0).fit(X_tr, codes)
                s_mh.append(time.perf_counter() - t0)
            err_mh = knn_error(sup.transform(X_tr), codes, sup.transform(X_te), codes_te)
            err_eu = knn_error(X_tr, codes, X_te, codes_te)
            row = dict(dataset=name, n_train=X_tr.shape[0], n_triplets=len(trip),
                       n_basis=B.shape[0],
                       same_time_ml=min(t_ml), same_time_mahal=min(t_mh),
                       same_ratio=min(t_ml) / min(t_mh),
                       objective_ml=obj_ml, objective_mahal=obj_mh,
                       equal_rounds=rounds, equal_time_mahal=min(t_eq),
                       equal_objective_mahal=obj_eq, equal_ratio=min(t_ml) / min(t_eq),
                       mahal_rounds=m.n_iter_, nonzero_mahal=int((m.weights_ > 0).sum()),
                       nonzero_ml=int((w_ml > 0).sum()),
                       sup_time_ml=min(s_ml), sup_time_mahal=min(s_mh),
                       sup_ratio=min(s_ml) / min(s_mh),
                       knn_err_ml=err_ml, knn_err_mahal=err_mh, knn_err_euclidean=err_eu)
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
