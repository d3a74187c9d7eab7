"""PNG plots of a benchmark run (matplotlib, Agg backend)."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LIB_HATCH = {"mahal": "", "metric-learn": "///", "pylmnn": "..."}


def _learners(summary, skip_baseline=True):
    """Learner names in plot order: each peer right after its mahal counterpart."""
    seen, vs = [], {}
    for r in summary:
        if skip_baseline and r["library"] == "baseline":
            continue
        if r["learner"] not in seen:
            seen.append(r["learner"])
            vs[r["learner"]] = r.get("vs", "")
    own = [n for n in seen if not vs[n] or vs[n] not in seen]
    order = []
    for n in own:
        order.append(n)
        order += [p for p in seen if vs[p] == n and p not in own]
    return order


def _colors(summary, names):
    """A colour per mahal learner; a peer takes its counterpart's (and a hatch)."""
    vs = {r["learner"]: r.get("vs", "") for r in summary}
    base = [n for n in names if not (vs.get(n) and vs[n] in names)]
    cmap = plt.get_cmap("tab10" if len(base) <= 10 else "tab20")
    col = {n: cmap(i % cmap.N) for i, n in enumerate(base)}
    for n in names:
        if n not in col:
            col[n] = col[vs[n]]
    return col


def _datasets(summary):
    seen = []
    for r in summary:
        if r["dataset"] not in seen:
            seen.append(r["dataset"])
    return seen


def _grouped(ax, summary, value, err=None, log=False):
    dsets, learners = _datasets(summary), _learners(summary)
    index = {(r["dataset"], r["learner"]): r for r in summary}
    colors = _colors(summary, learners)
    width = 0.8 / max(1, len(learners))
    for j, name in enumerate(learners):
        xs, ys, es = [], [], []
        lib = None
        for i, d in enumerate(dsets):
            r = index.get((d, name))
            if r is None or math.isnan(r[value]) or (log and r[value] <= 0):
                continue
            lib = r["library"]
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(r[value])
            es.append(0.0 if err is None or math.isnan(r[err]) else r[err])
        if not xs:
            continue
        ax.bar(xs, ys, width, yerr=es if err else None, capsize=2,
               color=colors[name], hatch=LIB_HATCH.get(lib, ""),
               edgecolor="black", linewidth=0.4,
               label=f"{name} ({lib})" if lib != "mahal" else name)
        if not log:  # mark zero-height bars, which are otherwise invisible
            for x, yv in zip(xs, ys):
                if yv == 0:
                    ax.text(x, 0, "0", ha="center", va="bottom", fontsize=7,
                            color=colors[name])
    ax.set_xticks(range(len(dsets)))
    ax.set_xticklabels(dsets)
    ax.set_xlim(-0.6, len(dsets) - 0.4)
    return dsets, index


def plot_errors(summary, path, k=3):
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(_datasets(summary)) + 3), 4.5))
    dsets, index = _grouped(ax, summary, "error_mean", "error_std")
    for i, d in enumerate(dsets):
        base = index.get((d, "euclidean"))
        if base is not None and not math.isnan(base["error_mean"]):
            ax.hlines(base["error_mean"], i - 0.45, i + 0.45, colors="black",
                      linestyles="--", linewidth=1.2,
                      label="Euclidean k-NN (baseline)" if i == 0 else None)
    ax.set_ylabel(f"test error ({k}-NN; energy classifier: own predict)")
    ax.set_xlabel("data set")
    ax.set_title("Test error per data set and learner (mean ± std over repeats)")
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_times(summary, path):
    fig, ax = plt.subplots(figsize=(max(7, 1.6 * len(_datasets(summary)) + 3), 4.5))
    _grouped(ax, summary, "fit_time_median", log=True)
    ax.set_yscale("log")
    ax.set_ylabel("fit time (s, median over repeats, log scale)")
    ax.set_xlabel("data set")
    ax.set_title("Fit time per learner (numba compilation excluded)")
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _to2d(Z):
    Z = np.asarray(Z, float)
    if Z.shape[1] == 1:
        return np.column_stack([Z[:, 0], np.zeros(len(Z))])
    if Z.shape[1] == 2:
        return Z
    from sklearn.decomposition import PCA
    return PCA(n_components=2, random_state=0).fit_transform(Z)


def plot_embeddings(embeddings, dataset, path, titles=None):
    """Scatter of the test set of ``dataset`` (PCA to 2-D) before and after each learner."""
    keys = [key for key in embeddings if key[0] == dataset]
    keys.sort(key=lambda kk: kk[1] != "input")
    keys = [kk for kk in keys if kk[1] != "euclidean"]
    if not keys:
        return False
    n = len(keys)
    cols = min(4, n)
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows + 0.6),
                             squeeze=False)
    classes = None
    for ax, key in zip(axes.flat, keys):
        Z, y = embeddings[key]
        P = _to2d(Z)
        classes = np.unique(y)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for c in classes:
            m = y == c
            ax.scatter(P[m, 0], P[m, 1], s=8, color=cmap(int(c) % cmap.N),
                       label=str(c), alpha=0.8, linewidths=0)
        its_lmnn = key[1] in ("lmnn_energy", "lmnn_multimetric")
        name = ("before (preprocessed input)" if key[1] == "input" else
                f"after {key[1]}" + (" (its LMNN)" if its_lmnn else ""))
        lo, hi = np.percentile(P, [1, 99], axis=0)
        pad = 0.08 * np.maximum(hi - lo, 1e-12)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_title((titles or {}).get(key[1], name), fontsize=10)
        ax.set_xlabel("PC 1", fontsize=8)
        ax.set_ylabel("PC 2", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, [f"class {l}" for l in labels], loc="lower center",
               ncol=min(len(labels), 10), fontsize=8, frameon=False, markerscale=2)
    fig.suptitle(f"{dataset} test set: first two principal components, before and "
                 "after each learner (axes show the 1st-99th percentile range)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
