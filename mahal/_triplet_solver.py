"""The triplet loss (FaceNet, Schroff, Kalenichenko & Philbin 2015) of a linear map.

With ``d²(x, x') = ‖L(x − x')‖²`` the loss of a triplet (anchor, positive,
negative) is the hinge ``[d²(a, p) − d²(a, n) + margin]_+``.

Fixed triplets (:class:`mahal.TripletMargin`)
    The mean hinge over the triplets, minimised by L-BFGS on ``L``
    (:func:`triplet_loss_grad`, :func:`triplet_solve`); the gradient
    ``(2/m) Σ_active L(δ_ap δ_apᵀ − δ_an δ_anᵀ)`` is two matrix products. The
    objective is convex in ``M = LᵀL`` (a hinge of affine functions):
    :func:`mahal.reference.triplet_margin` gives its optimum.

Labelled points (:class:`mahal.TripletMargin_Supervised`)
    Online mining (:func:`triplet_sgd`): mini-batches of ``P`` classes × ``K``
    points (:class:`PKSampler`); in each, the squared distances in the current
    space, the triplets a rule selects and the loss are computed by the numba
    kernels of :mod:`mahal._triplet_kernels` (by their NumPy twins in
    :mod:`mahal._triplet_small` for a small fit), and ``L`` takes an Adam step
    (Kingma & Ba 2015) on the batch loss, the mean hinge over the rule's units
    (:func:`batch_loss_grad`). Adam because the batch gradient's scale shrinks as
    fewer triplets stay active, which a plain SGD step would have to follow by
    hand. The step size follows scikit-learn's ``MLPClassifier``
    ``learning_rate='adaptive'``: it is divided by 5 each time two epochs in a row
    fail to lower the epoch's mean batch loss by ``tol`` (relative) below the best
    so far; the third time that happens the fit has converged (as it has when an
    epoch's loss is 0). An epoch is ``ceil(n / (P K))`` batches. All randomness (batches) comes
    from one ``RandomState``, and the kernels are sequential, so a seed fixes the
    result.
"""

import time

import numpy as np

from ._optimize import minimize_components
from ._triplet_small import mined_hinge, use_numpy


MINING = {"all": 0, "hard": 1, "semihard": 2}  # the kernels' MINE_* codes
_PATIENCE = 2        # epochs without progress before the step is divided
_STEP_DIVISOR = 5.0
_MAX_DIVISIONS = 3   # converged after this many divisions
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8  # Adam's defaults


# ---------------------------------------------------------------------------
# Fixed triplets

def triplet_loss_grad(L, ap, an, margin):
    """Mean triplet hinge over fixed triplets at ``L``, and its gradient.

    Parameters
    ----------
    L : ndarray of shape (n_components, n_features)
    ap, an : ndarray of shape (n_triplets, n_features)
        ``anchor − positive`` and ``anchor − negative``.
    margin : float

    Returns
    -------
    f : float
        ``(1/m) Σ [‖L ap‖² − ‖L an‖² + margin]_+``.
    grad : ndarray of shape (n_components, n_features)
        A subgradient (0 for the hinges exactly at their kink).
    """
    m = ap.shape[0]
    Zp, Zn = ap @ L.T, an @ L.T
    h = np.einsum("ij,ij->i", Zp, Zp) - np.einsum("ij,ij->i", Zn, Zn) + margin
    active = h > 0.0
    grad = (2.0 / m) * (Zp[active].T @ ap[active] - Zn[active].T @ an[active])
    return float(h[active].sum() / m), grad


def triplet_solve(ap, an, L0, *, margin, max_iter, tol, verbose=False, callback=None,
                  name="TripletMargin"):
    """Minimise :func:`triplet_loss_grad` by L-BFGS from ``L0``.

    The hinge is piecewise quadratic: the relative decrease ``tol`` is measured
    over a window of 5 iterations (:func:`mahal._optimize.lbfgs`), so that one
    step caught on a kink does not stop the solve.

    Returns
    -------
    L : ndarray of shape (n_components, n_features)
    n_iter : int
    converged : bool
    loss : float
    """
    def fun(L):
        return triplet_loss_grad(L, ap, an, margin)

    return minimize_components(fun, L0, max_iter, tol, verbose=verbose, name=name,
                               callback=callback, window=5)


# ---------------------------------------------------------------------------
# Online mining

def batch_loss_grad(L, Xb, codes, margin, mode, in_numpy=False):
    """The loss of one mini-batch under a mining rule, and its gradient.

    Parameters
    ----------
    L : ndarray of shape (n_components, n_features)
    Xb : ndarray of shape (B, n_features)
    codes : ndarray of int64, shape (B,)
        Classes of the batch's points.
    margin : float
    mode : int
        A value of :data:`MINING`.
    in_numpy : bool, default=False
        Mine in NumPy rather than in the numba kernels (same triplets; see
        :mod:`mahal._triplet_small`).

    Returns
    -------
    f : float
        ``(1/U) Σ_selected [d²(a,p) − d²(a,n) + margin]_+`` over the triplets the
        rule selects at ``L`` (``U``: its units, see :mod:`mahal._triplet_kernels`).
    grad : ndarray of shape (n_components, n_features)
        Its gradient with the selection held fixed (the selection is piecewise
        constant in ``L``).
    n_active : int
        Selected triplets with a positive hinge.
    """
    Z = Xb @ L.T
    total, n_active, C, n_units = mined_hinge(Z, codes, margin, mode, in_numpy)
    if n_units == 0:
        return 0.0, np.zeros_like(L), 0
    return total / n_units, (2.0 / n_units) * ((C @ Z).T @ Xb), int(n_active)


class PKSampler:
    """Mini-batches of ``P`` classes × ``K`` points.

    Each batch draws ``P`` distinct classes uniformly; each class hands out its
    points in a random order, ``K`` at a time (all of them if it has fewer), and is
    shuffled again when it runs out, so an epoch of ``ceil(n / (P K))`` batches sees
    the points of the drawn classes about once each.

    Parameters
    ----------
    codes : ndarray of int, shape (n_samples,)
        Class codes ``0 .. C−1``; every class has at least two points.
    P, K : int
    rng : numpy.random.RandomState
    """

    def __init__(self, codes, P, K, rng):
        self.rng = rng
        self.P, self.K = P, K
        order = np.argsort(codes, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(codes))])
        self.members = [rng.permutation(order[bounds[c]:bounds[c + 1]])
                        for c in range(bounds.shape[0] - 1)]
        self.cursor = [0] * len(self.members)

    def _take(self, c):
        members, start = self.members[c], self.cursor[c]
        k = min(self.K, members.shape[0])
        if start + k > members.shape[0]:
            members = self.members[c] = self.rng.permutation(members)
            start = 0
        self.cursor[c] = start + k
        return members[start:start + k]

    def batch(self):
        """Indices of one batch's points, and their class codes."""
        classes = self.rng.choice(len(self.members), self.P, replace=False)
        parts = [self._take(c) for c in classes]
        idx = np.concatenate(parts)
        codes = np.repeat(classes.astype(np.int64), [p.shape[0] for p in parts])
        return idx, codes


def triplet_sgd(X, codes, L0, *, margin, mode, classes_per_batch, samples_per_class,
                learning_rate, max_iter, tol, rng, verbose=False, callback=None,
                name="TripletMargin_Supervised"):
    """Minimise the mined triplet loss by Adam over P × K mini-batches.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    codes : ndarray of int, shape (n_samples,)
        Class codes; every class has at least two points.
    L0 : ndarray of shape (n_components, n_features)
    margin : float
    mode : int
        A value of :data:`MINING`.
    classes_per_batch, samples_per_class : int
        ``P`` and ``K``.
    learning_rate : float
        Adam's initial step.
    max_iter : int
        Maximum number of epochs.
    tol : float
        Relative progress of the epoch loss below which the step is divided.
    rng : numpy.random.RandomState
    verbose : bool
    callback : callable or None
        ``callback(L, n_iter)`` after every epoch.
    name : str

    Returns
    -------
    L : ndarray of shape (n_components, n_features)
    n_iter : int
        Epochs.
    converged : bool
    info : dict
        ``'losses'``: the mean batch loss of every epoch; ``'n_steps'``: Adam steps.
    """
    n = X.shape[0]
    L = np.array(L0, dtype=np.float64)
    m1 = np.zeros_like(L)
    m2 = np.zeros_like(L)
    sampler = PKSampler(np.asarray(codes, dtype=np.int64), classes_per_batch,
                        samples_per_class, rng)
    n_batches = -(-n // (classes_per_batch * samples_per_class))
    step = float(learning_rate)
    best = np.inf
    stalled = divisions = t = 0
    losses = []
    converged = False
    if verbose:
        header = "{:>10} {:>20} {:>10} {:>12} {:>10}".format(
            "Epoch", "Mean batch loss", "Step", "#Active", "Time(s)")
        print(f"[{name}]\n[{name}] {header}\n[{name}] {'-' * len(header)}")
    clock = time.perf_counter()
    epoch = 0
    while epoch < max_iter:
        epoch += 1
        total = 0.0
        active = 0
        for _ in range(n_batches):
            idx, batch_codes = sampler.batch()
            f, G, n_active = batch_loss_grad(L, X[idx], batch_codes, margin, mode,
                                             use_numpy(idx.shape[0]))
            total += f
            active += n_active
            t += 1
            m1 *= _BETA1
            m1 += (1.0 - _BETA1) * G
            m2 *= _BETA2
            m2 += (1.0 - _BETA2) * G * G
            corrected = step * np.sqrt(1.0 - _BETA2 ** t) / (1.0 - _BETA1 ** t)
            L -= corrected * m1 / (np.sqrt(m2) + _EPS)
        loss = total / n_batches
        losses.append(loss)
        if callback is not None:
            callback(L.copy(), epoch)
        if verbose:
            now = time.perf_counter()
            print("[{}] {:>10} {:>20.6e} {:>10.2e} {:>12,} {:>10.2f}".format(
                name, epoch, loss, step, active, now - clock), flush=True)
            clock = now
        if loss == 0.0:
            converged = True
            break
        if loss < best * (1.0 - tol):
            best, stalled = loss, 0
        else:
            best = min(best, loss)
            stalled += 1
            if stalled >= _PATIENCE:
                divisions += 1
                if divisions >= _MAX_DIVISIONS:
                    converged = True
                    break
                step /= _STEP_DIVISOR
                stalled = 0
    return L, epoch, converged, {"losses": losses, "n_steps": t}
