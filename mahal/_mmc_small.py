"""MMC's compiled steps, with NumPy twins for small problems.

The first call of any numba function in a process costs more than a whole MMC fit
on a small problem (loading numba and its cached machine code, or compiling on a
new machine). So the projection onto ``{M ⪰ 0, tr M ≤ 1}`` runs in NumPy up to
``_NUMPY_DIM`` dimensions, and the cross-class pair weights of ``MMC_Supervised``
in NumPy for blocks of up to ``_NUMPY_BLOCK`` pairs; the numba kernels of
:mod:`mahal._mmc_kernels` (imported on first use) take the larger ones. Both
compute the same quantities; sums may differ by rounding.
"""

import numpy as np

from ._lazy import lazy_module

kernels = lazy_module("mahal._mmc_kernels")  # (numba: imported on first use)

_NUMPY_DIM = 64
_NUMPY_BLOCK = 1 << 16


def _capped_simplex_ascending(u):
    """Projection of ``u`` (ascending) onto ``{w ≥ 0, Σ w ≤ 1}`` (as the kernel
    of :mod:`mahal._mmc_kernels`)."""
    w = np.maximum(u, 0.0)
    if w.sum() <= 1.0:
        return w
    top = u[::-1]  # (largest first)
    t = (np.cumsum(top) - 1.0) / np.arange(1, u.shape[0] + 1)
    hit = np.flatnonzero(top - t > 0.0)
    theta = t[hit[-1]] if hit.shape[0] else 0.0
    return np.maximum(u - theta, 0.0)


def project_trace_psd(M0):
    """Exact Frobenius projection of a symmetric matrix onto ``{M ⪰ 0, tr M ≤ 1}``:
    ``(P, w, V)`` as :func:`mahal._mmc_kernels.project_trace_psd` (NumPy up to
    ``_NUMPY_DIM`` dimensions)."""
    d = M0.shape[0]
    if d > _NUMPY_DIM:
        return kernels.project_trace_psd(M0)
    lam, V = np.linalg.eigh(0.5 * (M0 + M0.T))
    w = _capped_simplex_ascending(lam)
    pos = w > 0.0
    Vp = V[:, pos]
    P = (Vp * w[pos]) @ Vp.T
    P += P.T  # (exactly symmetric, as the kernel's mirrored upper triangle)
    P *= 0.5
    return P, w, V


def cross_class_weights(K, sq, codes, s, c0, dmin):
    """Distances and gradient weights of a block of cross-class pairs, in place:
    as :func:`mahal._mmc_kernels.cross_class_weights` (NumPy for blocks of up to
    ``_NUMPY_BLOCK`` pairs)."""
    if K.size > _NUMPY_BLOCK:
        return kernels.cross_class_weights(K, sq, codes, s, c0, dmin)
    b, m = K.shape
    i = s + np.arange(b)
    j = c0 + np.arange(m)
    # pairs i < j of different classes
    keep = (j[None, :] > i[:, None]) & (codes[j][None, :] != codes[i][:, None])
    d2 = sq[i][:, None] + sq[j][None, :] - 2.0 * K
    dist = np.sqrt(np.maximum(d2, 0.0))
    F = float(dist[keep].sum())
    K[...] = np.where(keep, 0.5 / np.maximum(dist, dmin), 0.0)
    return F, K.sum(axis=1), K.sum(axis=0)
