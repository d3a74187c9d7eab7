"""Linear algebra on Mahalanobis matrices.

``A = Gᵀ G`` is positive semi-definite (PSD); every learner stores ``G`` as
``components_``. This module converts between the two (handling rank-deficient ``A``),
projects symmetric matrices onto the PSD cone, and checks PSD-ness. The projection is
also provided as a numba kernel (``psd_project_nb``) for solvers that call it in
their inner loop; numba is imported, and the kernel compiled (and cached on disk),
on the first access to that name, never at import.
"""

import numpy as np
import scipy.linalg

from .exceptions import NonPSDError

# Relative tolerance on asymmetry, ``max|A − Aᵀ| ≤ _SYM_RTOL · max|A|``: rounding in
# products such as ``V diag(w) Vᵀ`` leaves ~d·eps; a genuinely non-symmetric matrix
# is far above it.
_SYM_RTOL = 1e-8

def symmetrize(A):
    """Return ``(A + Aᵀ) / 2``.

    Parameters
    ----------
    A : array-like of shape (d, d)
    """
    A = np.asarray(A, dtype=np.float64)
    return 0.5 * (A + A.T)


def psd_project(A):
    """Project a symmetric matrix onto the PSD cone (nearest in Frobenius norm).

    Eigen-decomposes the symmetric part of ``A`` and clips negative eigenvalues to 0.

    Parameters
    ----------
    A : array-like of shape (d, d)

    Returns
    -------
    A_psd : ndarray of shape (d, d)
        Symmetric PSD matrix.
    """
    w, V = np.linalg.eigh(symmetrize(A))
    np.maximum(w, 0.0, out=w)
    return symmetrize((V * w) @ V.T)


def _psd_project_nb(A):
    """Numba version of :func:`psd_project`, for use inside compiled solvers.

    Returns ``(A_psd, w)`` where ``w`` are the clipped eigenvalues (ascending).
    """
    S = 0.5 * (A + A.T)
    w, V = np.linalg.eigh(S)
    d = w.shape[0]
    for i in range(d):
        if w[i] < 0.0:
            w[i] = 0.0
    Vw = V * w
    P = Vw @ V.T
    return 0.5 * (P + P.T), w


def __getattr__(name):
    # psd_project_nb: numba imported and the kernel made on first access
    if name == "psd_project_nb":
        from ._jit import njit

        kernel = njit(cache=True)(_psd_project_nb)
        globals()[name] = kernel
        return kernel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def metric_from_components(G):
    """``A = Gᵀ G`` for components ``G``.

    Parameters
    ----------
    G : array-like of shape (n_components, n_features)
    """
    G = np.asarray(G, dtype=np.float64)
    return G.T @ G


def components_from_metric(A, tol=None):
    """Components ``G`` (shape (d, d)) with ``Gᵀ G = A`` for a PSD matrix ``A``.

    Uses a Cholesky factorisation when ``A`` is positive definite (``G = Lᵀ`` with
    ``A = L Lᵀ``, upper triangular) and an eigen decomposition otherwise
    (``G = diag(√λ) Vᵀ``, with rows for zero eigenvalues equal to zero), so that a
    rank-deficient ``A`` round-trips exactly.

    Parameters
    ----------
    A : array-like of shape (d, d)
        Symmetric PSD matrix. Asymmetry up to rounding (``max|A − Aᵀ| ≤ 1e-8 ·
        max|A|``) is removed by symmetrising; beyond, ``A`` is rejected rather than
        silently replaced by ``(A + Aᵀ)/2`` (which defines the same quadratic form
        but is not the matrix given, as metric-learn also checks).
    tol : float, optional
        Eigenvalues above ``-tol`` are accepted as PSD and those below ``tol`` are
        set to 0; and a Cholesky
        pivot must exceed ``sqrt(tol)``. Default ``1e3 · d · eps · max|A_ij|``.

    Returns
    -------
    G : ndarray of shape (d, d)

    Raises
    ------
    ValueError
        If ``A`` is not square or not symmetric.
    mahal.exceptions.NonPSDError
        If ``A`` has an eigenvalue below ``-tol`` (also a ``ValueError`` and a
        ``numpy.linalg.LinAlgError``).
    """
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    check_square(A, "A")
    A = check_symmetric(A, "A")
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        L = None
    scale = np.abs(A).max() if A.size else 0.0
    if tol is None:
        tol = 1e3 * A.shape[0] * np.finfo(float).eps * scale
    # Cholesky also succeeds on numerically singular matrices, with tiny pivots: keep
    # it only when every pivot is clearly non-zero, so that rank deficiency shows.
    if L is not None and np.all(np.isfinite(L)) and np.min(np.diag(L)) ** 2 > tol:
        return L.T.copy()
    w, V = np.linalg.eigh(A)
    if w.size and w.min() < -tol:
        raise NonPSDError(f"A is not positive semi-definite: its smallest eigenvalue "
                          f"is {w.min():.3g}.")
    w[w <= tol] = 0.0  # numerical zeros: exact zero rows show the rank
    return (V * np.sqrt(w)).T[::-1].copy()


def check_square(A, name="A"):
    """Raise ``ValueError`` unless ``A`` is a square 2-D matrix.

    Parameters
    ----------
    A : ndarray
    name : str, default="A"
        Its name in the error message.
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix; got shape {A.shape}.")


def check_symmetric(A, name="A", tol=_SYM_RTOL):
    """Raise ``ValueError`` unless ``max|A − Aᵀ| ≤ tol · max|A|``.

    Parameters
    ----------
    A : ndarray of shape (d, d)
    name : str, default="A"
        Its name in the error message.
    tol : float
        Allowed asymmetry, relative to the largest entry (rounding, not a
        genuinely non-symmetric matrix).

    Returns
    -------
    A_sym : ndarray of shape (d, d)
        ``(A + Aᵀ) / 2``.
    """
    scale = np.abs(A).max() if A.size else 0.0
    if not np.abs(A - A.T).max(initial=0.0) <= tol * scale:
        raise ValueError(f"{name} must be symmetric: max|{name} − {name}ᵀ| = "
                         f"{np.abs(A - A.T).max():.3g}, for entries up to {scale:.3g}.")
    return symmetrize(A)


def check_psd(A, name="A", tol=1e-8):
    """Check that ``A`` is symmetric PSD (relative tolerance ``tol``).

    Parameters
    ----------
    A : array-like of shape (d, d)
    name : str, default="A"
        Its name in the error messages.
    tol : float, default=1e-8
        Tolerance, relative to the largest entry, for asymmetry and negative
        eigenvalues.

    Returns
    -------
    A : ndarray of shape (d, d)
        The symmetrised matrix.

    Raises
    ------
    ValueError
        If ``A`` is not square, not finite or not symmetric.
    mahal.exceptions.NonPSDError
        If an eigenvalue is below ``-tol · max|A|`` (also a ``ValueError`` and a
        ``numpy.linalg.LinAlgError``, as metric-learn's).
    """
    A = np.atleast_2d(np.asarray(A, dtype=np.float64))
    check_square(A, name)
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{name} contains NaN or infinity.")
    A = check_symmetric(A, name, tol)
    scale = max(np.abs(A).max(), np.finfo(float).tiny)
    w = scipy.linalg.eigvalsh(A)
    if w.min() < -tol * scale:
        raise NonPSDError(f"{name} must be positive semi-definite; its smallest "
                          f"eigenvalue is {w.min():.3g}.")
    return A
