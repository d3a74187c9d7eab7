"""The threading policy shared by the learners (mahal._parallel)."""

import os

import numpy as np
import pytest
from joblib import parallel_backend, parallel_config
from threadpoolctl import threadpool_info, threadpool_limits

from mahal._parallel import (RowChunkPool, blas_threads, n_threads_for,
                             single_threaded_blas)


def _blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_n_jobs_has_scikit_learns_meaning():
    # scikit-learn's convention (sklearn.utils.effective_n_jobs): None is one job
    # unless a joblib context sets n_jobs; -1 is all cores, -2 all but one.
    n_cpu = os.cpu_count()
    assert n_threads_for(None) == 1
    assert n_threads_for(1) == 1
    assert n_threads_for(-1) == n_cpu
    assert n_threads_for(-2) == max(1, n_cpu - 1)
    assert n_threads_for(10 * n_cpu) == n_cpu  # never more threads than cores
    with parallel_config(n_jobs=-1):
        assert n_threads_for(None) == n_cpu
        assert n_threads_for(1) == 1  # an explicit value wins
    with parallel_backend("threading", n_jobs=2):
        assert n_threads_for(None) == min(2, n_cpu)


def test_single_threaded_blas_limits_and_restores():
    before = _blas_threads()
    for _ in range(2):  # the cached controller works more than once
        with single_threaded_blas():
            inside = _blas_threads()
        assert inside and all(n == 1 for n in inside)
        assert _blas_threads() == before


def _overlapping(first_in, last_out):
    # ``first_in`` enters single_threaded_blas, then ``last_out`` enters, then
    # ``first_in`` leaves, then ``last_out`` leaves (as dask's threaded scheduler
    # overlaps tasks); each is "main" (this thread) or "worker" (a new thread).
    # Returns BLAS's threads seen by ``last_out`` while alone inside.
    import threading

    entered, second_inside, left = (threading.Event() for _ in range(3))
    seen = {}

    def first():
        with single_threaded_blas():
            entered.set()
            second_inside.wait(10)
        left.set()

    def last():
        entered.wait(10)
        with single_threaded_blas():
            second_inside.set()
            left.wait(10)
            seen["inside"] = _blas_threads()

    roles = {"first": first, "last": last}
    main_role = "first" if first_in == "main" else "last" if last_out == "main" else None
    threads = [threading.Thread(target=roles[r]) for r in roles if r != main_role]
    for t in threads:
        t.start()
    if main_role is not None:
        roles[main_role]()
    for t in threads:
        t.join()
    return seen["inside"]


@pytest.mark.parametrize("first_in, last_out", [("worker", "worker"),
                                                ("main", "worker"),
                                                ("worker", "main")])
def test_single_threaded_blas_from_overlapping_threads(first_in, last_out):
    # threadpoolctl's limit is process-wide for OpenBLAS on pthreads: each thread
    # restoring what it saw on entry left BLAS at one thread for good once two
    # overlapped; and threadpoolctl (3.8) lets only the thread that set OpenBLAS's
    # threads set them again, so the last thread out must still be able to lift
    # the limit that another thread set (the main thread has used it before).
    before = _blas_threads()
    if max(before) < 2:
        pytest.skip("BLAS runs one thread here: no limit to see")
    with single_threaded_blas():
        pass
    inside = _overlapping(first_in, last_out)
    assert inside == [1] * len(before)
    assert _blas_threads() == before
    with single_threaded_blas():  # and it still limits afterwards
        assert _blas_threads() == [1] * len(before)
    assert _blas_threads() == before


@pytest.mark.parametrize("n_threads, kernels_threaded, limited",
                         [(1, False, True), (2, False, False), (2, True, True)])
def test_blas_policy(n_threads, kernels_threaded, limited):
    # BLAS gets one thread when the learner has one, or when its own kernels run on
    # several threads; otherwise it keeps its own setting.
    with threadpool_limits(2, user_api="blas"):
        outside = _blas_threads()
        with blas_threads(n_threads, kernels_threaded):
            inside = _blas_threads()
    assert inside == ([1] * len(outside) if limited else outside)


def test_row_chunks_do_not_depend_on_threads():
    # the chunks (hence the order of sums over them) are the same for any number
    # of threads; map keeps task order
    one, two = RowChunkPool(1), RowChunkPool(2)
    try:
        assert one.ranges(10_000) == two.ranges(10_000)
        chunks = one.ranges(10_000, 100)
        assert chunks[0][0] == 0 and chunks[-1][1] == 10_000
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        assert two.map(lambda c: c[1] - c[0], chunks) == [c[1] - c[0] for c in chunks]
        x = np.arange(10_000, dtype=float)
        assert two.map(lambda c: x[c[0]:c[1]].sum(), chunks) == \
            one.map(lambda c: x[c[0]:c[1]].sum(), chunks)
    finally:
        two.close()


@pytest.mark.parametrize("n_jobs, limited", [(None, True), (1, True), (-1, False),
                                             ("absent", True)])
def test_fit_threads_applies_the_policy_to_a_whole_fit(n_jobs, limited):
    # every learner's fit runs under blas_threads(n_threads_for(n_jobs)); a learner
    # without n_jobs has one thread
    from mahal._parallel import fit_threads

    class Learner:
        if n_jobs != "absent":
            def __init__(self):
                self.n_jobs = n_jobs

        @fit_threads
        def fit(self, X, y=None):
            """Record BLAS's threads."""
            self.seen_ = _blas_threads()
            return self

    with threadpool_limits(2, user_api="blas"):
        outside = _blas_threads()
        seen = Learner().fit(None).seen_
        assert _blas_threads() == outside
    many = os.cpu_count() > 1 and not limited
    assert seen == (outside if many else [1] * len(outside))
    assert Learner.fit.__doc__ == "Record BLAS's threads."
