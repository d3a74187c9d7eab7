"""Contrastive and TripletMargin on letter's base classes: fit time, and novel-class
N-way K-shot accuracy of 1-NN in the learned space.

letter's classes A–P (16, ~12000 points) are the base classes the metrics are
learned on, Q–Z (10) the novel ones they are evaluated on; features are
standardised with the base classes' mean and scale. Every row is scored on the same
episodes (fixed seed): ``ways`` novel classes, ``shots`` support points and
``queries`` query points per class, a query labelled by its nearest support point.
Prints the fit time of each learner (wall and process CPU, one fit after a warm-up
fit that compiles the kernels) and the mean accuracy with its 95% interval
(1.96 standard errors over the episodes), then the paired differences between
semi-hard mining and the other rules (and Contrastive) on the same episodes.

(The official few-shot tables come from ``benchmarks/fewshot.py``; this script
measures the fit-time target of ``TripletMargin_Supervised`` and the comparison of
its mining rules.)

Usage::

    PYTHONPATH=$PWD MAHAL_DATA=/work/shared/datasets \\
        python benchmarks/siamese_fewshot.py --episodes 600 --shots 1 5
    PYTHONPATH=$PWD python benchmarks/siamese_fewshot.py --hard-sweep
"""

import argparse
import os
import time
import warnings

import numpy as np

BASE, NOVEL = list("ABCDEFGHIJKLMNOP"), list("QRSTUVWXYZ")


def load_letter():
    path = os.path.join(os.environ.get("MAHAL_DATA", "/work/shared/datasets"),
                        "letter.npz")
    data = np.load(path)
    X, y = data["X"], data["y"]
    base = np.isin(y, BASE)
    mu, sd = X[base].mean(axis=0), X[base].std(axis=0)
    X = (X - mu) / sd
    return X[base], y[base], X[~base], y[~base]


def episodes_accuracy(Z, y, ways, shots, queries, n_episodes, seed):
    """Accuracy of 1-NN on each of ``n_episodes`` episodes drawn with ``seed``."""
    rng = np.random.RandomState(seed)
    classes = np.unique(y)
    members = {c: np.flatnonzero(y == c) for c in classes}
    acc = np.empty(n_episodes)
    for e in range(n_episodes):
        chosen = rng.choice(classes, ways, replace=False)
        support, query, q_lab = [], [], []
        for k, c in enumerate(chosen):
            idx = rng.choice(members[c], shots + queries, replace=False)
            support.append(idx[:shots])
            query.append(idx[shots:])
            q_lab.append(np.full(queries, k))
        S = Z[np.concatenate(support)]
        s_lab = np.repeat(np.arange(ways), shots)
        Q = Z[np.concatenate(query)]
        d = ((Q[:, None, :] - S[None, :, :]) ** 2).sum(-1)
        acc[e] = np.mean(s_lab[d.argmin(1)] == np.concatenate(q_lab))
    return acc


def mean_ci(values):
    """Mean and half-width of its 95% interval (1.96 standard errors)."""
    return values.mean(), 1.96 * values.std(ddof=1) / np.sqrt(values.shape[0])


def learners(seed, hard_sweep=False):
    from mahal import Contrastive_Supervised, TripletMargin_Supervised

    if hard_sweep:  # batch-hard mining with other settings: does it still collapse?
        return [(f"hard {k}={v}", TripletMargin_Supervised(
            mining="hard", random_state=seed, **{k: v}))
            for k, v in (("learning_rate", 0.001), ("samples_per_class", 4),
                         ("margin", 0.1), ("init", "random"), ("n_components", 8))]
    rows = [("Euclidean", None),
            ("Contrastive_Supervised", Contrastive_Supervised(random_state=seed))]
    for mining in ("semihard", "hard", "all"):
        rows.append((f"TripletMargin_Supervised({mining})",
                     TripletMargin_Supervised(mining=mining, random_state=seed)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--ways", type=int, default=5)
    ap.add_argument("--shots", type=int, nargs="+", default=[1])
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hard-sweep", action="store_true",
                    help="only batch-hard mining, with other settings, and the norm "
                         "of the learned L")
    args = ap.parse_args()
    Xb, yb, Xn, yn = load_letter()
    print(f"letter: {Xb.shape[0]} base points ({len(BASE)} classes), {Xn.shape[0]} "
          f"novel points ({len(NOVEL)} classes); {args.episodes} episodes, "
          f"{args.ways}-way, {args.queries} queries per class")
    header = (f"{'learner':>36} {'fit wall s':>10} {'fit cpu s':>9} {'epochs/its':>10}"
              f" {'|L|_F':>8}")
    header += "".join(f" {f'{s}-shot acc %':>16}" for s in args.shots)
    print(header)
    per_episode = {}
    for name, est in learners(args.seed, args.hard_sweep):
        wall = cpu = 0.0
        its, norm = "-", np.nan
        if est is None:
            Z = Xn
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(Xb[:500], yb[:500])  # warm-up: numba compiles or loads
                w, c = time.perf_counter(), time.process_time()
                est.fit(Xb, yb)
                wall, cpu = time.perf_counter() - w, time.process_time() - c
            its, norm = est.n_iter_, np.linalg.norm(est.components_)
            Z = est.transform(Xn)
        line = f"{name:>36} {wall:>10.2f} {cpu:>9.2f} {its:>10} {norm:>8.2g}"
        for s in args.shots:
            acc = episodes_accuracy(Z, yn, args.ways, s, args.queries, args.episodes,
                                    args.seed)
            per_episode[name, s] = acc
            m, ci = mean_ci(acc)
            line += f" {100 * m:>9.1f} ± {100 * ci:.1f}"
        print(line, flush=True)
    if args.hard_sweep:
        return
    # every row saw the same episodes: paired differences of the mining rules
    semihard = "TripletMargin_Supervised(semihard)"
    for other in ("TripletMargin_Supervised(hard)", "TripletMargin_Supervised(all)",
                  "Contrastive_Supervised"):
        line = f"{'semihard − ' + other.split('(')[-1].rstrip(')'):>36} (paired)"
        for s in args.shots:
            m, ci = mean_ci(per_episode[semihard, s] - per_episode[other, s])
            line += f" {100 * m:>+9.1f} ± {100 * ci:.1f}"
        print(line)


if __name__ == "__main__":
    main()
