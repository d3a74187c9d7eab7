"""The MMC solver: maximise ``Σ_D ‖δ‖_A`` subject to ``Σ_S ‖δ‖²_A ≤ 1``, ``A ⪰ 0``
(the objective of :mod:`mahal.mmc`), and the diagonal formulation.

Plain functions on arrays; the projection and weights are in :mod:`mahal._mmc_small`
(NumPy for small problems, else :mod:`mahal._mmc_kernels`).

How it is solved
----------------
* With ``C_S = Σ_S δδᵀ = U Λ Uᵀ``, the constraint is ``⟨A, C_S⟩ ≤ 1``. We work in the
  whitened coordinates ``δ̃ = Λ^{-1/2} Uᵀ δ`` and ``A = W M Wᵀ`` with
  ``W = U Λ^{-1/2}``, where the feasible set becomes ``K = {M ⪰ 0, tr M ≤ 1}``. The
  Euclidean projection onto ``K`` is *exact*: keep ``M``'s eigenvectors and project its
  eigenvalues onto the capped simplex (:mod:`mahal._mmc_small`: NumPy for small
  problems, else the numba kernels of :mod:`mahal._mmc_kernels`).
* Rank-deficient ``C_S``: only the range of ``C_S`` is kept. If the dissimilar pairs
  have no component in ``null(C_S)`` (e.g. all data lie in a subspace), those
  directions do not affect anything and get zero weight. If they do, the problem is
  **unbounded** (a direction that no similar pair moves along but dissimilar pairs do
  can get infinite weight); we then warn and return the limiting direction: the same
  problem restricted to ``null(C_S)`` with ``tr A ≤ 1`` (all similar pairs then have
  distance 0).
* The full problem is solved by spectral projected gradient ascent (Barzilai–Borwein
  steps, non-monotone Armijo line search along the projection arc; all iterates are
  feasible). The gradient ``Σ_D δδᵀ / (2‖δ‖_A)`` is computed as ``Dᵀ W D`` in blocks of
  pairs (never a tensor of outer products); zero-length pairs get weight 0 and tiny
  distances are floored, so duplicate points never give NaN.
* Stopping rule: a certified optimality gap. ``f`` is concave and positively homogeneous
  of degree 1/2, so for ``M̂ = M / tr M`` the Frank–Wolfe gap gives
  ``f* ≤ f(M̂)(1 + τ λ_max(∇f(M)) / f(M) − 1/2)``, ``τ = tr M``. The solver stops when
  this relative gap is ≤ ``tol`` (the objective is then certified within a factor
  ``1 − tol`` of the optimum), or, for the full solver, when the best objective rose
  by less than a relative ``tol`` over the last 10 iterations (the gap bound is loose
  near the low-rank optima MMC tends to have).
* ``diagonal=True`` uses Xing's diagonal formulation, minimised by projected Newton
  (Bertsekas 1982) with an Armijo search on the projection arc:

      g(a) = Σ_S ‖δ‖²_a − c · log Σ_D ‖δ‖_a,     a ≥ 0,   (c = diagonal_c)

  Writing ``a = t·b`` with ``Σ_S ‖δ‖²_b = 1`` gives ``g = t − (c/2) log t −
  c log f(b)``, minimised at ``t = c/2`` for every ``b``: the minimiser is ``(c/2)·b*``
  where ``b*`` solves the constrained problem restricted to diagonal ``A``. The returned
  diagonal metric is Xing's minimiser (so ``Σ_S d_A = c/2``, as in metric-learn); its
  direction is the constrained optimum's.
"""

import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._mmc_small import cross_class_weights, project_trace_psd

__all__ = ["mmc_solve", "mmc_objective", "scatter", "DiffPairs", "CrossClassPairs"]

_BLOCK = 1 << 20        # float64 entries per work block (8 MB)
_RANK_RTOL = 1e-10      # eigenvalues of C_S below rtol·λ_max count as zero
_NULL_RTOL = 1e-10      # dissimilar energy in null(C_S) above this fraction: unbounded


# ---------------------------------------------------------------------------
# Dissimilar pairs in whitened coordinates: objective f, gradient, diagonal Hessian


class DiffPairs:
    """Dissimilar pairs given by explicit differences, or by index pairs into points.

    Either ``diffs`` (m, r), or ``points`` (n, r) with index arrays ``i``, ``j``.
    Work happens in blocks of pairs, so memory stays bounded.
    """

    def __init__(self, diffs=None, points=None, i=None, j=None):
        self.diffs, self.points, self.i, self.j = diffs, points, i, j
        m = diffs.shape[0] if diffs is not None else i.shape[0]
        r = (diffs if diffs is not None else points).shape[1]
        self.r = r
        self.step = max(1, _BLOCK // max(r, 1))
        self.m = m
        sq = 0.0
        for D in self._blocks():
            sq += np.einsum("ij,ij->", D, D)
        # distances below dmin are floored in weights (zero-length pairs get 0)
        self.dmin = 1e-8 * np.sqrt(sq / max(m, 1)) + np.finfo(float).tiny

    def _blocks(self):
        for s in range(0, self.m, self.step):
            e = min(s + self.step, self.m)
            if self.diffs is not None:
                yield self.diffs[s:e]
            else:
                yield self.points[self.i[s:e]] - self.points[self.j[s:e]]

    def value_grad(self, M, grad=True):
        """``f(M) = Σ sqrt(δᵀ M δ)`` and ``∇f = Σ δδᵀ / (2 sqrt(δᵀMδ))``."""
        F = 0.0
        G = np.zeros((self.r, self.r))
        for D in self._blocks():
            q = np.einsum("ij,ij->i", D @ M, D)
            dist = np.sqrt(np.maximum(q, 0.0))
            F += dist.sum()
            if grad:
                nz = np.einsum("ij,ij->i", D, D) > 0
                w = np.where(nz, 0.5 / np.maximum(dist, self.dmin), 0.0)
                G += (D * w[:, None]).T @ D
        return F, 0.5 * (G + G.T)

    def diag_value_grad_hess(self, b):
        """For ``f(b) = Σ sqrt(Σ_k b_k δ_k²)``: ``f``, ``∇f`` and ``−∇²f`` (PSD)."""
        F = 0.0
        g = np.zeros(self.r)
        H = np.zeros((self.r, self.r))
        for D in self._blocks():
            Q = D * D
            dist = np.sqrt(np.maximum(Q @ b, 0.0))
            F += dist.sum()
            nz = Q.sum(axis=1) > 0
            dc = np.maximum(dist, self.dmin)
            g += Q.T @ np.where(nz, 0.5 / dc, 0.0)
            H += (Q * np.where(nz, 0.25 / dc ** 3, 0.0)[:, None]).T @ Q
        return F, g, H


class CrossClassPairs:
    """Every pair of points with different class codes, never materialised.

    Distances come from row blocks of the Gram matrix of ``Z = P Gᵀ`` (``M = GᵀG``,
    upper triangle only) and the gradient from the graph-Laplacian identity
    ``Σ_{i<j} w_ij δ_ij δ_ijᵀ = Pᵀ diag(deg) P − (U + Uᵀ)``, ``U = Σ_{i<j} w_ij
    p_i p_jᵀ``, ``deg_i = Σ_j w_ij``: O(n² r) work per evaluation instead of
    O(n² r²), O(n r) memory. Weights are capped at ``1 / (2 dmin)`` so that the
    cancellation in this identity stays at rounding level for duplicate points.
    """

    def __init__(self, points, codes):
        self.P = points - points.mean(axis=0)
        self.codes = codes
        n, self.r = self.P.shape
        self.step = max(1, min(256, _BLOCK // max(n, 1)))
        counts = np.bincount(codes)
        m = (n * n - np.sum(counts.astype(float) ** 2)) / 2
        total = n * np.einsum("ij,ij->", self.P, self.P)
        within = sum(counts[c] * np.sum((self.P[codes == c] - self.P[codes == c].mean(
            axis=0)) ** 2) for c in range(counts.shape[0]) if counts[c])
        self.dmin = 1e-7 * np.sqrt(max(total - within, 0.0) / max(m, 1)) + 1e-300

    def value_grad(self, M, grad=True):
        lam, V = np.linalg.eigh(0.5 * (M + M.T))
        keep = lam > max(lam[-1], 0.0) * 1e-14
        if lam[-1] <= 0:
            keep[:] = False
        Z = self.P @ (V[:, keep] * np.sqrt(lam[keep]))
        sq = np.einsum("ij,ij->i", Z, Z)
        P = self.P
        n = P.shape[0]
        F = 0.0
        deg = np.zeros(n)
        U = np.zeros((self.r, self.r))
        for s in range(0, n, self.step):
            e = min(s + self.step, n)
            # upper triangle only: rows s:e against columns s:n
            K = Z[s:e] @ Z[s:].T
            f, rows, cols = cross_class_weights(K, sq, self.codes, s, s, self.dmin)
            F += f
            if grad:
                deg[s:e] += rows
                deg[s:] += cols
                U += P[s:e].T @ (K @ P[s:])
        if not grad:
            return F, None
        # Σ_{i<j} w_ij (p_i − p_j)(p_i − p_j)ᵀ = Pᵀ diag(deg) P − (U + Uᵀ)
        G = (P * deg[:, None]).T @ P - U - U.T
        return F, 0.5 * (G + G.T)


# ---------------------------------------------------------------------------
# The shared solver


def _whitening(C_S, C_D, diagonal):
    """Coordinates in which the similarity constraint is ``tr M ≤ 1``.

    Returns ``(W, V, unbounded)`` with ``A = W M Wᵀ``, ``M = Vᵀ A V`` (``VᵀW = I``).
    """
    d = C_S.shape[0]
    total_D = np.trace(C_D)
    if not total_D > 0:
        raise ValueError("All dissimilar pairs have zero length (identical points): "
                         "MMC has nothing to separate.")
    if diagonal:
        lam, U = np.diag(C_S).copy(), np.eye(d)
    else:
        lam, U = np.linalg.eigh(C_S)
    lam_max = lam.max()
    pos = lam > _RANK_RTOL * lam_max if lam_max > 0 else np.zeros(d, dtype=bool)
    N = U[:, ~pos]
    null_energy = np.trace(N.T @ C_D @ N) if N.shape[1] else 0.0
    if null_energy > _NULL_RTOL * total_D:
        warnings.warn(
            "MMC's problem is unbounded: some directions separate dissimilar pairs "
            "while no similar pair varies along them (the similar pairs span "
            f"{int(pos.sum())} of {d} dimensions), so the objective grows without "
            "limit. Returning the limiting metric, supported on those directions "
            "(similar pairs get distance 0). Add similar pairs, or reduce the "
            "dimension (e.g. PCA) first.", UserWarning, stacklevel=7)
        return N, N, True
    R, s = U[:, pos], np.sqrt(lam[pos])
    return R / s, R * s, False


def _trace_gap(M, F, G):
    """Certified relative optimality gap of ``M`` (see the module docstring)."""
    tau = np.trace(M)
    if F <= 0 or tau <= 0:
        return np.inf
    return tau * np.linalg.eigvalsh(G)[-1] / F - 0.5


class _Printer:
    def __init__(self, name, verbose):
        self.name, self.verbose, self.t0 = name, verbose, time.perf_counter()
        if verbose:
            header = "{:>10} {:>20} {:>10}".format("Iteration", "Objective Value",
                                                  "Time(s)")
            print(f"[{name}]")
            print(f"[{name}] {header}")
            print(f"[{name}] {'-' * len(header)}")

    def __call__(self, it, obj):
        if self.verbose:
            t = time.perf_counter() - self.t0
            print(f"[{self.name}] {it:>10d} {obj:>20.6e} {t:>10.2f}")


def _spg_trace(oracle, M0, max_iter, tol, printer, memory=10):
    """Maximise ``f`` over ``{M ⪰ 0, tr M ≤ 1}`` by spectral projected gradient.

    Stops when the certified relative gap is ≤ ``tol``, or when the best objective
    (of ``M / tr M``) rose by less than a relative ``tol`` over the last ``memory``
    iterations: the Frank–Wolfe gap is a loose bound near low-rank optima.

    Returns ``(M, n_iter, converged)``: the best iterate, scaled to ``tr M = 1``.
    """
    M = project_trace_psd(np.ascontiguousarray(M0))[0]
    if np.trace(M) <= 0:
        M = np.eye(M.shape[0]) / M.shape[0]
    F, G = oracle.value_grad(M)
    gnorm = np.linalg.norm(G)
    alpha = alpha0 = np.linalg.norm(M) / gnorm if gnorm > 0 else 1.0
    history = [F]
    best = [F / np.sqrt(np.trace(M))]  # best normalised objective so far
    M_best = M
    converged = _trace_gap(M, F, G) <= tol
    n_iter = 0
    while not converged and n_iter < max_iter:
        n_iter += 1
        P = project_trace_psd(M + alpha * G)[0]
        step = P - M
        slope = np.vdot(G, step)
        if not slope > 0:  # projected gradient is zero: stationary, i.e. optimal
            converged = True
            break
        f_ref = max(history[-memory:])
        s = 1.0
        for _ in range(60):
            M_new = M + s * step
            F_new, G_new = oracle.value_grad(M_new)
            if F_new >= f_ref + 1e-4 * s * slope:
                break
            s *= 0.5
        else:  # no ascent possible at machine precision
            converged = _trace_gap(M, F, G) <= tol
            break
        dM, dG = M_new - M, G_new - G
        curv = -np.vdot(dM, dG)  # ≥ 0 for a concave f
        alpha = np.vdot(dM, dM) / curv if curv > 0 else 1e3 * alpha
        alpha = min(max(alpha, 1e-10 * alpha0), 1e10 * alpha0)
        M, F, G = M_new, F_new, G_new
        history.append(F)
        value = F / np.sqrt(np.trace(M))
        if value > best[-1]:
            M_best = M
        best.append(max(value, best[-1]))
        printer(n_iter, value)
        converged = (_trace_gap(M, F, G) <= tol
                     or (len(best) > memory
                         and best[-1] - best[-1 - memory] <= tol * best[-1]))
    return M_best / np.trace(M_best), n_iter, converged


def _newton_diag(oracle, b0, c, max_iter, tol, printer):
    """Minimise ``g(b) = Σ b − c log f(b)`` over ``b ≥ 0`` by projected Newton.

    Returns ``(b, n_iter, converged)``.
    """
    r = b0.shape[0]

    def objective(b):
        F = _diag_value(oracle, b)
        return (np.sum(b) - c * np.log(F) if F > 0 else np.inf), F

    b = np.maximum(b0, 0.0)
    if not b.sum() > 0:
        b = np.ones(r)
    b *= 0.5 * c / b.sum()  # the optimal scale for this direction
    converged = False
    n_iter = 0
    while True:
        F, gF, HF = oracle.diag_value_grad_hess(b)
        sigma = b.sum()
        if F > 0 and sigma > 0 and sigma * gF.max() / F - 0.5 <= tol:
            converged = True
            break
        if n_iter >= max_iter:
            break
        n_iter += 1
        g_val = sigma - c * np.log(F) if F > 0 else np.inf
        grad = 1.0 - c * gF / F
        H = c * (HF / F + np.outer(gF, gF) / F ** 2)
        # Bertsekas' projected Newton: coordinates at the bound that the gradient
        # pushes outwards are fixed and take a scaled gradient step.
        eps = min(1e-6 * sigma, np.linalg.norm(b - np.maximum(b - grad, 0.0)))
        active = (b <= eps) & (grad > 0)
        free = ~active
        p = np.zeros(r)
        if free.any():
            Hf = H[np.ix_(free, free)]
            Hf[np.diag_indices_from(Hf)] += 1e-12 * max(np.trace(Hf), 1e-300)
            try:
                p[free] = np.linalg.solve(Hf, grad[free])
            except np.linalg.LinAlgError:
                p[free] = np.linalg.lstsq(Hf, grad[free], rcond=None)[0]
        hd = np.maximum(np.diag(H)[active], 1e-300)
        p[active] = grad[active] / hd
        step = 1.0
        accepted = False
        for _ in range(60):
            b_new = np.maximum(b - step * p, 0.0)
            decrease = (step * grad[free] @ p[free]
                        + grad[active] @ (b - b_new)[active])
            g_new, F_new = objective(b_new)
            if g_new <= g_val - 1e-4 * decrease:
                accepted = True
                break
            step *= 0.5
        if not accepted:
            break
        b = b_new
        # objective of the constrained problem at b / Σb (f is 1/2-homogeneous)
        printer(n_iter, F_new / np.sqrt(b.sum()) if b.sum() > 0 else 0.0)
    if b.sum() > 0:
        b *= 0.5 * c / b.sum()  # Xing's minimiser along the final direction
    return b, n_iter, converged


def _diag_value(oracle, b):
    F = 0.0
    for D in oracle._blocks():
        F += np.sqrt(np.maximum((D * D) @ b, 0.0)).sum()
    return F


def mmc_solve(C_S, C_D, make_oracle, A0, *, diagonal, diagonal_c, max_iter, tol,
               verbose, name):
    """Solve MMC for the similarity scatter ``C_S`` and dissimilar pairs.

    Parameters
    ----------
    C_S, C_D : ndarray (d, d)
        ``Σ_S δδᵀ`` and ``Σ_D δδᵀ``.
    make_oracle : callable
        ``make_oracle(W)`` returns the dissimilar pairs in the coordinates ``x ↦ Wᵀx``
        (an object with ``value_grad`` and, for ``diagonal``, ``diag_value_grad_hess``).
    A0 : ndarray (d, d)
        Initial PSD matrix.

    Returns
    -------
    A : ndarray (d, d)
    n_iter : int
    """
    W, V, _ = _whitening(C_S, C_D, diagonal)
    oracle = make_oracle(W)
    printer = _Printer(name, verbose)
    if diagonal:
        b0 = np.diag(V.T @ A0 @ V).copy()
        b, n_iter, converged = _newton_diag(oracle, b0, diagonal_c, max_iter, tol,
                                            printer)
        A = (W * b) @ W.T
    else:
        M, n_iter, converged = _spg_trace(oracle, V.T @ A0 @ V, max_iter, tol,
                                          printer)
        A = W @ M @ W.T
    if not converged:
        warnings.warn(f"[{name}] MMC did not converge within max_iter={max_iter} "
                      f"iterations (tol={tol}); increase max_iter.",
                      ConvergenceWarning, stacklevel=6)
    return 0.5 * (A + A.T), max(n_iter, 1)


def mmc_objective(A, pairs, y):
    """MMC objective ``Σ_D ‖δ‖_A`` and constraint value ``Σ_S ‖δ‖²_A`` (for tests)."""
    diffs = pairs[:, 0] - pairs[:, 1]
    q = np.maximum(np.einsum("ij,jk,ik->i", diffs, A, diffs), 0.0)
    return np.sqrt(q[y == -1]).sum(), q[y == 1].sum()


def scatter(X, i, j):
    d = X.shape[1]
    C = np.zeros((d, d))
    step = max(1, _BLOCK // max(d, 1))
    for s in range(0, i.shape[0], step):
        D = X[i[s:s + step]] - X[j[s:s + step]]
        C += D.T @ D
    return C
