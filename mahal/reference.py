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


def _solve(prob, solver, what):
    """Solve a cvxpy problem (Clarabel if installed, else SCS, unless ``solver``
    names one); an error naming ``what`` if no optimum was found."""
    cp = _cvxpy()
    if solver is None:
        solver = "CLARABEL" if "CLARABEL" in cp.installed_solvers() else "SCS"
    prob.solve(solver=solver)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve {what}: status {prob.status}.")
    return float(prob.value)


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
    value = _solve(prob, solver, "the LMNN SDP")
    return 0.5 * (M.value + M.value.T), value


def lmnn_multi_metric_objective(Ms, X, y, target_neighbors, mu=0.5):
    """The multiple-metric LMNN objective (plain numpy, all triplets explicit).

    ``(1 − μ) Σ_{i, j(i)} d_{y_i}(x_i, x_j) + μ Σ_{i, j(i), l: y_l ≠ y_i}
    [1 + d_{y_i}(x_i, x_j) − d_{y_l}(x_i, x_l)]_+`` with ``d_c`` the squared
    distance in class ``c``'s metric ``M_c`` (Weinberger & Saul 2009, section 5).

    Parameters
    ----------
    Ms : array-like of shape (n_classes, d, d)
        One metric per class, in the order of the sorted labels.
    X : array-like of shape (n, d)
    y : array-like of shape (n,)
    target_neighbors : array-like of shape (n, k), int (−1 = none)
    mu : float in (0, 1), default=0.5

    Returns
    -------
    objective : float
    """
    X = np.asarray(X, dtype=np.float64)
    Ms = np.asarray(Ms, dtype=np.float64)
    _, yc = np.unique(y, return_inverse=True)
    tn = np.asarray(target_neighbors)
    i, j = np.nonzero(tn >= 0)
    j = tn[i, j]
    dij = X[i] - X[j]
    pull = np.einsum("pa,pab,pb->", dij, Ms[yc[i]], dij)
    t = lmnn_triplets(yc, tn)
    if t.shape[0] == 0:
        return float((1 - mu) * pull)
    a = X[t[:, 0]] - X[t[:, 1]]
    b = X[t[:, 0]] - X[t[:, 2]]
    h = (1 + np.einsum("pa,pab,pb->p", a, Ms[yc[t[:, 0]]], a)
         - np.einsum("pa,pab,pb->p", b, Ms[yc[t[:, 2]]], b))
    return float((1 - mu) * pull + mu * np.maximum(h, 0).sum())


def lmnn_multi_metric(X, y, target_neighbors, mu=0.5, solver=None):
    """Multiple-metric LMNN solved to optimality as an SDP (small problems only).

    As :func:`lmnn` with one PSD matrix ``M_c`` per class: a target pair's distance
    in its class's metric, an impostor pair's in the impostor's.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,)
    target_neighbors : array-like of shape (n, k), int (−1 = none)
    mu : float in (0, 1)
    solver : str, optional
        A cvxpy solver name (default: Clarabel if installed, else SCS).

    Returns
    -------
    Ms : ndarray of shape (n_classes, d, d)
    objective : float
    """
    cp = _cvxpy()
    X = np.asarray(X, dtype=np.float64)
    _, yc = np.unique(y, return_inverse=True)
    tn = np.asarray(target_neighbors)
    d, C = X.shape[1], int(yc.max()) + 1
    Ms = [cp.Variable((d, d), PSD=True) for _ in range(C)]
    vecs = cp.hstack([cp.vec(M, order="C") for M in Ms])  # (C d²,)
    i, jj = np.nonzero(tn >= 0)
    j = tn[i, jj]
    dij = X[i] - X[j]
    outer = lambda v: np.einsum("pi,pj->pij", v, v).reshape(v.shape[0], d * d)  # noqa: E731

    def in_metric(rows, classes):
        # rows of (n_rows, C d²): each row's outer product in its class's block
        out = np.zeros((rows.shape[0], C * d * d))
        for c in range(C):
            m = classes == c
            out[m, c * d * d:(c + 1) * d * d] = rows[m]
        return out

    pull = cp.sum(in_metric(outer(dij), yc[i]) @ vecs)
    t = lmnn_triplets(yc, tn)
    a = X[t[:, 0]] - X[t[:, 1]]
    b = X[t[:, 0]] - X[t[:, 2]]
    A = in_metric(outer(a), yc[t[:, 0]]) - in_metric(outer(b), yc[t[:, 2]])
    xi = cp.Variable(t.shape[0], nonneg=True)
    prob = cp.Problem(cp.Minimize((1 - mu) * pull + mu * cp.sum(xi)),
                      [xi >= 1 + A @ vecs])
    value = _solve(prob, solver, "the multiple-metric LMNN SDP")
    return np.array([0.5 * (M.value + M.value.T) for M in Ms]), value

# === end LMNN ===


# === RCA (owned by the RCA module's author) ===

def rca_objective(M, X, chunks, basis=None):
    """RCA's objective ``Σ_chunklets Σ_x d_M(x, m_chunklet) − N log det M``, in NumPy.

    A loop over the chunklets and their points, every term explicit. ``N`` counts
    every point with ``chunks ≥ 0``. With ``basis`` (orthonormal columns ``B``), ``M``
    must be ``B W Bᵀ`` and ``log det`` is that of ``W = Bᵀ M B`` (the problem on
    the subspace).

    Parameters
    ----------
    M : ndarray of shape (n_features, n_features)
    X : array-like of shape (n_samples, n_features)
    chunks : array-like of shape (n_samples,)
        Chunklet id of each point, −1 for none.
    basis : ndarray of shape (n_features, k), optional

    Returns
    -------
    objective : float
        ``inf`` when ``det W ≤ 0``.
    """
    X = np.asarray(X, dtype=float)
    chunks = np.asarray(chunks)
    value, n = 0.0, 0
    for c in np.unique(chunks[chunks >= 0]):
        pts = X[chunks == c]
        mean = pts.mean(axis=0)
        for x in pts:
            value += float((x - mean) @ M @ (x - mean))
            n += 1
    W = M if basis is None else basis.T @ M @ basis
    sign, logdet = np.linalg.slogdet(W)
    return value - n * logdet if sign > 0 else np.inf


def rca(X, chunks, basis=None, solver=None):
    """RCA (Bar-Hillel et al. 2005) solved by cvxpy.

    ``minimise_M Σ_chunklets Σ_x (x − m_c)ᵀ M (x − m_c) − N log det M``, ``M ≻ 0``;
    with ``basis`` (orthonormal columns ``B``, shape ``(d, k)``), over ``M = B W Bᵀ``,
    ``W ≻ 0`` (the problem on a subspace, bounded when the chunklets vary along
    every direction of it).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    chunks : array-like of shape (n_samples,)
        Chunklet id of each point, −1 for none.
    basis : ndarray of shape (n_features, k), optional
    solver : str, optional
        A cvxpy solver name (default Clarabel).

    Returns
    -------
    M : ndarray (n_features, n_features)
    objective : float
    """
    cp = _cvxpy()
    X = np.asarray(X, dtype=float)
    chunks = np.asarray(chunks)
    rows, n = [], 0
    for c in np.unique(chunks[chunks >= 0]):
        pts = X[chunks == c]
        rows.append(pts - pts.mean(axis=0))
        n += pts.shape[0]
    D = np.vstack(rows)
    B = np.eye(X.shape[1]) if basis is None else np.asarray(basis, dtype=float)
    DB = D @ B
    k = B.shape[1]
    W = cp.Variable((k, k), PSD=True)
    objective = cp.sum(cp.multiply(W, DB.T @ DB)) - n * cp.log_det(W)
    problem = cp.Problem(cp.Minimize(objective))
    problem.solve(solver=solver or cp.CLARABEL)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the problem: status "
                           f"{problem.status!r}.")
    Wv = 0.5 * (W.value + W.value.T)
    return B @ Wv @ B.T, problem.value

# === end RCA ===


# === Contrastive and TripletMargin (owned by their modules' author) ===

def _solve_siamese(cp, problem, solver):
    problem.solve(solver=solver or cp.CLARABEL)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the problem: status "
                           f"{problem.status!r}.")
    return problem.value


def contrastive(pairs, y, margin=1.0, solver=None):
    """The contrastive loss (Hadsell et al. 2006) minimised over ``M ⪰ 0`` by cvxpy.

    ``min_M (1/m) [Σ_S δᵀMδ + Σ_D max(0, margin − sqrt(δᵀMδ))²]``: ``δᵀMδ`` is
    affine in ``M``, ``margin − sqrt(·)`` convex, so the square of its positive part
    is convex and the problem is DCP. Its optimum is the one of
    :class:`mahal.Contrastive` with ``n_components = n_features`` (``M = LᵀL``).

    Parameters
    ----------
    pairs : array-like of shape (n_pairs, 2, n_features)
    y : array-like of shape (n_pairs,), values in {−1, +1}
    margin : float
    solver : str, optional
        A cvxpy solver name (default Clarabel).

    Returns
    -------
    M : ndarray of shape (n_features, n_features)
    objective : float
    """
    cp = _cvxpy()
    pairs = np.asarray(pairs, dtype=float)
    y = np.asarray(y)
    diffs = pairs[:, 0] - pairs[:, 1]
    d = diffs.shape[1]
    M = cp.Variable((d, d), PSD=True)
    sq = cp.sum(cp.multiply(diffs @ M, diffs), axis=1)  # δᵀMδ, affine in M
    similar = y == 1
    terms = []
    if similar.any():
        terms.append(cp.sum(sq[np.flatnonzero(similar)]))
    if (~similar).any():
        dis = sq[np.flatnonzero(~similar)]
        terms.append(cp.sum(cp.square(cp.pos(margin - cp.sqrt(dis)))))
    problem = cp.Problem(cp.Minimize(sum(terms) / diffs.shape[0]))
    value = _solve_siamese(cp, problem, solver)
    return M.value, float(value)


def contrastive_objective(M, pairs, y, margin=1.0):
    """The contrastive loss at ``M = LᵀL``, plain numpy, every term explicit.

    Parameters
    ----------
    M : ndarray of shape (n_features, n_features)
        A PSD matrix.
    pairs : array-like of shape (n_pairs, 2, n_features)
    y : array-like of shape (n_pairs,), values in {−1, +1}
    margin : float

    Returns
    -------
    objective : float
        ``(1/m) [Σ_S d² + Σ_D max(0, margin − d)²]``, ``d² = δᵀMδ``.
    """
    pairs = np.asarray(pairs, dtype=float)
    total = 0.0
    for (a, b), label in zip(pairs, np.asarray(y)):
        delta = a - b
        dist = np.sqrt(max(float(delta @ M @ delta), 0.0))
        total += dist ** 2 if label == 1 else max(0.0, margin - dist) ** 2
    return total / pairs.shape[0]


def triplet_margin(triplets, margin=1.0, solver=None):
    """The triplet loss (Schroff et al. 2015) on fixed triplets, minimised over
    ``M ⪰ 0`` by cvxpy: ``min_M (1/m) Σ max(0, δ_apᵀMδ_ap − δ_anᵀMδ_an + margin)``,
    a hinge of functions affine in ``M`` (convex; the optimum of
    :class:`mahal.TripletMargin` with ``n_components = n_features``).

    Parameters
    ----------
    triplets : array-like of shape (n_triplets, 3, n_features)
        (anchor, positive, negative).
    margin : float
    solver : str, optional

    Returns
    -------
    M : ndarray of shape (n_features, n_features)
    objective : float
    """
    cp = _cvxpy()
    t = np.asarray(triplets, dtype=float)
    ap, an = t[:, 0] - t[:, 1], t[:, 0] - t[:, 2]
    d = ap.shape[1]
    M = cp.Variable((d, d), PSD=True)
    sq_ap = cp.sum(cp.multiply(ap @ M, ap), axis=1)
    sq_an = cp.sum(cp.multiply(an @ M, an), axis=1)
    problem = cp.Problem(cp.Minimize(cp.sum(cp.pos(sq_ap - sq_an + margin))
                                     / t.shape[0]))
    value = _solve_siamese(cp, problem, solver)
    return M.value, float(value)

# === end Contrastive and TripletMargin ===



# === ITML (owned by the ITML module's author) ===

def itml(pairs, y, bounds, gamma=1.0, prior=None, solver=None):
    """ITML (Davis et al. 2007) solved to optimality by cvxpy.

    ``min_{M ⪰ 0, ξ > 0} tr(M M0⁻¹) − log det(M M0⁻¹) − d
    + γ Σ_c (ξ_c/ξ0_c − log(ξ_c/ξ0_c) − 1)`` subject to ``δ_cᵀ M δ_c ≤ ξ_c`` on
    similar pairs (``ξ0_c = u``) and ``≥ ξ_c`` on dissimilar ones (``ξ0_c = l``);
    ``−log det`` and ``−log`` are convex, the constraints linear in ``(M, ξ)``. With
    ``gamma=inf`` the slacks are fixed at ``ξ0`` (hard constraints).

    Parameters
    ----------
    pairs : array-like of shape (n_pairs, 2, n_features)
        The two points of each pair.
    y : array-like of shape (n_pairs,), values in {−1, +1}
        +1 for a similar pair, −1 for a dissimilar one.
    bounds : (float, float)
        ``(u, l)``.
    gamma : float, default=1.0
        Weight of the slack divergence.
    prior : ndarray of shape (n_features, n_features), optional
        ``M0`` (positive definite); default the identity.
    solver : str, optional
        A cvxpy solver name (default Clarabel).

    Returns
    -------
    M : ndarray (n_features, n_features)
    objective : float
        The objective at the optimum (cvxpy's value).
    """
    cp = _cvxpy()
    pairs = np.asarray(pairs, dtype=float)
    y = np.asarray(y)
    diffs = pairs[:, 0] - pairs[:, 1]
    d = diffs.shape[1]
    M0 = np.eye(d) if prior is None else np.asarray(prior, dtype=float)
    M0_inv = np.linalg.inv(M0)
    M0_inv = 0.5 * (M0_inv + M0_inv.T)
    logdet_M0 = np.linalg.slogdet(M0)[1]
    u, l = float(bounds[0]), float(bounds[1])
    xi0 = np.where(y == 1, u, l)
    M = cp.Variable((d, d), PSD=True)
    dist = cp.sum(cp.multiply(diffs @ M, diffs), axis=1)
    objective = cp.trace(M0_inv @ M) - cp.log_det(M) + logdet_M0 - d
    sim, dis = y == 1, y == -1
    if np.isinf(gamma):
        constraints = [dist[sim] <= xi0[sim], dist[dis] >= xi0[dis]]
    else:
        xi = cp.Variable(diffs.shape[0], pos=True)
        objective = objective + gamma * cp.sum(cp.multiply(xi, 1.0 / xi0) - cp.log(xi)
                                               + np.log(xi0) - 1.0)
        constraints = [dist[sim] <= xi[sim], dist[dis] >= xi[dis]]
    constraints = [c for c, k in zip(constraints, (sim, dis)) if k.any()]
    problem = cp.Problem(cp.Minimize(objective), constraints)
    problem.solve(solver=solver or cp.CLARABEL)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the problem: status "
                           f"{problem.status!r}.")
    Mv = 0.5 * (M.value + M.value.T)
    return Mv, float(problem.value)

# === end ITML ===



# === SDML (owned by the SDML module's author) ===

def sdml_matrix(pairs, y, prior_inv, balance_param):
    """``P = M0⁻¹ + η Σ_p y_p δ_p δ_pᵀ``, summed pair by pair (the definition).

    Parameters
    ----------
    pairs : array-like of shape (n_pairs, 2, n_features)
    y : array-like of shape (n_pairs,), values in {−1, +1}
    prior_inv : ndarray of shape (n_features, n_features)
        ``M0⁻¹``, the inverse of the prior metric.
    balance_param : float
        ``η``.

    Returns
    -------
    P : ndarray of shape (n_features, n_features)
    """
    pairs = np.asarray(pairs, dtype=float)
    P = np.array(prior_inv, dtype=float, copy=True)
    for (a, b), label in zip(pairs, np.asarray(y)):
        delta = a - b
        P += balance_param * label * np.outer(delta, delta)
    return P


def sdml_objective(M, P, sparsity_param):
    """``tr(M P) − log det M + λ Σ_{i≠j} |M_ij|``, every term explicit (``inf`` unless
    ``M`` is positive definite).

    Parameters
    ----------
    M : ndarray of shape (d, d)
    P : ndarray of shape (d, d)
        See :func:`sdml_matrix`.
    sparsity_param : float
        ``λ``.

    Returns
    -------
    value : float
    """
    M = np.asarray(M, dtype=float)
    eig = np.linalg.eigvalsh(0.5 * (M + M.T))
    if eig.min() <= 0:
        return np.inf
    d = M.shape[0]
    off = sum(abs(M[i, j]) for i in range(d) for j in range(d) if i != j)
    return float(np.trace(M @ P) - np.sum(np.log(eig)) + sparsity_param * off)


def sdml(P, sparsity_param, solver=None):
    """SDML (Qi et al. 2009) solved to optimality by cvxpy.

    ``min_{M ≻ 0} tr(M P) − log det M + λ Σ_{i≠j} |M_ij|`` (convex: a linear term,
    ``−log det`` and a norm). Bounded below when ``P ≻ 0``.

    Parameters
    ----------
    P : ndarray of shape (d, d)
        See :func:`sdml_matrix`.
    sparsity_param : float
        ``λ``.
    solver : str, optional
        A cvxpy solver name (default Clarabel).

    Returns
    -------
    M : ndarray of shape (d, d)
    objective : float
    """
    cp = _cvxpy()
    P = np.asarray(P, dtype=float)
    d = P.shape[0]
    off_diagonal = np.ones((d, d)) - np.eye(d)
    M = cp.Variable((d, d), symmetric=True)
    objective = (cp.trace(M @ P) - cp.log_det(M)
                 + sparsity_param * cp.sum(cp.abs(cp.multiply(off_diagonal, M))))
    problem = cp.Problem(cp.Minimize(objective))
    problem.solve(solver=solver or cp.CLARABEL)
    if problem.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy could not solve the problem: status "
                           f"{problem.status!r}.")
    return 0.5 * (M.value + M.value.T), problem.value

# === end SDML ===


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
    optimum = _solve(prob, solver, "the NCMML problem")
    return 0.5 * (M.value + M.value.T), optimum

# === end NCMML ===



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
