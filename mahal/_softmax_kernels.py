"""Numba kernels of the single-block softmax (see :mod:`mahal._softmax_blocks`).

For ``n`` small enough that an ``n × n`` matrix fits the block budget, NCA's and
MLKR's evaluation holds one symmetric matrix, ``S_ij = exp(−d_ij + (m_i + m_j)/2)``
(``m_i`` the row's smallest distance), overwritten in place by the symmetric
gradient weights ``W + Wᵀ``. These kernels are its passes over rows ``r0:r1``
(row chunks, one thread each): the row minima, the ``exp`` with the row sums, and
the weights. Pure functions of float64 and int64 arrays, compiled on first use and
cached on disk.

The ``exp`` is computed here rather than by NumPy: NumPy's float64 ``exp`` is
scalar on CPUs without AVX-512 (about 7 ns an element, more than the matrix
products of the evaluation), while the loop below vectorises. It is the classic
reduction ``exp(x) = 2^k exp(r)``, ``k = round(x / ln 2)``, ``|r| ≤ ln 2 / 2``
(``ln 2`` split in two parts, Cody and Waite), with ``exp(r)`` by its Taylor
polynomial of degree 13 (truncation below 1e-17 relative) and ``2^k`` built in the
exponent bits: within about one unit in the last place of the correctly rounded
value, as NumPy's (tests/test_nca.py checks it against ``np.exp``).
"""

import numpy as np

from ._jit import njit

# the exponent's clamp: exp(-700) is a normal number (no slow subnormals) and far
# below any row sum's rounding error; the rows' largest terms are near 1
EXP_LOW, EXP_HIGH = -700.0, 700.0
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 to 32 bits: k · _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
# Adding 1.5 · 2⁵² rounds x / ln 2 to an integer k in the low bits of the sum; the
# extra 1023 (the exponent bias) makes those bits, shifted by 52, the float 2^k.
_SHIFTER = 6755399441055744.0 + 1023.0


@njit(cache=True, nogil=True, fastmath={"contract"})
def _exp_shifted_row(row, u, ui, bits):
    """``row[j] ← exp(2 row[j] + (ui + u[j]))`` (the exponent clamped to
    ``[EXP_LOW, EXP_HIGH]``); ``bits``: scratch of the row's length."""
    n = row.shape[0]
    for j in range(n):
        x = 2.0 * row[j] + (ui + u[j])
        x = min(max(x, EXP_LOW), EXP_HIGH)
        t = x * _LOG2E + _SHIFTER
        k = t - _SHIFTER
        r = (x - k * _LN2_HI) - k * _LN2_LO
        p = 1.0 / 6227020800.0
        p = p * r + 1.0 / 479001600.0
        p = p * r + 1.0 / 39916800.0
        p = p * r + 1.0 / 3628800.0
        p = p * r + 1.0 / 362880.0
        p = p * r + 1.0 / 40320.0
        p = p * r + 1.0 / 5040.0
        p = p * r + 1.0 / 720.0
        p = p * r + 1.0 / 120.0
        p = p * r + 1.0 / 24.0
        p = p * r + 1.0 / 6.0
        p = p * r + 0.5
        p = p * r + 1.0
        row[j] = p * r + 1.0
        bits[j] = t
    scale = bits.view(np.int64)
    for j in range(n):
        scale[j] <<= 52  # (the bits of 2^k)
    for j in range(n):
        row[j] *= bits[j]


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def _dot(a, b, lo, hi):
    """``Σ_{j=lo}^{hi-1} a[j] b[j]``."""
    s = 0.0
    for j in range(lo, hi):
        s += a[j] * b[j]
    return s


@njit(cache=True, nogil=True)
def row_minima(G, sq, r0, r1, m):
    """``m[i] = min_{j≠i} (sq[i] + sq[j] − 2 G[i, j])`` for ``i`` in ``r0:r1``:
    each row's smallest squared distance, ``G`` the Gram matrix ``Z Zᵀ`` and
    ``sq`` its diagonal."""
    n = G.shape[1]
    for i in range(r0, r1):
        best = np.inf
        for j in range(n):
            t = sq[j] - 2.0 * G[i, j]
            if t < best and j != i:
                best = t
        m[i] = sq[i] + best


@njit(cache=True, nogil=True)
def exp_row_sums(G, u, w, vw, lo, hi, r0, r1, rs, ms):
    """For the rows ``i`` in ``r0:r1``, in place: ``G[i, j] ← exp(2 G[i, j] + u_i +
    u_j)`` (``G[i, i] ← 0``); ``rs[i] = Σ_j G[i, j] w_j`` and ``ms[i] = Σ_{j=lo_i}^{
    hi_i − 1} G[i, j] vw_j`` (the class of ``i``, or all columns)."""
    n = G.shape[1]
    bits = np.empty(n)
    for i in range(r0, r1):
        row = G[i]
        _exp_shifted_row(row, u, u[i], bits)
        row[i] = 0.0
        rs[i] = _dot(row, w, 0, n)
        ms[i] = _dot(row, vw, lo[i], hi[i])


@njit(cache=True, nogil=True, fastmath={"contract"})
def symmetric_weights(S, A, B, w, vw, lo, hi, r0, r1):
    """For the rows ``i`` in ``r0:r1``, in place: ``S[i, j] ← S[i, j] (M_ij (A_i vw_j
    + A_j vw_i) − (B_i w_j + B_j w_i))``, ``M_ij = 1`` iff ``lo_i ≤ j < hi_i``."""
    n = S.shape[1]
    for i in range(r0, r1):
        Ai, Bi, wi, vwi = A[i], B[i], w[i], vw[i]
        a, b = lo[i], hi[i]
        for j in range(0, a):
            S[i, j] *= -(Bi * w[j] + B[j] * wi)
        for j in range(a, b):
            S[i, j] *= (Ai * vw[j] + A[j] * vwi) - (Bi * w[j] + B[j] * wi)
        for j in range(b, n):
            S[i, j] *= -(Bi * w[j] + B[j] * wi)
