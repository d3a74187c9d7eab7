"""Numba kernel of ITML's solver: one sweep of Bregman projections (see
:mod:`mahal._itml_solver`).

A pure function of float64 arrays, compiled on first use and cached on disk. It
updates its arguments in place, as the sweep it replaces (metric-learn's Python loop,
the authors' MATLAB loop) does.
"""

import numpy as np
from ._jit import njit


@njit(cache=True, nogil=True, fastmath={"contract", "reassoc"})
def bregman_sweep(A, diffs, similar, dual, slack, gamma):
    """Project ``A`` onto each constraint in turn: one sweep of Davis et al.'s
    Algorithm 1 (with the projection of the authors' code, see
    :mod:`mahal._itml_solver`).

    Constraint ``c`` is ``δ_cᵀ A δ_c ≤ slack[c]`` when ``similar[c]``, else
    ``≥ slack[c]``. Its projection is the rank-one update
    ``A ← A + β (A δ_c)(A δ_c)ᵀ``; the next constraint's ``A δ`` is accumulated in
    the same pass over ``A``, so each projection reads and writes ``A`` once
    (``2 d²`` multiply-adds).

    Parameters
    ----------
    A : ndarray of shape (d, d), C-contiguous
        The current metric, updated in place.
    diffs : ndarray of shape (m, d), C-contiguous
        ``δ_c = x_c − x'_c``, none of them zero.
    similar : ndarray of shape (m,), bool
    dual : ndarray of shape (m,)
        The dual variables ``λ_c ≥ 0``, updated in place.
    slack : ndarray of shape (m,)
        The slack variables ``ξ_c > 0`` (the authors' ``bhat``), updated in place.
    gamma : float
        Slack trade-off ``γ > 0`` (``inf``: hard constraints).
    """
    d = A.shape[0]
    m = diffs.shape[0]
    if m == 0:
        return
    if np.isinf(gamma):
        gamma_proj = 1.0
        inv_gamma = 0.0
    else:
        gamma_proj = gamma / (gamma + 1.0)
        inv_gamma = 1.0 / gamma
    Av = np.empty(d)
    Av_next = np.empty(d)
    v0 = diffs[0]
    for i in range(d):
        s = 0.0
        for j in range(d):
            s += A[i, j] * v0[j]
        Av[i] = s
    for c in range(m):
        v = diffs[c]
        p = 0.0
        for j in range(d):
            p += v[j] * Av[j]
        beta = 0.0
        if p > 0.0:  # (p ≤ 0 only by rounding: no projection is defined)
            if similar[c]:
                alpha = min(dual[c], gamma_proj * (1.0 / p - 1.0 / slack[c]))
                beta = alpha / (1.0 - alpha * p)
                slack[c] = 1.0 / (1.0 / slack[c] + alpha * inv_gamma)
            else:
                alpha = min(dual[c], gamma_proj * (1.0 / slack[c] - 1.0 / p))
                beta = -alpha / (1.0 + alpha * p)
                slack[c] = 1.0 / (1.0 / slack[c] - alpha * inv_gamma)
            dual[c] -= alpha
        w = diffs[c + 1] if c + 1 < m else v
        if beta != 0.0:
            for i in range(d):
                bi = beta * Av[i]
                s = 0.0
                for j in range(d):
                    a = A[i, j] + bi * Av[j]
                    A[i, j] = a
                    s += a * w[j]
                Av_next[i] = s
        else:
            for i in range(d):
                s = 0.0
                for j in range(d):
                    s += A[i, j] * w[j]
                Av_next[i] = s
        Av, Av_next = Av_next, Av
