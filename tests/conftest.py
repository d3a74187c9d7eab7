"""Fixtures shared by several test modules."""

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
