"""
==========================================
Benchmark results: error and fit time
==========================================

The figures of :ref:`benchmarks`, drawn from the measured results committed beside the
documentation (``docs/benchmark_results/*.csv``; this example does not time anything, so
the figures are those measured on the project's 2-core machine, not on the machine that
builds these pages).

Left: the quick suite, ``python benchmarks/run.py`` (every learner on five small data
sets, 3 random stratified 70/30 splits, standardised features): the 3-NN test error of
each learner (for ``lmnn_energy`` its own ``predict``), mean and standard deviation over
the splits, the Euclidean baseline as a dashed line.

Right: LMNN's fit time against pylmnn 1.6 and metric-learn 0.7, each peer measured in
the same run as mahal, with the ratio of the peer's median fit time to mahal's.
"""

import csv
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

try:
    HERE = Path(__file__).resolve().parent
except NameError:  # run interactively from the examples folder
    HERE = Path.cwd()
RESULTS = HERE.parent / "docs" / "benchmark_results"


def read(name):
    with open(RESULTS / name, newline="") as f:
        return list(csv.DictReader(f))


quick = read("quick_suite.csv")
peers = read("lmnn_peers.csv")

# %%
# Test error of every learner on the quick suite
# ----------------------------------------------

datasets = list(dict.fromkeys(r["dataset"] for r in quick))
learners = [l for l in dict.fromkeys(r["learner"] for r in quick) if l != "euclidean"]
width = 0.8 / len(learners)
cmap = plt.get_cmap("tab10")

fig, ax = plt.subplots(figsize=(10, 4.2))
for j, learner in enumerate(learners):
    rows = {r["dataset"]: r for r in quick if r["learner"] == learner}
    x = np.arange(len(datasets)) + (j - (len(learners) - 1) / 2) * width
    ax.bar(x, [float(rows[d]["knn_error_mean"]) for d in datasets], width,
           yerr=[float(rows[d]["knn_error_std"]) for d in datasets], capsize=2,
           color=cmap(j), label=learner)
for i, d in enumerate(datasets):
    base = next(float(r["knn_error_mean"]) for r in quick
                if r["dataset"] == d and r["learner"] == "euclidean")
    ax.hlines(base, i - 0.45, i + 0.45, colors="k", linestyles="--", lw=1.2,
              label="euclidean" if i == 0 else None)
ax.set_xticks(np.arange(len(datasets)), datasets)
ax.set_ylabel("3-NN test error")
ax.set_title("Quick suite (measured 2026-11-30): test error, mean ± std over 3 splits")
ax.legend(ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08),
          frameon=False)
fig.tight_layout()
plt.show()

# %%
# LMNN fit time against the peers
# -------------------------------
# Log scale; the label on a peer's bar is its time over mahal's in the same run.
# metric-learn timed out on letter (> 900 s) and was not run on mnist. Its cells, and
# pylmnn's mnist 60000 cell, come from earlier runs of the same commands than mahal's
# bars (see :ref:`benchmarks`): compare bar heights across libraries loosely, and read
# the ratio labels, which always compare times of the same run.

sets = list(dict.fromkeys(r["dataset"] for r in peers))
libs = ["mahal", "pylmnn", "metric-learn"]
fig, ax = plt.subplots(figsize=(10, 4.6))
for j, lib in enumerate(libs):
    x = np.arange(len(sets)) + (j - 1) * 0.27
    for xi, s in zip(x, sets):
        row = next((r for r in peers if r["dataset"] == s and r["library"] == lib), None)
        if row is None:
            continue
        if not row["fit_time_median_s"]:
            ax.annotate(row["note"], (xi, 1.0), rotation=90, ha="center", fontsize=7)
            continue
        t = float(row["fit_time_median_s"])
        ax.bar(xi, t, 0.27, color=cmap(j), label=lib if s == sets[0] else None)
        if lib != "mahal":
            ax.annotate(f"×{float(row['time_ratio_to_mahal']):g}", (xi, t),
                        ha="center", va="bottom", fontsize=7)
ax.set_yscale("log")
ax.set_xticks(np.arange(len(sets)), [f"{s}\n{r['n_train']} × {r['n_features']}"
             for s, r in zip(sets, [next(r for r in peers if r["dataset"] == s)
                                    for s in sets])], fontsize=7)
ax.set_ylabel("median fit time (s)")
ax.set_title("LMNN (n_neighbors=3) fit time; peer/mahal ratio from the same run")
ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()
