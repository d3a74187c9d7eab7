"""RCA's solution in closed form: the inverse within-chunklet covariance.

Relevant Component Analysis (Bar-Hillel, Hertz, Shental & Weinshall, JMLR 2005)
learns from chunklets, groups of points known to share a class. Its metric is the
minimiser of

    Σ_chunklets Σ_{x in chunklet} d_M(x, m_chunklet) − N log det M  =  tr(M S) − N log det M

(``S`` the within-chunklet scatter, ``N`` the number of points in chunklets), that is
``M = C⁻¹`` with ``C = S / N`` the within-chunklet covariance, and ``components_ =
C^{-1/2}`` (whitening of the chunklets). :func:`mahal.reference.rca` hands the same
objective to cvxpy.

With ``n_components < n_features`` the paper's (and metric-learn's) dimension
reduction comes first: the ``n_components`` directions with the smallest ratio of
within-chunklet to total variance (the generalised eigenvectors of ``(C, T)``, ``T``
the covariance of the points in chunklets), then whitening of the chunklets within
them, ``components_ = (Aᵀ C A)^{-1/2} Aᵀ``.

**Rank-deficient ``C``** (metric-learn's issues 49, 263, 275: it warns and returns
NaN): when no chunklet varies along some directions (constant or linearly dependent
features, chunklets of duplicate points, fewer points in chunklets than
``n_features`` + number of chunklets), ``tr(M S) − N log det M`` is unbounded below
(``M`` can grow without limit along those directions) and ``C`` has no inverse. The
reduction: the problem is solved on the range of ``C``, the span of the
within-chunklet differences, where it has the unique minimiser ``C⁺`` (the
pseudo-inverse), and the metric is zero on the other directions; the dimension
reduction above is likewise done within that range. Eigenvalues of ``C`` at most
``max λ · d · eps`` (numpy's ``matrix_rank`` tolerance) count as zero.
"""

import numpy as np
import scipy.linalg


def chunklet_covariances(X, chunks):
    """Within-chunklet covariance ``C`` and covariance ``T`` of the chunked points.

    As metric-learn's: every point with ``chunks ≥ 0`` counts in ``N`` (a chunklet of
    one point adds nothing to the scatter), ``C = S / N``, and ``T`` is
    ``np.cov`` (divided by ``N − 1``) of the chunked points.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    chunks : ndarray of int of shape (n_samples,)
        Chunklet id of each point, −1 for none.

    Returns
    -------
    C, T : ndarray of shape (n_features, n_features)
    n_chunked : int
        ``N``.
    """
    mask = chunks >= 0
    Xc, ids = X[mask], chunks[mask]
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    sums = np.zeros((counts.shape[0], X.shape[1]))
    np.add.at(sums, inverse, Xc)
    centred = Xc - (sums / counts[:, None])[inverse]
    n = Xc.shape[0]
    C = centred.T @ centred / n
    Xt = Xc - Xc.mean(axis=0)
    T = Xt.T @ Xt / max(n - 1, 1)
    return 0.5 * (C + C.T), 0.5 * (T + T.T), n


def rca_solve(X, chunks, n_components):
    """RCA's components from points and chunklets.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    chunks : ndarray of int of shape (n_samples,)
        Chunklet id of each point, −1 for none.
    n_components : int
        Rows of the result (at most ``n_features``).

    Returns
    -------
    components : ndarray of shape (n_components, n_features)
        ``G`` with ``M = Gᵀ G``; rows beyond the rank of ``C`` are zero.
    info : dict
        ``rank`` of ``C``, ``n_chunked`` (``N``), ``basis`` (orthonormal columns
        spanning the subspace the metric lives in, ``(n_features, k)``).
    """
    d = X.shape[1]
    C, T, n = chunklet_covariances(X, chunks)
    lam, V = np.linalg.eigh(C)
    keep = lam > max(lam.max(), 0.0) * d * np.finfo(np.float64).eps
    rank = int(keep.sum())
    U, lam = V[:, keep], lam[keep]
    components = np.zeros((n_components, d))
    if n_components >= rank:
        # M = C⁺ on the range of C: G = diag(λ^{-1/2}) Uᵀ, rotated back to the
        # symmetric C^{-1/2} (metric-learn's components) when C is definite
        G = U.T / np.sqrt(lam)[:, None]
        components[:rank] = U @ G if rank == d else G
        return components, {"rank": rank, "n_chunked": n, "basis": U}
    # the n_components directions of smallest within/total variance, in range(C):
    # C_r a = μ T_r a with aᵀ T_r a = 1, so Aᵀ C A = diag(μ)
    mu, A = scipy.linalg.eigh(np.diag(lam), U.T @ T @ U,
                              subset_by_index=[0, n_components - 1])
    components[:] = (U @ A).T / np.sqrt(mu)[:, None]
    basis = np.linalg.qr(U @ A)[0]
    return components, {"rank": rank, "n_chunked": n, "basis": basis}
