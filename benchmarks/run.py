#!/usr/bin/env python
"""Benchmark every mahal learner against Euclidean k-NN and the peer libraries.

Usage::

    python benchmarks/run.py                        # quick suite, < 3 min on 2 cores
    python benchmarks/run.py --peer-python /path/to/peer-venv/bin/python \\
        --datasets iris,wine,digits                 # side by side with the peers
    python benchmarks/run.py --protocol paper --data-home /path/to/npz  # JMLR 2009
    python benchmarks/run.py --report clustering    # k-means ARI after MMC (issue #3)

Learners (``--learners``, comma list): ``euclidean`` (baseline: no learning),
``covariance``, ``mmc`` (MMC_Supervised, full), ``mmc_diag`` (MMC_Supervised,
diagonal=True), ``lmnn`` (LMNN, n_neighbors=k), ``lmnn_energy`` (LMNNEnergyClassifier,
n_neighbors=k), ``lmnn_multimetric`` (LMNNMultiMetricClassifier from LMNN(n_neighbors=5),
max_iter=50, a k-NN vote: one metric per class; issue 25's MNIST setting), ``nca`` (NCA), ``mlkr`` (MLKR, regressing the class index) — all with
default parameters otherwise — and the peers ``ml_covariance``, ``ml_mmc``,
``ml_mmc_diag``, ``ml_lmnn`` (metric-learn 0.7, n_neighbors=k), ``ml_nca``, ``ml_mlkr``
and ``pylmnn`` (pylmnn 1.6 LargeMarginNearestNeighbor, n_neighbors=k), and
``sk_nca`` (scikit-learn's NeighborhoodComponentsAnalysis, max_iter=100 as mahal's
NCA).  By default all of them; the metric-learn and pylmnn peers run only under
``--peer-python`` (an interpreter of another virtualenv where metric-learn and pylmnn
import), otherwise their rows say ``skipped``; ``sk_nca`` runs in mahal's own
environment.

Protocols
---------
quick (default)
    Data sets iris, wine, balance, breast_cancer, digits (no files needed);
    ``--repeats`` (default 3) random stratified 70/30 splits (split seeds
    ``seed, seed+1, …``), features standardised (StandardScaler fit on the training
    set).
paper
    Weinberger & Saul (JMLR 2009): data sets iris, wine, balance (``--repeats``
    random 70/30 splits, default 10; standardised), letter (fixed split 16000/4000;
    standardised), isolet (fixed split; PCA to 172 dimensions), mnist (fixed split;
    each image deskewed by its second moments (``mahal.datasets.deskew``), pixels
    divided by 255, then PCA to 164 dimensions; ``--mnist-train N`` keeps the
    first N training points). PCA is fit on the training set (it centres the data; no
    scaling). LMNN's margin is an absolute 1, hence pixels in [0, 1].
    letter, isolet, mnist are read as ``<name>.npz`` from ``--data-home`` or
    ``$MAHAL_DATA``; a missing file is reported and the run goes on with the others.

Every learner sees exactly the same splits and preprocessing.  The data sets with a
fixed split are fitted once.

Measurements
------------
Each learner runs in one fresh child process (``_worker.py``; under ``sys.executable``
for mahal, under ``--peer-python`` for the peers) that fits all its (data set, split)
items in turn; the splits come in npz files, one per data set and split.  The child
first fits a warm-up on a small subset (up to 30 points per class of the first item), so
that numba compilation and lazy imports are not timed; its time is reported once per
learner (``warm-up``).  metric-learn's MMC gets no warm-up: it has no JIT and is slower
on a tiny subset than on the real data.  Then the child fits each item, timing ``fit``
alone, and writes back the transformed training and test sets (the energy classifier:
its test predictions too).  A child that hangs or dies on an item is replaced by a new
one for the remaining items.
The harness then computes, with the same code for every learner:

* test error of ``KNeighborsClassifier(n_neighbors=k)`` (``--k``, default 3) fitted on
  the transformed training set — mean ± std over the repeats; the energy classifier's
  error is that of its own ``predict``; the baseline is k-NN on the preprocessed input;
* k-means adjusted Rand index: ``KMeans(n_clusters=n_classes, n_init=10,
  random_state=seed)`` on the transformed test set against the test labels;
* fit time: median wall time of ``fit`` over the repeats;
* peak memory of the fit: the child's peak resident set size during ``fit`` minus its
  resident set size just before (Linux: the kernel high-water mark ``VmHWM``, reset
  before each fit through ``/proc/self/clear_refs``; elsewhere ``ru_maxrss``), max over
  repeats.

Peers are compared with their mahal counterpart of the same run: ``fit time vs mahal``
is (peer median fit time) / (mahal median fit time), e.g. ``×12.3 of lmnn``.  A child
that prints nothing for ``--timeout`` seconds (per fit; peers, default 600) is killed
and its rows say ``timeout``; a peer that does not import or fails says ``failed: …``.

Output (``--out``, default ``benchmark-results/``): ``results.csv`` (every
measurement), ``results_summary.csv``, ``results.json`` (configuration, measurements, summary,
messages, wall time), ``results.md`` (the table), ``error.png``, ``fit_time.png``,
``embedding_<data set>.png``.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _harness as H  # noqa: E402


def _comma(value):
    return tuple(v.strip() for v in value.split(",") if v.strip())


def build_parser():
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark mahal's metric learners against Euclidean k-NN and "
                    "the peer libraries (metric-learn, pylmnn).")
    p.add_argument("--datasets", type=_comma, default=None,
                   help="comma list of data sets: " + ", ".join(H.ALL_DATASETS)
                   + f" (default: quick: {','.join(H.QUICK_DATASETS)}; paper: "
                   f"{','.join(H.PAPER_DATASETS)})")
    p.add_argument("--learners", type=_comma, default=None,
                   help="comma list of learners: "
                   + ", ".join(list(H.mahal_learners()) + list(H.peer_learners()))
                   + " (default: all)")
    p.add_argument("--repeats", type=int, default=None,
                   help="random splits per data set with a random split "
                   "(default: quick 3, paper 10)")
    p.add_argument("--protocol", choices=("quick", "paper"), default="quick")
    p.add_argument("--k", type=int, default=3,
                   help="neighbours of the k-NN evaluation and of the LMNN learners "
                   "(mahal's and the peers'; default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=None,
                   help="folder with letter.npz, isolet.npz, mnist.npz "
                   "(default: $MAHAL_DATA)")
    p.add_argument("--mnist-train", type=int, default=None, metavar="N",
                   help="use only the first N mnist training points")
    p.add_argument("--peer-python", default=None, metavar="PATH",
                   help="Python interpreter where metric-learn 0.7 and pylmnn 1.6 "
                   "import; their fits run there")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="per-fit timeout in seconds for the peers (default 600)")
    p.add_argument("--mahal-timeout", type=float, default=1800.0,
                   help="per-fit timeout in seconds for mahal learners (default 1800)")
    p.add_argument("--out", default="benchmark-results",
                   help="output folder (default benchmark-results/)")
    p.add_argument("--embedding", default=None, metavar="DATASET",
                   help="data set of the embedding plot (default: wine, else digits, "
                   "else the first)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar; one log line per data set and learner")
    p.add_argument("--report", choices=("benchmark", "clustering"),
                   default="benchmark",
                   help="'clustering': the k-means-after-MMC report (see "
                   "clustering.py)")
    return p


def config_from_args(args, parser):
    paper = args.protocol == "paper"
    datasets = args.datasets or (H.PAPER_DATASETS if paper else H.QUICK_DATASETS)
    bad = [d for d in datasets if d not in H.ALL_DATASETS]
    if bad:
        parser.error(f"unknown data set(s) {', '.join(bad)}; choose from "
                     + ", ".join(H.ALL_DATASETS))
    mahal, peers = H.mahal_learners(args.k), H.peer_learners()
    names = args.learners or (tuple(mahal) + tuple(peers))
    bad = [n for n in names if n not in mahal and n not in peers]
    if bad:
        parser.error(f"unknown learner(s) {', '.join(bad)}; choose from "
                     + ", ".join(list(mahal) + list(peers)))
    repeats = args.repeats or (10 if paper else 3)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    emb = args.embedding or next((d for d in ("wine", "digits") if d in datasets),
                                 datasets[0])
    return H.Config(
        datasets=tuple(dict.fromkeys(datasets)),
        learners=tuple(n for n in mahal if n in names),
        peers=tuple(n for n in peers if n in names),
        peer_python=args.peer_python, protocol=args.protocol, repeats=repeats,
        k=args.k, seed=args.seed, data_home=args.data_home,
        mnist_train=args.mnist_train, timeout=args.timeout,
        mahal_timeout=args.mahal_timeout, quiet=args.quiet,
        keep_embeddings=() if args.no_plots else (emb,))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report == "clustering":
        import clustering
        return clustering.run(args, parser)
    cfg = config_from_args(args, parser)
    result = H.run_and_summarise(cfg)
    if result is None:
        return 2
    records, messages, embeddings, summary, wall = result
    table = H.markdown_table(summary)
    header = (f"Protocol {cfg.protocol}, {cfg.k}-NN, seed {cfg.seed}, repeats "
              f"{cfg.repeats} (random splits only), wall time {wall:.1f} s.")
    files = H.write_outputs(args.out, "results", cfg, header, table, messages, records,
                            summary, wall)
    if not args.no_plots:
        import _plots
        _plots.plot_errors(summary, os.path.join(args.out, "error.png"), cfg.k)
        _plots.plot_times(summary, os.path.join(args.out, "fit_time.png"))
        files += ["error.png", "fit_time.png"]
        for d in cfg.keep_embeddings:
            name = f"embedding_{d}.png"
            if _plots.plot_embeddings(embeddings, d, os.path.join(args.out, name)):
                files.append(name)
    print(header)
    print()
    print(table)
    print(f"\nWrote {', '.join(files)} to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
