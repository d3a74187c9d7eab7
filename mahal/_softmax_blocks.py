"""Row-blocked softmax over learned distances: the machinery NCA and MLKR share.

Both objectives are functions of the row-wise softmax of negative squared learned
distances, ``p_ij = exp(−d_ij) / Σ_{k≠i} exp(−d_ik)`` (``p_ii = 0``), through one
statistic per row,

    q_i = Σ_{j≠i} p_ij m_ij v_j,

with a column value ``v_j`` and a mask ``m_ij`` that is either 1 everywhere or
"``j`` in the class of ``i``": NCA's ``p_i`` (``v = 1``, class mask), MLKR's
``ŷ_i`` (``v = y``, no mask). The learner gives the loss as a sum over rows of a
function of ``q_i`` and its derivative ``g_i = ∂f/∂q_i`` (a :class:`RowLoss`);
:func:`softmax_loss_grad` returns the loss and its gradient with respect to the
embedding ``Z = X Lᵀ``.

The gradient. With ``W_ij = ∂f/∂d_ij = −g_i p_ij (m_ij v_j − q_i)`` and
``d_ij = ‖z_i − z_j‖²``,

    ∂f/∂Z = 2 ((diag(W 1) + diag(Wᵀ 1)) Z − W Z − Wᵀ Z),

and ``∂f/∂L = (∂f/∂Z)ᵀ X``. Writing ``e_ij = exp(−d_ij + c_i)`` (any shift
``c_i`` per row) and ``s_i = Σ_j e_ij``, ``W = diag(α) (E ∘ M) diag(v) − diag(β) E``
with ``α = −g / s`` and ``β = −g q / s``: every product with ``W`` or ``Wᵀ`` is a
product with ``E`` (or with the diagonal blocks of ``E`` of each class, the data
being sorted by class) scaled by row and column vectors, so that ``W`` itself is
never formed.

Design:

- Row blocks. The rows are cut into a fixed number of *chunks* (a function of
  ``n`` and ``r`` only), each cut into blocks of ``block_rows`` rows. A block holds
  ``E_B`` (``block_rows × n``) and nothing else of size ``n``: memory
  ``O(block_rows · n)`` per thread, never ``n × n``.
- Per block, four matrix products and one ``exp``: ``E_B`` comes from one product
  ``[2 Z_B, −1, −c_B] [Z, ‖z‖², 1]ᵀ`` (the shift folded into the product) and one
  ``exp`` in place; ``E_B [Z, 1]`` (and ``E_B [vZ, v]`` on the class blocks) give
  ``s``, ``q``, ``W Z`` and ``W 1`` for the rows of the block; ``E_Bᵀ [βZ_B, β]``
  (and ``αZ_B`` on the class blocks) add the block's share of ``Wᵀ Z`` and
  ``Wᵀ 1`` into its chunk's accumulator.
- Numerically stable softmax. The shift ``c_i`` is the row's log-sum-exp of the
  previous evaluation (so the largest ``e_ij`` is near 1); a row whose sum then
  falls outside ``[1e-200, 1e200]`` (the distances moved far since) is computed
  again with its exact maximum. The shift is the same for a row however the rows
  are blocked.
- Threads (:mod:`mahal._parallel`): chunks run on a :class:`RowChunkPool`; each
  chunk has its own accumulator, summed in chunk order, so results are identical
  for any number of threads.
- NumPy only (BLAS products and NumPy's ``exp``) in the blocks.
- Small ``n`` (``1000 ≤ n``, ``n² ≤ _SINGLE_BLOCK_ELEMENTS``, 32 MB): one symmetric ``n × n``
  block instead (:meth:`SoftmaxProblem._single_block`), ``W + Wᵀ`` formed in place,
  half the multiply-adds, and the ``exp`` and the elementwise passes in numba
  (:mod:`mahal._softmax_kernels`): at these sizes NumPy's ``exp`` (scalar without
  AVX-512) and the third product weighed most (``docs/benchmarks.rst``).
"""

import numpy as np

from ._parallel import SERIAL

# Rows per block: about this many elements of E per block (fits a core's cache
# share, so that the products after the exp read E from cache).
_BLOCK_ELEMENTS = 1 << 19
_MIN_BLOCK_ROWS, _MAX_BLOCK_ROWS = 8, 256
_CHUNK_ROWS = 512  # at least this many rows per chunk
_MAX_CHUNKS = 8
# Chunk accumulators (n × (r + 1) each) beyond the first take at most this much.
_ACCUMULATOR_BYTES = 1 << 26
# A row whose shifted sum leaves this range is computed again with its exact max.
_SUM_LOW, _SUM_HIGH = 1e-200, 1e200
_EXP_FLOOR = -700.0
# One n × n block (32 MB at most) up to this many elements; chunks of its rows.
_SINGLE_BLOCK_ELEMENTS = 1 << 22
# ... from this many points on: below, a whole fit takes less than loading numba for
# the block's kernels, and the first fit of a small problem never imports numba
# (docs/benchmarks.rst, "First fit").
_SINGLE_MIN_N = 1000
_SINGLE_CHUNK_ROWS = 128
# The single block's factors a_i = exp((m_i − μ)/2) stay within exp(±_SINGLE_SPREAD/4)
# (no overflow in W + Wᵀ; the exponents clamped at −700 stand for terms below
# exp(−200) of their row's largest); beyond, the blocked evaluation.
_SINGLE_SPREAD = 1000.0
# ... unless more than 1 row in this many is that far from the others
_SINGLE_MAX_FAR = 16


def _single_chunks(n):
    """Row chunks of the single-block evaluation (a function of ``n`` only)."""
    n_chunks = int(min(_MAX_CHUNKS, max(1, n // _SINGLE_CHUNK_ROWS)))
    bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64)
    return [(int(bounds[c]), int(bounds[c + 1])) for c in range(n_chunks)]


def uses_single_block(n):
    """Whether a problem of ``n`` points is evaluated in one ``n × n`` block."""
    return _SINGLE_MIN_N <= n and n * n <= _SINGLE_BLOCK_ELEMENTS


def n_tasks(n, r):
    """The most row chunks that an evaluation on ``n`` points runs at once."""
    single = len(_single_chunks(n)) if uses_single_block(n) else 1
    return max(single, len(chunk_ranges(n, r)))


def default_block_rows(n):
    """Rows per block for ``n`` points (about ``_BLOCK_ELEMENTS`` elements)."""
    return int(np.clip(_BLOCK_ELEMENTS // max(n, 1), _MIN_BLOCK_ROWS, _MAX_BLOCK_ROWS))


def chunk_ranges(n, r):
    """Row chunks ``(start, stop)``: a function of ``n`` and ``r`` only (never of the
    number of threads), so that sums over chunks do not depend on it either."""
    by_rows = max(1, n // _CHUNK_ROWS)
    by_memory = max(2, _ACCUMULATOR_BYTES // (8 * n * (r + 1)))
    n_chunks = max(1, min(_MAX_CHUNKS, by_rows, by_memory))
    bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64)
    return [(int(bounds[c]), int(bounds[c + 1])) for c in range(n_chunks)]


class RowLoss:
    """The loss as a sum over rows of a function of ``q_i`` (see module docstring).

    Subclasses define :meth:`__call__`.
    """

    def __call__(self, q, r0, r1):
        """Loss of rows ``r0:r1`` and its derivative.

        Parameters
        ----------
        q : ndarray of shape (r1 - r0,)
            The rows' statistic ``q_i``.
        r0, r1 : int
            The rows (in the solver's order).

        Returns
        -------
        f : float
            ``Σ_{i=r0}^{r1-1} f_i(q_i)``.
        g : ndarray of shape (r1 - r0,)
            ``∂f_i/∂q_i``.
        """
        raise NotImplementedError


class SoftmaxProblem:
    """The fixed data of a blocked softmax objective.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Points, in the order of ``v`` and ``segments``.
    v : ndarray of shape (n,) or None
        Column values (None: all 1).
    segments : ndarray of shape (n_classes + 1,) or None
        Class boundaries: the points are sorted by class, class ``k`` holds rows
        ``segments[k]:segments[k + 1]``, and ``m_ij = 1`` iff ``i`` and ``j`` are
        in the same class. None: ``m_ij = 1`` for all ``i ≠ j``.
    row_loss : RowLoss
    pool : RowChunkPool
    block_rows : int, optional
        Rows per block (default :func:`default_block_rows`).
    """

    def __init__(self, X, v, segments, row_loss, pool=SERIAL, block_rows=None):
        # d_ij depends on differences only: centring X costs nothing in the
        # gradient (its rows of U sum to 0) and keeps ‖z‖² small next to d_ij in
        # the expanded product below.
        self.X = np.ascontiguousarray(X - X.mean(axis=0), dtype=np.float64)
        n = X.shape[0]
        self.v = None if v is None else np.asarray(v, dtype=np.float64)
        self.segments = None if segments is None else np.asarray(segments, np.int64)
        if self.segments is not None:
            self.class_of = np.repeat(np.arange(len(self.segments) - 1),
                                      np.diff(self.segments))
        self.row_loss = row_loss
        self.pool = pool
        self.block_rows = int(block_rows or default_block_rows(n))
        # one n × n block (see _single_block) unless the rows' blocking is asked for
        self.single_block = block_rows is None and uses_single_block(n)
        self.shift = None  # per-row shift c_i (log-sum-exp of the last evaluation)
        self.n_evals = 0

    def loss_grad(self, L):
        """Loss at ``L`` and its gradient with respect to ``L`` (shape of ``L``)."""
        Z = self.X @ L.T
        f, dZ = self.loss_grad_z(Z)
        return f, dZ.T @ self.X

    def loss_grad_z(self, Z):
        """Loss at the embedding ``Z`` (n × r) and its gradient ``∂f/∂Z``."""
        n, r = Z.shape
        self.n_evals += 1
        if self.single_block:
            out = self._single_block(Z)
            if out is not None:
                return out
        ctx = self._context(Z, self.shift)
        chunks = chunk_ranges(n, r)
        results = self.pool.map(lambda c: self._chunk(c, ctx), chunks)
        f = 0.0
        acc = None
        for fc, acc_c in results:  # (in chunk order: independent of the threads)
            f += fc
            acc = acc_c if acc is None else acc + acc_c
        self.shift = ctx[5]
        return f, _grad_z(Z, ctx[6], acc)

    def chunk_loss_grad(self, L, chunk, shift=None):
        """One row chunk's share of :meth:`loss_grad`, for an evaluation whose
        chunks run elsewhere (:mod:`mahal._dask_softmax`).

        Parameters
        ----------
        L : ndarray of shape (r, d)
        chunk : (int, int)
            The rows ``start:stop``.
        shift : ndarray of shape (stop − start,) or None
            The rows' shift returned by this chunk's previous evaluation (None:
            the first, with exact shifts), as :meth:`loss_grad` keeps it.

        Returns
        -------
        f : float
            The chunk rows' loss (with the same rows, the same chunk sum as in
            :meth:`loss_grad`, to the bit).
        grad : ndarray of shape (r, d)
            The chunk's share of the gradient: the shares sum to :meth:`loss_grad`'s
            gradient (to rounding).
        shift : ndarray of shape (stop − start,)
            The rows' shift for the chunk's next evaluation.
        """
        start, stop = chunk
        Z = self.X @ L.T
        n, r = Z.shape
        if shift is not None:
            shift = np.concatenate([np.zeros(start), shift, np.zeros(n - stop)])
        ctx = self._context(Z, shift)
        ctx[6].fill(0.0)  # (W Z of the other chunks' rows: not this share's)
        f, acc = self._chunk(chunk, ctx)
        return f, _grad_z(Z, ctx[6], acc).T @ self.X, ctx[5][start:stop]

    def _context(self, Z, shift):
        """What the chunks of one evaluation at ``Z`` share: ``(Z, right, ones_z,
        value_z, shift, new_shift, WZ, exact_shift)`` (the chunks write their rows
        of ``new_shift`` and ``WZ = [W Z, W 1]``); ``shift`` None: exact shifts."""
        n, r = Z.shape
        sq = np.einsum("ij,ij->i", Z, Z)
        right = np.empty((n, r + 2))
        right[:, :r], right[:, r], right[:, r + 1] = Z, sq, 1.0
        ones_z = np.empty((n, r + 1))
        ones_z[:, :r], ones_z[:, r] = Z, 1.0
        if self.v is None:
            value_z = ones_z
        elif self.segments is None:
            value_z = np.hstack([ones_z, ones_z * self.v[:, None]])
        else:
            value_z = ones_z * self.v[:, None]
        exact_shift = shift is None
        shift = np.zeros(n) if exact_shift else shift
        new_shift = np.empty(n)
        WZ = np.empty((n, r + 1))  # [W Z, W 1]
        return (Z, right, ones_z, value_z, shift, new_shift, WZ, exact_shift)

    def _single_block(self, Z):
        """The evaluation with one symmetric ``n × n`` matrix (small ``n``), or None
        where it does not apply (non-finite ``Z``, or too many far rows).

        With ``m_i`` the row's smallest distance, ``S_ij = exp(−d_ij + (m_i +
        m_j)/2)`` is symmetric, and ``e_ij = exp(−d_ij + m_i) = S_ij a_i / a_j``
        with ``a_i = exp((m_i − μ)/2)`` (any constant ``μ``). Then ``W + Wᵀ`` is
        ``S`` times a sum of products of row and column vectors, formed in place
        of ``S``, and ``∂f/∂Z = 2 (diag((W + Wᵀ) 1) Z − (W + Wᵀ) Z)``: products
        of ``1.5 n² r`` multiply-adds (``Z Zᵀ`` by BLAS's symmetric rank-k update,
        then one product) against the blocks' ``3 n² r``, and one ``exp`` pass
        (:mod:`mahal._softmax_kernels`). The terms are those of the blocked
        evaluation; only the order of the sums differs.

        So that the ``a_i`` stay in range, ``m_i`` is capped at ``min m +
        _SINGLE_SPREAD`` in ``S``; the rows above the cap (points far from all
        others) take no part in the in-place weights: their terms ``e_ij`` and
        ``W_ij`` are computed exactly, one row at a time, and added to row and
        column ``i`` of ``W + Wᵀ``.
        """
        from . import _softmax_kernels as K

        n, r = Z.shape
        if not np.isfinite(Z).all():
            return None
        G = Z @ Z.T  # (BLAS's syrk: symmetric)
        sq = np.ascontiguousarray(np.diagonal(G))
        chunks = _single_chunks(n)
        m = np.empty(n)
        self.pool.map(lambda c: K.row_minima(G, sq, c[0], c[1], m), chunks)
        if not np.isfinite(m).all():
            return None
        cap = m.min() + _SINGLE_SPREAD
        far = np.flatnonzero(m > cap)
        if len(far) > n // _SINGLE_MAX_FAR:
            return None
        m_capped = np.minimum(m, cap)
        mu = 0.5 * (m.min() + m_capped.max())
        w = np.exp(-0.5 * (m_capped - mu))  # 1 / a
        vw = w if self.v is None else self.v * w
        lo, hi = self._row_masks(n)
        u = 0.5 * m_capped - sq
        rs, ms = np.empty(n), np.empty(n)
        self.pool.map(lambda c: K.exp_row_sums(G, u, w, vw, lo, hi, c[0], c[1], rs,
                                               ms), chunks)
        log_s = np.log(rs) + 0.5 * (m_capped - mu)  # log Σ_j e_ij
        rs[far] = 1.0  # (their values come from the exact rows)
        q = ms / rs
        far_rows = []
        for i in far:
            e = np.exp(np.minimum(m[i] - (sq[i] + sq - 2.0 * (Z @ Z[i])), 0.0))
            e[i] = 0.0
            s_i = e.sum()
            ev = e if self.v is None else e * self.v
            q[i] = ev[lo[i]:hi[i]].sum() / s_i
            log_s[i] = np.log(s_i)
            far_rows.append((i, e / s_i, ev / s_i))
        f, g = self.row_loss(q, 0, n)
        A = -g / rs
        B = A * q
        A[far] = B[far] = 0.0
        self.pool.map(lambda c: K.symmetric_weights(G, A, B, w, vw, lo, hi, c[0],
                                                    c[1]), chunks)
        for i, p, pv in far_rows:
            # W_ij = p_ij (α'_i m_ij v_j − β'_i), α' = −g_i, β' = α' q_i
            Wi = g[i] * q[i] * p
            Wi[lo[i]:hi[i]] -= g[i] * pv[lo[i]:hi[i]]
            G[i] += Wi
            G[:, i] += Wi
        ones_z = np.empty((n, r + 1))
        ones_z[:, :r], ones_z[:, r] = Z, 1.0
        P = np.empty((n, r + 1))  # (W + Wᵀ) [Z, 1]

        def product(c):
            np.matmul(G[c[0]:c[1]], ones_z, out=P[c[0]:c[1]])

        self.pool.map(product, chunks)
        # the shift of a later blocked evaluation: the rows' log-sum-exp
        self.shift = sq - m + log_s
        U = P[:, r:] * Z
        U -= P[:, :r]
        return float(f), 2.0 * U

    def _row_masks(self, n):
        """Each row's masked columns ``lo[i]:hi[i]`` (its class, or all)."""
        if self.segments is None:
            return np.zeros(n, np.int64), np.full(n, n, np.int64)
        return self.segments[self.class_of], self.segments[self.class_of + 1]

    def _chunk(self, chunk, ctx):
        Z, right, ones_z, value_z, shift, new_shift, WZ, exact_shift = ctx
        n, r = Z.shape
        acc = np.zeros((n, r + 1))  # [Wᵀ Z, Wᵀ 1] of this chunk's rows
        f = 0.0
        b = self.block_rows
        E = np.empty((min(b, chunk[1] - chunk[0]), n))
        left = np.empty((E.shape[0], r + 2))
        for r0 in range(chunk[0], chunk[1], b):
            r1 = min(r0 + b, chunk[1])
            f += self._block(r0, r1, E[:r1 - r0], left[:r1 - r0], Z, right, ones_z,
                             value_z, shift, new_shift, WZ, acc, exact_shift)
        return f, acc

    def _exp_rows(self, rows, E, left, Z, right, shift, exact):
        """``E[k] = exp(2 z_i·z_j − ‖z_j‖² − c_i)`` for the rows ``i = rows[k]``
        (``E[k, i] = 0``); with ``exact``, ``c_i`` is the row's maximum of the
        exponent (then written to ``shift``), else ``shift[i]``."""
        r = Z.shape[1]
        left[:, :r] = 2.0 * Z[rows]
        left[:, r] = -1.0
        left[:, r + 1] = 0.0 if exact else -shift[rows]
        np.matmul(left, right.T, out=E)
        diagonal = (np.arange(len(rows)), rows)
        if exact:
            E[diagonal] = -np.inf
            c = E.max(axis=1)
            shift[rows] = c
            E -= c[:, None]
        # Exponents below _EXP_FLOOR would give subnormal numbers, on which exp and
        # the products run many times slower; exp(_EXP_FLOOR) is below any sum's
        # rounding error (the row's largest term is near 1).
        np.maximum(E, _EXP_FLOOR, out=E)
        np.exp(E, out=E)
        E[diagonal] = 0.0

    def _block(self, r0, r1, E, left, Z, right, ones_z, value_z, shift, new_shift,
               WZ, acc, exact_shift):
        r = Z.shape[1]
        rows = np.arange(r0, r1)
        # (a shift far off overflows here: such rows are computed again below)
        with np.errstate(over="ignore", invalid="ignore"):
            self._exp_rows(rows, E, left, Z, right, shift, exact_shift)
            full, masked = self._products(E, r0, r1, ones_z, value_z)
        s = full[:, r]
        bad = ~((s >= _SUM_LOW) & (s <= _SUM_HIGH))
        if bad.any():
            # the last shift is far off for these rows: their exact maximum
            k = np.flatnonzero(bad)
            sub = E[k]
            self._exp_rows(rows[k], sub, left[k], Z, right, shift, True)
            E[k] = sub
            full, masked = self._products(E, r0, r1, ones_z, value_z)
            s = full[:, r]
        new_shift[r0:r1] = shift[r0:r1] + np.log(s)
        q = masked[:, r] / s
        f, g = self.row_loss(q, r0, r1)
        alpha = -g / s
        beta = alpha * q
        # W Z and W 1 of the block's rows
        WZ[r0:r1] = alpha[:, None] * masked - beta[:, None] * full
        # the block's share of Wᵀ Z and Wᵀ 1
        Y = ones_z[r0:r1]
        acc -= E.T @ (beta[:, None] * Y)
        self._masked_transpose(E, r0, r1, alpha[:, None] * Y, acc)
        return f

    def _products(self, E, r0, r1, ones_z, value_z):
        """``E [Z, 1]`` and ``(E ∘ M) [vZ, v]`` for the block's rows."""
        if self.segments is None:
            if self.v is None:
                full = E @ ones_z
                return full, full
            both = E @ value_z  # ([Z, 1, vZ, v]: one product)
            k = ones_z.shape[1]
            return both[:, :k], both[:, k:]
        full = E @ ones_z
        masked = np.empty_like(full)
        for k, (a, b), (c0, c1) in self._class_blocks(r0, r1):
            masked[a:b] = E[a:b, c0:c1] @ value_z[c0:c1]
        return full, masked

    def _masked_transpose(self, E, r0, r1, Y, acc):
        """``acc += diag(v) (E ∘ M)ᵀ Y`` (``Y``: the block's rows)."""
        if self.segments is None:
            T = E.T @ Y
            acc += T if self.v is None else self.v[:, None] * T
            return
        for k, (a, b), (c0, c1) in self._class_blocks(r0, r1):
            T = E[a:b, c0:c1].T @ Y[a:b]
            acc[c0:c1] += T if self.v is None else self.v[c0:c1, None] * T

    def _class_blocks(self, r0, r1):
        """For each class with rows in ``r0:r1``: the class, its rows relative to
        ``r0``, and its columns."""
        seg = self.segments
        out = []
        k = self.class_of[r0]
        while True:
            a, b = max(seg[k], r0), min(seg[k + 1], r1)
            out.append((k, (a - r0, b - r0), (seg[k], seg[k + 1])))
            if seg[k + 1] >= r1:
                return out
            k += 1
            while seg[k + 1] <= seg[k]:  # (empty classes)
                k += 1


def _grad_z(Z, WZ, acc):
    """``∂f/∂Z = 2 U``, ``U = (diag(W1) + diag(Wᵀ1)) Z − W Z − Wᵀ Z``, from
    ``WZ = [W Z, W 1]`` and ``acc = [Wᵀ Z, Wᵀ 1]``."""
    r = Z.shape[1]
    U = (WZ[:, r] + acc[:, r])[:, None] * Z
    U -= WZ[:, :r]
    U -= acc[:, :r]
    return 2.0 * U


def softmax_problem_maker(build, X, y, block_rows=None):
    """``make_problem(pool)`` for :func:`softmax_solve`: ``build(X, y, pool,
    block_rows)``, or, for ``X`` held on a cluster (a
    :class:`mahal._dask_cluster.DistributedPoints`), a problem whose evaluations
    run there (:func:`mahal._dask_softmax.softmax_problem`)."""
    if hasattr(X, "client"):
        from ._dask_softmax import softmax_problem

        return lambda pool: softmax_problem(X, build, y, block_rows)
    return lambda pool: build(X, y, pool, block_rows)


# scipy's L-BFGS-B defaults, which ``tol=None`` means (as in metric-learn, which
# passes ``tol`` to ``scipy.optimize.minimize``).
_SCIPY_FTOL, _SCIPY_GTOL = 1e7 * np.finfo(float).eps, 1e-5  # (factr=1e7, pgtol)


def lbfgs_tolerances(tol):
    """``(ftol, gtol)`` for ``tol`` as ``scipy.optimize.minimize(method='L-BFGS-B',
    tol=tol)`` reads it: both ``tol``, or scipy's defaults for None."""
    if tol is None:
        return _SCIPY_FTOL, _SCIPY_GTOL
    return float(tol), float(tol)


def softmax_solve(make_problem, n, L0, *, max_iter, tol, sign=1.0, verbose=False,
                  callback=None, name="NCA", n_threads=1, optimizer="scipy"):
    """Minimise ``sign · f`` over ``L`` with L-BFGS.

    Parameters
    ----------
    make_problem : callable
        ``make_problem(pool) -> SoftmaxProblem`` on a :class:`RowChunkPool`.
    n : int
        Number of points (for the number of threads worth starting).
    L0 : ndarray of shape (r, d)
    max_iter : int
    tol : float or None
        As scipy's ``tol`` for L-BFGS-B (:func:`lbfgs_tolerances`).
    sign : float
        −1 to maximise the problem's loss (NCA's objective), 1 to minimise it.
    verbose : bool or int
        Print a table of iterations (objective ``f``, not ``sign · f``), in the
        style of scikit-learn's NeighborhoodComponentsAnalysis.
    callback : callable, optional
        ``callback(L, n_iter)`` after each iteration (``L`` a copy, shape (r, d)).
    name : str
        Prefix of the verbose output.
    n_threads : int
        Threads over the row chunks (at most one per chunk); results do not
        depend on it.
    optimizer : {'scipy', 'mahal'}
        scipy's L-BFGS-B (scikit-learn's and metric-learn's optimiser), or
        :func:`mahal._optimize.lbfgs`. Each evaluation costs the same pass over
        all pairs of points, so what counts is the number of evaluations to a
        given objective; see ``docs/solver_notes.rst`` for the measurements
        behind the default (``benchmarks/nca_speed.py --optimizers``).

    Returns
    -------
    L : ndarray of shape (r, d)
    n_iter : int
    converged : bool
        False when ``max_iter`` ran out. (A line search that fails from steepest
        descent also stops the run, at the best point found: where the objective
        is flat to rounding, near an optimum.)
    info : dict
        ``objective`` (``f`` at ``L``), ``n_evals``, ``time``.
    """
    import sys
    import time

    from ._optimize import MAX_ITER, FunctionLine, lbfgs
    from ._parallel import RowChunkPool, single_threaded_blas

    r, d = L0.shape
    ftol, gtol = lbfgs_tolerances(tol)

    def fun(x):
        f, G = problem.loss_grad(x.reshape(r, d))
        return sign * f, sign * G.ravel()

    t_start = time.perf_counter()
    state = {"t": t_start}
    if verbose:
        header = "{:>10} {:>20} {:>10}".format("Iteration", "Objective Value",
                                               "Time(s)")
        print(f"[{name}]\n[{name}] {header}\n[{name}] {'-' * len(header)}")

    def on_iteration(nit, f, x):
        if callback is not None:
            callback(x.reshape(r, d).copy(), nit)
        if verbose:
            now = time.perf_counter()
            print("[{}] {:>10} {:>20.6e} {:>10.2f}".format(name, nit, sign * f,
                                                          now - state["t"]))
            state["t"] = now
            sys.stdout.flush()

    pool = RowChunkPool(min(n_threads, n_tasks(n, r)))
    try:
        problem = make_problem(pool)
        x0 = np.ascontiguousarray(L0, dtype=np.float64).ravel()
        # BLAS on one thread always: the products are of one block each (too small
        # for BLAS's threads to pay off); the threads are the pool's, over chunks.
        with single_threaded_blas():
            if optimizer == "scipy":
                res = _scipy_lbfgs(fun, x0, max_iter, ftol, gtol, on_iteration)
            else:
                line = FunctionLine(fun)
                line.numpy_steps = True  # (its steps in NumPy: no numba to load)
                res = lbfgs(line, x0, max_iter, ftol=ftol, gtol=gtol,
                            callback=on_iteration)
    finally:
        pool.close()
    info = dict(objective=sign * res.fun, n_evals=problem.n_evals,
                time=time.perf_counter() - t_start, status=res.status)
    if verbose:
        print(f"[{name}] Training took {info['time']:8.2f}s.")
    return res.x.reshape(r, d), res.nit, res.status != MAX_ITER, info


class _ScipyResult:
    def __init__(self, x, fun, nit, status):
        self.x, self.fun, self.nit, self.status = x, fun, nit, status


def _scipy_lbfgs(fun, x0, max_iter, ftol, gtol, on_iteration):
    """scipy's L-BFGS-B with the same stopping rules and callback as
    :func:`mahal._optimize.lbfgs`, and scipy's default memory (10 pairs), as
    scikit-learn's and metric-learn's NCA: from the same start, they follow the
    same iterates up to rounding — until a line search fails (or, with ``tol=0``,
    an iteration stalls), where they stop and this starts again from the point
    reached (while ``max_iter`` allows)."""
    from scipy.optimize import minimize

    from ._optimize import CONVERGED, MAX_ITER

    state = {"nit": 0}

    def callback(intermediate_result):
        state["nit"] += 1
        on_iteration(state["nit"], intermediate_result.fun, intermediate_result.x)

    x = x0
    while True:
        res = minimize(fun, x, jac=True, method="L-BFGS-B", callback=callback,
                       options=dict(maxiter=max_iter - state["nit"], ftol=ftol,
                                    gtol=gtol))
        # Stopped by a failed line search (status 2), or, with both tolerances 0
        # (run to max_iter), by an iteration that did not lower f at all: with
        # iterations left, start again from steepest descent at the point
        # reached, as mahal._optimize.lbfgs does; a run that stops at once ends it.
        stalled = res.status == 2 or (res.status == 0 and ftol == 0 and gtol == 0)
        if not stalled or res.nit == 0 or state["nit"] >= max_iter:
            break
        x = res.x
    at_max = res.status == 1 or (stalled and state["nit"] >= max_iter)
    return _ScipyResult(res.x, res.fun, state["nit"], MAX_ITER if at_max else CONVERGED)
