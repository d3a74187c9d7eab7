"""Fixtures shared by several test modules."""

import os
import signal

import pytest


@pytest.fixture(scope="module")
def client():
    """A client of a ``distributed.LocalCluster`` of 2 worker processes (one thread
    each), for the module's tests of fits on dask arrays."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture
def worker_killer(client):
    """``worker_killer(n)``: a ``callback(L, n_iter)`` for ``fit`` that kills one
    worker process of ``client``'s cluster (SIGKILL; its nanny starts another) after
    iteration ``n``, and lists in its ``killed`` when it did. The test ends when the
    cluster has its 2 workers again."""
    pids = client.run(os.getpid)
    victim = pids[sorted(pids)[0]]

    def killer(at):
        def kill(L, n_iter):
            if n_iter == at:
                os.kill(victim, signal.SIGKILL)
                kill.killed.append(n_iter)

        kill.killed = []
        return kill

    yield killer
    client.wait_for_workers(2, timeout=30)
