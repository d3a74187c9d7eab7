#!/usr/bin/env python
"""SDML's graphical lasso: scikit-learn's inner tolerance ``enet_tol``, and
scikit-learn's solver against mahal's compiled one.

1. An ill-conditioned ``P``: ``prior='covariance'`` on breast cancer (standardised, 30
   correlated features), 80 pairs of each kind (``Constraints``, seed 0),
   ``balance_param=1e-5``; for ``sparsity_param`` 0.01, 0.03, 0.1 and each
   ``enet_tol``: sweeps, time, and the objective's distance to the cvxpy optimum.
2. The benchmark data (quick protocol, split 0, identity prior, ``20 · n_classes²``
   pairs, ``balance_param`` 0.5 and 1e-5): sweeps, best time of 5, objective, for the
   two tolerances alternately.
3. scikit-learn's solver (``enet_tol=1e-8``) against the compiled one
   (:func:`mahal._sdml_solver.glasso_compiled`) on the ``P`` of 1., and on the
   benchmark data with ``balance_param`` 0.5 (repaired) and 1e-5: best time of 5 and
   objective; then one fit each on isolet and mnist (paper protocol: PCA to 172 and
   164 dimensions; mnist's first 10000 training points) and isolet standardised (617
   features), where they are found.

Usage::

    PYTHONPATH=. MAHAL_DATA=/path/to/npz python benchmarks/sdml_solvers.py
"""

import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as H  # noqa: E402
from sdml_vs_peers import best_time  # noqa: E402


def pairs_loss(X, y, n_pairs):
    from mahal._sdml_solver import pair_loss_matrix
    from mahal.constraints import Constraints

    a, b, c, d = Constraints(y).positive_negative_pairs(
        n_pairs, random_state=np.random.RandomState(0))
    diffs = np.concatenate([X[a] - X[b], X[c] - X[d]])
    labels = np.concatenate([np.ones(len(a)), -np.ones(len(c))])
    return pair_loss_matrix(diffs, labels)


def main():
    from sklearn.covariance import graphical_lasso
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from mahal import reference
    from mahal._sdml_solver import (effective_balance, glasso_sklearn, sdml_matrix,
                                    sdml_objective)

    warnings.simplefilter("ignore")
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    C = np.cov(X, rowvar=False)
    L = pairs_loss(X, y, 80)
    P = sdml_matrix(C, L, 1e-5)
    print(f"breast cancer, prior='covariance': cond(P) = {np.linalg.cond(P):.3g}")
    for lam in (0.01, 0.03, 0.1):
        _, f_ref = reference.sdml(P, lam)
        for enet_tol in (1e-4, 1e-6, 1e-7, 1e-8):
            t = time.perf_counter()
            try:
                _, M, n_iter = graphical_lasso(P, lam, enet_tol=enet_tol,
                                               return_n_iter=True)
            except FloatingPointError:
                print(f"  λ={lam:<5g} enet_tol={enet_tol:<6g} failed "
                      f"({time.perf_counter() - t:.3f} s)")
                continue
            gap = (sdml_objective(M, P, lam) - f_ref) / abs(f_ref)
            print(f"  λ={lam:<5g} enet_tol={enet_tol:<6g} {n_iter:>3} sweeps "
                  f"{time.perf_counter() - t:.3f} s  relative excess {gap:.2e}")
    print("benchmark data, identity prior (best of 5 ms / sweeps / objective)")
    for name in ("iris", "breast_cancer", "digits", "letter"):
        s = H.load_splits(name, "quick", 1, 0)[0]
        X, y = s["Xtr"], s["ytr"]
        L = pairs_loss(X, y, 20 * len(np.unique(y)) ** 2)
        for eta in (0.5, 1e-5):
            eta, _ = effective_balance(np.eye(X.shape[1]), L, eta)
            P_eta = sdml_matrix(np.eye(X.shape[1]), L, eta)
            cells = []
            for enet_tol in (1e-4, 1e-8, 1e-4, 1e-8):
                times = []
                for _ in range(5):
                    t = time.perf_counter()
                    M, n_iter = glasso_sklearn(P_eta, 0.01, tol=1e-4,
                                               enet_tol=enet_tol, max_iter=100)
                    times.append(time.perf_counter() - t)
                cells.append(f"{enet_tol:g}: {min(times) * 1e3:.1f} / {n_iter} / "
                             f"{sdml_objective(M, P_eta, 0.01):.6f}")
            print(f"  {name:<14} η={eta:<6g} " + "  ".join(cells))
    compare_solvers(C, load_breast_cancer, StandardScaler)
    return 0


def compare_solvers(C_bc, load_breast_cancer, StandardScaler):
    from mahal._sdml_solver import (effective_balance, glasso_compiled,
                                    glasso_sklearn, sdml_matrix, sdml_objective)

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    L = pairs_loss(X, y, 80)
    problems = [("breast cancer, cov prior", sdml_matrix(C_bc, L, 1e-5), 1)]
    for name, protocol, repeats in (("iris", "quick", 5), ("breast_cancer", "quick", 5),
                                    ("digits", "quick", 5), ("letter", "quick", 5),
                                    ("isolet", "paper", 1), ("mnist", "paper", 1),
                                    ("isolet", "quick", 1)):
        try:
            s = H.load_splits(name, protocol, 1, 0, mnist_train=10000)[0]
        except H.DataMissing:
            print(f"  {name}: skipped (no file)")
            continue
        X, y = s["Xtr"], s["ytr"]
        d = X.shape[1]
        L = pairs_loss(X, y, 20 * len(np.unique(y)) ** 2)
        for eta in (0.5, 1e-5):
            eta, _ = effective_balance(np.eye(d), L, eta)
            problems.append((f"{name} ({protocol}, d={d}) η={eta:.3g}",
                             sdml_matrix(np.eye(d), L, eta), repeats))
    print("scikit-learn's solver against the compiled one (λ = 0.01; best time, "
          "objective)")
    glasso_compiled(np.eye(3) + 0.1, 0.01, max_iter=10)  # compile / load the cache
    for label, P, repeats in problems:
        t_c, (M_c, n_c, _) = best_time(lambda: glasso_compiled(P, 0.01, max_iter=100),
                                   repeats)
        t_s, (M_s, n_s) = best_time(lambda: glasso_sklearn(P, 0.01, tol=1e-4,
                                                       enet_tol=1e-8, max_iter=100),
                                repeats)
        f_s = "failed" if M_s is None else f"{sdml_objective(M_s, P, 0.01):.8f}"
        print(f"  {label:<40} scikit-learn {t_s * 1e3:9.2f} ms {f_s:>14}   compiled "
              f"{t_c * 1e3:8.2f} ms {sdml_objective(M_c, P, 0.01):.8f}")


if __name__ == "__main__":
    sys.exit(main())
