#!/usr/bin/env python
"""k-means clustering after MMC (issue #3): the course figure, with numbers.

Usage::

    python benchmarks/clustering.py [--peer-python PATH] [--out DIR] [...]
    python benchmarks/run.py --report clustering [...]        # the same

k-means (``KMeans(n_clusters=n_classes, n_init=10, random_state=seed)``) on the test
set of each data set, in three spaces: the input (``euclidean``), after diagonal MMC
(``mmc_diag``: ``MMC_Supervised(diagonal=True)``) and after full MMC (``mmc``:
``MMC_Supervised()``), fitted on the training set; scored by the adjusted Rand index
against the test labels.  With ``--peer-python`` metric-learn's ``MMC_Supervised``
(``ml_mmc_diag``, ``ml_mmc``) runs on the same splits, through the same child-process
runner as ``run.py`` (fit time and peak memory measured the same way).

Data sets (default ``synthetic,wine,iris,digits``): ``synthetic`` is 3 Gaussian
clusters in 3-D with centres at x = −3, 0, 3, std 0.6 along x and y and std 8 along z
(100 points each; not standardised), so that k-means on the raw data cuts along the
long z axis and a learned metric that shrinks z recovers the classes; the others are
standardised as in ``run.py``.  ``--repeats`` random stratified 70/30 splits (default 3).

Output (``--out``, default ``benchmark-results/``): ``clustering.md``,
``clustering.csv`` (every measurement), ``clustering_summary.csv``,
``clustering.json`` and ``clustering_synthetic.png``: the synthetic test set in its
raw 3-D coordinates, coloured by the k-means cluster found in each space (raw, after
diagonal MMC, after full MMC).
"""

import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import _harness as H  # noqa: E402

DATASETS = ("synthetic", "wine", "iris", "digits")
LEARNERS = ("euclidean", "mmc_diag", "mmc")
PEERS = ("ml_mmc_diag", "ml_mmc")
TITLES = {"euclidean": "raw (k-means on the input)", "mmc_diag": "after diagonal MMC",
          "mmc": "after full MMC", "ml_mmc_diag": "after metric-learn diagonal MMC",
          "ml_mmc": "after metric-learn full MMC"}


def clustering_table(summary):
    has_peers = any(not math.isnan(r["time_ratio"]) for r in summary)
    head = ["data set", "k-means on", "library", "ARI (test)", "fit time (median)",
            "peak mem (MB)"]
    if has_peers:
        head.append("fit time vs mahal")
    head += ["3-NN error", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        ari = "—" if math.isnan(r["ari_mean"]) else f"{r['ari_mean']:.3f}"
        if r["repeats"] > 1 and not math.isnan(r["ari_mean"]):
            sd = r.get("ari_std", math.nan)
            ari += "" if math.isnan(sd) else f" ± {sd:.3f}"
        base = r["library"] == "baseline"
        cells = [r["dataset"], r["learner"], r["library"], ari,
                 "—" if base else H._time(r["fit_time_median"]),
                 "—" if base else H._num(r["peak_mem_mb"], ".2f")]
        if has_peers:
            cells.append(f"×{r['time_ratio']:.3g} of {r['vs']}"
                         if not math.isnan(r["time_ratio"]) else "—")
        cells += [H._num(r["error_mean"], ".4f"), r["status"].replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_synthetic(embeddings, path, seed=0):
    """3 panels: the synthetic test set coloured by k-means in raw / diag / full MMC."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    raw = embeddings.get(("synthetic", "input"))
    if raw is None:
        return False
    X, y = raw
    panels = [n for n in ("euclidean", "mmc_diag", "mmc")
              if ("synthetic", n) in embeddings]
    fig = plt.figure(figsize=(max(14.0, 4.6 * len(panels)), 5.0))
    for j, name in enumerate(panels):
        Z, _ = embeddings[("synthetic", name)]
        labels = KMeans(n_clusters=len(np.unique(y)), n_init=10,
                        random_state=seed).fit_predict(Z)
        ari = adjusted_rand_score(y, labels)
        ax = fig.add_subplot(1, len(panels), j + 1, projection="3d")
        cmap = plt.get_cmap("tab10")
        for c in np.unique(labels):
            m = labels == c
            ax.scatter(X[m, 0], X[m, 1], X[m, 2], s=10, color=cmap(int(c)),
                       label=f"cluster {c}", depthshade=False)
        ax.set_title(f"{TITLES[name]}\nARI = {ari:.2f}", fontsize=10)
        ax.set_xlabel("x (classes apart)", fontsize=8)
        ax.set_ylabel("y", fontsize=8)
        ax.set_zlabel("z (long axis)", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.view_init(elev=15, azim=-70)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8,
               frameon=False, markerscale=1.5)
    fig.suptitle("k-means (3 clusters) on elongated synthetic data, test set in raw "
                 "coordinates", fontsize=11)
    fig.subplots_adjust(left=0.0, right=0.97, top=0.83, bottom=0.1, wspace=0.1)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run(args, parser):
    """Run the clustering report for parsed ``run.py`` arguments."""
    datasets = args.datasets or DATASETS
    bad = [d for d in datasets if d not in H.ALL_DATASETS]
    if bad:
        parser.error(f"unknown data set(s) {', '.join(bad)}")
    names = args.learners or (LEARNERS + PEERS)
    known = set(H.mahal_learners()) | set(H.peer_learners())
    bad = [n for n in names if n not in known]
    if bad:
        parser.error(f"unknown learner(s) {', '.join(bad)}")
    cfg = H.Config(
        datasets=tuple(dict.fromkeys(datasets)),
        learners=tuple(n for n in names if n in H.mahal_learners()),
        peers=tuple(n for n in names if n in H.peer_learners()),
        peer_python=args.peer_python, protocol=args.protocol,
        repeats=args.repeats or 3, k=args.k, seed=args.seed,
        data_home=args.data_home, mnist_train=args.mnist_train,
        timeout=args.timeout, mahal_timeout=args.mahal_timeout, quiet=args.quiet,
        keep_embeddings=("synthetic",))
    result = H.run_and_summarise(cfg)
    if result is None:
        return 2
    records, messages, embeddings, summary, wall = result
    for row in summary:
        aris = [r["ari"] for r in records if r["dataset"] == row["dataset"]
                and r["learner"] == row["learner"] and r["status"] == "ok"]
        row["ari_std"] = H._nanstd(aris)
    table = clustering_table(summary)
    header = (f"k-means adjusted Rand index on the test set, {cfg.repeats} random "
              f"70/30 splits, seed {cfg.seed}, wall time {wall:.1f} s.")
    files = H.write_outputs(args.out, "clustering", cfg, header, table, messages,
                            records, summary, wall)
    if not args.no_plots and plot_synthetic(
            embeddings, os.path.join(args.out, "clustering_synthetic.png"), cfg.seed):
        files.append("clustering_synthetic.png")
    print(header)
    print()
    print(table)
    print(f"\nWrote {', '.join(files)} to {args.out}/")
    return 0


def main(argv=None):
    import run as runmod
    parser = runmod.build_parser()
    parser.prog = "benchmarks/clustering.py"
    args = parser.parse_args(argv)
    return run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
