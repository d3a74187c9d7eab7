"""The contrastive (siamese, DrLIM) loss of a linear map and its L-BFGS solve.

With ``d = ‖L δ‖`` for the difference ``δ = x − x'`` of a pair, the loss of
Hadsell, Chopra & LeCun (2006) is ``d²`` for a similar pair and
``max(0, margin − d)²`` for a dissimilar one; we minimise its mean over the pairs

    f(L) = (1/m) [ Σ_S ‖L δ‖² + Σ_D max(0, margin − ‖L δ‖)² ].

(The paper's factors ½ only scale ``f``.) The gradient is a weighted sum of outer
products, written as one matrix product: ``∇f = (2/m) (w ⊙ Z)ᵀ Δ`` with
``Z = Δ Lᵀ`` the mapped differences and ``w = 1`` on similar pairs,
``w = −(margin − d)/d`` on dissimilar pairs inside the margin, 0 elsewhere.

The kinks: at ``d = margin`` the square of the hinge is differentiable (both
one-sided derivatives are 0). At ``d = 0`` a dissimilar pair's term
``(margin − ‖Lδ‖)²`` is a cone in ``L`` (duplicate points, or ``δ`` in the null
space of ``L``): no gradient exists, and we use 0, the element of least norm of
its (Clarke) subdifferential, rather than a NaN from ``0/0``.

In ``M = LᵀL`` the objective is convex (``δᵀMδ`` is linear in ``M``,
``margin − sqrt(δᵀMδ)`` convex, and the square of its positive part convex). With
``n_components = n_features`` every local minimum of ``f(L)`` is then global
(``L ↦ LᵀL`` is onto the PSD cone and open at full rank), and the tests find the
optimum that :func:`mahal.reference.contrastive` computes with cvxpy.
"""

import numpy as np

from ._optimize import minimize_components


def contrastive_loss_grad(L, diffs, similar, margin):
    """The contrastive loss at ``L`` and its gradient.

    Parameters
    ----------
    L : ndarray of shape (n_components, n_features)
    diffs : ndarray of shape (n_pairs, n_features)
        ``x − x'`` for each pair.
    similar : ndarray of bool, shape (n_pairs,)
        True for a similar pair, False for a dissimilar one.
    margin : float

    Returns
    -------
    f : float
        ``(1/m) [Σ_S d² + Σ_D max(0, margin − d)²]``.
    grad : ndarray of shape (n_components, n_features)
    """
    m = diffs.shape[0]
    Z = diffs @ L.T
    d2 = np.einsum("ij,ij->i", Z, Z)
    d = np.sqrt(d2)
    gap = np.where(similar, 0.0, np.maximum(margin - d, 0.0))
    f = (d2[similar].sum() + (gap * gap).sum()) / m
    # w: 1 on similar pairs; −(margin − d)/d on dissimilar pairs inside the
    # margin with d > 0; 0 on the others (d = 0: the least-norm subgradient)
    inside = ~similar & (gap > 0.0) & (d > 0.0)
    w = similar.astype(np.float64)
    w[inside] = -gap[inside] / d[inside]
    grad = (2.0 / m) * ((Z * w[:, None]).T @ diffs)
    return float(f), grad


def contrastive_solve(diffs, similar, L0, *, margin, max_iter, tol, verbose=False,
                      callback=None, name="Contrastive"):
    """Minimise :func:`contrastive_loss_grad` over ``L`` by L-BFGS from ``L0``.

    Parameters
    ----------
    diffs : ndarray of shape (n_pairs, n_features)
    similar : ndarray of bool, shape (n_pairs,)
    L0 : ndarray of shape (n_components, n_features)
    margin, max_iter, tol, verbose, callback, name
        As the estimators' parameters (``tol`` is L-BFGS's relative decrease).

    Returns
    -------
    L : ndarray of shape (n_components, n_features)
    n_iter : int
    converged : bool
    loss : float
    """
    similar = np.asarray(similar, dtype=bool)

    def fun(L):
        return contrastive_loss_grad(L, diffs, similar, margin)

    return minimize_components(fun, L0, max_iter, tol, verbose=verbose, name=name,
                               callback=callback)
