"""Threads shared by the learners: a pool for row-chunk tasks, thread counts, BLAS limits."""

import numpy as np

_BLAS_CONTROLLER = None
_CHUNK_ROWS = 2048  # rows per task of the loss kernels


def single_threaded_blas():
    """Context manager that limits BLAS to one thread (for fits that run many small
    products, or their own threads).

    The ``threadpoolctl`` controller is built once per process: finding the loaded
    BLAS libraries reads ``/proc/self/maps``, which is slow next to a small fit.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


class _Pool:
    """Run independent row-chunk tasks on ``n_threads`` Python threads.

    The numba kernels release the GIL, and BLAS is limited to one thread during a
    ``fit`` that uses the pool's threads, so the threads run truly in parallel
    without two thread pools spinning against each other. Results keep task order.
    """

    def __init__(self, n_threads=1):
        self.n_threads = max(1, int(n_threads))
        self._ex = None
        if self.n_threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._ex = ThreadPoolExecutor(self.n_threads)

    def map(self, fn, tasks):
        if self._ex is None or len(tasks) <= 1:
            return [fn(t) for t in tasks]
        return list(self._ex.map(fn, tasks))

    def ranges(self, n, min_rows=None):
        """Row chunks (of at least ``_CHUNK_ROWS`` rows); they do not depend on the
        number of threads, so that sums over chunks (and hence results) are the
        same for any ``n_jobs``."""
        n_chunks = min(32, max(1, n // (min_rows or _CHUNK_ROWS)))
        bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64)
        return [(int(bounds[c]), int(bounds[c + 1])) for c in range(n_chunks)]

    def close(self):
        if self._ex is not None:
            self._ex.shutdown()
            self._ex = None




_SERIAL = _Pool(1)


def _n_threads(n_jobs):
    """Number of worker threads for ``n_jobs`` (None or −1: all cores)."""
    import os

    n_cpu = os.cpu_count() or 1
    if n_jobs is None:
        return n_cpu
    if n_jobs < 0:
        return max(1, n_cpu + 1 + n_jobs)
    return max(1, min(int(n_jobs), n_cpu))
