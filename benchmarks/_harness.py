"""The benchmark harness: data, learners, child-process runner, summaries.

Used by ``run.py`` (and ``clustering.py``); see ``run.py`` for the protocol.
"""

import json
import math
import os
import queue
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_worker.py")

QUICK_DATASETS = ("iris", "wine", "balance", "breast_cancer", "digits")
PAPER_DATASETS = ("iris", "wine", "balance", "letter", "isolet", "mnist")
FILE_DATASETS = ("letter", "isolet", "mnist")
ALL_DATASETS = QUICK_DATASETS + FILE_DATASETS + ("synthetic",)
# Data sets whose split is random (repeated over seeds); the others have a fixed split.
RANDOM_SPLIT = ("iris", "wine", "balance", "breast_cancer", "digits", "synthetic")
PAPER_PCA = {"mnist": 164, "isolet": 172}
# Libraries whose learners run in mahal's own environment (sys.executable)
MAIN_ENV_LIBRARIES = ("mahal", "scikit-learn")

# --------------------------------------------------------------------------- learners


@dataclass
class Learner:
    name: str            # row label
    library: str         # mahal | metric-learn | pylmnn | baseline
    cls: str = ""        # class name in the library
    params: dict = field(default_factory=dict)
    predicts: bool = False   # error from its own predict (no k-NN on top)
    counterpart: str = ""    # mahal learner a peer is compared with
    seeded: bool = True      # takes random_state
    warmup: bool = True      # warm-up fit on a tiny subset before the timed fits

    def spec(self):
        return {"library": self.library, "class": self.cls, "params": self.params,
                "predicts": self.predicts, "seeded": self.seeded,
                "warmup": self.warmup}


def mahal_learners(k=3):
    """The learners of mahal, in table order (name -> Learner)."""
    ls = [
        Learner("euclidean", "baseline"),
        Learner("covariance", "mahal", "Covariance", seeded=False),
        Learner("mmc", "mahal", "MMC_Supervised", {}),
        Learner("mmc_diag", "mahal", "MMC_Supervised", {"diagonal": True}),
        # n_jobs=-1: all cores, as LMNN's n_jobs=None meant before it took
        # scikit-learn's meaning (one thread)
        Learner("lmnn", "mahal", "LMNN", {"n_neighbors": k, "n_jobs": -1}),
        # fits its own LMNN (no random_state parameter); k-means ARI on the space of
        # that LMNN (metric_learner_)
        Learner("lmnn_energy", "mahal", "LMNNEnergyClassifier",
                {"n_neighbors": k, "n_jobs": -1},
                predicts=True, seeded=False),
        # one metric per class from an LMNN start, the MNIST setting chosen on
        # validation by benchmarks/mnist_lmnn.py (k5_multi_metric50: LMNN with 5
        # target neighbours, 50 iterations, a k-NN vote); k-means ARI on the space of
        # its starting LMNN (metric_learner_)
        Learner("lmnn_multimetric", "mahal", "LMNNMultiMetricClassifier",
                {"metric_learner": {"estimator": "LMNN",
                                    "params": {"n_neighbors": 5, "n_jobs": -1}},
                 "n_neighbors": k, "n_jobs": -1, "max_iter": 50}, predicts=True),
        Learner("lsml", "mahal", "LSML_Supervised", {}),
        Learner("rca", "mahal", "RCA_Supervised", {}),
        Learner("contrastive", "mahal", "Contrastive_Supervised", {}),
        Learner("triplet_margin", "mahal", "TripletMargin_Supervised", {}),
        # defaults (n_components = n_features, k = 7, 'weighted'); no random state
        Learner("lfda", "mahal", "LFDA", {"n_jobs": -1}, seeded=False),
        # no warm-up: its fit on the warm-up subset costs as much as a timed one
        # (the same 20·n_classes² pairs, 1000 sweeps); loading the kernel adds a few
        # tenths of a second to the first of the timed fits, not to their median
        Learner("itml", "mahal", "ITML_Supervised", {}, warmup=False),
        # metric-learn's defaults (balance_param=0.5): P is indefinite on every
        # benchmark data set, mahal lowers balance_param (with a warning)
        Learner("sdml", "mahal", "SDML_Supervised", {}),
        # a balance_param for which P is positive definite on all of them (letter
        # and digits included), where metric-learn's fit succeeds
        Learner("sdml_pd", "mahal", "SDML_Supervised", {"balance_param": 1e-5}),
        Learner("nca", "mahal", "NCA", {"n_jobs": -1}),
        # (regresses the class index: the harness's data sets are classification)
        Learner("mlkr", "mahal", "MLKR", {"n_jobs": -1}),
        Learner("ncmml", "mahal", "NCMML", {}),
        # metric-learn's defaults: k-NN triplets (3 genuine, 10 impostors), LDA bases
        Learner("scml", "mahal", "SCML_Supervised", {}),
    ]
    return {l.name: l for l in ls}


def peer_learners(k=3):
    """Peer learners (run under ``--peer-python``), name -> Learner."""
    ls = [
        Learner("ml_covariance", "metric-learn", "Covariance", seeded=False,
                counterpart="covariance"),
        # no warm-up for metric-learn's MMC: no JIT, and its fit on a tiny subset can
        # take longer (up to ~30 s) than on the real data
        Learner("ml_mmc", "metric-learn", "MMC_Supervised", {}, counterpart="mmc",
                warmup=False),
        Learner("ml_mmc_diag", "metric-learn", "MMC_Supervised", {"diagonal": True},
                counterpart="mmc_diag", warmup=False),
        Learner("ml_lmnn", "metric-learn", "LMNN", {"n_neighbors": k},
                counterpart="lmnn"),
        Learner("pylmnn", "pylmnn", "LargeMarginNearestNeighbor", {"n_neighbors": k},
                counterpart="lmnn"),
        Learner("ml_lsml", "metric-learn", "LSML_Supervised", {}, counterpart="lsml"),
        # (raises where the classes give fewer than n_chunks=100 chunklets)
        Learner("ml_rca", "metric-learn", "RCA_Supervised", {}, counterpart="rca"),
        # defaults (n_components = n_features, k = min(7, n_features − 1), 'weighted')
        Learner("ml_lfda", "metric-learn", "LFDA", {}, seeded=False,
                counterpart="lfda"),
        # no warm-up (no JIT; its warm-up fit would cost as much as the timed one).
        # Its default bounds need an n × n distance matrix of the pairs' points:
        # about 2 GB on letter.
        Learner("ml_itml", "metric-learn", "ITML_Supervised", {}, counterpart="itml",
                warmup=False),
        Learner("ml_sdml", "metric-learn", "SDML_Supervised", {}, counterpart="sdml"),
        Learner("ml_sdml_pd", "metric-learn", "SDML_Supervised",
                {"balance_param": 1e-5}, counterpart="sdml_pd"),
        Learner("ml_nca", "metric-learn", "NCA", {}, counterpart="nca"),
        Learner("ml_mlkr", "metric-learn", "MLKR", {}, counterpart="mlkr"),
        # scikit-learn's NCA runs in mahal's environment (no --peer-python needed),
        # at mahal's max_iter (its own default is 50)
        Learner("sk_nca", "scikit-learn", "NeighborhoodComponentsAnalysis",
                {"max_iter": 100}, counterpart="nca"),
        Learner("ml_scml", "metric-learn", "SCML_Supervised", {}, counterpart="scml"),
    ]
    return {l.name: l for l in ls}


# --------------------------------------------------------------------------- data


class DataMissing(Exception):
    """A data set's file is missing (message says where to put it)."""


def make_synthetic(n_per_class=100, random_state=0):
    """Three Gaussian clusters in 3-D, stretched along the z axis.

    Centres at x = -3, 0, 3 (std 0.6 along x and y) and std 8 along z: the classes
    are separated along x, but most of the variance is along z, so k-means on the raw
    data cuts along z.
    """
    rng = np.random.default_rng(random_state)
    X, y = [], []
    for c, cx in enumerate((-3.0, 0.0, 3.0)):
        pts = rng.normal(size=(n_per_class, 3)) * [0.6, 0.6, 8.0] + [cx, 0.0, 0.0]
        X.append(pts)
        y.append(np.full(n_per_class, c))
    return np.vstack(X), np.concatenate(y)


def _load_raw(name, split_seed, data_home, deskew=False):
    """(X_train, X_test, y_train, y_test) before preprocessing."""
    if name == "synthetic":
        from sklearn.model_selection import train_test_split
        X, y = make_synthetic()
        return train_test_split(X, y, test_size=0.3, stratify=y,
                                random_state=split_seed)
    from mahal.datasets import load_dataset
    try:
        b = load_dataset(name, data_home=data_home, random_state=split_seed,
                         download_if_missing=False, deskew=deskew)
    except FileNotFoundError as exc:
        raise DataMissing(str(exc)) from None
    return b.X_train, b.X_test, b.y_train, b.y_test


def preprocessing_for(name, protocol):
    """Short description of the preprocessing a data set gets under a protocol."""
    if name == "synthetic":
        return "none"
    if protocol == "paper" and name in PAPER_PCA:
        scale = "deskewed, pixels / 255, then " if name == "mnist" else ""
        return f"{scale}PCA to {PAPER_PCA[name]} dims (fit on train)"
    return "standardise (fit on train)"


def preprocess(name, protocol, X_train, X_test):
    """Apply :func:`preprocessing_for` (fitted on the training set only)."""
    if name == "synthetic":
        return np.asarray(X_train, float), np.asarray(X_test, float)
    if protocol == "paper" and name in PAPER_PCA:
        from sklearn.decomposition import PCA
        if name == "mnist":
            # LMNN's margin is an absolute 1: pixels in [0, 1], not 0..255.
            X_train, X_test = X_train / 255.0, X_test / 255.0
        pca = PCA(n_components=PAPER_PCA[name], random_state=0).fit(X_train)
        return pca.transform(X_train), pca.transform(X_test)
    from sklearn.preprocessing import StandardScaler
    sc = StandardScaler().fit(X_train)
    return sc.transform(X_train), sc.transform(X_test)


def load_splits(name, protocol="quick", repeats=1, seed=0, data_home=None,
                mnist_train=None):
    """Preprocessed splits of one data set: a list of dicts (Xtr, Xte, ytr, yte).

    Random-split data sets get ``repeats`` random 70/30 stratified splits (split seeds
    ``seed, seed + 1, …``); letter, isolet and mnist have one fixed split.  Labels are
    encoded as integers 0..n_classes-1.  Raises :class:`DataMissing`.
    """
    from sklearn.preprocessing import LabelEncoder
    n = repeats if name in RANDOM_SPLIT else 1
    splits = []
    for r in range(n):
        Xtr, Xte, ytr, yte = _load_raw(name, seed + r, data_home,
                                       deskew=(name == "mnist" and protocol == "paper"))
        if name == "mnist" and mnist_train:
            Xtr, ytr = Xtr[:mnist_train], ytr[:mnist_train]
        enc = LabelEncoder().fit(np.concatenate([np.asarray(ytr), np.asarray(yte)]))
        Xtr, Xte = preprocess(name, protocol, np.asarray(Xtr, float),
                              np.asarray(Xte, float))
        splits.append({"Xtr": np.ascontiguousarray(Xtr), "Xte": np.ascontiguousarray(Xte),
                       "ytr": enc.transform(ytr).astype(np.int64),
                       "yte": enc.transform(yte).astype(np.int64)})
    return splits


# --------------------------------------------------------------------------- metrics


def knn_error(Z_train, y_train, Z_test, y_test, k=3, n_jobs=None):
    """Test error of ``KNeighborsClassifier(n_neighbors=k)`` fitted on the train set."""
    from sklearn.neighbors import KNeighborsClassifier
    clf = KNeighborsClassifier(n_neighbors=k, n_jobs=n_jobs).fit(Z_train, y_train)
    return float(1.0 - clf.score(Z_test, y_test))


def kmeans_ari(Z_test, y_test, seed=0):
    """ARI of ``KMeans(n_clusters=n_classes, n_init=10, random_state=seed)`` vs labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    km = KMeans(n_clusters=len(np.unique(y_test)), n_init=10, random_state=seed)
    return float(adjusted_rand_score(y_test, km.fit_predict(Z_test)))


# --------------------------------------------------------------------------- runner


def run_child(python, job, timeout, on_event=None):
    """Run the worker under ``python`` for ``job``; return ``(events, status)``.

    ``timeout`` (seconds) bounds start-up + warm-up, and each fit separately: if no
    line arrives in time the child is killed.  ``status`` is ``"ok"`` or a short
    reason (``"failed: …"``, ``"timeout: …"``).
    """
    job_path = os.path.join(job["out"], "job.json")
    with open(job_path, "w") as f:
        json.dump(job, f)
    err_path = os.path.join(job["out"], "stderr.txt")
    errf = open(err_path, "wb")
    try:
        proc = subprocess.Popen([python, WORKER, job_path], stdout=subprocess.PIPE,
                                stderr=errf, stdin=subprocess.DEVNULL,
                                cwd=job["out"], env=_child_env(python))
    except OSError as exc:
        errf.close()
        return [], f"failed: cannot run {python}: {exc.strerror or exc}"
    lines = queue.Queue()

    def pump():
        for raw in proc.stdout:
            lines.put(raw)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    events, status, stage = [], None, "start-up and warm-up"
    while True:
        try:
            raw = lines.get(timeout=timeout)
        except queue.Empty:
            proc.kill()
            status = f"timeout: no result within {timeout:g} s ({stage})"
            break
        if raw is None:
            break
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        events.append(ev)
        if on_event is not None:
            on_event(ev)
        kind = ev.get("event")
        if kind == "import_error":
            status = f"failed: import: {ev['error']}"
        elif kind == "start":
            stage = "fit"
    proc.wait()
    errf.close()
    if status is None:
        if any(e.get("event") == "done" for e in events):
            status = "ok"
        else:
            status = f"failed: exit code {proc.returncode}{_last_line(err_path)}"
    return events, status


def _child_env(python):
    env = dict(os.environ)
    if python != sys.executable:  # a peer's venv must not see this one's path
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _last_line(path):
    try:
        with open(path, "rb") as f:
            lines = [l.strip() for l in f.read().decode(errors="replace").splitlines()
                     if l.strip()]
    except OSError:
        return ""
    return f": {lines[-1][:200]}" if lines else ""


# --------------------------------------------------------------------------- benchmark


@dataclass
class Config:
    datasets: tuple = QUICK_DATASETS
    learners: tuple = ("euclidean", "covariance", "mmc", "mmc_diag", "lmnn",
                       "lmnn_energy")
    peers: tuple = ()            # peer learner names to run (need peer_python)
    peer_python: str = None
    protocol: str = "quick"
    repeats: int = 1
    k: int = 3
    seed: int = 0
    data_home: str = None
    mnist_train: int = None
    timeout: float = 600.0       # peers, per fit
    mahal_timeout: float = 600.0  # mahal learners, per fit
    quiet: bool = False
    keep_embeddings: tuple = ()  # data sets whose transformed test sets are kept


def _fmt_reason(s):
    return s if len(s) <= 160 else s[:157] + "..."


def run_benchmark(cfg, log=None):
    """Run the benchmark; return ``(records, messages, embeddings)``.

    ``records`` has one dict per measurement (data set × learner × repeat), in
    data-set-major order.  ``messages`` lists data sets skipped (missing files).
    ``embeddings`` maps ``(dataset, learner)`` to ``(Z_test, y_test)`` of split 0 for
    the data sets in ``cfg.keep_embeddings`` (plus ``(dataset, 'input')``).

    Each learner runs in one fresh child process that fits all its (data set, split)
    items in turn, after one warm-up; a child that fails or times out on an item is
    replaced by a new one for the items after it.
    """
    import shutil

    from tqdm.auto import tqdm

    log = log or (lambda msg: None)
    mahal = mahal_learners(cfg.k)
    peers = peer_learners(cfg.k)
    learners = [mahal[n] for n in cfg.learners] + [peers[n] for n in cfg.peers]

    tmp_root = tempfile.mkdtemp(prefix="mahal-bench-")
    data, messages, items = {}, [], []
    embeddings = {}
    try:
        for name in cfg.datasets:
            try:
                splits = load_splits(name, cfg.protocol, cfg.repeats, cfg.seed,
                                     cfg.data_home, cfg.mnist_train)
            except DataMissing as exc:
                messages.append(f"{name}: skipped: {exc}")
                log(f"{name}: skipped: {exc}")
                continue
            data[name] = splits
            if name in cfg.keep_embeddings:
                embeddings[(name, "input")] = (splits[0]["Xte"], splits[0]["yte"])
            for i, s in enumerate(splits):
                path = os.path.join(tmp_root, f"{name}-{i}.npz")
                np.savez(path, X_train=s["Xtr"], X_test=s["Xte"], y_train=s["ytr"],
                         y_test=s["yte"])
                items.append({"id": len(items), "dataset": name, "repeat": i,
                              "seed": cfg.seed + i, "data": path})
        total = len(items) * len(learners)
        bar = tqdm(total=total, disable=cfg.quiet or total == 0, dynamic_ncols=True,
                   unit="fit", file=sys.stderr)
        by_learner = {}
        try:
            for learner in learners:
                by_learner[learner.name] = _run_learner(cfg, data, items, learner,
                                                        tmp_root, bar, embeddings,
                                                        log)
        finally:
            bar.close()
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    records = [r for name in data for learner in learners
               for r in by_learner[learner.name] if r["dataset"] == name]
    return records, messages, embeddings


def _base_record(cfg, item, learner, split):
    return {"dataset": item["dataset"], "learner": learner.name,
            "library": learner.library, "repeat": item["repeat"],
            "protocol": cfg.protocol,
            "preprocessing": preprocessing_for(item["dataset"], cfg.protocol),
            "k": cfg.k, "seed": item["seed"], "n_train": len(split["ytr"]),
            "n_test": len(split["yte"]), "n_features": split["Xtr"].shape[1],
            "status": "ok", "error": math.nan, "ari": math.nan,
            "fit_time": math.nan, "peak_mem_mb": math.nan, "warmup_time": math.nan,
            "memory_method": "", "versions": ""}


def _run_learner(cfg, data, items, learner, tmp_root, bar, embeddings, log):
    def split_of(item):
        return data[item["dataset"]][item["repeat"]]

    def desc(item):
        n = len(data[item["dataset"]])
        return f"{item['dataset']} · {learner.name} · rep {item['repeat'] + 1}/{n}"

    recs = {it["id"]: _base_record(cfg, it, learner, split_of(it)) for it in items}
    if learner.library == "baseline":
        for it in items:
            bar.set_description(desc(it))
            s, r = split_of(it), recs[it["id"]]
            r["error"] = knn_error(s["Xtr"], s["ytr"], s["Xte"], s["yte"], cfg.k)
            r["ari"] = kmeans_ari(s["Xte"], s["yte"], cfg.seed)
            r["fit_time"] = r["peak_mem_mb"] = 0.0
            if it["repeat"] == 0 and it["dataset"] in cfg.keep_embeddings:
                embeddings[(it["dataset"], learner.name)] = (s["Xte"], s["yte"])
            bar.update(1)
        _log_learner(log, learner, items, recs)
        return [recs[it["id"]] for it in items]

    if learner.library not in MAIN_ENV_LIBRARIES:
        python, timeout = cfg.peer_python, cfg.timeout
        reason = None
        if not python:
            reason = "skipped: no --peer-python given"
        elif not os.path.exists(python):
            reason = f"failed: peer python not found: {python}"
        if reason:
            for r in recs.values():
                r["status"] = reason
            bar.update(len(items))
            _log_learner(log, learner, items, recs)
            return [recs[it["id"]] for it in items]
    elif learner.library == "mahal":
        python, timeout = sys.executable, cfg.mahal_timeout
    else:
        python, timeout = sys.executable, cfg.timeout

    out = tempfile.mkdtemp(prefix=f"{learner.name}-", dir=tmp_root)
    by_id = {it["id"]: it for it in items}
    remaining = list(items)
    first_child = True
    while remaining:
        current = {}

        def on_event(ev, current=current):
            kind = ev.get("event")
            if kind == "start":
                current["item"] = ev["item"]
                bar.set_description(desc(by_id[ev["item"]]))
            elif kind == "fit":
                bar.update(1)
            elif kind == "ready":
                current["versions"] = ";".join(
                    f"{k}={v}" for k, v in ev.get("versions", {}).items())
            elif kind == "warmup" and first_child and "time" in ev:
                recs[remaining[0]["id"]]["warmup_time"] = ev["time"]

        bar.set_description(f"{learner.name} · start-up")
        job = {"learner": learner.spec(), "out": out,
               "items": [{"id": it["id"], "seed": it["seed"], "data": it["data"]}
                         for it in remaining]}
        events, status = run_child(python, job, timeout, on_event)
        first_child = False
        done = set()
        for ev in events:
            if ev.get("event") != "fit":
                continue
            it = by_id[ev["item"]]
            done.add(it["id"])
            r = recs[it["id"]]
            r["versions"] = current.get("versions", "")
            _evaluate(cfg, learner, it, split_of(it), ev, r, embeddings)
        left = [it for it in remaining if it["id"] not in done]
        if status == "ok" or not left:
            break
        if "item" in current and current["item"] not in done:
            # the child died or hung on this item: report it, go on with the rest
            bad = current["item"]
            recs[bad]["status"] = _fmt_reason(status)
            bar.update(1)
            remaining = [it for it in left if it["id"] != bad]
        else:  # failed before any fit (import error, crash at start-up)
            for it in left:
                recs[it["id"]]["status"] = _fmt_reason(status)
            bar.update(len(left))
            remaining = []
    _log_learner(log, learner, items, recs)
    return [recs[it["id"]] for it in items]


def _evaluate(cfg, learner, item, s, ev, r, embeddings):
    """Fill record ``r`` from a worker's fit event: error, ARI, time, memory."""
    if "error" in ev:
        r["status"] = _fmt_reason(f"failed: {ev['error']}")
        return
    r["fit_time"] = ev["fit_time"]
    r["peak_mem_mb"] = ev["peak_bytes"] / 2**20
    r["memory_method"] = ev.get("memory_method", "")
    try:
        with np.load(ev["file"], allow_pickle=False) as res:
            res = dict(res)
        os.remove(ev["file"])
        if learner.predicts:
            r["error"] = float(np.mean(res["y_pred"] != s["yte"]))
        else:
            r["error"] = knn_error(res["Z_train"], s["ytr"], res["Z_test"], s["yte"],
                                   cfg.k)
        if "Z_test" in res and np.all(np.isfinite(res["Z_test"])):
            r["ari"] = kmeans_ari(res["Z_test"], s["yte"], cfg.seed)
            if item["repeat"] == 0 and item["dataset"] in cfg.keep_embeddings:
                embeddings[(item["dataset"], learner.name)] = (res["Z_test"], s["yte"])
    except Exception as exc:
        r["status"] = _fmt_reason(f"failed: evaluation: {type(exc).__name__}: {exc}")


def _log_learner(log, learner, items, recs):
    by_ds = {}
    for it in items:
        by_ds.setdefault(it["dataset"], []).append(recs[it["id"]])
    for d, rs in by_ds.items():
        bad = [r["status"] for r in rs if r["status"] != "ok"]
        ok = [r for r in rs if r["status"] == "ok"]
        msg = (f"error {np.nanmean([r['error'] for r in ok]):.4f}, fit "
               f"{np.nanmedian([r['fit_time'] for r in ok]):.3g} s" if ok else "")
        if bad:
            msg = (msg + "; " if msg else "") + bad[0]
        log(f"{d} / {learner.name} ({learner.library}): {msg}")


# --------------------------------------------------------------------------- summary


def summarise(records, cfg):
    """One row per (data set, learner): mean ± std error, median time, ratios."""
    rows, order = {}, []
    for r in records:
        key = (r["dataset"], r["learner"])
        if key not in rows:
            rows[key] = []
            order.append(key)
        rows[key].append(r)
    out = []
    for key in order:
        rs = rows[key]
        ok = [r for r in rs if r["status"] == "ok"]
        bad = [r["status"] for r in rs if r["status"] != "ok"]
        row = {"dataset": key[0], "learner": key[1], "library": rs[0]["library"],
               "preprocessing": rs[0]["preprocessing"],
               "n_train": rs[0]["n_train"], "n_features": rs[0]["n_features"],
               "repeats": len(rs), "n_ok": len(ok),
               "status": "ok" if not bad else (bad[0] if not ok else
                                               f"{len(bad)}/{len(rs)} {bad[0]}"),
               "error_mean": _nanmean([r["error"] for r in ok]),
               "error_std": _nanstd([r["error"] for r in ok]),
               "ari_mean": _nanmean([r["ari"] for r in ok]),
               "fit_time_median": _nanmedian([r["fit_time"] for r in ok]),
               "peak_mem_mb": _nanmax([r["peak_mem_mb"] for r in ok]),
               "warmup_time": rs[0]["warmup_time"],
               "time_ratio": math.nan, "mem_ratio": math.nan, "vs": ""}
        out.append(row)
    peers = peer_learners()
    index = {(r["dataset"], r["learner"]): r for r in out}
    for row in out:
        p = peers.get(row["learner"])
        if p is None:
            continue
        ref = index.get((row["dataset"], p.counterpart))
        if ref is None:
            continue
        row["vs"] = p.counterpart
        if ref["fit_time_median"] > 0:
            row["time_ratio"] = row["fit_time_median"] / ref["fit_time_median"]
        if ref["peak_mem_mb"] >= 0.5 and row["peak_mem_mb"] > 0:
            row["mem_ratio"] = row["peak_mem_mb"] / ref["peak_mem_mb"]
    return out


def _clean(xs):
    return [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]


def _skipping_missing(reduce):
    """``reduce`` over the values that are not None/NaN (NaN if there are none)."""
    def f(xs):
        xs = _clean(xs)
        return float(reduce(xs)) if xs else math.nan

    return f


_nanmean = _skipping_missing(np.mean)
_nanstd = _skipping_missing(np.std)
_nanmedian = _skipping_missing(np.median)
_nanmax = _skipping_missing(np.max)


# --------------------------------------------------------------------------- tables


def _num(x, fmt):
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _time(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if x == 0:
        return "0"
    if x < 1e-3:
        return f"{x * 1e6:.0f} µs"
    if x < 1:
        return f"{x * 1e3:.1f} ms"
    return f"{x:.2f} s"


def markdown_table(summary, with_ari=True):
    """The summary as a GitHub Markdown table."""
    has_peers = any(not math.isnan(r["time_ratio"]) for r in summary)
    head = ["data set", "learner", "library", "k-NN test error", "fit time (median)",
            "peak mem (MB)"]
    if with_ari:
        head.append("k-means ARI")
    if has_peers:
        head += ["fit time vs mahal", "memory vs mahal"]
    head += ["warm-up", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary:
        err = ("—" if math.isnan(r["error_mean"]) else
               f"{r['error_mean']:.4f} ± {r['error_std']:.4f}" if r["repeats"] > 1
               else f"{r['error_mean']:.4f}")
        cells = [r["dataset"], r["learner"], r["library"], err,
                 "—" if r["library"] == "baseline" else _time(r["fit_time_median"]),
                 "—" if r["library"] == "baseline" else _num(r["peak_mem_mb"], ".2f")]
        if with_ari:
            cells.append(_num(r["ari_mean"], ".3f"))
        if has_peers:
            cells.append(f"×{r['time_ratio']:.3g} of {r['vs']}"
                         if not math.isnan(r["time_ratio"]) else "—")
            cells.append(f"×{r['mem_ratio']:.3g}" if not math.isnan(r["mem_ratio"])
                         else "—")
        cells += [_time(r["warmup_time"]), r["status"].replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows, path):
    import csv
    if not rows:
        open(path, "w").close()
        return
    keys = list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def write_json(obj, path):
    def default(o):
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        return str(o)

    def nan_to_none(x):
        if isinstance(x, float) and math.isnan(x):
            return None
        if isinstance(x, dict):
            return {k: nan_to_none(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [nan_to_none(v) for v in x]
        return x

    with open(path, "w") as f:
        json.dump(nan_to_none(obj), f, indent=1, default=default)


def write_outputs(out, stem, cfg, header, table, messages, records, summary, wall):
    """Write ``<stem>.md`` (header, table, messages), ``<stem>.csv`` (every fit),
    ``<stem>_summary.csv`` and ``<stem>.json`` to ``out``; return the file names."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{stem}.md"), "w") as f:
        f.write(header + "\n\n" + table + "\n")
        for m in messages:
            f.write(f"\n- {m}\n")
    write_csv(records, os.path.join(out, f"{stem}.csv"))
    write_csv(summary, os.path.join(out, f"{stem}_summary.csv"))
    write_json({"config": vars(cfg), "wall_time": wall, "messages": messages,
                "summary": summary, "records": records},
               os.path.join(out, f"{stem}.json"))
    return [f"{stem}.md", f"{stem}.csv", f"{stem}_summary.csv", f"{stem}.json"]


def run_and_summarise(cfg):
    """Run the benchmark for ``cfg`` (log lines on stderr when ``cfg.quiet``), print
    its messages, and summarise.

    Returns ``(records, messages, embeddings, summary, wall)``, or None (after saying
    so on stderr) when no data set was left to run.
    """
    import time
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if cfg.quiet else None
    t0 = time.perf_counter()
    records, messages, embeddings = run_benchmark(cfg, log=log)
    wall = time.perf_counter() - t0
    for m in messages:
        print(m, file=sys.stderr)
    if not records:
        print("No data set left to run: " + "; ".join(messages), file=sys.stderr)
        return None
    return records, messages, embeddings, summarise(records, cfg), wall
