"""NCA and MLKR fitted on a dask array, on the active ``distributed`` cluster.

Imported only when ``fit`` receives a ``dask.array.Array``. With a
``distributed.Client`` active (:func:`active_client`):

- ``X`` is gathered, once, into one NumPy array on a worker, checked there (NaN,
  infinity, scale: the in-memory messages), and the learner's initialisation (PCA,
  LDA, ...) runs there, on the same array as in memory.
- The learner's :class:`~mahal._softmax_blocks.SoftmaxProblem` (the points sorted by
  class for NCA, centred) is built from it on that worker and replicated to every
  worker: *broadcast* evaluation, within the budget of :func:`check_budget` (every
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
from sklearn.utils import column_or_1d
from sklearn.utils.validation import assert_all_finite

from ._dask_arrays import check_dask_points
from ._validation import _check_finite, check_classes, check_scale_value

# The broadcast evaluation may use this fraction of the smallest worker's memory limit.
BUDGET_FRACTION = 0.5


def active_client():
    """The active ``distributed.Client``, or None (none, or distributed not
    installed)."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def distribute_points(estimator, X, y, *, classification=False, ensure_min_samples=1):
    """Check a dask array ``X`` and its ``y`` for ``fit`` and put ``X`` on the cluster.

    Parameters
    ----------
    estimator : estimator
        Gets ``n_features_in_``.
    X : dask.array.Array of shape (n_samples, n_features)
    y : array-like or dask.array.Array of shape (n_samples,)
    classification : bool
        Check that ``y`` holds class labels of at least 2 classes.
    ensure_min_samples : int

    Returns
    -------
    X : DistributedPoints or ndarray
        An ndarray when no client is active (computed by dask's default scheduler).
    y : ndarray of shape (n_samples,)
    """
    from ._validation import check_points, is_dask_array

    client = active_client()
    if client is None:
        return check_points(estimator, X.compute(),
                            y.compute() if is_dask_array(y) else y,
                            classification=classification,
                            ensure_min_samples=ensure_min_samples)
    X = check_dask_points(estimator, X)
    n, d = X.shape
    if n < ensure_min_samples or d == 0:
        raise ValueError(f"Found array with {n} sample(s) and {d} feature(s) (shape="
                         f"{X.shape}) while a minimum of {ensure_min_samples} sample(s) "
                         f"and 1 feature is required.")
    y = column_or_1d(y.compute() if is_dask_array(y) else np.asarray(y), warn=True)
    if y.shape[0] != n:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                         f"[{n}, {y.shape[0]}]")
    if y.dtype.kind in "fc":
        assert_all_finite(y, input_name="y")
    if classification:
        check_classes(estimator, y)
    check_budget(client, n, d)
    points = DistributedPoints(X, client)
    estimator.n_features_in_ = d
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    return points, y


def check_budget(client, n, d):
    """Raise ``MemoryError`` unless the broadcast evaluation fits every worker.

    A worker holds the points twice while the problem is built, then the problem's
    points and, per running task, about six ``n × (r + 2)`` arrays (``r ≤ d``): at
    most ``8 · n · (10 d + 12)`` bytes, which must not exceed ``BUDGET_FRACTION`` of
    the smallest worker's memory limit (workers without a limit are not checked).
    """
    limits = [w.get("memory_limit") or 0
              for w in client.scheduler_info()["workers"].values()]
    limits = [m for m in limits if m > 0]
    need = 8 * n * (10 * d + 12)
    if limits and need > BUDGET_FRACTION * min(limits):
        raise MemoryError(
            f"Fitting on these {n} × {d} points needs about {need / 2**30:.2f} GiB on "
            f"every worker (each worker holds all the points), more than "
            f"{BUDGET_FRACTION:.0%} of the smallest worker's memory limit "
            f"({min(limits) / 2**30:.2f} GiB). Use workers with more memory, or fewer "
            f"features (e.g. PCA first).")


def _stack(blocks):
    return np.concatenate(blocks, axis=0)


def _summary(X):
    """``(has NaN, has infinity, max|x|)`` of ``X``."""
    finite = bool(np.isfinite(X).all())
    nan = not finite and bool(np.isnan(X).any())
    scale = max(float(X.max()), -float(X.min())) if finite and X.size else 0.0
    return nan, not finite and not nan, scale


class DistributedPoints:
    """Points held as one NumPy array on a worker of ``client``'s cluster.

    Stands for ``X`` in ``fit`` (it has ``shape``):
    :func:`mahal.base.initialize_components` and
    :func:`mahal._softmax_blocks.softmax_problem_maker` recognise it.

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Float64, one chunk across the features; checked here.
    client : distributed.Client
    """

    def __init__(self, X, client):
        self.client = client
        self.shape = X.shape
        self.row_chunks = tuple(int(c) for c in X.chunks[0])
        blocks = client.compute(list(X.to_delayed()[:, 0]))
        self.points = client.submit(_stack, blocks, pure=False)
        nan, inf, scale = client.submit(_summary, self.points, pure=False).result()
        if nan or inf:
            _check_finite(np.array([np.nan if nan else np.inf]), "X")
        check_scale_value(scale, self.shape[1], "X")

    def initialize_components(self, n_components, y, init, random_state):
        """:func:`mahal.base.initialize_components` on the worker holding the points."""
        from .base import initialize_components

        return self.client.submit(initialize_components, n_components, self.points, y,
                                  init, random_state, pure=False).result()

    def softmax_problem(self, build, y, block_rows):
        """A problem whose evaluations run on the cluster.

        Parameters
        ----------
        build : callable
            ``build(X, y, pool, block_rows) -> SoftmaxProblem`` (e.g.
            :func:`mahal._nca_solver.nca_problem`), run on a worker.
        y : ndarray of shape (n,)
        block_rows : int or None

        Returns
        -------
        problem : DistributedSoftmaxProblem
        """
        problem = self.client.submit(build, self.points, y, None, block_rows,
                                     pure=False)
        self.client.replicate([problem])  # (every worker evaluates chunks of it)
        bounds = np.concatenate([[0], np.cumsum(self.row_chunks)])
        chunks = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        return DistributedSoftmaxProblem(self.client, problem, chunks)


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
        parts = self.shares
        while len(parts) > 1:
            sums = [submit(_add, a, b, pure=False)
                    for a, b in zip(parts[0::2], parts[1::2])]
            parts = sums + parts[2 * len(sums):]
        return submit(_loss_grad, parts[0], pure=False).result()
