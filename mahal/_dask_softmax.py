"""NCA and MLKR fitted on a dask array, on the active ``distributed`` cluster.

Imported only when ``fit`` receives a ``dask.array.Array``. With a
``distributed.Client`` active (:func:`mahal._dask_cluster.active_client`):

- ``X`` is gathered, once, into one NumPy array on a worker, checked there (NaN,
  infinity, scale: the in-memory messages), and the learner's initialisation (PCA,
  LDA, ...) runs there, on the same array as in memory.
- The learner's :class:`~mahal._softmax_blocks.SoftmaxProblem` (the points sorted by
  class for NCA, centred) is built from it on that worker and replicated to every
  worker: *broadcast* evaluation, within the budget of :func:`bytes_per_point` (every
  row's softmax needs all the columns, and each worker holds all of them).
- The driver keeps ``L`` and runs the in-memory L-BFGS
  (:func:`~mahal._softmax_blocks.softmax_solve`: the same iterations, stopping rule,
  ``verbose`` output and ``callback``). Each evaluation sends ``L`` with one task per
  row chunk of ``X`` (its sizes, in the problem's row order); a task computes its rows'
  share with :meth:`~mahal._softmax_blocks.SoftmaxProblem.chunk_loss_grad`, the
  in-memory row-block code, and the ``(loss, r × d gradient)`` shares are summed in a
  fixed binary tree, so that the result depends on the chunk sizes only, never on the
  number of workers or on where the tasks ran.
- The per-row shift of the softmax (the last evaluation's log-sum-exp, which the
  in-memory solver keeps between evaluations) stays on the workers: each task returns
  its rows' new shift with its share, and the chunk's next task takes it as input.
  A worker lost in the middle of a fit loses its shares; dask recomputes them from
  their inputs (the same values), so the fit ends with the same result.

Without a client, ``X`` is computed in this process by dask's default scheduler and
the in-memory solver runs.
"""

import numpy as np

from ._dask_cluster import distribute_points as _distribute_points
from ._dask_cluster import tree_sum


def bytes_per_point(d):
    """Bytes the broadcast evaluation holds per point on every worker: the points
    twice while the problem is built, then the problem's points and, per running
    task, about six ``n × (r + 2)`` arrays (``r ≤ d``): at most ``8 (10 d + 12)``."""
    return 8 * (10 * d + 12)


def distribute_points(estimator, X, y, *, classification=False, ensure_min_samples=1):
    """:func:`mahal._dask_cluster.distribute_points` within the budget of
    :func:`bytes_per_point`."""
    return _distribute_points(estimator, X, y, bytes_per_point=bytes_per_point,
                              classification=classification,
                              ensure_min_samples=ensure_min_samples)


def softmax_problem(points, build, y, block_rows):
    """A problem whose evaluations run on the cluster.

    Parameters
    ----------
    points : mahal._dask_cluster.DistributedPoints
    build : callable
        ``build(X, y, pool, block_rows) -> SoftmaxProblem`` (e.g.
        :func:`mahal._nca_solver.nca_problem`), run on a worker.
    y : ndarray of shape (n,)
    block_rows : int or None

    Returns
    -------
    problem : DistributedSoftmaxProblem
    """
    client = points.client
    problem = client.submit(build, points.points, y, None, block_rows, pure=False)
    client.replicate([problem])  # (every worker evaluates chunks of it)
    return DistributedSoftmaxProblem(client, problem, points.chunks())


def _chunk_share(problem, L, chunk, previous):
    """One chunk's ``(loss, gradient, new shift)``; ``previous``: the chunk's last
    share (its shift), or None."""
    return problem.chunk_loss_grad(L, chunk, None if previous is None else previous[2])


def _add(a, b):
    return a[0] + b[0], a[1] + b[1]


def _loss_grad(share):
    return share[0], share[1]


class DistributedSoftmaxProblem:
    """The ``loss_grad`` of a :class:`~mahal._softmax_blocks.SoftmaxProblem` held on
    the workers, one task per row chunk; what
    :func:`~mahal._softmax_blocks.softmax_solve` calls.

    Parameters
    ----------
    client : distributed.Client
    problem : distributed.Future
        The problem, on the workers.
    chunks : list of (int, int)
        The rows of each task, in the problem's order.
    """

    def __init__(self, client, problem, chunks):
        self.client = client
        self.problem = problem
        self.chunks = chunks
        self.shares = [None] * len(chunks)  # the last evaluation's, on the workers
        self.n_evals = 0

    def loss_grad(self, L):
        """Loss at ``L`` and its gradient: the chunks' shares, summed in a fixed
        binary tree."""
        self.n_evals += 1
        L = np.ascontiguousarray(L, dtype=np.float64)
        submit = self.client.submit
        self.shares = [submit(_chunk_share, self.problem, L, chunk, previous,
                              pure=False)
                       for chunk, previous in zip(self.chunks, self.shares)]
        total = tree_sum(self.client, self.shares, add=_add)
        return submit(_loss_grad, total, pure=False).result()
