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

# === NCMML ===


def ncmml_objective(M, X, centroids, centroid_class, y):
    """The NCMML objective in ``M = LᵀL``, plain numpy, one point at a time.

    ``(1/n) Σ_i [log Σ_k exp(−½ d_M(x_i, μ_k)) − log Σ_{k: c_k = y_i}
    exp(−½ d_M(x_i, μ_k))]`` with ``d_M(x, μ) = (x − μ)ᵀ M (x − μ)`` (Mensink et al.,
    TPAMI 2013; several centroids per class sum their probabilities).

    Parameters
    ----------
    M : array-like of shape (d, d)
    X : array-like of shape (n, d)
    centroids : array-like of shape (K, d)
    centroid_class : array-like of shape (K,)
    y : array-like of shape (n,)

    Returns
    -------
    value : float
    """
    from scipy.special import logsumexp

    M, X, C = (np.asarray(a, dtype=np.float64) for a in (M, X, centroids))
    owner, y = np.asarray(centroid_class), np.asarray(y)
    total = 0.0
    for i in range(X.shape[0]):
        logits = np.array([-0.5 * (X[i] - c) @ M @ (X[i] - c) for c in C])
        total += logsumexp(logits) - logsumexp(logits[owner == y[i]])
    return total / X.shape[0]


def ncmml(X, y, solver=None):
    """Full-rank NCMML (one mean per class) solved to optimality in ``M``.

    In ``M = LᵀL`` the objective is convex: ``½ d_M(x_i, μ_{y_i})`` is linear in
    ``M`` and the log-sum-exp of linear functions is convex, so

        minimise (1/n) Σ_i [½ d_M(x_i, μ_{y_i}) + log Σ_c exp(−½ d_M(x_i, μ_c))]
        subject to M ⪰ 0

    is a conic problem (exponential and PSD cones). Its optimum is finite when the
    classes overlap; with separable classes it is approached as ``M`` grows without
    bound (the solver then reports an inaccurate or unbounded status).

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,)
    solver : str, optional
        A cvxpy solver name (default: Clarabel if installed, else SCS).

    Returns
    -------
    M : ndarray of shape (d, d)
    objective : float
    """
    cp = _cvxpy()
    X = np.asarray(X, dtype=np.float64)
    classes, y_enc = np.unique(np.asarray(y), return_inverse=True)
    means = np.array([X[y_enc == c].mean(axis=0) for c in range(classes.shape[0])])
    d = X.shape[1]
    M = cp.Variable((d, d), PSD=True)
    # d_M(x_i, μ_c) for every i, c: Σ_ab Δ_ia M_ab Δ_ib, affine in M
    columns = []
    for mu in means:
        delta = X - mu
        columns.append(cp.sum(cp.multiply(delta @ M, delta), axis=1))
    D = cp.vstack(columns).T                                     # (n, C)
    own = cp.sum(cp.multiply(D, np.eye(classes.shape[0])[y_enc]), axis=1)
    value = cp.sum(0.5 * own + cp.log_sum_exp(-0.5 * D, axis=1)) / X.shape[0]
    prob = cp.Problem(cp.Minimize(value))
    if solver is None:
        solver = "CLARABEL" if "CLARABEL" in cp.installed_solvers() else "SCS"
    prob.solve(solver=solver)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the NCMML problem: status "
                           f"{prob.status}.")
    Mv = 0.5 * (M.value + M.value.T)
    return Mv, float(prob.value)

# === end NCMML ===
