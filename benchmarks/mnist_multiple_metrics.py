"""An experiment for issue 25: LMNN with one metric per class on MNIST's validation
split.

The paper's section 5 ("multiple metrics") and its reference code
(``MultipleMetric/MMlmnn.m``) learn one metric per class: the distance from a point
to a training point is measured in the metric of the training point's class, so a
target pair uses its class's metric and an impostor pair the impostor's. Same
objective otherwise: ``(1 − μ) Σ d_ij + μ Σ [1 + d_ij − d_il]_+`` with μ = 0.5.
This is a NumPy prototype, not a learner of the library: every metric starts at
``LMNN()``'s solution; impostor candidates (``d_il`` below the largest target
distance + 2, the reference code's radius) are searched exactly every 10 L-BFGS
iterations; loss and gradient are exact over them (checked against
``lmnn_loss_grad`` with equal metrics and against finite differences when written).
Scored by 3-NN with the same asymmetric distance (the reference code's
``MMknnclassify``) on the last 10000 training images, the first 50000 training
(``benchmarks/mnist_lmnn.py``'s split and preprocessing).

Usage::

    MAHAL_DATA=... python benchmarks/mnist_multiple_metrics.py [--max-iter 200]
"""
import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

MU = 0.5


def transforms(X, Ls):
    return [X @ L.T for L in Ls]


def target_dists(Z, y, T):
    n, k = T.shape
    out = np.empty((n, k))
    for c in range(len(Z)):
        idx = np.flatnonzero(y == c)
        Zc = Z[c]
        for j in range(k):
            diff = Zc[idx] - Zc[T[idx, j]]
            out[idx, j] = np.einsum("ij,ij->i", diff, diff)
    return out


def search(Z, y, dt, margin=2.0, block=4000):
    """Candidates (i, l), y_l != y_i, with d_{y_l}(i, l) < max_k dt[i] + margin."""
    thr = dt.max(axis=1) + margin
    I, J = [], []
    for c in range(len(Z)):
        refs = np.flatnonzero(y == c)
        anchors = np.flatnonzero(y != c)
        Zc = Z[c]
        R = Zc[refs]
        rn = np.einsum("ij,ij->i", R, R)
        for s in range(0, len(anchors), block):
            a = anchors[s:s + block]
            A = Zc[a]
            D = np.einsum("ij,ij->i", A, A)[:, None] + rn[None, :] - 2 * A @ R.T
            ii, jj = np.nonzero(D < thr[a, None])
            I.append(a[ii])
            J.append(refs[jj])
    return np.concatenate(I), np.concatenate(J)


def loss_grad(flat, X, y, T, I, J, C, r):
    d = X.shape[1]
    Ls = flat.reshape(C, r, d)
    Z = transforms(X, Ls)
    n, k = T.shape
    dt = target_dists(Z, y, T)
    # impostor distances in the impostor's metric
    dil = np.empty(len(I))
    yJ = y[J]
    for c in range(C):
        m = yJ == c
        diff = Z[c][I[m]] - Z[c][J[m]]
        dil[m] = np.einsum("ij,ij->i", diff, diff)
    # hinge per (candidate, k)
    h = 1.0 + dt[I, :] - dil[:, None]          # (m, k)
    act = h > 0
    loss = (1 - MU) * dt.sum() + MU * h[act].sum()
    # weights: target pair (i, T[i,k]) gets (1-MU) + MU * #active l for (i,k)
    wt = np.full((n, k), 1 - MU)
    np.add.at(wt, (I,), MU * act)               # rows of candidates
    # impostor pair (i, l): -MU * #active k
    wi = -MU * act.sum(axis=1)
    grads = np.empty_like(Ls)
    for c in range(C):
        rows = np.flatnonzero(y == c)
        a_t = np.repeat(rows, k)
        b_t = T[rows].ravel()
        w_t = wt[rows].ravel()
        m = (yJ == c) & (wi != 0)
        a = np.concatenate([a_t, I[m]])
        b = np.concatenate([b_t, J[m]])
        w = np.concatenate([w_t, wi[m]])
        W = sp.coo_matrix((w, (a, b)), shape=(n, n)).tocsr()
        deg = np.asarray(W.sum(axis=1)).ravel() + np.asarray(W.sum(axis=0)).ravel()
        WX = W @ X
        S = X.T @ (deg[:, None] * X) - X.T @ WX - WX.T @ X
        grads[c] = 2 * Ls[c] @ S
    return loss, grads.ravel()


def fit(L0, X, y, T, max_iter=200, research=10, verbose=True):
    C = int(y.max()) + 1
    r, d = L0.shape
    flat = np.tile(L0, (C, 1, 1)).ravel()
    done = 0
    t0 = time.time()
    while done < max_iter:
        Ls = flat.reshape(C, r, d)
        Z = transforms(X, Ls)
        I, J = search(Z, y, target_dists(Z, y, T))
        res = minimize(loss_grad, flat, args=(X, y, T, I, J, C, r), jac=True,
                       method="L-BFGS-B",
                       options={"maxiter": min(research, max_iter - done), "ftol": 1e-9,
                                "gtol": 0})
        done += res.nit
        if verbose:
            print(f"{done:4d} f={res.fun:.6g} candidates={len(I)} "
                  f"{time.time() - t0:.0f}s {res.message}", flush=True)
        converged = res.nit < research and res.success
        flat = res.x
        if converged:
            # verify: a fresh search that finds no new active impostors ends it
            Ls = flat.reshape(C, r, d)
            Z = transforms(X, Ls)
            I2, J2 = search(Z, y, target_dists(Z, y, T))
            f2 = loss_grad(flat, X, y, T, I2, J2, C, r)[0]
            if verbose:
                print(f"  verify f={f2:.6g} candidates={len(I2)}", flush=True)
            if f2 <= res.fun * (1 + 1e-9):
                break
        if res.nit == 0:
            break
    return flat.reshape(C, r, d)


def knn_error(Ls, X, y, Xq, yq, k=3, block=2000):
    C = len(Ls)
    Zs = transforms(X, Ls)
    pred = np.empty(len(yq), dtype=y.dtype)
    for s in range(0, len(yq), block):
        q = Xq[s:s + block]
        D = np.empty((len(q), len(y)))
        for c in range(C):
            idx = np.flatnonzero(y == c)
            Zq = q @ Ls[c].T
            R = Zs[c][idx]
            D[:, idx] = (np.einsum("ij,ij->i", Zq, Zq)[:, None]
                         + np.einsum("ij,ij->i", R, R)[None, :] - 2 * Zq @ R.T)
        nn = np.argpartition(D, k, axis=1)[:, :k]
        # order the k by distance to break ties like sklearn (nearest first)
        dd = np.take_along_axis(D, nn, axis=1)
        nn = np.take_along_axis(nn, np.argsort(dd, axis=1), axis=1)
        votes = y[nn]
        for t in range(len(q)):
            cnt = np.bincount(votes[t], minlength=C)
            pred[s + t] = np.argmax(cnt)
    return float(np.mean(pred != yq))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-home", default=os.environ.get("MAHAL_DATA"))
    p.add_argument("--max-iter", type=int, default=200)
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from mnist_lmnn import prepare
    from mahal import LMNN
    X, y, Xv, yv = prepare("validation", args.data_home)
    t0 = time.time()
    lmnn = LMNN(random_state=0, n_jobs=-1).fit(X, y)
    print(f"LMNN(): {lmnn.n_iter_} iterations, {time.time() - t0:.0f} s", flush=True)
    L0, T = lmnn.components_, lmnn.target_neighbors_
    print(f"one metric 3-NN: {100 * knn_error([L0] * 10, X, y, Xv, yv):.2f}%", flush=True)
    Ls = fit(L0, X, y, T, max_iter=args.max_iter)
    print(f"one metric per class 3-NN: {100 * knn_error(Ls, X, y, Xv, yv):.2f}%",
          flush=True)


if __name__ == "__main__":
    main()
