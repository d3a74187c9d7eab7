"""LMNN fitted on a dask array, on the active ``distributed`` cluster.

Imported only when ``fit`` receives a ``dask.array.Array``. With a
``distributed.Client`` active (:func:`mahal._dask_cluster.active_client`):

- ``X`` is gathered, once, into one NumPy array on a worker and checked there
  (:func:`mahal._dask_cluster.distribute_points`, within the budget of
  :func:`bytes_per_point`); the initialisation (PCA, LDA, ...) runs there.
- Target neighbours (:func:`select_target_neighbors_on_cluster`): one task per
  (row chunk × class) pair, each finding the nearest classmates of the chunk's
  members of that class with the in-memory code
  (:func:`mahal._lmnn_neighbors.class_targets`); the driver assembles the ``n × k``
  table (it is the fitted ``target_neighbors_``).
- The problem (:class:`mahal._lmnn_problem._Problem`: the centred points, labels,
  target neighbours) is built on a worker and replicated to every worker
  (*broadcast*: an impostor of a chunk's point may be any point of another class).
- The driver keeps ``L`` and runs the in-memory L-BFGS with the in-memory oracle
  (:class:`mahal._lmnn_solver._LossOracle`: the same smoothing stages, search
  periods, restarts, stopping rule, ``verbose`` output and ``callback``) over a
  :class:`DistributedProblem`, which holds everything of size ``n`` on the
  workers: the current point ``Z = X Lᵀ``, the direction's ``X Pᵀ`` and the trial
  points (one future each), the impostor candidates (one CSR future per row chunk)
  and ``U`` (the gradient is ``2 Uᵀ X``; one future per row chunk). Only ``L``,
  step lengths and ``r × d`` gradients cross to and from the driver.
- An impostor search is one task per (row chunk × class) pair: the chunk's points
  of other classes against the class's points, in float32 BLAS blocks turned into
  directed candidate pairs by the in-memory kernel
  (:func:`mahal._lmnn_search_kernels.scan_block`); a task per chunk groups them
  into the chunk's CSR, which stays on the workers until the next search. Each
  row's candidates come in the in-memory order (by class, then index). Unless the
  last search found at most half the budget (``max_candidates``), the pairs are
  counted first, in a pass that keeps none, and stored only if they fit it (the
  in-memory search stops as soon as it exceeds the budget): such a search costs two
  passes, and the workers never hold more candidates than about the budget.
- An evaluation is a task per chunk running the in-memory loss kernel
  (:func:`mahal._lmnn_kernels.loss_weights`) on the chunk's rows, one task
  gathering the rows' losses and pair weights (``O(n k + active pairs)``, never
  ``n × n``), and a task per chunk forming its rows of ``U`` with
  :func:`mahal._lmnn_kernels.laplacian_dot`; the gradient ``2 Uᵀ X`` and the
  line search's slope ``2 ⟨U, X Pᵀ⟩`` are ``r × d`` and scalar shares of tasks
  over row ranges.
- Every sum over rows (the loss, the gradient's and the slope's shares, the
  impostors a search finds that the old candidates missed,
  :func:`mahal._lmnn_kernels.add_missed`) is formed over the pieces and in the
  order the in-memory problem forms it (the whole array below its threading
  thresholds, else :meth:`mahal._parallel.RowChunkPool.ranges`, which do not
  depend on the thread count), not in a tree over ``X``'s chunks: each evaluation
  then equals the in-memory one to the bit, and so does the fit (see
  :class:`DistributedProblem` for why rounding would not do). The row-wise work
  follows ``X``'s chunks, whose sizes change no result.

Every task is a function of its inputs, so a worker lost in the middle of a fit
loses only results that dask recomputes from them: the fit ends where it would
have. Problems small enough for the in-memory dense path
(:func:`mahal._lmnn_dense.use_dense`, at most 500 points) are gathered to the
driver and fitted there.

Where the impostor candidates exceed ``max_candidates`` (classes that overlap
heavily), the in-memory solver streams over blocks of distances instead
(:meth:`mahal._lmnn_problem._Problem.stream`); here its fixed lanes run as tasks
(:meth:`~mahal._lmnn_problem._Problem.stream_lane`, one per lane), summed in lane
order by one task.
"""

import operator

import numpy as np

from . import _lmnn_dense
from ._dask_cluster import aligned_task
from ._dask_cluster import distribute_points as _distribute_points
from ._lazy import lazy_module
from ._lmnn_neighbors import _SEARCH_BLOCK, _SMALL_SEARCH, class_targets, target_classes
from ._lmnn_problem import (_ROWS_PER_THREAD, _STREAM_LANES, _THREADED_ELEMS,
                            _THREADED_FLOPS, _Problem, _screens)
from ._nearest import squared_norms
from ._parallel import SERIAL

kernels = lazy_module("mahal._lmnn_kernels")  # (numba: imported on first use)
search_kernels = lazy_module("mahal._lmnn_search_kernels")


def bytes_per_point(d):
    """Bytes a worker holds per point, at most: the points twice while the problem
    is built and the problem's centred points (and their float32 copy), the current
    point, the direction's ``X Pᵀ``, a trial point and its float32 copy and norms
    (``r ≤ d`` columns each), target neighbours and their transpose, and the
    gathered pair weights: ``8 (8 d + 40)`` for up to 5 target neighbours and as
    many active impostor pairs per point (a worker's share of the candidates and of
    ``U`` comes on top, a chunk's worth per task)."""
    return 8 * (8 * d + 40)


def distribute_points(estimator, X, y):
    """:func:`mahal._dask_cluster.distribute_points` for LMNN (labels, at least 2
    points), within the budget of :func:`bytes_per_point`."""
    return _distribute_points(estimator, X, y, bytes_per_point=bytes_per_point,
                              classification=True, ensure_min_samples=2)


# ---------------------------------------------------------------------------
# Target neighbours


@aligned_task
def _class_targets(X, members, s, e, kc, kk):
    return class_targets(X, members, s, e, kc, kk)


def select_target_neighbors_on_cluster(points, y, n_neighbors):
    """:func:`mahal._lmnn_neighbors.select_target_neighbors` of points held on the
    cluster: one task per (row chunk × class) pair.

    Parameters
    ----------
    points : mahal._dask_cluster.DistributedPoints
    y : ndarray of shape (n_samples,), int labels
    n_neighbors : int

    Returns
    -------
    targets : ndarray of shape (n_samples, n_neighbors), int64
    """
    client = points.client
    targets = np.full((y.shape[0], n_neighbors), -1, dtype=np.int64)
    jobs = []
    for members, kc, kk in target_classes(y, n_neighbors):
        for r0, r1 in points.chunks():
            s, e = (int(v) for v in np.searchsorted(members, [r0, r1]))
            if e > s:
                jobs.append((members[s:e], kc, client.submit(
                    _class_targets, points.points, members, s, e, kc, kk,
                    pure=False)))
    for (rows, kc, _), found in zip(jobs, client.gather([j[2] for j in jobs])):
        targets[rows, :kc] = found
    return targets


# ---------------------------------------------------------------------------
# The solve


def lmnn_solve_on_cluster(points, y, target_neighbors, L0, *, mu, max_iter, tol,
                          smoothing, verbose, slack, max_period, name, low_precision,
                          callback, max_candidates):
    """:func:`mahal._lmnn_solver.lmnn_solve` of points held on the cluster (the
    same parameters and returns; see the module docstring)."""
    from ._lmnn_solver import _lmnn_lbfgs, _smoothing_schedule, lmnn_solve

    if (not low_precision and max_candidates is None and _lmnn_dense.use_dense(
            points.shape[0], target_neighbors.shape[1], L0.shape[0])):
        # (a few hundred points: the in-memory dense path, in this process)
        return lmnn_solve(points.points.result(), y, target_neighbors, L0, mu=mu,
                          max_iter=max_iter, tol=tol, smoothing=smoothing,
                          verbose=verbose, slack=slack, max_period=max_period,
                          name=name, callback=callback)
    problem = DistributedProblem(points, y, target_neighbors, mu)
    return _lmnn_lbfgs(problem, L0, max_iter, tol, _smoothing_schedule(smoothing),
                       verbose, slack, max_period, name, low_precision, callback,
                       max_candidates)


# Handles of what the workers hold; the oracle passes them around as the in-memory
# problem's arrays.


class _Remote:
    """The shape and size of an array held on the cluster (``_Problem.Xc``)."""

    def __init__(self, shape):
        self.shape = shape
        self.size = int(np.prod(shape))


class _Point:
    """A point of the line search, ``Z`` (n, r): a future of ``(Z, aux)``, ``aux``
    its screening inputs (:meth:`_Problem.aux`) or None."""

    def __init__(self, future=None, has_aux=False, dtype=np.float64):
        self.future = future
        self.has_aux = has_aux
        self.dtype = dtype


class _Radii:
    """Squared margin radii times ``scale``: a future of the radii (n,)."""

    def __init__(self, future, scale=1.0):
        self.future = future
        self.scale = scale

    def __mul__(self, scale):
        return _Radii(self.future, self.scale * scale)


class _Graph:
    """Impostor candidates: per row chunk, a future of its CSR (``indptr`` over the
    chunk's rows, global indices). ``shape``: ``(number of candidate pairs,)``."""

    def __init__(self, parts, size):
        self.parts = parts
        self.shape = (size,)


class _Rows:
    """``U`` (n, r): per row chunk, a future of its rows."""

    def __init__(self, parts):
        self.parts = parts


# Tasks (on the workers; their arrays aligned as NumPy allocates them, wherever they
# came from: see mahal._dask_cluster.aligned). ``static`` is ``(problem,
# members)``: the replicated :class:`_Problem` and the indices of each class's
# points.


@aligned_task
def _build(X, y, targets, mu):
    members = [np.flatnonzero(y == c) for c in range(int(y.max()) + 1)]
    return _Problem(X, y, targets, mu), members


@aligned_task
def _transform(static, L, low_precision):
    return static[0].transform(L, low_precision=low_precision), None


@aligned_task
def _with_aux(static, point):
    Z = point[0]
    Z32, norms = aux = static[0].aux_buffers(Z.shape[1])
    kernels.point_aux(Z, Z32, norms, _screens(Z.shape[1]), 0, Z.shape[0])
    return Z, aux


@aligned_task
def _step(static, point, direction, alpha):
    Z, ZP = point[0], direction[0]
    out = np.empty_like(Z)
    Z32, norms = aux = static[0].aux_buffers(Z.shape[1])
    kernels.step(Z, ZP, alpha, out, Z32, norms, _screens(Z.shape[1]), 0, Z.shape[0])
    return out, aux


@aligned_task
def _radius(static, point):
    return static[0].radius(point[0])


def _scaled(radius, scale):
    return radius if scale == 1.0 else radius * scale


@aligned_task
def _search_block(static, point, chunk, classes, radius, scale, low_precision,
                  count_only):
    """Directed candidates ``i → l``: ``i`` a point of the chunk, ``l`` of one of
    the ``classes`` other than ``i``'s, ``‖z_i − z_l‖² < rho2[i]``; class by class,
    in blocks of at most ``_SEARCH_BLOCK`` products. With ``count_only``, their
    number (nothing kept beyond a block)."""
    problem, members = static
    Z = point[0]
    r0, r1 = chunk
    rho2 = _scaled(radius, scale)
    found, count = [], 0
    for c in classes:
        rows = r0 + np.flatnonzero(problem.y[r0:r1] != c)
        cols = members[c]
        Zr, Zc = Z[rows], Z[cols]
        norm_rows, norm_cols = squared_norms(Zr), squared_norms(Zc)
        rho_rows = rho2[rows]
        never = np.full(cols.shape[0], -np.inf)  # (the columns' pairs: their tasks)
        if low_precision:
            Zr, Zc = Zr.astype(np.float32), Zc.astype(np.float32)
        step = max(64, _SEARCH_BLOCK // cols.shape[0])
        for s in range(0, rows.shape[0], step):
            pairs = search_kernels.scan_block(
                Zr[s:s + step] @ Zc.T, norm_rows[s:s + step], norm_cols,
                rows[s:s + step], cols, rho_rows[s:s + step], never)
            count += pairs[0].shape[0]
            if not count_only:
                found.append(pairs)
    if count_only:
        return count
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate([f[0] for f in found] + [empty]),
            np.concatenate([f[1] for f in found] + [empty]))


@aligned_task
def _chunk_graph(chunk, by_index, *found):
    """The chunk's candidates as CSR over its rows, each row's in the in-memory
    order: by class, then index (by index alone if ``by_index``, as
    :func:`kernels.search_small`)."""
    r0, r1 = chunk
    src = np.concatenate([f[0] for f in found])
    dst = np.concatenate([f[1] for f in found])
    if by_index:
        order = np.argsort(dst, kind="stable")
        src, dst = src[order], dst[order]
    ptr, perm = kernels.group_by(src - r0, r1 - r0)
    return ptr, dst[perm]


def _graph_size(part):
    return int(part[1].shape[0])


def _ptr_from(local, r0, length):
    """An ``indptr`` indexed by global rows (``length`` entries) that holds the
    chunk's CSR ``local`` from row ``r0`` on and no pairs elsewhere."""
    ptr = np.empty(length, dtype=np.int64)
    ptr[:r0] = 0
    ptr[r0:r0 + local.shape[0]] = local
    ptr[r0 + local.shape[0]:] = local[-1]
    return ptr


@aligned_task
def _chunk_loss(static, point, part, chunk, mu, smooth):
    """The chunk's rows of :func:`kernels.loss_weights`: ``(row losses, wt, active
    triplets, active pair counts, active pairs' second points, their weights)``."""
    problem = static[0]
    Z, (Z32, norms) = point
    r0, r1 = chunk
    k = problem.target_neighbors.shape[1]
    indptr = _ptr_from(part[0], r0, r1 + 1)
    # (buffers of r1 rows, of which the kernel writes the chunk's)
    row_loss, wt, act, active_count = (np.zeros(r1), np.zeros((r1, k)),
                                       np.zeros(r1, dtype=np.int64),
                                       np.zeros(r1, dtype=np.int64))
    active_dst, active_weight = kernels.loss_weights(
        Z, Z32, norms, _screens(Z.shape[1]), problem.target_neighbors, indptr, part[1],
        mu, smooth, r0, r1, row_loss, wt, act, active_count)
    return (row_loss[r0:], wt[r0:], act[r0:], active_count[r0:], active_dst,
            active_weight)


@aligned_task
def _gather_weights(serial, *shares):
    """All rows' losses and pair weights, in row order: ``((loss, active triplets,
    active pairs), laplacian_dot's pair-graph arguments)``. The loss is summed as
    in memory: in order (``serial``: the compiled sum of
    :func:`kernels.loss_grad_serial`), else by NumPy."""
    row_loss, wt, act, active_count, active_dst, active_weight = (
        np.concatenate([s[q] for s in shares]) for q in range(6))
    loss = np.add.accumulate(row_loss)[-1] if serial else row_loss.sum()
    (active_ptr, active_src, active_ptr_by_dst,
     active_perm_by_dst) = kernels.index_active(active_count, active_dst)
    return ((float(loss), int(act.sum()), int(active_dst.shape[0])),
            (wt, active_ptr, active_dst, active_weight, active_ptr_by_dst,
             active_perm_by_dst, active_src))


@aligned_task
def _chunk_u(static, point, weights, chunk):
    """The chunk's rows of ``U = Lap(W) Z`` (:func:`kernels.laplacian_dot`)."""
    problem = static[0]
    Z = point[0]
    r0, r1 = chunk
    wt, active_ptr, active_dst, active_weight, by_dst_ptr, by_dst_perm, src = weights[1]
    U = np.empty((r1, Z.shape[1]))  # (the kernel writes rows r0 ≤ i < r1)
    kernels.laplacian_dot(Z, problem.target_neighbors, wt, problem.targeted_by_ptr,
                          problem.targeted_by, active_ptr, active_dst, active_weight,
                          by_dst_ptr, by_dst_perm, src, r0, r1, U)
    return U[r0:].copy()


def _span(a, b, starts, *blocks):
    """Rows ``a ≤ i < b`` of an array held as consecutive row blocks (the first
    rows ``starts``; only the blocks that hold some of those rows)."""
    pieces = [block[max(a - s, 0):b - s] for s, block in zip(starts, blocks)]
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


@aligned_task
def _grad_part(static, a, b, low_precision, starts, *blocks):
    """``U[a:b]ᵀ X[a:b]`` as :meth:`_Problem.grad` forms it."""
    X, dtype = static[0]._data(low_precision)
    return _span(a, b, starts, *blocks).astype(dtype, copy=False).T @ X[a:b]


@aligned_task
def _grad_whole(part):
    G = part.astype(np.float64, copy=False)
    G *= 2.0
    return G


@aligned_task
def _grad_sum(*parts):
    return 2.0 * np.sum(parts, axis=0, dtype=np.float64)


@aligned_task
def _inner_part(a, b, by_kernel, direction, starts, *blocks):
    """``⟨U[a:b], Z_P[a:b]⟩`` as :meth:`_Problem.inner` (or, with ``by_kernel``,
    the serial trial) forms it."""
    U, V = _span(a, b, starts, *blocks), direction[0][a:b]
    return kernels.row_inner(U, V, 0, b - a) if by_kernel else np.vdot(U, V)


def _whole_csr(parts):
    """One CSR over all rows from the chunks' CSRs (in row order)."""
    offsets = np.cumsum([0] + [p[1].shape[0] for p in parts])
    ptr = np.concatenate([p[0][:-1] + o for p, o in zip(parts, offsets)]
                         + [offsets[-1:]])
    return ptr, np.concatenate([p[1] for p in parts])


@aligned_task
def _missed_count(static, point, old, new, chunk, radius, scale, smooth):
    """The number of the chunk's impostor pairs that ``new`` holds and ``old``
    missed (:func:`kernels.add_missed` on the chunk's rows, without a patch)."""
    problem = static[0]
    Z = point[0]
    n = Z.shape[0]
    r0 = chunk[0]
    return kernels.add_missed(
        _ptr_from(old[0], r0, n + 1), old[1], _ptr_from(new[0], r0, n + 1), new[1], Z,
        _scaled(radius, scale), problem.target_neighbors, problem.mu, smooth,
        np.zeros((0, Z.shape[1])), False)[0]


@aligned_task
def _missed_patch(static, point, radius, scale, smooth, olds, news, blocks):
    """:func:`kernels.add_missed` with its patch, over all rows in one pass (as in
    memory): ``((missed, loss, active), patched U)``."""
    problem = static[0]
    U = np.concatenate(blocks)
    counts = kernels.add_missed(*_whole_csr(olds), *_whole_csr(news), point[0],
                                _scaled(radius, scale), problem.target_neighbors,
                                problem.mu, smooth, U, True)
    return counts, U


@aligned_task
def _rows_of(result, chunk):
    """The chunk's rows of the ``U`` of ``result = (..., U)``."""
    return result[1][chunk[0]:chunk[1]].copy()


@aligned_task
def _stream_prepare(static, point, rho):
    return static[0].stream_prepare(point[0], rho)


@aligned_task
def _stream_lane(static, prepared, smooth, q):
    return static[0].stream_lane(prepared, smooth, q)


@aligned_task
def _stream_finish(static, point, prepared, lanes):
    """:meth:`_Problem.stream_finish`: ``((f, active triplets, active pairs, near
    pairs), U)``."""
    f, U, act, pairs, near = static[0].stream_finish(point[0], prepared, list(lanes))
    return (f, act, pairs, near), U


def _class_blocks(sizes, n, share=1 / 16):
    """Consecutive classes grouped into blocks of at least ``share · n`` points
    (or a class alone): a search runs a task per (row chunk × class block)."""
    blocks, block, size = [], [], 0
    for c, m in enumerate(sizes):
        block.append(c)
        size += m
        if size >= share * n:
            blocks.append(block)
            block, size = [], 0
    return blocks + [block] if block else blocks


class DistributedProblem:
    """What :class:`mahal._lmnn_solver._LossOracle` calls on an in-memory
    :class:`mahal._lmnn_problem._Problem`, with everything of size ``n`` held on
    the workers (see the module docstring): points, radii, candidate graphs and
    ``U`` are handles of futures; losses, counts, slopes and gradients come back.

    The row-wise work (searches, loss kernel, rows of ``U``) runs one task per row
    chunk of ``X``; every sum over rows (loss, gradient, slope, the patch after a
    search) is formed over the pieces the in-memory problem forms it over (the
    whole array, or :meth:`mahal._parallel.RowChunkPool.ranges`, which do not
    depend on the thread count), in the same order, so that each evaluation equals
    the in-memory one to the bit: on a piecewise-linear objective, L-BFGS's line
    searches amplify a difference of rounding into different iterates within a few
    tens of iterations, so an evaluation equal only to rounding would not give the
    in-memory fit.

    Parameters
    ----------
    points : mahal._dask_cluster.DistributedPoints
    y : ndarray of shape (n,), int64 class codes
    targets : ndarray of shape (n, k), int64
    mu : float
    """

    def __init__(self, points, y, targets, mu):
        self.client = client = points.client
        self.target_neighbors = np.ascontiguousarray(targets, dtype=np.int64)
        self.mu = float(mu)
        self.Xc = _Remote(points.shape)
        self.n = n = points.shape[0]
        self.chunks = points.chunks()
        self.starts = [c[0] for c in self.chunks]
        # as the in-memory problem: no threads (and single compiled calls) below
        # this size, else sums over these row ranges
        self.serial = n < 2 * _ROWS_PER_THREAD
        self.ranges = SERIAL.ranges(n)
        self.class_blocks = _class_blocks(np.bincount(y), self.n)
        self.static = client.submit(_build, points.points, np.asarray(y, np.int64),
                                    self.target_neighbors, self.mu, pure=False)
        client.replicate([self.static])  # (every worker evaluates chunks of it)
        self.stream_rho = 1.0
        self.stream_near = 0
        self.last_size = None  # candidates the last search stored (None: too many)

    def _submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def _blocks(self, parts, a, b):
        """``(starts, *futures)`` of the row blocks ``parts`` that hold rows
        ``a ≤ i < b``."""
        held = [(s, p) for (s, e), p in zip(self.chunks, parts) if s < b and e > a]
        return [s for s, _ in held], *[p for _, p in held]

    @staticmethod
    def empty_like(Z):
        return _Point()

    def aux_buffers(self, r):
        return None  # (a trial point's are made with it, on the workers)

    def transform(self, L, low_precision=False):
        self.r = L.shape[0]
        return _Point(self._submit(_transform, self.static,
                                   np.ascontiguousarray(L, dtype=np.float64),
                                   low_precision),
                      dtype=np.float32 if low_precision else np.float64)

    def radius(self, Z):
        return _Radii(self._submit(_radius, self.static, Z.future))

    def search(self, Z, rho2, low_precision=False, max_pairs=None):
        # (as find_impostors: one float64 pass, candidates by index, for small
        # problems)
        small = self.n * self.n * self.Xc.shape[1] <= _SMALL_SEARCH
        low_precision = low_precision and not small

        def blocks(chunk, count_only):
            return [self._submit(_search_block, self.static, Z.future, chunk, block,
                                 rho2.future, rho2.scale, low_precision, count_only)
                    for block in self.class_blocks]

        if max_pairs is not None and (self.last_size is None
                                      or self.last_size > max_pairs // 2):
            # counted first, so that the workers do not store more than the
            # budget (the in-memory search stops as soon as it is exceeded),
            # unless the last search found well within it
            self.last_size = sum(self.client.gather([
                b for chunk in self.chunks for b in blocks(chunk, True)]))
            if self.last_size > max_pairs:
                self.last_size = None
                return None
        parts = [self._submit(_chunk_graph, chunk, small, *blocks(chunk, False))
                 for chunk in self.chunks]
        size = sum(self.client.gather([self._submit(_graph_size, p) for p in parts]))
        if max_pairs is not None and size > max_pairs:
            self.last_size = None
            return None
        self.last_size = size
        graph = _Graph(parts, size)
        return graph, graph  # (the oracle's indptr and indices)

    def weights(self, Z, indptr, indices, smooth, aux=None):
        if not Z.has_aux:
            Z.future, Z.has_aux = self._submit(_with_aux, self.static, Z.future), True
        return self._evaluate(Z, indptr, smooth, None)[0]

    def _evaluate(self, Z, graph, smooth, direction):
        """``((f, U, active triplets, active pairs), slope / 2)`` at ``Z``, the
        slope along ``direction`` (a point, or None); ``U`` stays on the workers.
        One round trip."""
        if graph is None:
            # no candidate graph: the in-memory streamed evaluation, its lanes as
            # tasks
            prepared = self._submit(_stream_prepare, self.static, Z.future,
                                    self.stream_rho)
            lanes = [self._submit(_stream_lane, self.static, prepared, smooth, q)
                     for q in range(_STREAM_LANES)]
            weights = self._submit(_stream_finish, self.static, Z.future, prepared,
                                   lanes)
            U = _Rows([self._submit(_rows_of, weights, chunk)
                       for chunk in self.chunks])
        else:
            shares = [self._submit(_chunk_loss, self.static, Z.future, part, chunk,
                                   self.mu, smooth)
                      for part, chunk in zip(graph.parts, self.chunks)]
            weights = self._submit(_gather_weights, self.serial, *shares)
            U = _Rows([self._submit(_chunk_u, self.static, Z.future, weights, chunk)
                       for chunk in self.chunks])
        wanted = [self._submit(operator.getitem, weights, 0)]
        # (the serial trial kernel: graph evaluations of small problems)
        serial = self.serial and graph is not None
        if direction is not None:
            # ⟨U, Z_P⟩: as the serial trial kernel, or as _Problem.inner
            by_kernel = serial or direction.dtype == np.float32
            whole = serial or self.n * self.r < _THREADED_ELEMS
            wanted += [self._submit(_inner_part, a, b, by_kernel, direction.future,
                                    *self._blocks(U.parts, a, b))
                       for a, b in ([(0, self.n)] if whole else self.ranges)]
        (f, act, n_pairs, *near), *inner = self.client.gather(wanted)
        if near:
            self.stream_near = near[0]
        inner = inner and (inner[0] if serial else float(sum(inner)))
        return (f, U, act, n_pairs), inner

    def grad(self, U, low_precision=False):
        whole = self.n * self.r * self.Xc.shape[1] < _THREADED_FLOPS
        parts = [self._submit(_grad_part, self.static, a, b, low_precision,
                              *self._blocks(U.parts, a, b))
                 for a, b in ([(0, self.n)] if whole else self.ranges)]
        return self._submit(_grad_whole if whole else _grad_sum, *parts).result()

    def trial(self, Z, ZP, alpha, out, aux, indptr, indices, smooth):
        out.future = self._submit(_step, self.static, Z.future, ZP.future, alpha)
        out.has_aux = True
        evaluation, inner = self._evaluate(out, indptr, smooth, ZP)
        return evaluation, 2.0 * inner

    def add_missed(self, old_ptr, old_idx, new_ptr, new_idx, Z, radius, smooth, U,
                   patch):
        if not patch:
            return sum(self.client.gather([
                self._submit(_missed_count, self.static, Z.future, old, new, chunk,
                             radius.future, radius.scale, smooth)
                for old, new, chunk in zip(old_ptr.parts, new_ptr.parts,
                                           self.chunks)])), 0.0, 0
        patched = self._submit(_missed_patch, self.static, Z.future, radius.future,
                               radius.scale, smooth, old_ptr.parts, new_ptr.parts,
                               U.parts)
        U.parts = [self._submit(_rows_of, patched, chunk) for chunk in self.chunks]
        return self._submit(operator.getitem, patched, 0).result()
