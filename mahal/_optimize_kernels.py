"""numba kernels of :mod:`mahal._optimize` (imported on first use: problems with
few parameters run their NumPy twins there and never import numba)."""

import numpy as np

from ._jit import njit


@njit(cache=True, fastmath=True)
def _two_loop(g, S, Y, rho, head, count, gamma):
    """``(p, ⟨p, g⟩)`` with ``p = −H g`` for the L-BFGS inverse Hessian of the
    ``count`` newest pairs (circular buffers ``S``, ``Y`` of shape (m, N), newest at
    ``head − 1``)."""
    m, N = S.shape
    q = g.copy()
    alpha = np.empty(m)
    for c in range(count):
        i = (head - 1 - c) % m
        a = 0.0
        for t in range(N):
            a += S[i, t] * q[t]
        a *= rho[i]
        alpha[i] = a
        for t in range(N):
            q[t] -= a * Y[i, t]
    for t in range(N):
        q[t] *= gamma
    for c in range(count - 1, -1, -1):
        i = (head - 1 - c) % m
        b = 0.0
        for t in range(N):
            b += Y[i, t] * q[t]
        b = alpha[i] - rho[i] * b
        for t in range(N):
            q[t] += b * S[i, t]
    d0 = 0.0
    for t in range(N):
        q[t] = -q[t]
        d0 += q[t] * g[t]
    return q, d0


# fastmath without its no-NaN / no-inf assumptions: a NaN in the gradient must make
# ``max |g_new|`` NaN (never "converged"), as numpy's max does
_UPDATE_MATH = {"reassoc", "contract", "arcp", "nsz", "afn"}


@njit(cache=True, fastmath=_UPDATE_MATH)
def _update(x, p, alpha, g, g_new, S, Y, rho, head):
    """After a step ``alpha p`` from ``x`` (gradient ``g``, now ``g_new``): ``x +=
    alpha p``, and the pair ``(s, y) = (alpha p, g_new − g)`` written into slot
    ``head`` of the memory if its curvature ``sᵀy`` exceeds ``1e-10 yᵀy``.
    Returns ``(stored, gamma, max |g_new|)``, ``gamma = sᵀy / yᵀy``, with ``s``
    and ``y`` rounded to the memory's dtype. (One compiled pass instead of ten
    numpy calls, whose overhead is a visible share of a small fit; see
    docs/solver_notes.rst, "L-BFGS".)"""
    N = x.shape[0]
    # (s and y as the memory stores them, so that rho matches them when the
    # memory is float32)
    s = np.empty(N, dtype=S.dtype)
    y = np.empty(N, dtype=S.dtype)
    sy = 0.0
    yy = 0.0
    gmax = 0.0
    for t in range(N):
        s[t] = alpha * p[t]
        y[t] = g_new[t] - g[t]
        st = np.float64(s[t])
        yt = np.float64(y[t])
        sy += st * yt
        yy += yt * yt
        a = abs(g_new[t])
        if not a <= gmax and gmax == gmax:  # (larger, or the first NaN: kept)
            gmax = a
    stored = sy > 1e-10 * yy
    if stored:
        # (element loops: a row assignment ``S[head] = s`` compiles numba's
        # shape-mismatch error message, string formatting included)
        for t in range(N):
            S[head, t] = s[t]
            Y[head, t] = y[t]
        rho[head] = 1.0 / sy
    for t in range(N):
        x[t] += alpha * p[t]
    return stored, (sy / yy if stored else 0.0), gmax
