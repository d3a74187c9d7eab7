"""Compile (and cache on disk) all of mahal's numba kernels ahead of use.

Run once after installing, e.g. in a Docker image build or before a notebook
session::

    python -m mahal.compile

numba compiles each kernel on its first call and caches the machine code in numba's
cache directory (beside the package, or ``NUMBA_CACHE_DIR``), so without this the
first fits on a machine take seconds longer. This fits every learner on small
synthetic problems chosen to take each code path whose kernels differ (LMNN: serial
and threaded evaluation, float64 and float32 products, the blocked impostor search,
above the bounds of its NumPy path for small problems; MMC: full and diagonal;
TripletMargin_Supervised: each mining rule; ITML; SDML above 64 features), and
predicts with ``LMNNEnergyClassifier``; fits ``LMNNMultiMetricClassifier``; NCA and MLKR (their single-block
softmax on small problems). Later processes load the kernels from the cache.
"""

import time
import warnings

import numpy as np


def _blobs(n, d, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, d)) + 2.0 * rng.normal(size=(n_classes, d))[y]
    return X, y


def _pairs(X, y, n_pairs=100, seed=0):
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, X.shape[0], size=(2, n_pairs))
    keep = i != j
    i, j = i[keep], j[keep]
    return np.stack([X[i], X[j]], axis=1), np.where(y[i] == y[j], 1, -1)


def compile_all(verbose=False):
    """Fit every learner on small problems, so that every kernel is compiled and
    cached. Returns the seconds taken."""
    from . import (ITML_Supervised, LMNN, MMC, LMNNEnergyClassifier,
                   LMNNMultiMetricClassifier, MMC_Supervised, _mmc_small)

    t0 = time.perf_counter()

    def say(what):
        if verbose:
            print(f"[mahal.compile] {what} ({time.perf_counter() - t0:.1f} s)",
                  flush=True)

    # (problems this small run in NumPy and need no kernel: see mahal._lmnn_dense)
    tiny = _blobs(60, 5)
    # above the NumPy path's bounds: the compiled serial evaluation
    small = _blobs(1100, 5)
    # large enough for the float32 products, the blocked impostor search, the
    # float32 screen of the loss kernel and the compiled target-neighbour selection
    medium = _blobs(460, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (convergence on these toy problems)
        for X, y in (small, medium):
            for n_jobs in (1, 2):
                LMNN(n_neighbors=3, max_iter=20, n_jobs=n_jobs,
                     random_state=0).fit(X, y)
                say(f"LMNN {X.shape[0]} x {X.shape[1]}, n_jobs={n_jobs}")
        # (energies: above the NumPy path's bound on the training set)
        X, y = small
        clf = LMNNEnergyClassifier(LMNN(max_iter=5, random_state=0),
                                   n_neighbors=3).fit(X, y)
        clf.predict(X[:100])
        say("LMNNEnergyClassifier")
        for n_jobs in (1, 2):
            LMNNMultiMetricClassifier(LMNN(max_iter=5, random_state=0), max_iter=3,
                                      n_jobs=n_jobs).fit(X, y)
        say("LMNNMultiMetricClassifier")
        X, y = tiny
        # (with its NumPy steps for small problems switched off: the kernels of
        # larger ones)
        bounds = _mmc_small._NUMPY_DIM, _mmc_small._NUMPY_BLOCK
        _mmc_small._NUMPY_DIM = _mmc_small._NUMPY_BLOCK = 0
        try:
            for diagonal in (False, True):
                MMC(diagonal=diagonal, random_state=0).fit(*_pairs(X, y))
                MMC_Supervised(diagonal=diagonal, random_state=0).fit(X, y)
        finally:
            _mmc_small._NUMPY_DIM, _mmc_small._NUMPY_BLOCK = bounds
        say("MMC, MMC_Supervised")
        from . import TripletMargin_Supervised

        for mining in ("all", "hard", "semihard"):
            TripletMargin_Supervised(mining=mining, max_iter=1,
                                     random_state=0).fit(*tiny)
        say("TripletMargin_Supervised")
        # (beyond the projections ITML runs in NumPy before its kernel takes over)
        X, y = _blobs(200, 5)
        ITML_Supervised(n_constraints=2000, max_iter=20, random_state=0).fit(X, y)
        say("ITML")
        # (above 64 features: SDML's compiled graphical lasso)
        from . import SDML_Supervised

        SDML_Supervised(random_state=0).fit(*_blobs(200, 70))
        say("SDML_Supervised")
        # (the single-block softmax of small problems, serial and threaded)
        from . import MLKR, NCA

        X, y = _blobs(300, 5)
        for n_jobs in (1, 2):
            NCA(max_iter=3, n_jobs=n_jobs).fit(X, y)
            MLKR(max_iter=3, n_jobs=n_jobs).fit(X, X[:, 0])
        say("NCA, MLKR")
    return time.perf_counter() - t0


def main():
    from ._jit import notice

    notice.said = True  # (no "compiling…" notice: the user asked for it)
    seconds = compile_all(verbose=True)
    print(f"mahal: kernels compiled and cached in {seconds:.1f} s.")


if __name__ == "__main__":
    main()
