"""The SCML solver: sparse non-negative weights of rank-one bases (the objective of
:mod:`mahal.scml`), and the basis constructions of metric-learn 0.7.

Plain functions on arrays.

The problem
-----------
With bases ``b_k`` (rows of ``B``) and ``M = Σ_k w_k b_k b_kᵀ``, the squared distance
of a pair is ``d_M(x, x') = Σ_k w_k (b_kᵀ(x − x'))²``: linear in ``w``. So

    min_{w ≥ 0}  (1/T) Σ_t [1 + a_tᵀ w]_+ + β Σ_k w_k,
    a_tk = (b_kᵀ(x_t − x_t⁺))² − (b_kᵀ(x_t − x_t⁻))²

is a linear program in ``w`` (:func:`scml_objective` is its plain definition,
:func:`mahal.reference.scml` hands it to cvxpy). metric-learn runs 10 000 AdaGrad
steps on batches of 10 triplets and keeps the best iterate it saw; here it is solved
full-batch, to a certified optimality gap.

How it is solved
----------------
The optimum is a vertex: few nonzero weights (~130 of 1280 on digits) and few binding
triplets (~800 of 54 000). So the LP is solved on working sets, rows ``R`` (triplets)
and columns ``C`` (bases), grown and pruned by pricing (row and column generation):

* The restricted LP (``R × C``) is solved by a Mehrotra predictor-corrector interior
  point (:func:`_ipm`): its normal equations go through the Woodbury identity, an
  ``|C| × |C|`` Cholesky, O(|R| |C|²) per iteration. It is solved to a tenth of the
  current gap (the early ones only guide the working sets); the last one, when
  nothing joins, is finished by HiGHS's dual simplex for a vertex.
* Rows: the triplets violated at its ``w`` by at most 0.5 join ``R`` (at most 1000 a
  round, the most violated); rows far from binding (no multiplier, margin below
  −0.5) leave it. Triplets violated by more (and rows of ``R`` at their multiplier's
  upper bound) join ``L``: their hinge is linear there, so they enter the restricted
  LP as one aggregated row (their mean, weighted by their number), exact while they
  stay violated; a triplet whose margin falls below 0.25 leaves ``L`` for good (no
  cycling). On letter most of the ~29 000 violated triplets are in ``L``.
  Margins of every triplet cost one product with the working-set columns
  ``(δ_pᵀ b_k)²`` of the *distinct* pairs of the triplets (k-NN triplets share their
  pairs), never a ``T × K`` matrix.
* Columns: every basis is priced, ``β + (Aᵀα)_k`` with ``α`` the row multipliers;
  ``Aᵀα = diag(B S Bᵀ)`` with the ``d × d`` matrix ``S = Σ_pairs r_p δ_p δ_pᵀ``
  (O(n_pairs d² + K d²)). Bases with a negative price join ``C``; bases at zero with a
  positive price leave it.
* Stopping rule: a certified duality gap. The LP's dual is
  ``max Σ_t α_t  s.t.  0 ≤ α ≤ 1/T,  Aᵀα ≥ −β``; the restricted multipliers (0
  outside ``R``), clipped to ``[0, 1/T]`` and scaled by ``s ≤ 1`` until ``Aᵀα ≥ −β``
  holds for every basis, are dual feasible, so ``objective(w) − Σα`` bounds the
  distance to the optimum. The solver stops when it is at most ``tol`` times the
  objective. The weights an interior point leaves tiny are then set to zero as long
  as the objective stays within ``tol / 2``.

Measurements (and what else was tried) are in ``docs/solver_notes.rst``.
"""

import time
import warnings

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from sklearn.exceptions import ConvergenceWarning

__all__ = ["scml_objective", "scml_solve", "triplet_pairs", "triplet_diff_bases",
           "lda_bases", "lda_scalings"]

_BLOCK = 1 << 21            # float64 entries per block of pair-basis distances
_INITIAL_ROWS = 1000        # triplets in the first restricted LP (a regular subsample)
_MIN_NEW_COLUMNS = 50       # bases added at least per pricing
_MAX_EMPTY_ROUNDS = 100     # groups of triplets without a basis before giving up
_L_ENTER = 0.5              # violated by more than this: aggregated (the set L)
_L_EXIT = 0.25              # L's triplets whose margin falls below this leave it
_ROW_SLACK = 0.5            # rows kept while their margin is above -_ROW_SLACK


def scml_objective(weights, basis, triplets, beta):
    """The SCML objective (plain numpy, every term explicit).

    ``(1/T) Σ_t [1 + d_M(x_t, x_t⁺) − d_M(x_t, x_t⁻)]_+ + β ‖w‖₁`` with
    ``M = Σ_k w_k b_k b_kᵀ`` and squared distances ``d_M(x, x') = (x − x')ᵀ M (x − x')``
    (Shi, Bellet & Sha, AAAI 2014, eq. 5, global form).

    Parameters
    ----------
    weights : array-like of shape (n_basis,)
        Non-negative weights ``w``.
    basis : array-like of shape (n_basis, n_features)
        The bases ``b_k`` (rows).
    triplets : array-like of shape (n_triplets, 3, n_features)
        (anchor, closer, farther) triplets of points.
    beta : float
        Weight of the L1 penalty.

    Returns
    -------
    objective : float
    """
    w = np.asarray(weights, dtype=np.float64)
    B = np.asarray(basis, dtype=np.float64)
    t = np.asarray(triplets, dtype=np.float64)
    M = B.T @ (w[:, None] * B)
    dp = t[:, 0] - t[:, 1]
    dn = t[:, 0] - t[:, 2]
    margin = (1 + np.einsum("ti,ij,tj->t", dp, M, dp)
              - np.einsum("ti,ij,tj->t", dn, M, dn))
    return float(np.maximum(margin, 0).mean() + beta * np.abs(w).sum())


# ---------------------------------------------------------------------------
# The triplet-basis data


def triplet_pairs(triplets, n_points):
    """The distinct pairs of the triplets.

    Parameters
    ----------
    triplets : ndarray of int of shape (n_triplets, 3)
        (anchor, closer, farther) indices of points.
    n_points : int

    Returns
    -------
    i, j : ndarray of int of shape (n_pairs,)
        The distinct pairs ``(i, j)``, ``i ≤ j``.
    pos, neg : ndarray of int of shape (n_triplets,)
        Index of each triplet's (anchor, closer) and (anchor, farther) pair.
    """
    T = triplets.shape[0]
    pairs = np.concatenate([triplets[:, [0, 1]], triplets[:, [0, 2]]]).astype(np.int64)
    pairs.sort(axis=1)
    uniq, inv = np.unique(pairs[:, 0] * n_points + pairs[:, 1], return_inverse=True)
    inv = inv.ravel().astype(np.intp)
    return uniq // n_points, uniq % n_points, inv[:T], inv[T:]


class _TripletBasis:
    """The triplet-basis matrix ``A`` (``a_tk = (b_kᵀδ⁺_t)² − (b_kᵀδ⁻_t)²``), implicit.

    ``diffs`` holds the distinct pair differences ``δ_p``; ``Aᵀα`` for all bases is
    ``diag(B S Bᵀ)`` with the ``d × d`` matrix ``S = Σ_p r_p δ_p δ_pᵀ`` (``r`` the
    weights ``α`` summed per pair), never the ``T × K`` matrix. Columns of the working
    set are materialised per pair, ``(δ_pᵀ b_k)²`` (``n_pairs × |C|``).
    """

    def __init__(self, diffs, pos, neg, basis):
        self.diffs, self.pos, self.neg, self.basis = diffs, pos, neg, basis
        self.n_pairs = diffs.shape[0]
        self.n_triplets = pos.shape[0]
        self.cols = np.zeros(0, dtype=np.intp)
        # columns of the working set, each contiguous (Fortran order), with room
        self._buf = np.empty((self.n_pairs, 0), order="F")

    @property
    def Dc(self):
        return self._buf[:, :self.cols.shape[0]]

    def add_columns(self, new):
        new = np.setdiff1d(new, self.cols)
        m, k = self.cols.shape[0], new.shape[0]
        if k == 0:
            return
        if m + k > self._buf.shape[1]:
            buf = np.empty((self.n_pairs, max(2 * (m + k), 64)), order="F")
            buf[:, :m] = self._buf[:, :m]
            self._buf = buf
        Dn = self._buf[:, m:m + k]
        step = max(1, _BLOCK // k)
        Bt = np.ascontiguousarray(self.basis[new].T)
        for r0 in range(0, self.n_pairs, step):
            r1 = min(r0 + step, self.n_pairs)
            Dn[r0:r1] = self.diffs[r0:r1] @ Bt
        np.square(Dn, out=Dn)
        self.cols = np.concatenate([self.cols, new])

    def keep_columns(self, mask):
        idx = np.flatnonzero(mask)
        for dst, src in enumerate(idx):
            if dst != src:
                self._buf[:, dst] = self._buf[:, src]
        self.cols = self.cols[idx]

    def margins(self, wc):
        """``1 + a_tᵀ w`` for every triplet (``wc`` on the working set)."""
        u = self.Dc @ wc
        return 1.0 + u[self.pos] - u[self.neg]

    def rows(self, idx):
        """Rows ``idx`` of ``A`` on the working set."""
        return self.Dc[self.pos[idx]] - self.Dc[self.neg[idx]]

    def mean_row(self, mask):
        """Mean of the rows of ``A`` (working set) over the triplets in ``mask``."""
        r = (np.bincount(self.pos[mask], minlength=self.n_pairs)
             - np.bincount(self.neg[mask], minlength=self.n_pairs))
        return (r @ self.Dc) / mask.sum()

    def price(self, alpha):
        """``Aᵀα`` for every basis."""
        r = (np.bincount(self.pos, alpha, self.n_pairs)
             - np.bincount(self.neg, alpha, self.n_pairs))
        S = self.diffs.T @ (self.diffs * r[:, None])
        return np.einsum("kd,kd->k", self.basis @ S, self.basis)


def scml_solve(X, triplets, basis, beta, *, tol=1e-6, max_iter=100, verbose=False,
               name="SCML"):
    """Minimise the SCML objective over ``w ≥ 0`` for a fixed basis.

    Parameters
    ----------
    X : ndarray of shape (n_points, n_features)
    triplets : ndarray of int of shape (n_triplets, 3)
        (anchor, closer, farther) indices into ``X``.
    basis : ndarray of shape (n_basis, n_features)
    beta : float
        L1 weight (≥ 0).
    tol : float
        Stop when the certified duality gap is at most ``tol`` times the objective.
    max_iter : int
        Maximum number of rounds (restricted LP solve, then pricing).
    verbose : bool
        Print one line per round.
    name : str
        For messages.

    Returns
    -------
    w : ndarray of shape (n_basis,)
    n_iter : int
        Rounds taken.
    converged : bool
    info : dict
        ``objective``, ``dual`` (a lower bound on the optimum), ``gap``,
        ``n_rows`` and ``n_columns`` (size of the last restricted LP).
    """
    i, j, pos, neg = triplet_pairs(triplets, X.shape[0])
    prob = _TripletBasis(X[i] - X[j], pos, neg, basis)
    T, K = prob.n_triplets, basis.shape[0]
    u = 1.0 / T
    grad = prob.price(np.full(T, u)) + beta      # the gradient at w = 0
    cand = np.flatnonzero(grad < 0)
    if cand.shape[0] == 0:
        # w = 0 is optimal: every basis costs more (β) than it can gain
        return np.zeros(K), 0, True, {"objective": 1.0, "dual": 1.0, "gap": 0.0,
                                      "n_rows": 0, "n_columns": 0}
    m0 = max(_MIN_NEW_COLUMNS, 2 * X.shape[1])
    prob.add_columns(cand[np.argsort(grad[cand], kind="stable")[:m0]])
    R = np.arange(0, T, max(1, T // _INITIAL_ROWS))
    inL = np.zeros(T, dtype=bool)
    settled = np.zeros(T, dtype=bool)
    best = (np.inf, None)
    dual_best = -np.inf
    converged = False
    t0 = time.perf_counter()
    if verbose:
        print(f"[{name}] {'round':>5} {'objective':>14} {'gap':>10} {'rows':>7} "
              f"{'bases':>6} {'nonzero':>7} {'time':>8}")
    for n_iter in range(1, max_iter + 1):
        # the restricted LPs only guide the working sets until the gap is small:
        # solve them to a tenth of the current relative gap
        rel_gap = (best[0] - dual_best) / best[0] if np.isfinite(best[0]) else 1.0
        A_lp, costs = _restricted(prob, R, inL, u)
        wc, y, _ = _ipm(A_lp, beta, costs,
                        tol=min(1e-4, max(1e-9, 0.1 * rel_gap, 0.1 * tol)))
        wc, objective, z, dual, v = _evaluate(prob, wc, y, R, inL, beta, u)
        if objective < best[0]:
            best = (objective, dict(zip(prob.cols.tolist(), wc)))
        dual_best = max(dual_best, dual)
        gap = best[0] - dual_best
        if verbose:
            print(f"[{name}] {n_iter:>5} {objective:>14.8e} {gap:>10.3e} {R.shape[0]:>7} "
                  f"{prob.cols.shape[0]:>6} {int((wc > 0).sum()):>7} "
                  f"{time.perf_counter() - t0:>7.2f}s")
        if gap <= tol * best[0]:
            converged = True
            break
        # rows. L: triplets clearly violated, whose hinge is linear near w; they
        # enter the restricted LP as one aggregated row (their mean), exact while
        # they stay violated. R: triplets near their hinge's kink, one row each.
        yR = y[:R.shape[0]]
        leave = inL & (z < _L_EXIT)
        inL[leave] = False
        settled |= leave  # a triplet leaves L once at most: no cycling
        promote = ((yR >= (1 - 1e-3) * u) & (z[R] > _L_ENTER)) & ~settled[R]
        inL[R[promote]] = True
        # keep the rows that bind (a multiplier) or nearly bind; the others only
        # slow the restricted LP down (they are priced again every round)
        R_kept = R[~promote & ((yR > 1e-6 * u) | (z[R] > -_ROW_SLACK))]
        out = ~inL
        out[R_kept] = False
        violated = out & (z > 0)
        deep = violated & (z > _L_ENTER) & ~settled
        inL[deep] = True
        new_rows = np.flatnonzero(violated & ~deep)
        new_rows = new_rows[np.argsort(-z[new_rows], kind="stable")[:_INITIAL_ROWS]]
        L_changed = bool(leave.any() or promote.any() or deep.any())
        # columns: bases whose reduced cost β + (Aᵀα)_k is negative
        red = v + beta
        inside = np.zeros(K, dtype=bool)
        inside[prob.cols] = True
        new_cols = np.flatnonzero(~inside & (red < 0))
        new_cols = new_cols[np.argsort(red[new_cols], kind="stable")[
            :max(_MIN_NEW_COLUMNS, prob.cols.shape[0] // 2)]]
        if new_rows.shape[0] == 0 and new_cols.shape[0] == 0 and not L_changed:
            # optimal up to the interior point's accuracy: finish with a vertex
            # solution of the same restricted LP (HiGHS's dual simplex)
            wc, y = _simplex(*_restricted(prob, R, inL, u), beta)
            wc, objective, _, dual, _ = _evaluate(prob, wc, y, R, inL, beta, u)
            if objective < best[0]:
                best = (objective, dict(zip(prob.cols.tolist(), wc)))
            dual_best = max(dual_best, dual)
            converged = best[0] - dual_best <= tol * best[0]
            break
        R = np.union1d(R_kept, new_rows)
        # drop the bases at zero that the prices do not want either
        prob.keep_columns((wc > 1e-6 * wc.max(initial=0.0)) | (red[prob.cols] <= 0))
        prob.add_columns(new_cols)
    objective, wmap = best
    w = np.zeros(K)
    for k, value in wmap.items():
        w[k] = value
    w, objective = _sparsify(prob, w, beta, objective, tol)
    gap = objective - dual_best
    if not converged:
        warnings.warn(f"{name} did not reach a duality gap of tol={tol:g} times the "
                      f"objective in {n_iter} rounds (gap {gap:.3g}, objective "
                      f"{objective:.6g}).", ConvergenceWarning, stacklevel=3)
    return w, n_iter, converged, {"objective": float(objective),
                                  "dual": float(dual_best), "gap": float(gap),
                                  "n_rows": int(R.shape[0]),
                                  "n_columns": int(prob.cols.shape[0])}


def _restricted(prob, R, inL, u):
    """The restricted LP's rows and their costs: one row per triplet of ``R`` (cost
    ``u``), and the mean row of the triplets of ``L`` (cost ``u |L|``)."""
    A = prob.rows(R)
    nL = int(inL.sum())
    if nL == 0:
        return A, np.full(R.shape[0], u)
    mean = prob.mean_row(inL)
    return np.vstack([A, mean]), np.concatenate([np.full(R.shape[0], u), [u * nL]])


def _evaluate(prob, wc, y, R, inL, beta, u):
    """Objective at the restricted LP's ``w`` (all triplets), and the dual bound.

    ``α`` is the restricted LP's row multipliers (0 outside ``R`` and ``L``; the
    aggregated row's multiplier shared by the triplets of ``L``), clipped to
    ``[0, u]`` and scaled down until ``Aᵀα ≥ −β`` holds for every basis: a feasible
    point of the dual ``max Σα``, so ``Σα`` is a lower bound on the optimum.

    Returns
    -------
    w, objective, margins, dual, Aᵀα
        ``w`` the restricted LP's weights, clipped at 0 (rounding) and with the
        weights below ``1e-12`` of the largest set to zero.
    """
    wc = np.maximum(wc, 0.0)
    wc[wc < 1e-12 * max(wc.max(initial=0.0), 1e-300)] = 0.0
    z = prob.margins(wc)
    objective = np.maximum(z, 0.0).mean() + beta * wc.sum()
    alpha = np.zeros(prob.n_triplets)
    alpha[R] = np.clip(y[:R.shape[0]], 0.0, u)
    if y.shape[0] > R.shape[0]:  # the aggregated row of the triplets in L
        alpha[inL] = np.clip(y[-1] / inL.sum(), 0.0, u)
    v = prob.price(alpha)
    worst = -v.min()
    dual = alpha.sum() * (1.0 if worst <= beta else beta / worst)
    return wc, objective, z, dual, v


def _sparsify(prob, w, beta, objective, tol):
    """Zero the weights an interior point leaves tiny but not zero.

    The interior point lands inside the optimal face; the smallest weights are then
    dropped (below a fraction ``1e-6, 1e-5, …`` of the largest) as long as the
    objective stays within ``tol / 2`` (relative) of where it was.
    """
    cols = prob.cols
    wc = w[cols]
    for frac in (1e-3, 1e-4, 1e-5, 1e-6):
        trial = np.where(wc >= frac * wc.max(), wc, 0.0)
        z = prob.margins(trial)
        value = np.maximum(z, 0.0).mean() + beta * trial.sum()
        if value <= objective * (1 + 0.5 * tol):
            out = np.zeros_like(w)
            out[cols] = trial
            return out, value
    return w, objective


def _simplex(A, u, beta):
    """The restricted LP by HiGHS's dual simplex (``scipy.optimize.linprog``)."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, identity

    r, m = A.shape
    res = linprog(np.concatenate([np.full(m, beta), np.broadcast_to(u, (r,))]),
                  A_ub=hstack([csr_matrix(A), -identity(r, format="csr")]).tocsc(),
                  b_ub=-np.ones(r), bounds=(0, None), method="highs-ds")
    if res.status != 0:
        return np.zeros(m), np.zeros(r)
    return np.maximum(res.x[:m], 0.0), -res.ineqlin.marginals


def _ipm(A, beta, u, tol=1e-9, max_iter=100):
    with np.errstate(all="ignore"):  # a breakdown ends the loop (non-finite check)
        w, y, it = _ipm_loop(A, beta, u, tol, max_iter)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(y))):
        # numerical breakdown before any nearly feasible iterate: the simplex instead
        w, y = _simplex(A, u, beta)
    return w, y, it


def _ipm_loop(A, beta, u, tol, max_iter):
    """Mehrotra predictor-corrector interior point for the restricted LP.

    ``min β Σ w + u Σ ξ  s.t.  ξ − A w ≥ 1,  w, ξ ≥ 0`` (``A`` of shape (r, m)).
    Written as ``min cᵀx, Gx − s = 1, x, s ≥ 0`` with ``G = [−A, I]``; the normal
    equations ``(E + A Θ_w Aᵀ) dy = rhs`` (``E`` diagonal) are solved through the
    Woodbury identity, an ``m × m`` system: O(r m²) per iteration.

    Returns
    -------
    w : ndarray of shape (m,)
    y : ndarray of shape (r,)
        Dual multipliers of the rows (``0 ≤ y ≤ u``).
    n_iter : int
    """
    r, m = A.shape
    w = np.ones(m)
    Aw = A @ w
    xi = np.maximum(1.0 + Aw, 0.0) + 1.0
    s = xi - Aw - 1.0
    u = np.broadcast_to(np.asarray(u, dtype=float), (r,))
    y = 0.5 * u
    zxi = 0.5 * u
    zw = np.abs(beta + A.T @ y) + max(beta, u.max())
    scale = 1.0 + np.abs(A).max()
    best, best_gap = (w, y, 0), np.inf
    for it in range(1, max_iter + 1):
        Aw = A @ w
        ATy = A.T @ y
        rp = 1.0 + Aw - xi + s
        rdw = beta + ATy - zw
        rdxi = u - y - zxi
        gap = w @ zw + xi @ zxi + s @ y
        pobj = beta * w.sum() + u @ xi
        res = max(np.abs(rp).max() / (1.0 + np.abs(xi).max()),
                  np.abs(rdw).max() / (scale * u.min()), np.abs(rdxi / u).max())
        if not np.isfinite(gap + res):
            break
        # the best nearly feasible iterate so far: late iterations can lose accuracy
        if res <= 1e-6 and gap < best_gap:
            best, best_gap = (w, y, it), gap
        if gap <= tol * max(abs(pobj), 1e-300) and res <= min(1e-7, tol):
            break
        th_w = w / zw
        th_xi = xi / zxi
        E = th_xi + s / y
        Einv = 1.0 / E
        AE = A * Einv[:, None]
        Kmat = A.T @ AE
        Kmat.flat[::m + 1] += 1.0 / th_w
        try:
            cf = cho_factor(Kmat, check_finite=False)
        except np.linalg.LinAlgError:
            Kmat.flat[::m + 1] += 1e-10 * np.trace(Kmat) / m
            cf = cho_factor(Kmat, check_finite=False)

        def ksolve(b):
            return cho_solve(cf, b, check_finite=False)

        def wsolve(b):
            t = Einv * b
            return t - Einv * (A @ ksolve(A.T @ t))

        def direction(rxz_w, rxz_xi, rsy):
            # rhs = rp + rsy/y + G Θ rd − G (rxz / z),  G v = −A v_w + v_xi
            vw = th_w * rdw - rxz_w / zw
            vxi = th_xi * rdxi - rxz_xi / zxi
            rhs = rp + rsy / y - A @ vw + vxi
            dy = wsolve(rhs)
            for _ in range(2):  # iterative refinement: Woodbury loses accuracy late
                dy += wsolve(rhs - E * dy - A @ (th_w * (A.T @ dy)))
            dw = th_w * (-(A.T @ dy) - rdw) + rxz_w / zw
            dxi = th_xi * (dy - rdxi) + rxz_xi / zxi
            dzw = (rxz_w - zw * dw) / w
            dzxi = (rxz_xi - zxi * dxi) / xi
            ds = (rsy - s * dy) / y
            return dw, dxi, ds, dy, dzw, dzxi

        def max_step(v, dv):
            neg = dv < 0
            return min(1.0, (-v[neg] / dv[neg]).min()) if neg.any() else 1.0

        aff = direction(-w * zw, -xi * zxi, -s * y)
        ap = min(max_step(w, aff[0]), max_step(xi, aff[1]), max_step(s, aff[2]))
        ad = min(max_step(y, aff[3]), max_step(zw, aff[4]), max_step(zxi, aff[5]))
        n_c = 2 * r + m
        mu = gap / n_c
        gap_aff = ((w + ap * aff[0]) @ (zw + ad * aff[4])
                   + (xi + ap * aff[1]) @ (zxi + ad * aff[5])
                   + (s + ap * aff[2]) @ (y + ad * aff[3]))
        sigma = (gap_aff / gap) ** 3
        dw, dxi, ds, dy, dzw, dzxi = direction(
            sigma * mu - w * zw - aff[0] * aff[4],
            sigma * mu - xi * zxi - aff[1] * aff[5],
            sigma * mu - s * y - aff[2] * aff[3])
        ap = 0.99 * min(max_step(w, dw), max_step(xi, dxi), max_step(s, ds))
        ad = 0.99 * min(max_step(y, dy), max_step(zw, dzw), max_step(zxi, dzxi))
        w = w + ap * dw
        xi = xi + ap * dxi
        s = s + ap * ds
        y = y + ad * dy
        zw = zw + ad * dzw
        zxi = zxi + ad * dzxi
    if best_gap < np.inf:
        return best
    return w, y, it


# ---------------------------------------------------------------------------
# Bases (metric-learn 0.7's two constructions)


def triplet_diff_bases(X, triplets, n_basis, random_state):
    """metric-learn's ``'triplet_diffs'`` bases, from the eigenvectors of sums of pair
    outer products of random groups of triplets.

    Each round draws ``s`` triplets without replacement, forms
    ``Σ δ⁺δ⁺ᵀ − δ⁻δ⁻ᵀ`` over them and keeps its eigenvectors with a nonzero
    eigenvalue (relative to the largest), until ``n_basis`` bases are collected.
    ``s = n_features`` as in metric-learn when there are at least ``2 n_features``
    triplets; with fewer, ``s = max(1, n_triplets // 2)``, so that rounds draw
    different groups (metric-learn raises when ``n_features > n_triplets``, its issue
    348, and with ``n_triplets ≤ 2 n_features`` its rounds repeat nearly the same
    matrix). metric-learn takes the *rows* of the eigenvector matrix returned by
    ``eigh`` where its docstring (and the construction) mean its columns, the
    eigenvectors; here they are the eigenvectors.

    Parameters
    ----------
    X : ndarray of shape (n_points, n_features)
    triplets : ndarray of int of shape (n_triplets, 3)
    n_basis : int
    random_state : RandomState

    Returns
    -------
    basis : ndarray of shape (n_basis, n_features)
    """
    d = X.shape[1]
    T = triplets.shape[0]
    dp = X[triplets[:, 0]] - X[triplets[:, 1]]
    dn = X[triplets[:, 0]] - X[triplets[:, 2]]
    if not (np.any(dp) or np.any(dn)):
        raise ValueError("The triplets have no extent: every (anchor, closer) and "
                         "(anchor, farther) pair is made of identical points, so no "
                         "basis can be built from their differences.")
    size = d if T >= 2 * d else max(1, T // 2)
    basis = np.empty((n_basis, d))
    filled = empty_rounds = 0
    while filled < n_basis:
        if empty_rounds == _MAX_EMPTY_ROUNDS:
            raise ValueError(
                f"No basis found in {_MAX_EMPTY_ROUNDS} random groups of {size} "
                "triplets: their closer and farther differences cancel (e.g. the "
                "closer and the farther point are the same). Check the triplets, or "
                "pass basis as an array.")
        pick = random_state.choice(T, size=size, replace=False)
        S = dp[pick].T @ dp[pick] - dn[pick].T @ dn[pick]
        lam, V = np.linalg.eigh(S)
        keep = np.abs(lam) > d * np.finfo(float).eps * max(np.abs(lam).max(), 1e-300)
        vecs = V[:, keep].T
        empty_rounds = empty_rounds + 1 if vecs.shape[0] == 0 else 0
        take = min(vecs.shape[0], n_basis - filled)
        basis[filled:filled + take] = vecs[:take]
        filled += take
    return basis


def lda_bases(X, y, n_basis, random_state):
    """metric-learn's ``'lda'`` bases: discriminant directions of local regions.

    k-means (``n_init=10``, as metric-learn) cuts ``X`` into
    ``ceil(n_basis / (2 r))`` regions, ``r = min(n_classes − 1, n_features)``; around
    each centre, the ``k`` nearest points of every class (``k = 10`` and ``20``, or
    ``20`` and ``50`` above 50 features: two scales) give a linear discriminant
    analysis whose unit-norm scalings are ``r`` bases. When a local LDA has fewer
    than ``r`` directions (rank-deficient neighbourhoods), it gives
    the ones it has and the basis is shorter, with a warning.

    Parameters
    ----------
    X : ndarray of shape (n_points, n_features)
    y : ndarray of shape (n_points,)
    n_basis : int
    random_state : RandomState

    Returns
    -------
    basis : ndarray of shape (≤ n_basis, n_features)
    """
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    labels, y_codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_classes, d = labels.shape[0], X.shape[1]
    r = min(n_classes - 1, d)
    n_clusters = int(np.ceil(n_basis / (2 * r)))
    centres = KMeans(n_clusters=n_clusters, n_init=10, algorithm="elkan",
                     random_state=random_state).fit(X).cluster_centers_
    scales = (20, 50) if d > 50 else (10, 20)
    neighbours = []
    for c in range(n_classes):
        members = np.flatnonzero(y_codes == c)
        k = min(counts[c], scales[1])
        nn = NearestNeighbors(n_neighbors=k).fit(X[members])
        neighbours.append(members[nn.kneighbors(centres, return_distance=False)])
    found = []
    for scale in scales:
        for i in range(n_clusters):
            idx = np.concatenate([nb[i, :min(scale, nb.shape[1])]
                                  for nb in neighbours])
            sc = lda_scalings(X[idx], y_codes[idx])[:, :r].T
            norms = np.linalg.norm(sc, axis=1)
            found.append(sc[norms > 0] / norms[norms > 0, None])
    basis = np.concatenate(found)[:n_basis]
    if basis.shape[0] < n_basis:
        warnings.warn(f"The local discriminant analyses gave {basis.shape[0]} bases, "
                      f"fewer than n_basis={n_basis} (the data or its neighbourhoods "
                      "are rank-deficient); using those.", UserWarning, stacklevel=3)
    return basis


def lda_scalings(X, y, tol=1e-4):
    """The ``scalings_`` of scikit-learn's ``LinearDiscriminantAnalysis`` (SVD
    solver, class-frequency priors), without its per-fit validation: the LDA bases
    take one per region and scale, on a few hundred points each.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of int of shape (n_samples,)
        Class codes.
    tol : float, default=1e-4
        scikit-learn's rank threshold on singular values.

    Returns
    -------
    scalings : ndarray of shape (n_features, rank)
        Discriminant directions (columns), up to the sign of each.
    """
    from scipy.linalg import svd

    _, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    n, k = X.shape[0], counts.shape[0]
    means = np.zeros((k, X.shape[1]))
    np.add.at(means, codes, X)
    means /= counts[:, None]
    Xc = X - means[codes]
    std = Xc.std(axis=0)
    std[std == 0] = 1.0
    _, S, Vt = svd(np.sqrt(1.0 / n) * (Xc / std), full_matrices=False)
    rank = int(np.sum(S > tol))
    scalings = (Vt[:rank] / std).T / S[:rank]
    priors = counts / n
    xbar = priors @ means
    fac = 1.0 if k == 1 else 1.0 / (k - 1)
    between = (np.sqrt(n * priors * fac) * (means - xbar).T).T @ scalings
    _, S, Vt = svd(between, full_matrices=False)
    rank = int(np.sum(S > tol * S[0])) if S.size else 0
    return scalings @ Vt.T[:, :rank]
