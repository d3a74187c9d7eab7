"""LSML and RCA: mahal vs metric-learn 0.7 on the same quadruplets and chunklets.

For each data set (standardised on the training part, as the quick suite), the
quadruplets of ``LSML_Supervised`` (``20 · n_classes²`` of them: a same-class pair
and a different-class pair, drawn by :class:`mahal.Constraints` with seed 0) and the
chunklets of ``RCA_Supervised`` (100 chunklets of 2 points, seed 0) are drawn once
and given to both libraries' ``LSML().fit(quadruplets)`` and
``RCA().fit(X, chunks)``; metric-learn runs in its own interpreter on the same
arrays. The fits alternate (peer, mahal, peer, mahal, …; ``--rounds``) and the
script reports the median fit times and their ratio, LSML's objective (metric-learn's
``_total_loss``, evaluated here by one function for both), RCA's objective
``Σ_chunklets Σ_x d_M(x, m) − N log det M`` (on the subspace the metric lives in)
and the 3-NN test error in the learned space (NaN: the learner returned NaN).

Usage::

    python benchmarks/lsml_rca_vs_peers.py --peer-python /work/peers/bin/python \\
        [--datasets digits,letter] [--rounds 3]
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402

PEER_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from metric_learn import LSML, RCA
data = np.load(sys.argv[1])
which, out = sys.argv[2], {}
try:
    t = time.perf_counter()
    if which == "lsml":
        m = LSML().fit(data["quadruplets"])
    else:
        m = RCA().fit(data["X_train"], data["chunks"])
    out["fit_time"] = time.perf_counter() - t
    np.save(sys.argv[3], m.components_)
except Exception as e:
    out["error"] = type(e).__name__ + ": " + str(e)[:200]
print(json.dumps(out))
"""


def lsml_objective(M, quadruplets, prior_inv):
    """metric-learn 0.7's ``_total_loss`` with equal weights summing to one."""
    vab = quadruplets[:, 0] - quadruplets[:, 1]
    vcd = quadruplets[:, 2] - quadruplets[:, 3]
    dab = np.einsum("ij,jk,ik->i", vab, M, vab)
    dcd = np.einsum("ij,jk,ik->i", vcd, M, vcd)
    viol = dab > dcd
    hinge = np.sum((np.sqrt(dab[viol]) - np.sqrt(dcd[viol])) ** 2) / len(vab)
    sign, logdet = np.linalg.slogdet(M)
    return float(hinge + np.sum(M * prior_inv) - sign * logdet)


def rca_objective(G, X, chunks):
    """RCA's objective at ``M = GᵀG`` on the span of ``G``'s rows."""
    if not np.all(np.isfinite(G)):
        return float("nan")
    mask = chunks >= 0
    ids, inv = np.unique(chunks[mask], return_inverse=True)
    Xc = X[mask]
    means = np.zeros((len(ids), X.shape[1]))
    np.add.at(means, inv, Xc)
    means /= np.bincount(inv)[:, None]
    Z = (Xc - means[inv]) @ G.T
    B = np.linalg.qr(G.T)[0][:, :np.linalg.matrix_rank(G)]
    sign, logdet = np.linalg.slogdet(B.T @ (G.T @ G) @ B)
    return float(np.sum(Z * Z) - Xc.shape[0] * logdet) if sign > 0 else float("inf")


def peer_fit(python, data_path, which, tmp):
    out = os.path.join(tmp, f"peer_{which}.npy")
    proc = subprocess.run([python, "-c", PEER_SCRIPT, data_path, which, out],
                          capture_output=True, text=True, env=H._child_env(python))
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1][:200]}, None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return res, (np.load(out) if "error" not in res else None)


def mahal_fit(which, X, quadruplets, chunks):
    from mahal import LSML, RCA
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        if which == "lsml":
            m = LSML().fit(quadruplets)
        else:
            m = RCA().fit(X, chunks)
        return time.perf_counter() - t, m.components_


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peer-python", default="/work/peers/bin/python")
    p.add_argument("--datasets", default="digits,letter")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-home", default=None)
    args = p.parse_args()
    from mahal.constraints import Constraints

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"{args.rounds} alternating rounds, median times")
    head = (f"{'data set':<8} {'learner':<5} {'mahal (s)':>10} {'m-l (s)':>10} "
            f"{'speed-up':>9} {'objective mahal':>16} {'objective m-l':>16} "
            f"{'3-NN err mahal':>15} {'3-NN err m-l':>13}")
    rows = [head, "-" * len(head)]
    for name in args.datasets.split(","):
        s = H.load_splits(name, data_home=args.data_home)[0]
        X, y, Xte, yte = s["Xtr"], s["ytr"], s["Xte"], s["yte"]
        cons = Constraints(y)
        n_q = 20 * len(np.unique(y)) ** 2
        a, b, c, d = cons.positive_negative_pairs(n_q, same_length=True, random_state=0)
        quadruplets = X[np.column_stack([a, b, c, d])]
        chunks = cons.chunks(n_chunks=100, chunk_size=2, random_state=0)
        with tempfile.TemporaryDirectory() as tmp:
            data_path = os.path.join(tmp, "data.npz")
            np.savez(data_path, X_train=X, quadruplets=quadruplets, chunks=chunks)
            for which in ("lsml", "rca"):
                ours, theirs, G_ours, G_peer, peer_err = [], [], None, None, None
                for _ in range(args.rounds):
                    res, G = peer_fit(args.peer_python, data_path, which, tmp)
                    if "error" in res:
                        peer_err = res["error"]
                    else:
                        theirs.append(res["fit_time"])
                        G_peer = G
                    t, G_ours = mahal_fit(which, X, quadruplets, chunks)
                    ours.append(t)
                t_ours = float(np.median(ours))
                t_peer = float(np.median(theirs)) if theirs else float("nan")

                def objective(G):
                    if G is None:
                        return float("nan")
                    if which == "lsml":
                        return lsml_objective(G.T @ G, quadruplets, np.eye(X.shape[1]))
                    return rca_objective(G, X, chunks)

                def knn(G):
                    if G is None or not np.all(np.isfinite(G)):
                        return float("nan")
                    return H.knn_error(X @ G.T, y, Xte @ G.T, yte)

                rows.append(
                    f"{name:<8} {which:<5} {t_ours:>10.4f} {t_peer:>10.4f} "
                    f"{t_peer / t_ours:>8.1f}x {objective(G_ours):>16.6f} "
                    f"{objective(G_peer):>16.6f} {knn(G_ours):>15.4f} "
                    f"{knn(G_peer):>13.4f}")
                if peer_err:
                    rows.append(f"    metric-learn {which} on {name}: {peer_err}")
                print(rows[-1], flush=True)
    print("\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
