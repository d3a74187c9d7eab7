"""Few-shot benchmark: a metric learned on base classes, evaluated on novel classes.

Protocol (issue 22). Each data set's classes are split into *base* classes (the
metric learners are fitted on their points) and disjoint *novel* classes (never
seen in training), on which N-way K-shot episodes are sampled
(:func:`mahal.fewshot.sample_episodes`): 5-way 1-shot and 5-way 5-shot, 15 queries
per class, the same episodes (fixed seeds) for every row. Reported: mean accuracy
over the episodes ± the half-width of its 95% confidence interval.

Data (``--data-home`` or ``$MAHAL_DATA``):

- ``letter``: the 20000 rows, classes in sorted order: the first 16 (A–P) base,
  the last 10 (Q–Z) novel; standardised on the base points.
- ``isolet``: both parts (3119 rows), 16 base / 10 novel as for letter;
  standardised on the base points, then PCA to 100 dimensions fitted on them (the
  learners' cost; every row sees the same 100 dimensions).
- ``omniglot``: pixels / 255, PCA to 100 dimensions fitted on the base images; the
  first 5 background alphabets (136 characters) base, the other 3 (106) novel;
  20 drawers per character, so the shots curve uses 10 queries there.
- ``omniglot-lake``: Lake et al.'s 20 one-shot runs (20-way 1-shot, 20 queries
  each, from the evaluation alphabets): learners fitted on all 8 background
  alphabets (PCA-100 fitted on them first); mean accuracy over the 20 runs ± 95%.

Rows: ``euclidean`` (the input space), ``covariance``, ``lmnn`` (mahal's LMNN,
k = 3), ``nca`` (scikit-learn's NeighborhoodComponentsAnalysis, at most 6000 base
points: its cost is quadratic in them), ``ncmml`` (batch) and ``ncmml_episodic``
(5-way 1-shot training episodes, 15 queries per class, or as many as the
smallest base class allows), and, when mahal has them, ``Contrastive_Supervised``
and ``TripletMargin_Supervised`` with each mining rule. Columns, in each row's
space: ``1-NN``, ``proto`` (nearest class mean, squared Euclidean distance in the
row's space, i.e. the learned metric) and ``cos`` (the cosine classifier: nearest
class mean by cosine in the row's space). The episode rules are vectorised here;
their agreement with :class:`mahal.PrototypeClassifier` and
``KNeighborsClassifier(1)`` through :func:`mahal.fewshot.evaluate_episodes` is
checked on the first episodes of every run.

Quick mode (the default): at most 1000 base points per data set (stratified, seed
0), LMNN and NCA stopped at 50 iterations, Contrastive_Supervised on 20000 pairs of
each kind, 200 episodes. ``--full``: all base points, 1000 episodes.
A plot of the prototype accuracy against shots (1, 2, 5, 10; 5-way) goes to
``--out`` (``fewshot_shots.png``), with ``fewshot.md`` and ``fewshot.json``.

Usage::

    MAHAL_DATA=/path/to/datasets python benchmarks/fewshot.py          # quick
    MAHAL_DATA=/path/to/datasets python benchmarks/fewshot.py --full
    python benchmarks/fewshot.py --datasets letter --learners euclidean,ncmml
"""

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

DATASETS = ("letter", "isolet", "omniglot", "omniglot-lake")
SHOTS = (1, 2, 5, 10)
N_WAY, N_QUERY = 5, 15
SEED = 0
NCA_MAX_POINTS = 6000
QUICK_MAX_BASE = 1000
QUICK_MAX_ITER = 50     # LMNN and NCA in quick mode
QUICK_PAIRS = 20000     # Contrastive_Supervised's pairs of each kind in quick mode


# --------------------------------------------------------------------------- data


def _npz(data_home, name):
    path = os.path.join(data_home, f"{name}.npz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; put {name}.npz there (see "
                                f"/work/shared/datasets/README.md) or pass --data-home.")
    return np.load(path)


def load(name, data_home):
    """``dict(Xb, yb, Xn, yn)`` (base and novel points, preprocessed) or, for
    ``omniglot-lake``, ``dict(Xb, yb, runs=[(train, test, answer), ...])``."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if name in ("letter", "isolet"):
        d = _npz(data_home, name)
        X, y = d["X"].astype(np.float64), d["y"]
        if "X_test" in d.files:
            X, y = np.vstack([X, d["X_test"]]), np.concatenate([y, d["y_test"]])
        classes = np.unique(y)
        base = np.isin(y, classes[:16])
        sc = StandardScaler().fit(X[base])
        X = sc.transform(X)
        if name == "isolet":
            X = PCA(100, random_state=0).fit(X[base]).transform(X)
        return dict(Xb=X[base], yb=y[base], Xn=X[~base], yn=y[~base])
    d = _npz(data_home, "omniglot")
    X, y = d["X"].astype(np.float64) / 255.0, d["y"]
    if name == "omniglot":
        base = d["alphabet"] < 5
        X = PCA(100, random_state=0).fit(X[base]).transform(X)
        return dict(Xb=X[base], yb=y[base], Xn=X[~base], yn=y[~base])
    pca = PCA(100, random_state=0).fit(X)
    runs = [(pca.transform(d["run_train"][r] / 255.0),
             pca.transform(d["run_test"][r] / 255.0), d["run_answer"][r])
            for r in range(d["run_train"].shape[0])]
    return dict(Xb=pca.transform(X), yb=y, runs=runs)


def subsample(X, y, n_max, seed=SEED):
    """At most ``n_max`` points, stratified (all of them if fewer)."""
    if X.shape[0] <= n_max:
        return X, y
    from sklearn.model_selection import train_test_split
    keep, _, y_keep, _ = train_test_split(np.arange(X.shape[0]), y, train_size=n_max,
                                          stratify=y, random_state=seed)
    return X[keep], y_keep


# --------------------------------------------------------------------------- learners


def learners(names=None):
    """name -> factory of an unfitted transformer (None: the identity)."""
    import mahal
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    table = {
        "euclidean": lambda: None,
        "covariance": lambda: mahal.Covariance(),
        "lmnn": lambda: mahal.LMNN(n_neighbors=3, n_jobs=-1),
        "nca": lambda: NeighborhoodComponentsAnalysis(random_state=SEED),
        "ncmml": lambda: mahal.NCMML(random_state=SEED),
        "ncmml_episodic": lambda: mahal.NCMML(episodic=True, random_state=SEED),
    }
    # the contrastive and triplet learners (issue 22), once they are in mahal
    contrastive = getattr(mahal, "Contrastive_Supervised", None)
    if contrastive is not None:
        table["contrastive"] = lambda: _seeded(contrastive())
    triplet = getattr(mahal, "TripletMargin_Supervised", None)
    if triplet is not None:
        for mining in ("all", "hard", "semihard"):
            table[f"triplet_{mining}"] = (
                lambda m=mining: _seeded(triplet(mining=m)))
    if names:
        unknown = set(names) - set(table)
        if unknown:
            raise SystemExit(f"unknown learners {sorted(unknown)}; known: "
                             f"{sorted(table)}")
        table = {n: table[n] for n in names}
    return table


def _seeded(est):
    if "random_state" in est.get_params():
        est.set_params(random_state=SEED)
    return est


def fit_learner(name, factory, Xb, yb, quick=False):
    """``(transform, seconds, note)``; the transform maps points to the row's space."""
    est = factory()
    if est is None:
        return (lambda X: X), 0.0, ""
    if name == "nca":
        Xb, yb = subsample(Xb, yb, NCA_MAX_POINTS)
    if name == "ncmml_episodic":
        # (omniglot's characters have 20 drawers, fewer after subsampling)
        smallest = int(np.bincount(np.unique(yb, return_inverse=True)[1]).min())
        est.set_params(n_query=min(est.n_query, smallest - est.n_shot))
    if quick and name in ("lmnn", "nca"):
        est.set_params(max_iter=QUICK_MAX_ITER)
    if quick and name == "contrastive":
        # (its default, 20 · n_classes² pairs of each kind, is 10⁶ on Omniglot's
        # 242 classes: more than the 1000 points have distinct pairs)
        est.set_params(n_constraints=QUICK_PAIRS)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(Xb, yb)
    seconds = time.perf_counter() - t0
    note = "not converged" if any("converge" in str(w.message) for w in caught) else ""
    return est.transform, seconds, note


# --------------------------------------------------------------------------- rules


def _sq_dist(Q, S):
    """Batched squared distances (E, nq, ns)."""
    return (np.einsum("eqd,eqd->eq", Q, Q)[:, :, None]
            + np.einsum("esd,esd->es", S, S)[:, None, :] - 2.0 * np.matmul(
                Q, S.transpose(0, 2, 1)))


def _unit(Z):
    n = np.linalg.norm(Z, axis=-1, keepdims=True)
    return Z / np.where(n > 0, n, 1.0)


def episode_accuracies(Z, episodes, n_way, n_shot, n_query, block=100):
    """Per-episode accuracy of the three rules on embedded points ``Z``:
    ``{'1-NN', 'proto', 'cos'} -> ndarray (n_episodes,)``."""
    truth = np.repeat(np.arange(n_way), n_query)
    out = {"1-NN": [], "proto": [], "cos": []}
    for e0 in range(0, len(episodes), block):
        S = Z[episodes.support[e0:e0 + block]]          # (E, n_way * n_shot, r)
        Q = Z[episodes.query[e0:e0 + block]]            # (E, n_way * n_query, r)
        E = S.shape[0]
        nn = np.argmin(_sq_dist(Q, S), axis=2) // n_shot
        protos = S.reshape(E, n_way, n_shot, -1).mean(axis=2)
        proto = np.argmin(_sq_dist(Q, protos), axis=2)
        unit_protos = _unit(_unit(S).reshape(E, n_way, n_shot, -1).mean(axis=2))
        cos = np.argmax(np.matmul(_unit(Q), unit_protos.transpose(0, 2, 1)), axis=2)
        for key, pred in (("1-NN", nn), ("proto", proto), ("cos", cos)):
            out[key].append(np.mean(pred == truth, axis=1))
    return {k: np.concatenate(v) for k, v in out.items()}


def check_rules(Z, y, episodes, n_way, n_shot, n_query, n_check=5):
    """The vectorised rules against PrototypeClassifier / 1-NN through
    evaluate_episodes on the first episodes (ties aside, they must agree)."""
    from sklearn.neighbors import KNeighborsClassifier

    from mahal import PrototypeClassifier
    from mahal.fewshot import Episodes, evaluate_episodes

    first = Episodes(episodes.support[:n_check], episodes.query[:n_check],
                     episodes.classes[:n_check])
    fast = episode_accuracies(Z, first, n_way, n_shot, n_query)
    ref = {"1-NN": KNeighborsClassifier(1), "proto": PrototypeClassifier(),
           "cos": PrototypeClassifier(metric="cosine")}
    for key, clf in ref.items():
        slow = evaluate_episodes(clf, Z, y, first)
        if not np.allclose(slow, fast[key], atol=1.5 / (n_way * n_query)):
            raise AssertionError(f"rule {key}: vectorised {fast[key]} against "
                                 f"evaluate_episodes {slow}")


def lake_accuracies(transform, runs):
    """Per-run accuracy of 1-NN (= the prototype rule: one shot) on Lake's runs,
    under squared Euclidean and cosine distance in the row's space."""
    acc_nn, acc_cos = [], []
    for train, test, answer in runs:
        T, Q = transform(train), transform(test)
        D = ((Q[:, None, :] - T[None, :, :]) ** 2).sum(-1)
        acc_nn.append(np.mean(np.argmin(D, axis=1) == answer))
        acc_cos.append(np.mean(np.argmax(_unit(Q) @ _unit(T).T, axis=1) == answer))
    return {"1-NN": np.array(acc_nn), "cos": np.array(acc_cos)}


# --------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true",
                   help="all base points and 1000 episodes (default: quick mode)")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--learners", default="", help="comma-separated (default: all)")
    p.add_argument("--episodes", type=int, default=None,
                   help="episodes per setting (default 200, or 1000 with --full)")
    p.add_argument("--max-base", type=int, default=None,
                   help="at most this many base points (default 1000; all with --full)")
    p.add_argument("--data-home", default=os.environ.get("MAHAL_DATA",
                                                         "/work/shared/datasets"))
    p.add_argument("--out", default="benchmark-results")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    from mahal.fewshot import confidence_interval, sample_episodes

    n_episodes = args.episodes or (1000 if args.full else 200)
    max_base = args.max_base or (None if args.full else QUICK_MAX_BASE)
    names = [n for n in args.learners.split(",") if n]
    table = learners(names or None)
    os.makedirs(args.out, exist_ok=True)
    results = []          # one dict per (data set, learner, setting, rule)
    curves = {}           # data set -> learner -> [proto accuracy per shot]
    per_episode = {}      # (data set, learner, shots, rule) -> accuracies
    t_start = time.perf_counter()
    for ds in [d for d in args.datasets.split(",") if d]:
        data = load(ds, args.data_home)
        Xb, yb = data["Xb"], data["yb"]
        if max_base:
            Xb, yb = subsample(Xb, yb, max_base)
        print(f"## {ds}: {Xb.shape[0]} base points, {np.unique(yb).shape[0]} base "
              f"classes, {Xb.shape[1]} features", flush=True)
        if ds == "omniglot-lake":
            settings = []
        else:
            n_query_curve = min(N_QUERY, np.bincount(np.unique(
                data["yn"], return_inverse=True)[1]).min() - max(SHOTS))
            settings = [(k, N_QUERY, sample_episodes(data["yn"], N_WAY, k, N_QUERY,
                                                     n_episodes, random_state=SEED + k))
                        for k in (1, 5)]
            curve_eps = [(k, n_query_curve, sample_episodes(
                data["yn"], N_WAY, k, n_query_curve, n_episodes,
                random_state=SEED + 100 + k)) for k in SHOTS]
        for name, factory in table.items():
            transform, seconds, note = fit_learner(name, factory, Xb, yb,
                                                   quick=not args.full)
            row = dict(dataset=ds, learner=name, fit_seconds=round(seconds, 2),
                       note=note, n_base=int(Xb.shape[0]))
            if ds == "omniglot-lake":
                accs = lake_accuracies(transform, data["runs"])
                for rule, a in accs.items():
                    m, h = confidence_interval(a)
                    results.append(dict(row, setting="20-way 1-shot (Lake's 20 runs)",
                                        rule=rule, mean=m, ci95=h, n_episodes=len(a)))
                print(f"  {name:>18} fit {seconds:6.1f}s  1-NN "
                      f"{100 * accs['1-NN'].mean():5.1f}%  cos "
                      f"{100 * accs['cos'].mean():5.1f}%", flush=True)
                continue
            Zn = transform(data["Xn"])
            line = []
            for k, q, eps in settings:
                if name in ("euclidean", "ncmml"):
                    check_rules(Zn, data["yn"], eps, N_WAY, k, q)
                accs = episode_accuracies(Zn, eps, N_WAY, k, q)
                for rule, a in accs.items():
                    m, h = confidence_interval(a)
                    results.append(dict(row, setting=f"{N_WAY}-way {k}-shot", rule=rule,
                                        mean=m, ci95=h, n_episodes=len(a)))
                    per_episode[ds, name, k, rule] = a
                    line.append(f"{k}-shot {rule} {100 * m:5.1f}±{100 * h:.1f}")
            curves.setdefault(ds, {})[name] = [
                float(episode_accuracies(Zn, eps, N_WAY, k, q)["proto"].mean())
                for k, q, eps in curve_eps]
            print(f"  {name:>18} fit {seconds:6.1f}s  " + "  ".join(line), flush=True)
    elapsed = time.perf_counter() - t_start
    md = markdown(results, n_episodes, args.full, elapsed) + paired(per_episode)
    print(md)
    with open(os.path.join(args.out, "fewshot.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "fewshot.json"), "w") as f:
        json.dump(dict(results=results, curves=curves, shots=SHOTS,
                       n_episodes=n_episodes, full=args.full), f, indent=1)
    if curves and not args.no_plot:
        plot(curves, os.path.join(args.out, "fewshot_shots.png"))
    return results


def markdown(results, n_episodes, full, elapsed):
    """One table per data set: rows learners, columns setting × rule."""
    lines = [f"Few-shot accuracy on novel classes, % (mean ± 95% CI over "
             f"{n_episodes} episodes; {'full' if full else 'quick'} mode, "
             f"{elapsed:.0f} s)", ""]
    for ds in dict.fromkeys(r["dataset"] for r in results):
        rows = [r for r in results if r["dataset"] == ds]
        cols = list(dict.fromkeys((r["setting"], r["rule"]) for r in rows))
        lines.append(f"**{ds}** ({rows[0]['n_base']} base points)")
        lines.append("")
        lines.append("| learner | fit (s) | " + " | ".join(f"{s} {r}" for s, r in cols)
                     + " |")
        lines.append("|---|---:|" + "---:|" * len(cols))
        for name in dict.fromkeys(r["learner"] for r in rows):
            cells = {(r["setting"], r["rule"]): r for r in rows if r["learner"] == name}
            first = next(iter(cells.values()))
            fit = f"{first['fit_seconds']:.1f}" + (" (nc)" if first["note"] else "")
            lines.append(f"| {name} | {fit} | " + " | ".join(
                f"{100 * cells[c]['mean']:.1f} ± {100 * cells[c]['ci95']:.1f}"
                for c in cols) + " |")
        lines.append("")
    lines.append("(nc): the fit stopped at max_iter (ConvergenceWarning).")
    return "\n".join(lines) + "\n"


# the learners of issue 22, and the baselines they are to beat
NEW_LEARNERS = ("ncmml", "ncmml_episodic", "contrastive", "triplet_all", "triplet_hard",
                "triplet_semihard")
BASELINES = ("euclidean", "lmnn", "nca")


def paired(per_episode, shots=1, rule="proto"):
    """The targets of issue 22 as paired differences over the same episodes: the
    best of issue 22's learners (by mean accuracy) against each baseline, and
    episodic against batch NCMML; mean difference ± 95% CI of the mean of the
    per-episode differences."""
    from mahal.fewshot import confidence_interval

    lines = [f"Paired differences, {N_WAY}-way {shots}-shot, rule '{rule}' "
             f"(percentage points, mean ± 95% CI over the same episodes)", "",
             "| data set | comparison | difference |", "|---|---|---:|"]
    for ds in dict.fromkeys(key[0] for key in per_episode):
        acc = {name: a for (d, name, k, r), a in per_episode.items()
               if d == ds and k == shots and r == rule}
        new = [n for n in NEW_LEARNERS if n in acc]
        pairs = []
        if new:
            best = max(new, key=lambda n: acc[n].mean())
            pairs += [(best, b) for b in BASELINES if b in acc]
        if "ncmml_episodic" in acc and "ncmml" in acc:
            pairs.append(("ncmml_episodic", "ncmml"))
        for a, b in pairs:
            m, h = confidence_interval(acc[a] - acc[b])
            lines.append(f"| {ds} | {a} − {b} | {100 * m:+.1f} ± {100 * h:.1f} |")
    return "\n" + "\n".join(lines) + "\n"


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 3.6),
                             squeeze=False)
    for ax, (ds, by_learner) in zip(axes[0], curves.items()):
        for name, acc in by_learner.items():
            ax.plot(SHOTS, 100 * np.array(acc), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xticks(SHOTS)
        ax.set_xticklabels([str(s) for s in SHOTS])
        ax.set_xlabel("shots (5-way)")
        ax.set_ylabel("prototype accuracy on novel classes (%)")
        ax.set_title(ds)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
