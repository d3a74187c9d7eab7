"""Solver of nearest class mean metric learning (NCMML, Mensink et al., TPAMI 2013).

The objective (:func:`ncmml_loss_grad`) is the mean negative log-likelihood of the
points' classes under a softmax over negative half squared distances to class
centroids in the learned space,

    f(L) = −(1/n) Σ_i log Σ_{k ∈ C(y_i)} p_ik,
    p_ik = exp(−½ ‖L(x_i − μ_k)‖²) / Σ_{k'} exp(−½ ‖L(x_i − μ_{k'})‖²),

with ``C(c)`` the centroids of class ``c``: one per class (NCMML, the class means),
several (NCMC, Mensink's nearest class multiple centroids, k-means centroids of each
class, fixed before the optimisation), or the support means of a sampled N-way K-shot
episode (the episodic variant: the linear prototypical-network loss, where each query
competes only with its own episode's prototypes).

All three are one batched function: ``E`` groups (episodes; one group for the batch
loss) of ``n`` points each and ``K`` centroids each. With ``Z = X Lᵀ`` and ``M = μ Lᵀ``
the distances cost ``O(E n K r)``; with ``W_ik = (q_ik − p_ik)/n_total`` (``q`` the
posterior of the centroids within the point's class) every row of ``W`` sums to zero,
so the gradient is

    ∇f = −(Zᵀ W) μ − (W M)ᵀ X + (Mᵀ diag(Wᵀ 1)) μ,

``O(E n (K r + r d))``: no ``d × d`` matrix and no ``n × d × d`` tensor. Along a
direction ``P`` the images ``X Pᵀ`` and ``μ Pᵀ`` are computed once per line search,
so a trial step costs ``O(E n K r)`` and never touches ``X``
(:class:`NCMMLLine`, a line oracle of :func:`mahal._optimize.lbfgs`).
"""

import time

import numpy as np

from ._optimize import CONVERGED, lbfgs


def _log_softmax_parts(Z, M, centroid_class, y):
    """Distances, softmax ``p`` and within-class posterior ``q`` (batched).

    Z : (E, n, r), M : (E, K, r), centroid_class : (E, K), y : (E, n).
    Returns ``(D, P, Q, loss_sum)`` with ``D`` the half squared distances.
    """
    zz = np.einsum("enr,enr->en", Z, Z)
    mm = np.einsum("ekr,ekr->ek", M, M)
    D = 0.5 * (zz[:, :, None] + mm[:, None, :]) - np.matmul(Z, M.transpose(0, 2, 1))
    np.maximum(D, 0.0, out=D)
    logits = -D
    shift = logits.max(axis=2, keepdims=True)
    expo = np.exp(logits - shift)
    total = expo.sum(axis=2, keepdims=True)
    P = expo / total
    own = centroid_class[:, None, :] == y[:, :, None]           # (E, n, K)
    own_expo = np.where(own, expo, 0.0)
    own_total = own_expo.sum(axis=2, keepdims=True)
    # (a point whose own centroids all underflow: its log-likelihood is computed
    # from the largest own logit, and q puts the weight there)
    bad = own_total[:, :, 0] <= 0.0
    if np.any(bad):
        own_logits = np.where(own, logits, -np.inf)
        own_max = own_logits.max(axis=2, keepdims=True)
        own_expo = np.where(own, np.exp(own_logits - own_max), 0.0)
        own_sum = own_expo.sum(axis=2, keepdims=True)
        log_own = own_max + np.log(own_sum)
        Q = own_expo / own_sum
    else:
        log_own = shift + np.log(own_total)
        Q = own_expo / own_total
    log_all = shift + np.log(total)
    loss_sum = float(np.sum(log_all - log_own))
    return D, P, Q, loss_sum


def ncmml_loss_grad(L, X, centroids, centroid_class, y):
    """The NCMML objective at ``L`` and its gradient w.r.t. ``L``.

    ``f(L) = −(1/N) Σ_e Σ_i log Σ_{k: c_ek = y_ei} p_eik`` with
    ``p_eik = softmax_k(−½ ‖L(x_ei − μ_ek)‖²)`` over the centroids of group ``e``
    (Mensink et al., TPAMI 2013, eq. (3)–(5), as a mean over the ``N = E n``
    points; several centroids per class sum their probabilities, their eq. (9)).

    Parameters
    ----------
    L : ndarray of shape (r, d)
    X : ndarray of shape (n, d) or (E, n, d)
        Points (one group, or ``E`` groups of ``n``: episodes' queries).
    centroids : ndarray of shape (K, d) or (E, K, d)
    centroid_class : ndarray of int of shape (K,) or (E, K)
        The class of each centroid.
    y : ndarray of int of shape (n,) or (E, n)
        The class of each point; every point's class has a centroid in its group.

    Returns
    -------
    f : float
    grad : ndarray of shape (r, d)
    """
    X, centroids, centroid_class, y = _as_groups(X, centroids, centroid_class, y)
    Z = np.matmul(X, L.T)
    M = np.matmul(centroids, L.T)
    _, P, Q, loss_sum = _log_softmax_parts(Z, M, centroid_class, y)
    n_total = y.size
    W = (Q - P) / n_total
    return loss_sum / n_total, _gradient(W, Z, M, X, centroids)


def _gradient(W, Z, M, X, centroids):
    """``−(Zᵀ W) μ − (W M)ᵀ X + (Mᵀ diag(Wᵀ1)) μ`` summed over the groups (rows of
    ``W`` sum to zero)."""
    v = W.sum(axis=1)                                            # (E, K)
    ZtW = np.matmul(Z.transpose(0, 2, 1), W)                     # (E, r, K)
    WM = np.matmul(W, M)                                         # (E, n, r)
    E, n, d = X.shape
    r = Z.shape[2]
    G = -np.einsum("erk,ekd->rd", ZtW - (M * v[:, :, None]).transpose(0, 2, 1),
                   centroids)
    G -= WM.reshape(E * n, r).T @ X.reshape(E * n, d)
    return G


def _as_groups(X, centroids, centroid_class, y):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 2:
        return (X[None], np.asarray(centroids, dtype=np.float64)[None],
                np.asarray(centroid_class)[None], np.asarray(y)[None])
    return (X, np.asarray(centroids, dtype=np.float64), np.asarray(centroid_class),
            np.asarray(y))


class NCMMLLine:
    """Line oracle of :func:`ncmml_loss_grad` for :func:`mahal._optimize.lbfgs`.

    A trial step ``L + αP`` moves the images by ``α X Pᵀ`` and ``α μ Pᵀ``, computed
    once per direction; its value and directional derivative cost ``O(E n K r)``.
    """

    # L-BFGS's own steps in NumPy (see mahal._optimize): the evaluations are NumPy,
    # so a fit never loads numba
    numpy_steps = True

    def __init__(self, X, centroids, centroid_class, y, shape):
        self.X, self.C, self.cc, self.y = _as_groups(X, centroids, centroid_class, y)
        self.shape = shape
        self.n_total = self.y.size
        self.n_evals = 0

    def _parts(self, Z, M):
        self.n_evals += 1
        _, P, Q, loss_sum = _log_softmax_parts(Z, M, self.cc, self.y)
        return loss_sum / self.n_total, (Q - P) / self.n_total

    def start(self, x):
        self.L = x.reshape(self.shape).copy()
        self.Z = np.matmul(self.X, self.L.T)
        self.M = np.matmul(self.C, self.L.T)
        f, W = self._parts(self.Z, self.M)
        return f, _gradient(W, self.Z, self.M, self.X, self.C).ravel()

    def set_direction(self, p):
        self.P = p.reshape(self.shape)
        self.ZP = np.matmul(self.X, self.P.T)
        self.MP = np.matmul(self.C, self.P.T)
        self.last = None

    def trial(self, alpha):
        Z = self.Z + alpha * self.ZP
        M = self.M + alpha * self.MP
        f, W = self._parts(Z, M)
        self.last = (alpha, f, W, Z, M)
        # d/dα of ½‖z_i − m_k‖² summed with weights W (rows of W sum to zero)
        v = W.sum(axis=1)
        cross = (np.matmul(Z, self.MP.transpose(0, 2, 1))
                 + np.matmul(self.ZP, M.transpose(0, 2, 1)))         # (E, n, K)
        dphi = -np.sum(W * cross) + np.sum(v * np.einsum("ekr,ekr->ek", M, self.MP))
        return f, float(dphi)

    def accept(self, alpha):
        if self.last is None or self.last[0] != alpha:
            self.trial(alpha)
        _, f, W, Z, M = self.last
        self.L = self.L + alpha * self.P
        self.Z, self.M = Z, M
        return f, _gradient(W, Z, M, self.X, self.C).ravel()


def ncmml_solve(X, centroids, centroid_class, y, L0, *, max_iter, tol, verbose=False,
                callback=None, name="NCMML"):
    """Minimise :func:`ncmml_loss_grad` over ``L`` with L-BFGS from ``L0``.

    Parameters
    ----------
    X, centroids, centroid_class, y
        As in :func:`ncmml_loss_grad`.
    L0 : ndarray of shape (r, d)
    max_iter : int
    tol : float
        Relative decrease of the objective per iteration at which to stop
        (scipy's ``ftol``).
    verbose : bool
    callback : callable, optional
        ``callback(transformation, n_iter)`` after every iteration.
    name : str
        For the verbose table.

    Returns
    -------
    L : ndarray of shape (r, d)
    n_iter : int
    converged : bool
    info : dict
        ``loss`` (final objective), ``n_evals``, ``time``.
    """
    shape = L0.shape
    oracle = NCMMLLine(X, centroids, centroid_class, y, shape)
    t0 = time.perf_counter()
    if verbose:
        print(f"[{name}]\n[{name}] {'Iteration':>10}{'Objective Value':>23}"
              f"{'Time(s)':>10}\n[{name}] {'-' * 43}")
    t_last = [t0]

    def observe(nit, f, x):
        if verbose:
            now = time.perf_counter()
            print(f"[{name}] {nit:>10d}{f:>23.6e}{now - t_last[0]:>10.2f}")
            t_last[0] = now
        if callback is not None:
            callback(x.reshape(shape).copy(), nit)

    res = lbfgs(oracle, L0.ravel(), max_iter=max_iter, ftol=tol, callback=observe)
    info = {"loss": res.fun, "n_evals": oracle.n_evals,
            "time": time.perf_counter() - t0}
    return res.x.reshape(shape), res.nit, res.status == CONVERGED, info
