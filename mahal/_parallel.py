"""Threads shared by the learners: thread counts, the row-chunk pool, BLAS's threads.

One policy for every learner:

- ``n_jobs`` has scikit-learn's meaning (:func:`n_threads_for`): None is one thread
  unless a joblib ``parallel_config`` / ``parallel_backend`` context says otherwise,
  −1 is all cores, ``-2`` all but one.
- A learner's compiled kernels release the GIL and run on row chunks on a
  :class:`RowChunkPool` of Python threads. The chunks do not depend on the number of
  threads, so results do not either.
- BLAS (:func:`blas_threads`) is limited to one thread during a fit when the learner
  has a single thread (``n_jobs=1``, the default, and every learner without
  ``n_jobs``) or when its own kernels run on several threads (two thread pools must
  not spin against each other on the same cores); otherwise BLAS keeps its own
  setting for the matrix products. Every learner's ``fit`` is decorated with
  :func:`fit_threads`, which applies the first half; a solver that runs its
  kernels on a pool applies the second around them.

(numba's ``prange`` with ``numba.set_num_threads`` was measured against this pool on
the same chunks and was slower; see ``docs/solver_notes.rst``.)
"""

import contextlib
import functools
import os
import threading

import numpy as np

CHUNK_ROWS = 2048  # rows per task of the row-chunk kernels

_BLAS_CONTROLLERS = None  # (process-wide, per-thread) BLAS libraries


def n_threads_for(n_jobs):
    """Number of threads for ``n_jobs``, as scikit-learn counts jobs.

    ``None`` means 1 unless inside a joblib ``parallel_config`` (or
    ``parallel_backend``) context that sets ``n_jobs``; ``-1`` means all cores,
    ``-2`` all but one, and so on. Never more than the number of cores.

    Parameters
    ----------
    n_jobs : int or None
        scikit-learn's ``n_jobs``.

    Returns
    -------
    n_threads : int
        At least 1.
    """
    from joblib import effective_n_jobs

    n_cpu = os.cpu_count() or 1
    return max(1, min(int(effective_n_jobs(n_jobs)), n_cpu))


def single_threaded_blas():
    """Context manager that limits BLAS to one thread.

    Threads of the process may be inside at once (dask's threaded scheduler runs
    tasks that each limit BLAS), and most BLAS libraries have one process-wide
    thread count: for those, the first thread in sets the limit and the last one
    out lifts it, both under one lock (each thread restoring what it saw on entry
    left BLAS at one thread for good once two overlapped). threadpoolctl lets only
    the thread that set OpenBLAS's (pthreads) threads set them again while it
    lives, so that control is handed back after each change, and the last thread
    out may be another than the first in. OpenBLAS on OpenMP keeps a count per
    thread: each thread limits its own.

    The ``threadpoolctl`` controllers are built once per process: finding the
    loaded BLAS libraries reads ``/proc/self/maps``, which is slow next to a small
    fit.
    """
    global _BLAS_CONTROLLERS
    if _BLAS_CONTROLLERS is None:
        from threadpoolctl import ThreadpoolController

        blas = ThreadpoolController().select(user_api="blas")
        per_thread = {c.filepath: _per_thread(c) for c in blas.lib_controllers}
        _BLAS_CONTROLLERS = tuple(
            blas.select(filepath=[path for path, own in per_thread.items() if own is kind])
            for kind in (False, True))
    return _SingleThreadedBlas(*_BLAS_CONTROLLERS)


def _per_thread(lib_controller):
    return (lib_controller.internal_api == "openblas"
            and getattr(lib_controller, "threading_layer", None) == "openmp")


def _release_openblas():
    # (threadpoolctl >= 3.8: the thread that set OpenBLAS's threads keeps the sole
    # right to set them; our lock already orders the changes)
    from threadpoolctl import OpenBLASController

    release = getattr(OpenBLASController, "clear_controlling_thread", None)
    if release is not None:
        release(force=True)


class _SingleThreadedBlas:
    lock = threading.Lock()
    inside = 0  # threads inside, for the process-wide libraries
    limiter = None

    def __init__(self, process_wide, per_thread):
        self.process_wide, self.per_thread = process_wide, per_thread
        self.own = None

    def __enter__(self):
        cls = type(self)
        with cls.lock:
            if cls.inside == 0:
                _release_openblas()
                cls.limiter = self.process_wide.limit(limits=1)
                _release_openblas()
            cls.inside += 1
        if self.per_thread.lib_controllers:
            self.own = self.per_thread.limit(limits=1)
        return self

    def __exit__(self, *exc):
        if self.own is not None:
            self.own.restore_original_limits()
        cls = type(self)
        with cls.lock:
            cls.inside -= 1
            if cls.inside == 0:
                _release_openblas()
                cls.limiter.restore_original_limits()
                _release_openblas()
                cls.limiter = None
        return False


def blas_threads(n_threads, kernels_threaded=False):
    """BLAS's threads during a fit, the same rule for every learner.

    Parameters
    ----------
    n_threads : int
        The learner's threads (from :func:`n_threads_for`).
    kernels_threaded : bool, default=False
        Whether the learner's own kernels run on several threads.

    Returns
    -------
    context : context manager
        BLAS limited to one thread if ``n_threads == 1`` or ``kernels_threaded``;
        else a no-op (BLAS keeps its own setting).
    """
    if n_threads == 1 or kernels_threaded:
        return single_threaded_blas()
    return contextlib.nullcontext()


def fit_threads(fit):
    """Decorator of an estimator's ``fit``: run it under :func:`blas_threads` for the
    estimator's ``n_jobs`` (one thread for a learner without ``n_jobs``).

    Parameters
    ----------
    fit : callable
        The ``fit`` method.

    Returns
    -------
    wrapped : callable
    """
    @functools.wraps(fit)
    def wrapper(estimator, *args, **kwargs):
        with blas_threads(n_threads_for(getattr(estimator, "n_jobs", 1))):
            return fit(estimator, *args, **kwargs)

    return wrapper


class RowChunkPool:
    """Run independent row-chunk tasks on ``n_threads`` Python threads.

    The numba kernels release the GIL, and BLAS is limited to one thread while the
    pool's threads run (:func:`blas_threads`), so the threads run truly in parallel
    without two thread pools spinning against each other. Results keep task order.

    Parameters
    ----------
    n_threads : int, default=1
        Number of threads (1: the tasks run in the calling thread).
    """

    def __init__(self, n_threads=1):
        self.n_threads = max(1, int(n_threads))
        self._executor = None
        if self.n_threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(self.n_threads)

    def map(self, fn, tasks):
        """``[fn(task) for task in tasks]``, on the pool's threads."""
        if self._executor is None or len(tasks) <= 1:
            return [fn(t) for t in tasks]
        return list(self._executor.map(fn, tasks))

    def ranges(self, n, min_rows=None):
        """Row chunks ``(start, stop)`` of at least ``min_rows`` (default
        ``CHUNK_ROWS``) rows; they do not depend on the number of threads, so that
        sums over chunks (and hence results) are the same for any ``n_jobs``."""
        n_chunks = min(32, max(1, n // (min_rows or CHUNK_ROWS)))
        bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64)
        return [(int(bounds[c]), int(bounds[c + 1])) for c in range(n_chunks)]

    def close(self):
        """Stop the threads."""
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None


SERIAL = RowChunkPool(1)
