"""The LFDA solver: local scatter matrices, then one symmetric generalised
eigenproblem (Sugiyama, JMLR 8 (2007) 1027–1061; the objective of :mod:`mahal.lfda`).

Plain functions on arrays; everything is matrix products (BLAS), no compiled kernel.

The paper's definitions
-----------------------
With the local-scaling affinity of points ``i, j`` of the same class ``l``
(Zelnik-Manor & Perona 2005),

    A_ij = exp(−‖x_i − x_j‖² / (σ_i σ_j)),   σ_i = ‖x_i − x_i^(k)‖,

``x_i^(k)`` the ``k``-th nearest neighbour of ``x_i`` *among its classmates* (the
nearest-neighbour search is classwise: only same-class affinities are used), and
``A_ij = 0`` for points of different classes, the local within- and between-class
scatter matrices are

    S_lw = ½ Σ_ij W_lw_ij (x_i − x_j)(x_i − x_j)ᵀ,  W_lw_ij = A_ij / n_l     (same class)
                                                              0             (else)
    S_lb = ½ Σ_ij W_lb_ij (x_i − x_j)(x_i − x_j)ᵀ,  W_lb_ij = A_ij (1/n − 1/n_l)
                                                              1/n           (else)

and LFDA's components are the leading generalised eigenvectors of
``S_lb φ = λ S_lw φ``.

How they are computed (bounded memory, no n × n matrix)
-------------------------------------------------------
Only same-class affinities enter, so everything is a sum over classes. Within class
``l`` (points ``X_l`` centred on their mean, ``n_l`` of them):

* ``G_l = ½ Σ_{i,j∈l} A_ij (x_i − x_j)(x_i − x_j)ᵀ = X_lᵀ (diag(A 1) − A) X_l``, the
  ``Xᵀ L X`` form with ``L`` the graph Laplacian of ``A``;
* ``S_l = X_lᵀ X_l = (1/(2 n_l)) Σ_{i,j∈l} (x_i − x_j)(x_i − x_j)ᵀ``.

Then ``S_lw = Σ_l G_l / n_l`` and, splitting the pairs of different classes as all
pairs minus same-class pairs,

    S_lb = S_B + Σ_l (1 − n_l/n) (S_l − G_l / n_l)
         = S_B + Σ_l (1/n_l − 1/n) · ½ Σ_{i,j∈l} (1 − A_ij)(x_i − x_j)(x_i − x_j)ᵀ,

with ``S_B = Σ_l n_l (m_l − m)(m_l − m)ᵀ`` the classical between-class scatter. Every
term is formed from centred data (no cancellation of large uncentred sums, as in
``Σ x xᵀ − s sᵀ / n``), and the second line shows that ``S_lb`` is positive
semi-definite (``0 ≤ A_ij ≤ 1``): the eigenvalues ``λ`` are ≥ 0, so the 'weighted'
embedding's ``√λ`` is always real (rounding below zero is clipped).

The affinity is positive for *every* pair of classmates (it is not sparse), so
``A`` is never stored: the rows of a class are taken in blocks of at most
``_BLOCK // n_l`` rows; each block's squared distances to its classmates give first
``σ`` (a partial sort per row) and, on a second pass, the block's affinities and its
rows of ``Y_l = (diag(A 1) − A) X_l`` (one pass when the class fits in one block).
With the rows ``Y_l`` of all classes stacked as ``Y`` (``n × d``) beside the
class-centred points ``X_s``, the sums over classes become three products over all
points, ``S_lw = X_sᵀ (Y / n_l)``, ``S_lb = X_sᵀ ((1 − n_l/n)(X_s − Y / n_l)) + S_B``
(row weights), as fast as BLAS goes, with no per-class ``d × d`` work.
Memory beyond the data: ``X_s`` and ``Y`` (``n × d`` each), a few ``d × d``
matrices, and about three ``block × n_l`` arrays of at most ``_BLOCK`` entries
(32 MB) each, whatever ``n``; never an ``n × n`` or ``n_l × n_l`` matrix once
``n_l² > _BLOCK``.

The eigenproblem
----------------
Directions in which the training data have no variance at all (the null space of
the total scatter ``S_t = Σ_i (x_i − m)(x_i − m)ᵀ``: constant features, ``d ≥ n``)
give ``0 / 0`` and carry nothing to learn: the problem is solved in the range of
``S_t`` (eigenvalues above ``_RANK_RTOL`` times the largest), and those directions get
``λ = 0`` (they are used, as unit vectors, only when ``n_components`` exceeds the
rank of the data).

In that range ``S_lw = U diag(w) Uᵀ`` may still be singular, when the classes' points
do not span it (``d ≥ n − n_classes``, duplicates): then ``S_lb φ = λ S_lw φ`` has
infinite eigenvalues and generalised eigensolvers fail (metric-learn's ARPACK and
``DLASCL`` errors) or return noise. **Regularisation**: if the smallest eigenvalue of
``S_lw`` is at most ``_RANK_RTOL`` times the largest (numerically singular), every
eigenvalue below ``_SINGULAR_FLOOR`` times the largest is raised to that floor
(``S̃_lw = U diag(max(w, floor)) Uᵀ``, so only the directions where ``S_lw`` is
(nearly) singular change). A nonsingular ``S_lw`` is used unchanged: the result is
then the paper's exactly. (A floor at rounding level, 10⁻⁹ of the largest, gave
null-space discriminant analysis: 42 % k-NN error on isolet with 20 points per class
in 617 dimensions, against 29 % for the Euclidean distance; the floor at 10⁻² gave
18 %, and was the best or near it of 10⁻⁹ … 10⁻¹ on the isolet and digits subsets
where ``S_lw`` is singular; ``docs/solver_notes.rst``.)

Whitening with ``W = U diag(w̃)^(−1/2)`` turns the pencil into one symmetric
eigenproblem ``(Wᵀ S_lb W) q = λ q`` (LAPACK's ``syevr``, only the leading
``n_components`` pairs); ``φ = W q`` satisfies ``φᵀ S̃_lw φ = 1``, the normalisation
of the paper's (and its reference code's) eigenvectors.

Signs: an eigenvector's sign is arbitrary (metric-learn's issue 211); each is
flipped so that its entry of largest magnitude (the first such, in feature order) is
positive, as scikit-learn's ``svd_flip`` does, so that a fit is deterministic.
"""

import numpy as np
import scipy.linalg

__all__ = ["lfda_solve", "local_scatter", "local_scales", "total_scatter"]

_BLOCK = 1 << 22            # float64 entries per block of distances / affinities (32 MB)
_RANK_RTOL = 1e-10          # eigenvalues below rtol · max count as zero
_SINGULAR_FLOOR = 1e-2      # singular S_lw: eigenvalues below floor · max raised to it


def _row_blocks(n_rows, n_cols, block):
    step = max(1, block // max(n_cols, 1))
    return [(r0, min(r0 + step, n_rows)) for r0 in range(0, n_rows, step)]


def _squared_distances(Xc, sq_norms, r0, r1):
    """Squared distances of rows ``r0:r1`` of ``Xc`` to all its rows (≥ 0, and
    exactly 0 from a point to itself)."""
    D = (-2.0 * Xc[r0:r1]) @ Xc.T
    D += sq_norms[r0:r1, None]
    D += sq_norms[None, :]
    np.maximum(D, 0.0, out=D)
    D[np.arange(r1 - r0), np.arange(r0, r1)] = 0.0
    return D


def _kth_smallest(D, kk):
    """Square roots of the ``kk``-th smallest entry of each row of ``D`` (0-based;
    position 0 of a sorted row is the point itself, at distance 0), exactly.

    Selection in float32 first (``np.partition`` moves half the bytes): rounding
    is monotone, so the float32 ``kk``-th smallest ``t`` is the rounded float64 one,
    and the entries whose float32 value is ``≤ t`` are the ``kk + 1`` smallest plus
    any that round to ``t``. Where they are exactly ``kk + 1``, the answer is their
    largest float64 value; rows with ties at ``t`` fall back to a float64 partition.
    """
    with np.errstate(over="ignore"):   # (beyond float32: inf, ties, the fallback)
        D32 = D.astype(np.float32)
    t = np.partition(D32, kk, axis=1)[:, kk]
    below = D32 <= t[:, None]
    del D32
    out = np.max(D, axis=1, where=below, initial=-np.inf)
    ties = np.flatnonzero(np.count_nonzero(below, axis=1) != kk + 1)
    if ties.size:
        out[ties] = np.partition(D[ties], kk, axis=1)[:, kk]
    return np.sqrt(out)


def local_scales(Xc, k, block=_BLOCK):
    """``σ_i``: distance of each point of ``Xc`` to its ``k``-th nearest other point.

    ``k`` is capped at ``n − 1`` (a class with at most ``k`` members uses its farthest
    member; a class of one point gets ``σ = 0``), as in Sugiyama's reference code.

    Parameters
    ----------
    Xc : ndarray of shape (n, d)
        The points of one class.
    k : int
        Which neighbour, ≥ 1.
    block : int, default=_BLOCK
        Largest number of distances held at once (rows per block: ``block // n``).

    Returns
    -------
    sigma : ndarray of shape (n,)
    """
    n = Xc.shape[0]
    sq_norms = np.einsum("ij,ij->i", Xc, Xc)
    sigma = np.empty(n)
    for r0, r1 in _row_blocks(n, n, block):
        sigma[r0:r1] = _kth_smallest(_squared_distances(Xc, sq_norms, r0, r1),
                                     min(k, n - 1))
    return sigma


def _laplacian_rows(Xc, D, sigma, r0, r1):
    """Rows ``r0:r1`` of ``(diag(A 1) − A) Xc``, from their squared distances ``D``
    to all of ``Xc`` (overwritten by the affinities ``A``)."""
    positive = sigma > 0
    inv_sigma = np.divide(1.0, sigma, out=np.zeros_like(sigma), where=positive)
    A = D
    A *= -inv_sigma[r0:r1, None]
    A *= inv_sigma[None, :]
    np.exp(A, out=A)
    # σ_i σ_j = 0 (k-fold duplicates): the limit of exp(−D / σσ) is 0 for D > 0
    if not positive.all():
        A[~positive[r0:r1], :] = 0.0
        A[:, ~positive] = 0.0
    out = Xc[r0:r1] * A.sum(axis=1)[:, None]
    out -= A @ Xc
    return out


def _laplacian_times(Xc, k, block):
    """``(diag(A 1) − A) Xc``, so that ``Xcᵀ (diag(A 1) − A) Xc = ½ Σ_ij A_ij
    (x_i − x_j)(x_i − x_j)ᵀ``, with the local-scaling affinity ``A`` of ``Xc``
    (``A_ij = 0`` where ``σ_i σ_j = 0``), by blocks of rows: a first pass finds
    ``σ``, a second the affinities (one pass when the class fits in one block)."""
    n = Xc.shape[0]
    sq_norms = np.einsum("ij,ij->i", Xc, Xc)
    blocks = _row_blocks(n, n, block)
    if len(blocks) == 1:
        D = _squared_distances(Xc, sq_norms, 0, n)
        return _laplacian_rows(Xc, D, _kth_smallest(D, min(k, n - 1)), 0, n)
    sigma = local_scales(Xc, k, block)
    return np.vstack([_laplacian_rows(Xc, _squared_distances(Xc, sq_norms, r0, r1),
                                      sigma, r0, r1) for r0, r1 in blocks])


def _sym(S):
    return 0.5 * (S + S.T)


def total_scatter(X):
    """``S_t = Σ_i (x_i − m)(x_i − m)ᵀ``, symmetric."""
    Xc = X - X.mean(axis=0)
    return _sym(Xc.T @ Xc)


def local_scatter(X, y, k, block=_BLOCK):
    """The local between- and within-class scatter matrices ``(S_lb, S_lw)``.

    With ``X_s`` the points centred on their class means and ``Y = L X_s`` (``L``
    the block-diagonal Laplacian of the affinities, one block per class), both are
    a product ``X_sᵀ (row weights · ...)`` over all points at once:
    ``S_lw = X_sᵀ (Y / n_l)`` and ``S_lb = X_sᵀ ((1 − n_l/n)(X_s − Y / n_l)) + S_B``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Class labels encoded as 0..n_classes-1.
    k : int
        The local-scaling neighbour.
    block : int, default=_BLOCK
        Largest number of distances (or affinities) held at once.

    Returns
    -------
    S_lb, S_lw : ndarrays of shape (n_features, n_features)
        Symmetric positive semi-definite.
    """
    n, d = X.shape
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], np.arange(y.max() + 2))
    counts = np.diff(bounds)
    Xs = X[order]                      # (a copy) class by class, then centred
    Y = np.zeros((n, d))
    means = np.empty((counts.shape[0], d))
    for c in range(counts.shape[0]):
        Xc = Xs[bounds[c]:bounds[c + 1]]
        means[c] = Xc.mean(axis=0)
        Xc -= means[c]
        if counts[c] >= 2:
            Y[bounds[c]:bounds[c + 1]] = _laplacian_times(Xc, k, block)
    n_row = np.repeat(counts.astype(np.float64), counts)[:, None]
    Y /= n_row                          # rows of L X_s / n_l
    S_lw = Xs.T @ Y
    Y -= Xs
    Y *= -(1.0 - n_row / n)             # (1 − n_l/n)(X_s − L X_s / n_l)
    M = means - X.mean(axis=0)
    S_lb = Xs.T @ Y + (M * counts[:, None]).T @ M
    return _sym(S_lb), _sym(S_lw)


def _flip_signs(V):
    """Make each column's first entry of largest magnitude positive."""
    rows = np.argmax(np.abs(V), axis=0)
    signs = np.sign(V[rows, np.arange(V.shape[1])])
    signs[signs == 0] = 1.0
    return V * signs


def _top_eigh(a, b, m):
    """The ``m`` largest eigenpairs of ``a v = λ b v`` (``b`` None: ``a v = λ v``),
    descending. LAPACK's subset driver is faster for a few pairs, the full
    divide-and-conquer one beyond about a third of them."""
    d = a.shape[0]
    if 3 * m < d:
        lam, V = scipy.linalg.eigh(a, b, subset_by_index=[d - m, d - 1])
    else:
        lam, V = scipy.linalg.eigh(a, b)
        lam, V = lam[d - m:], V[:, d - m:]
    return lam[::-1], V[:, ::-1]


def _leading_eigenpairs(S_lb, S_lw, X, m):
    """The ``m`` leading pairs of ``S_lb φ = λ S_lw φ`` (descending, ``λ ≥ 0``), with
    the documented treatment of directions without variance and of a singular
    ``S_lw`` (``X``: the points, for the total scatter, needed only then).
    Returns ``(lam, V, rank, n_regularized, floor)``."""
    d = S_lw.shape[0]
    w = np.linalg.eigvalsh(S_lw)
    if not w[-1] > 0:
        raise ValueError(
            "The local within-class scatter is zero: no class has two distinct "
            "points, so LFDA has no within-class structure to preserve. Give at "
            "least one class two or more distinct points.")
    if w[0] > _RANK_RTOL * w[-1]:
        # S_lw nonsingular (then so is S_t, whose range contains S_lw's): the
        # paper's pencil as it is, by LAPACK's generalised solver
        lam, V = _top_eigh(S_lb, S_lw, m)
        return np.maximum(lam, 0.0), V, d, 0, 0.0
    t, P = np.linalg.eigh(total_scatter(X))
    in_range = t > _RANK_RTOL * t[-1]
    P_null, P = P[:, ~in_range], P[:, in_range]
    r = P.shape[1]
    S_lb, S_lw = P.T @ S_lb @ P, P.T @ S_lw @ P     # in the span of the data
    w, U = np.linalg.eigh(S_lw)
    floor = _SINGULAR_FLOOR * w[-1] if w[0] <= _RANK_RTOL * w[-1] else 0.0
    W = U / np.sqrt(np.maximum(w, floor))
    C = W.T @ S_lb @ W
    k = min(m, r)
    lam, Q = _top_eigh(_sym(C), None, k)
    lam, V = np.maximum(lam, 0.0), P @ (W @ Q)
    if m > r:   # no variance: λ = 0, unit vectors
        V = np.hstack([V, P_null[:, ::-1][:, :m - r]])
        lam = np.concatenate([lam, np.zeros(m - r)])
    return lam, V, r, int(np.count_nonzero(w < floor)), floor


def lfda_solve(X, y, n_components, k=7, embedding_type="weighted", block=_BLOCK):
    """LFDA's transformation from the local scatter matrices.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Class labels encoded as 0..n_classes-1 (at least 2 classes).
    n_components : int
        Number of leading generalised eigenvectors, 1..n_features.
    k : int, default=7
        The local-scaling neighbour (see :func:`local_scales`).
    embedding_type : {'weighted', 'orthonormalized', 'plain'}, default='weighted'
        'weighted': eigenvectors times ``√λ``; 'orthonormalized': an orthonormal
        basis of their span (QR, ``R`` with a positive diagonal); 'plain': the
        eigenvectors, normalised to ``φᵀ S̃_lw φ = 1``.
    block : int, default=_BLOCK
        Largest number of distances (or affinities) held at once.

    Returns
    -------
    L : ndarray of shape (n_components, n_features)
    info : dict
        ``eigenvalues`` (descending, shape (n_components,)), ``rank`` (of the
        total scatter: the dimension the problem is solved in),
        ``n_regularized`` (eigen-directions of ``S_lw`` raised to the floor) and
        ``floor`` (0 when ``S_lw`` is nonsingular).

    Raises
    ------
    ValueError
        If the within-class scatter is zero (no class has two distinct points).
    """
    S_lb, S_lw = local_scatter(X, y, k, block)
    lam, V, r, n_regularized, floor = _leading_eigenpairs(S_lb, S_lw, X,
                                                          n_components)
    V = _flip_signs(V)
    if embedding_type == "weighted":
        T = V * np.sqrt(lam)
    elif embedding_type == "orthonormalized":
        T, R = np.linalg.qr(V)
        T = T * np.where(np.diag(R) < 0, -1.0, 1.0)
    else:
        T = V
    return np.ascontiguousarray(T.T), {"eigenvalues": lam, "rank": r,
                                       "n_regularized": n_regularized,
                                       "floor": floor}
