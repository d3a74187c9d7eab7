"""LSML's objective and its solver: L-BFGS on ``L`` with ``M = Lᵀ L``.

The objective is metric-learn 0.7's (``_BaseLSML._total_loss``), the squared residual
of Liu et al. (ICDM 2012) with a LogDet prior term:

    f(M) = Σ_i w_i [d_ab > d_cd] (√d_ab − √d_cd)²  +  tr(M M0⁻¹) − log det M

over quadruplets ``(a, b, c, d)`` ("``a`` is closer to ``b`` than ``c`` to ``d``"),
``d_ab = (a − b)ᵀ M (a − b)``, weights ``w`` summing to one, ``M0`` the prior. It is
not convex (the square roots), so the solver is a local one; it starts from the
prior, as metric-learn does.

Design:

* **L-BFGS on L** (:func:`mahal._optimize.lbfgs`) instead of metric-learn's projected
  gradient descent in ``M``, which per iteration tries ten step sizes with an
  eigendecomposition and a loss evaluation each, and builds the gradient in a
  Python loop over the violated quadruplets. With ``M = LᵀL`` every ``M`` is PSD
  without a projection, and ``− log det M = −2 log |det L|`` is a barrier that keeps
  ``L`` invertible; since ``∇_L f = 2 L ∇_M f``, an invertible ``L`` is stationary
  exactly when ``M`` is, so the change of variables adds no stationary point.
* **Gradient as matrix products**: with ``Z = V Lᵀ`` (the differences mapped by
  ``L``), ``∇_L Σ_i c_i vᵢᵀ M vᵢ = 2 (Z ∘ c)ᵀ V``: O(m r²) per evaluation, no
  ``m × d × d`` tensor. ``L⁻¹`` (for ``log det`` and its gradient) is one LU of an
  ``r × r`` matrix.
* **A singular prior** (metric-learn raises, its issues 202 and 203): on the null
  space of ``M0`` the prior term ``tr(M M0⁺)`` does not grow while ``− log det M``
  falls without bound, so the objective has no minimiser there. The problem is solved
  in the range of ``M0`` (coordinates ``U``, its eigenvectors with a non-negligible
  eigenvalue) and ``M`` is zero on its null space, i.e. ``M = U M_r Uᵀ``; the caller
  warns. With a definite prior ``U`` is the full eigenbasis and nothing is lost.
* **Stopping**: metric-learn's rule, the Frobenius norm of ``∇_M f`` at most ``tol``
  (here ``∇_M f = ½ L⁻¹ ∇_L f``, computed from the ``L⁻¹`` already at hand), or the
  objective no longer decreasing (the line search fails, or a relative decrease
  below 1e-12).
* **Duplicate points**: a quadruplet with ``c = d`` has ``d_cd = 0`` and the
  derivative of ``√d_cd`` is infinite, but it multiplies ``v_cd v_cdᵀ = 0``: the
  term is dropped (metric-learn's gradient is NaN there).
"""

import time

import numpy as np

from ._optimize import MAX_ITER, FunctionLine, lbfgs

# Relative decrease per iteration below which the objective counts as stationary
# (the gradient test with ``tol`` usually stops first).
_FTOL = 1e-12


def lsml_loss_grad(L, vab, vcd, weights, prior_inv, return_metric_grad=False):
    """LSML's objective at ``M = Lᵀ L`` and its gradient with respect to ``L``.

    ``f = Σ_i w_i [d_ab > d_cd] (√d_ab − √d_cd)² + tr(M P) − log det M`` with
    ``P = M0⁻¹`` (metric-learn 0.7's ``_total_loss``; Liu et al., ICDM 2012).

    Parameters
    ----------
    L : ndarray of shape (r, r)
    vab, vcd : ndarray of shape (n_quadruplets, r)
        ``a − b`` and ``c − d`` of each quadruplet.
    weights : ndarray of shape (n_quadruplets,)
        Weight of each quadruplet (the estimators scale them to sum to one).
    prior_inv : ndarray of shape (r, r)
        ``P``, the inverse of the prior ``M0``.
    return_metric_grad : bool, default=False
        Also return ``∇_M f = ½ L⁻¹ ∇_L f`` (symmetric).

    Returns
    -------
    f : float
        ``inf`` when ``L`` is singular (then the gradients are zero).
    grad : ndarray of shape (r, r)
        ``∇_L f``.
    grad_M : ndarray of shape (r, r)
        Only with ``return_metric_grad``.
    """
    r = L.shape[0]
    try:
        L_inv = np.linalg.inv(L)
        sign, logabsdet = np.linalg.slogdet(L)
    except np.linalg.LinAlgError:
        sign = 0.0
    if sign == 0.0 or not np.isfinite(logabsdet):
        zero = np.zeros((r, r))
        return (np.inf, zero, zero) if return_metric_grad else (np.inf, zero)
    LP = L @ prior_inv
    f = float(np.sum(LP * L)) - 2.0 * logabsdet
    grad = 2.0 * LP - 2.0 * L_inv.T
    Zab, Zcd = vab @ L.T, vcd @ L.T
    dab = np.einsum("ij,ij->i", Zab, Zab)
    dcd = np.einsum("ij,ij->i", Zcd, Zcd)
    viol = np.flatnonzero(dab > dcd)
    if viol.size:
        w = weights[viol]
        sab, scd = np.sqrt(dab[viol]), np.sqrt(dcd[viol])
        residual = sab - scd
        f += float(w @ residual ** 2)
        # d/dM of w (√d_ab − √d_cd)² = w (1 − √d_cd/√d_ab) v_ab v_abᵀ
        #                                + w (1 − √d_ab/√d_cd) v_cd v_cdᵀ
        # (d_ab > d_cd ≥ 0, so √d_ab > 0; √d_cd = 0 only for v_cd = 0, where the
        # second term is 0 whatever its coefficient)
        c_ab = w * residual / sab
        c_cd = np.divide(-w * residual, scd, out=np.zeros_like(scd), where=scd > 0)
        grad += 2.0 * ((Zab[viol].T * c_ab) @ vab[viol]
                       + (Zcd[viol].T * c_cd) @ vcd[viol])
    if not return_metric_grad:
        return f, grad
    grad_M = 0.5 * (L_inv @ grad)
    return f, grad, 0.5 * (grad_M + grad_M.T)


def prior_range(M0):
    """Eigenvectors and eigenvalues of the prior on its range.

    Eigenvalues at most ``max λ · d · eps`` (numpy's ``matrix_rank`` tolerance)
    count as zero.

    Returns
    -------
    U : ndarray of shape (d, r)
    lam : ndarray of shape (r,)
    """
    lam, V = np.linalg.eigh(0.5 * (M0 + M0.T))
    tol = max(lam.max(), 0.0) * lam.shape[0] * np.finfo(np.float64).eps
    keep = lam > tol
    return V[:, keep], lam[keep]


class _Printer:
    def __init__(self, name, verbose):
        self.name, self.verbose, self.t0 = name, verbose, time.perf_counter()
        if verbose:
            header = f"{'Iteration':>10} {'Objective':>20} {'|grad_M|':>12} {'Time(s)':>10}"
            print(f"[{name}]\n[{name}] {header}\n[{name}] {'-' * len(header)}",
                  flush=True)

    def __call__(self, it, f, gnorm):
        if self.verbose:
            print(f"[{self.name}] {it:>10d} {f:>20.6e} {gnorm:>12.4e} "
                  f"{time.perf_counter() - self.t0:>10.2f}", flush=True)


def lsml_solve(vab, vcd, weights, M0, *, max_iter, tol, verbose=False, name="LSML"):
    """Minimise LSML's objective from the prior ``M0``.

    Parameters
    ----------
    vab, vcd : ndarray of shape (n_quadruplets, d)
        ``a − b`` and ``c − d`` of each quadruplet.
    weights : ndarray of shape (n_quadruplets,)
        Non-negative, summing to one.
    M0 : ndarray of shape (d, d)
        The prior (PSD); the problem is solved on its range (module docstring).
    max_iter : int
        L-BFGS iterations.
    tol : float
        Stop when ``‖∇_M f‖_F ≤ tol``.
    verbose : bool
        Print one line per iteration.
    name : str
        Prefix of the verbose output.

    Returns
    -------
    L : ndarray of shape (d, d)
        Components ``G`` with ``M = Gᵀ G``; rows beyond the rank of ``M0`` are zero.
    n_iter : int
    converged : bool
        False when ``max_iter`` was reached first.
    info : dict
        ``objective`` (final value), ``grad_norm`` (``‖∇_M f‖_F``), ``rank`` (of
        the prior: the dimension solved in).
    """
    d = M0.shape[0]
    U, lam = prior_range(M0)
    r = lam.shape[0]
    vab_r, vcd_r = vab @ U, vcd @ U
    prior_inv = np.diag(1.0 / lam)
    last = {}

    def fun(x):
        f, g, gM = lsml_loss_grad(x.reshape(r, r), vab_r, vcd_r, weights, prior_inv,
                                  return_metric_grad=True)
        last["gnorm"] = float(np.linalg.norm(gM))
        return f, g

    printer = _Printer(name, verbose)
    L0 = np.diag(np.sqrt(lam))
    f0, _ = fun(L0.ravel())
    state = {"x": L0.ravel().copy(), "f": f0, "gnorm": last["gnorm"], "nit": 0,
             "stopped": last["gnorm"] <= tol}
    printer(0, f0, last["gnorm"])

    def callback(nit, f, x):
        # the oracle's last evaluation is at the accepted point ``x``
        state.update(x=x.copy(), f=f, gnorm=last["gnorm"], nit=nit)
        printer(nit, f, last["gnorm"])
        if last["gnorm"] <= tol:
            state["stopped"] = True
            raise StopIteration

    status = None
    oracle = FunctionLine(fun)
    # L-BFGS's own steps in NumPy: the evaluations run in NumPy, so a fit never
    # loads numba (see mahal._optimize)
    oracle.numpy_steps = True
    if not state["stopped"]:
        try:
            status = lbfgs(oracle, L0.ravel(), max_iter, ftol=_FTOL, gtol=0.0,
                           callback=callback).status
        except StopIteration:
            pass
    converged = state["stopped"] or status != MAX_ITER
    L = np.zeros((d, d))
    L[:r] = state["x"].reshape(r, r) @ U.T
    return L, state["nit"], converged, {"objective": state["f"],
                                        "grad_norm": state["gnorm"], "rank": r}
