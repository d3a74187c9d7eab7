"""Fitting on the active ``distributed`` cluster: the machinery every learner that
fits on a dask array shares.

Imported only when ``fit`` receives a ``dask.array.Array``. :func:`distribute_points`
checks ``X`` (the in-memory messages) and gathers it, once, into one NumPy array on a
worker (:class:`DistributedPoints`), within a memory budget the learner states
(:func:`check_budget`); the learner's initialisation runs there, on the same array
as in memory. :func:`tree_sum` adds per-chunk shares (loss, gradient) in a fixed
binary tree on the workers, so that a sum depends on the chunks only, never on the
number of workers or on where the tasks ran.

Without a client, ``X`` is computed in this process by dask's default scheduler and
the learner's in-memory solver runs.
"""

import functools

import numpy as np

from ._dask_arrays import check_dask_fit
from ._validation import _check_finite, check_scale_value

# A broadcast evaluation may use this fraction of the smallest worker's memory limit.
BUDGET_FRACTION = 0.5
# Arrays sit at addresses that are multiples of this many bytes in a task, at
# least (see aligned).
ALIGNMENT = 16


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


def distribute_points(estimator, X, y, *, bytes_per_point, classification=False,
                      ensure_min_samples=1):
    """Check a dask array ``X`` and its ``y`` for ``fit`` and put ``X`` on the cluster.

    Parameters
    ----------
    estimator : estimator
        Gets ``n_features_in_``.
    X : dask.array.Array of shape (n_samples, n_features)
    y : array-like or dask.array.Array of shape (n_samples,)
    bytes_per_point : callable
        ``bytes_per_point(n_features)``: what the learner's evaluation holds per
        point on every worker (see :func:`check_budget`).
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
    X, y = check_dask_fit(estimator, X, y, classification=classification,
                          ensure_min_samples=ensure_min_samples)
    n, d = X.shape
    check_budget(client, n, d, bytes_per_point(d))
    return DistributedPoints(X, client), y


def check_budget(client, n, d, bytes_per_point):
    """Raise ``MemoryError`` unless ``n · bytes_per_point`` bytes fit every worker.

    Each worker holds all the points (the evaluation is a broadcast one), so this
    must not exceed ``BUDGET_FRACTION`` of the smallest worker's memory limit
    (workers without a limit are not checked).
    """
    limits = [w.get("memory_limit") or 0
              for w in client.scheduler_info()["workers"].values()]
    limits = [m for m in limits if m > 0]
    need = n * bytes_per_point
    if limits and need > BUDGET_FRACTION * min(limits):
        raise MemoryError(
            f"Fitting on these {n} × {d} points needs about {need / 2**30:.2f} GiB on "
            f"every worker (each worker holds all the points), more than "
            f"{BUDGET_FRACTION:.0%} of the smallest worker's memory limit "
            f"({min(limits) / 2**30:.2f} GiB). Use workers with more memory, or fewer "
            f"features (e.g. PCA first).")


def aligned(value):
    """``value`` with its arrays placed in memory as NumPy places a new array: an
    array a task receives from another worker is a view of the message's buffer,
    at any address, and compiled loops and BLAS may round differently there, which
    would make results depend on where a task ran; such arrays (and any not
    aligned to ``ALIGNMENT`` bytes) are copied. Looks inside tuples and lists, and
    into an object's attributes (replaced in place)."""
    if isinstance(value, np.ndarray):
        if value.flags.owndata and value.ctypes.data % ALIGNMENT == 0:
            return value
        return value.copy()
    if isinstance(value, (tuple, list)):
        return type(value)(aligned(v) for v in value)
    for name, attribute in getattr(value, "__dict__", {}).items():
        if isinstance(attribute, (np.ndarray, tuple, list)):
            setattr(value, name, aligned(attribute))
    return value


def aligned_task(fn):
    """``fn`` with its arguments :func:`aligned` (for tasks on the workers)."""
    @functools.wraps(fn)
    def task(*args):
        return fn(*(aligned(a) for a in args))

    return task


def _stack(blocks):
    return np.concatenate(blocks, axis=0)


def _summary(X):
    """``(has NaN, has infinity, max|x|)`` of ``X``."""
    finite = bool(np.isfinite(X).all())
    nan = not finite and bool(np.isnan(X).any())
    scale = max(float(X.max()), -float(X.min())) if finite and X.size else 0.0
    return nan, not finite and not nan, scale


def _add(a, b):
    return a + b


def tree_sum(client, parts, add=_add):
    """The sum of the futures ``parts``, formed in a fixed binary tree on the
    workers (``add(a, b)`` adds two of them; default ``a + b``); a future."""
    while len(parts) > 1:
        sums = [client.submit(add, a, b, pure=False)
                for a, b in zip(parts[0::2], parts[1::2])]
        parts = sums + parts[2 * len(sums):]
    return parts[0]


class DistributedPoints:
    """Points held as one NumPy array on a worker of ``client``'s cluster.

    Stands for ``X`` in ``fit`` (it has ``shape``):
    :func:`mahal.base.initialize_components` and the learners' solvers recognise it
    (it has a ``client``).

    Parameters
    ----------
    X : dask.array.Array of shape (n, d)
        Float64, one chunk across the features; checked here.
    client : distributed.Client

    Attributes
    ----------
    points : distributed.Future
        The points, an ndarray of shape (n, d).
    row_chunks : tuple of int
        ``X``'s row chunks: the learners' evaluations run one task per chunk.
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

    def chunks(self):
        """The non-empty row chunks, as ``(start, stop)``."""
        bounds = np.concatenate([[0], np.cumsum(self.row_chunks)])
        return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def initialize_components(self, n_components, y, init, random_state):
        """:func:`mahal.base.initialize_components` on the worker holding the points."""
        from .base import initialize_components

        return self.client.submit(aligned_task(initialize_components), n_components,
                                  self.points, y, init, random_state,
                                  pure=False).result()

    def __matmul__(self, M):
        """The points times the matrix ``M`` (e.g. ``X @ L.T``), on the cluster."""
        out = object.__new__(DistributedPoints)
        out.client, out.row_chunks = self.client, self.row_chunks
        out.shape = (self.shape[0], np.shape(M)[1])
        out.points = self.client.submit(aligned_task(np.matmul), self.points,
                                        np.asarray(M), pure=False)
        return out
