"""Reference solvers: each algorithm's objective handed to cvxpy, solved to optimality.

These are for tests and small problems (they build dense problems whose size grows with
the number of constraints), not user-facing solvers. They prove the fast solvers right:
the tests compare the fast solver's optimum with the one found here.

Needs the optional dependency cvxpy (``pip install mahal[reference]``).
"""

import numpy as np


def _cvxpy():
    try:
        import cvxpy as cp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("mahal.reference needs cvxpy: pip install 'mahal[reference]'"
                          ) from exc
    return cp


# === MMC (owned by the MMC module's author) ===

def _mmc_solve_cvxpy(cp, problem, solver):
    problem.solve(solver=solver or cp.CLARABEL)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the problem: status "
                           f"{problem.status!r}.")
    return problem.value


def mmc(pairs, y, diagonal=False, solver=None):
    """MMC (Xing et al. 2002) solved to optimality by cvxpy.

    ``maximise_A Σ_D sqrt(δᵀ A δ)  s.t.  Σ_S δᵀ A δ ≤ 1, A ⪰ 0`` with ``δ = x − x'``
    over dissimilar (``y = −1``) and similar (``y = +1``) pairs; with ``diagonal``,
    ``A = diag(a)``, ``a ≥ 0``. ``sqrt`` of an affine function of ``A`` is concave, so
    this is a DCP problem.

    Parameters
    ----------
    pairs : array-like of shape (n_pairs, 2, n_features)
        The two points of each pair.
    y : array-like of shape (n_pairs,), values in {−1, +1}
        +1 for a similar pair (in ``S``), −1 for a dissimilar one (in ``D``).
    diagonal : bool
        Restrict ``A`` to diagonal matrices (MMC's diagonal variant).
    solver : str, optional
        A cvxpy solver name (default Clarabel).

    Returns
    -------
    A : ndarray (n_features, n_features)
    objective : float
        ``Σ_D sqrt(δᵀ A δ)`` at the optimum.
    """
    cp = _cvxpy()
    pairs = np.asarray(pairs, dtype=float)
    y = np.asarray(y)
    diffs = pairs[:, 0] - pairs[:, 1]
    S, D = diffs[y == 1], diffs[y == -1]
    d = diffs.shape[1]
    if diagonal:
        a = cp.Variable(d, nonneg=True)
        objective = cp.sum(cp.sqrt((D ** 2) @ a))
        constraints = [((S ** 2).sum(axis=0)) @ a <= 1]
    else:
        A = cp.Variable((d, d), PSD=True)
        objective = cp.sum(cp.sqrt(cp.sum(cp.multiply(D @ A, D), axis=1)))
        constraints = [cp.sum(cp.multiply(A, S.T @ S)) <= 1]
    value = _mmc_solve_cvxpy(cp, cp.Problem(cp.Maximize(objective), constraints), solver)
    if diagonal:
        return np.diag(np.maximum(a.value, 0.0)), value
    return 0.5 * (A.value + A.value.T), value


def mmc_projection(A0, C, solver=None):
    """Frobenius projection of ``A0`` onto ``{A ⪰ 0, ⟨A, C⟩ ≤ 1}`` by cvxpy.

    Parameters
    ----------
    A0 : array-like of shape (d, d)
        The matrix to project.
    C : array-like of shape (d, d)
        The constraint's matrix (for MMC, ``Σ_S δδᵀ`` over the similar pairs).
    solver : str, optional
        A cvxpy solver name (default Clarabel).

    Returns
    -------
    P : ndarray (d, d)
        The nearest matrix of the set in Frobenius norm.
    """
    cp = _cvxpy()
    A0 = np.asarray(A0, dtype=float)
    P = cp.Variable(A0.shape, PSD=True)
    problem = cp.Problem(cp.Minimize(cp.norm(P - A0, "fro")),
                         [cp.sum(cp.multiply(P, np.asarray(C, dtype=float))) <= 1])
    _mmc_solve_cvxpy(cp, problem, solver)
    return 0.5 * (P.value + P.value.T)

# === end MMC ===


# === LMNN (owned by the LMNN module's author) ===


def lmnn_triplets(y, target_neighbors):
    """All LMNN triplets ``(i, j, l)``: ``j`` a target neighbour of ``i``, ``y_l ≠ y_i``.

    Parameters
    ----------
    y : array-like of shape (n,)
        Class labels.
    target_neighbors : array-like of shape (n, k), int (−1 = none)
        Row ``i`` holds the indices of ``i``'s target neighbours.

    Returns
    -------
    triplets : ndarray of shape (n_triplets, 3), int64
        Rows ``(i, j, l)``, one per target neighbour ``j`` of ``i`` and point ``l`` of
        another class.
    """
    y = np.asarray(y)
    tn = np.asarray(target_neighbors)
    out = []
    for i in range(y.shape[0]):
        others = np.flatnonzero(y != y[i])
        for j in tn[i]:
            if j < 0:
                continue
            out.append(np.column_stack([np.full(others.shape[0], i),
                                        np.full(others.shape[0], j), others]))
    if not out:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(out).astype(np.int64)


def lmnn_objective(M, X, y, target_neighbors, mu=0.5):
    """The LMNN objective in ``M`` (plain numpy, all triplets explicit).

    ``(1 − μ) Σ_{i, j(i)} d_M(x_i, x_j) + μ Σ_{i, j(i), l: y_l ≠ y_i}
    [1 + d_M(x_i, x_j) − d_M(x_i, x_l)]_+`` with squared distances ``d_M``.

    Parameters
    ----------
    M : array-like of shape (d, d)
        The metric (``M = LᵀL`` for a map ``L``).
    X : array-like of shape (n, d)
        The training points.
    y : array-like of shape (n,)
        Class labels.
    target_neighbors : array-like of shape (n, k), int (−1 = none)
        Row ``i`` holds the indices of ``i``'s target neighbours.
    mu : float in (0, 1), default=0.5
        Weight of the push (impostor) term.

    Returns
    -------
    objective : float
        The objective's value at ``M``.
    """
    X = np.asarray(X, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    tn = np.asarray(target_neighbors)
    i, j = np.nonzero(tn >= 0)
    j = tn[i, j]
    dij = X[i] - X[j]
    pull = np.einsum("pa,ab,pb->", dij, M, dij)
    t = lmnn_triplets(y, tn)
    if t.shape[0] == 0:
        return float((1 - mu) * pull)
    a = X[t[:, 0]] - X[t[:, 1]]
    b = X[t[:, 0]] - X[t[:, 2]]
    h = 1 + np.einsum("pa,ab,pb->p", a, M, a) - np.einsum("pa,ab,pb->p", b, M, b)
    return float((1 - mu) * pull + mu * np.maximum(h, 0).sum())


def lmnn(X, y, target_neighbors, mu=0.5, solver=None):
    """LMNN solved to optimality as an SDP in ``M`` (small problems only).

    minimise ``(1 − μ) Σ_{i, j(i)} d_M(i, j) + μ Σ ξ_ijl``
    subject to ``ξ_ijl ≥ 1 + d_M(i, j) − d_M(i, l)``, ``ξ ≥ 0``, ``M ⪰ 0``,
    with one slack ``ξ_ijl`` per triplet (every ``l`` of another class: all impostor
    triplets explicit) and ``d_M(a, b) = (x_a − x_b)ᵀ M (x_a − x_b)``.

    Parameters
    ----------
    X : array-like of shape (n, d)
        The training points.
    y : array-like of shape (n,)
        Class labels.
    target_neighbors : array-like of shape (n, k), int (−1 = none)
        Row ``i`` holds the indices of ``i``'s target neighbours.
    mu : float in (0, 1)
        Weight of the push (slack) term.
    solver : str, optional
        A cvxpy solver name (default: Clarabel if installed, else SCS).

    Returns
    -------
    M : ndarray of shape (d, d)
        The optimal PSD matrix.
    objective : float
        The optimal value.
    """
    cp = _cvxpy()
    X = np.asarray(X, dtype=np.float64)
    tn = np.asarray(target_neighbors)
    d = X.shape[1]
    i, jj = np.nonzero(tn >= 0)
    j = tn[i, jj]
    dij = X[i] - X[j]
    t = lmnn_triplets(y, tn)
    M = cp.Variable((d, d), PSD=True)
    # Σ d_M over pairs = <M, Σ δ δᵀ>: linear in M.
    pull = cp.trace(M @ (dij.T @ dij))
    # Each triplet's margin 1 + <M, a aᵀ − b bᵀ>, written with the vectorised M.
    a = X[t[:, 0]] - X[t[:, 1]]
    b = X[t[:, 0]] - X[t[:, 2]]
    C = (np.einsum("pi,pj->pij", a, a) - np.einsum("pi,pj->pij", b, b)).reshape(
        t.shape[0], d * d)
    xi = cp.Variable(t.shape[0], nonneg=True)
    cons = [xi >= 1 + C @ cp.vec(M, order="C")]
    prob = cp.Problem(cp.Minimize((1 - mu) * pull + mu * cp.sum(xi)), cons)
    if solver is None:
        solver = "CLARABEL" if "CLARABEL" in cp.installed_solvers() else "SCS"
    prob.solve(solver=solver)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the LMNN SDP: status {prob.status}.")
    Mv = 0.5 * (M.value + M.value.T)
    return Mv, float(prob.value)

# === end LMNN ===


# === SCML (owned by the SCML module's author) ===


def scml_triplet_basis(basis, triplets):
    """The triplet-basis matrix ``a_tk = (b_kᵀ(x_t − x_t⁺))² − (b_kᵀ(x_t − x_t⁻))²``.

    Parameters
    ----------
    basis : array-like of shape (n_basis, n_features)
    triplets : array-like of shape (n_triplets, 3, n_features)

    Returns
    -------
    A : ndarray of shape (n_triplets, n_basis)
    """
    B = np.asarray(basis, dtype=np.float64)
    t = np.asarray(triplets, dtype=np.float64)
    return ((t[:, 0] - t[:, 1]) @ B.T) ** 2 - ((t[:, 0] - t[:, 2]) @ B.T) ** 2


def scml(basis, triplets, beta, solver=None):
    """SCML's weights (Shi, Bellet & Sha 2014) solved to optimality by cvxpy.

    The linear program ``min_{w ≥ 0, ξ ≥ 0} (1/T) Σ_t ξ_t + β Σ_k w_k`` subject to
    ``ξ_t ≥ 1 + a_tᵀ w`` (:func:`scml_triplet_basis`), i.e. the hinge objective
    ``(1/T) Σ_t [1 + d_M(x_t, x_t⁺) − d_M(x_t, x_t⁻)]_+ + β‖w‖₁`` with
    ``M = Σ_k w_k b_k b_kᵀ``.

    Parameters
    ----------
    basis : array-like of shape (n_basis, n_features)
    triplets : array-like of shape (n_triplets, 3, n_features)
    beta : float
    solver : str, optional
        A cvxpy solver name (default: HiGHS if installed, else Clarabel).

    Returns
    -------
    w : ndarray of shape (n_basis,)
    objective : float
    """
    cp = _cvxpy()
    A = scml_triplet_basis(basis, triplets)
    T, K = A.shape
    w = cp.Variable(K, nonneg=True)
    xi = cp.Variable(T, nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.sum(xi) / T + beta * cp.sum(w)),
                      [xi >= 1 + A @ w])
    if solver is None:
        solver = "HIGHS" if "HIGHS" in cp.installed_solvers() else "CLARABEL"
    prob.solve(solver=solver)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the SCML LP: status {prob.status}.")
    return np.maximum(w.value, 0.0), float(prob.value)

# === end SCML ===
