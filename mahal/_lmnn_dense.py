"""LMNN on small problems in plain NumPy: dense distances, no numba.

On a small problem (a few hundred points) a fit takes milliseconds, while the first
call of any numba function in a process costs far more: loading numba and its
cached machine code, or compiling it on a new machine. Below the bounds of
:func:`use_dense`, for a process's first such fits (:func:`in_budget`), the
solver therefore evaluates the objective of
:mod:`mahal._lmnn_solver` from the full ``n × n`` matrix of squared learned
distances, with NumPy alone, and target neighbours are chosen from each class's
full distance matrix, and the energies of energy-based classification are computed
from dense test-to-training distances; a small fit (or prediction) then never
imports numba. The bounds keep those
matrices to a few megabytes (the "never ``n × n``" rule is about memory, which
they bound), and are set so that such fits are about as fast as with the kernels.

Every evaluation is exact (all impostors are seen at every point), so there is no
candidate graph: the oracle's values are all "verified" in the sense of the
kernel path's impostor searches.
"""

import numpy as np

from ._lazy import NumpyBudget
from ._nearest import squared_distances, squared_norms

# Dense evaluation when n ≤ _MAX_N and the impostor terms (n² k per evaluation)
# and the distance products (n² r) stay below these counts. (A dense fit is slower
# than the kernels' once numba is loaded, by a few milliseconds on a hundred points
# and more as n² grows: these bounds keep it well below numba's start-up.)
_MAX_N = 500
_MAX_TRIPLETS = 1 << 20
_MAX_PRODUCT = 1 << 23
# Dense target neighbours while Σ_c m_c² d (the classes' difference arrays) stays
# below this.
_MAX_TARGET_ELEMS = 1 << 21
_TIE = 1e-10  # relative: distances this close are tied (as mahal._lmnn_search_kernels._TIE)
# A dense evaluation costs several times a kernel one (NumPy's per-call overhead),
# so the dense path is for a process's first small fits only: this many dense
# evaluations, about what loading numba's cached kernels costs.
_DENSE_EVALS = 500
_dense = NumpyBudget("mahal._lmnn_kernels", _DENSE_EVALS)  # (in evaluations)


def use_dense(n, k, r):
    """Whether an LMNN problem of ``n`` points, ``k`` target neighbours and ``r``
    components is evaluated densely (see the module docstring)."""
    return n <= _MAX_N and n * n * k <= _MAX_TRIPLETS and n * n * r <= _MAX_PRODUCT


def in_budget():
    """Whether this process still fits small problems densely (see
    :data:`_DENSE_EVALS`)."""
    return _dense.left() > 0


def select_target_neighbors(X, y, n_neighbors):
    """:func:`mahal._lmnn_neighbors.select_target_neighbors` from each class's full
    matrix of exact squared distances (ties: lower index first), or None when the
    classes are too large for that (see :data:`_MAX_TARGET_ELEMS`)."""
    classes, counts = np.unique(y, return_counts=True)
    if float(np.sum(counts.astype(np.float64) ** 2)) * X.shape[1] > _MAX_TARGET_ELEMS:
        return None
    n = X.shape[0]
    targets = np.full((n, n_neighbors), -1, dtype=np.int64)
    for c, m in zip(classes, counts):
        kc = min(n_neighbors, m - 1)
        if kc < 1:
            continue
        idx = np.flatnonzero(y == c)
        diff = X[idx][:, None, :] - X[idx][None, :, :]
        D = np.einsum("abt,abt->ab", diff, diff)
        np.fill_diagonal(D, np.finfo(np.float64).max)  # (itself: last)
        targets[idx, :kc] = idx[_rank_with_ties(D)[:, :kc]]
    return targets


def _rank_with_ties(D):
    """Column order of every row of ``D`` by increasing value, where values equal
    to within a relative ``_TIE`` (rounding: different summation orders of equal
    distances) are tied and the lower column comes first, as in the kernels."""
    m = D.shape[1]
    order = np.argsort(D, axis=1, kind="stable")
    val = np.take_along_axis(D, order, axis=1)
    # a tie group starts where the value rises by more than the tolerance
    rise = np.diff(val, axis=1) > _TIE * val[:, 1:]
    group = np.concatenate([np.zeros((m, 1), np.int64), np.cumsum(rise, axis=1)],
                           axis=1)
    key = group * m + order
    return np.take_along_axis(order, np.argsort(key, axis=1), axis=1)


class DenseProblem:
    """One LMNN problem, its loss and gradient from dense distances."""

    def __init__(self, X, y, targets, mu):
        self.Xc = np.ascontiguousarray(X - X.mean(axis=0), dtype=np.float64)
        self.n = self.Xc.shape[0]
        y = np.asarray(y)
        self.target_neighbors = np.ascontiguousarray(targets, dtype=np.int64)
        self.mu = float(mu)
        valid = self.target_neighbors >= 0
        self._rows, self._cols = np.nonzero(valid)
        self._targets = self.target_neighbors[valid]
        self._valid = valid
        self._row_index = np.arange(self.n)[:, None]
        self._col = np.arange(valid.shape[1])
        self._flat_valid = np.flatnonzero(valid)
        self._slots_r = None
        self._tn0 = np.maximum(self.target_neighbors, 0)
        # (n, n): −inf where l is in i's class (never its impostor), else 0
        self._same = np.where(y[:, None] == y[None, :], -np.inf, 0.0)

    def transform(self, L):
        return self.Xc @ L.T

    def _slots(self, r):
        """Entries of ``U.ravel()`` that the target pairs' terms go to (both ends),
        for ``r`` components."""
        if self._slots_r != r:
            ends = np.concatenate([self._rows, self._targets])
            self._target_slot_array = (ends[:, None] * r + np.arange(r)).ravel()
            self._slots_r = r
        return self._target_slot_array

    def weights(self, Z, smooth):
        """Loss at ``Z``, ``U`` (the gradient w.r.t. ``L`` is ``2 Uᵀ Xc``) and the
        number of active triplets (positive hinge argument)."""
        mu = self.mu
        valid = self._valid
        n, k = valid.shape
        G = Z @ Z.T
        norms = np.einsum("ij,ij->i", Z, Z)
        # squared distances d_ij to the targets, −inf where there is none
        d_target = norms[:, None] + norms[self._tn0] - 2.0 * G[self._row_index, self._tn0]
        np.maximum(d_target, 0.0, out=d_target)
        d_target[~valid] = -np.inf
        # the impostor pairs (i, l): other class, within i's largest margin
        # 1 + max_j d_ij, i.e. G_il > (‖z_i‖² + ‖z_l‖² − radius_i) / 2
        radius = 1.0 + d_target.max(axis=1)
        H = G - 0.5 * norms  # (the ‖z_l‖² / 2 of column l)
        H += self._same  # (−inf within a class)
        flat = np.flatnonzero(H > (0.5 * (norms - radius))[:, None])
        i, l = np.divmod(flat, n)
        self.n_pairs = flat.shape[0]
        d_impostor = np.maximum(norms[i] + norms[l] - 2.0 * G.ravel()[flat], 0.0)
        # hinge arguments of their triplets (i, j, l), one column per target
        T = (1.0 + d_target[i]) - d_impostor[:, None]
        active = T > 0.0
        n_active = int(np.count_nonzero(active))
        np.maximum(T, 0.0, out=T)
        if smooth > 0.0:
            # Huber: t − s/2 from s on, t² / (2 s) below; slope min(t / s, 1)
            slope = np.minimum(T, smooth) / smooth
            push = float(np.sum(np.where(T >= smooth, T - 0.5 * smooth,
                                         0.5 * T * T / smooth)))
        else:
            slope = active.astype(np.float64)
            push = float(T.sum())
        loss = (1.0 - mu) * float(d_target[valid].sum()) + mu * push
        # The loss is Σ W_ab d_ab over directed pairs at fixed slopes, so the
        # gradient w.r.t. Z is 2 U with U_a = Σ_b (W_ab + W_ba) (z_a − z_b):
        # target pairs weigh (1 − μ) + μ Σ_l g_ijl, impostor pairs −μ Σ_j g_ijl.
        r = Z.shape[1]
        # (products, not in-place: bincount of no weights is an int array)
        w_target = mu * np.bincount((i[:, None] * k + self._col).ravel(), slope.ravel(),
                                    minlength=n * k)[self._flat_valid] + (1.0 - mu)
        E = w_target[:, None] * (Z[self._rows] - Z[self._targets])
        U = np.zeros(n * r)
        U += np.bincount(self._slots(r), np.concatenate([E, -E]).ravel(),
                         minlength=n * r)
        E = (-mu * slope.sum(axis=1))[:, None] * (Z[i] - Z[l])
        slots = (np.concatenate([i, l])[:, None] * r + np.arange(r)).ravel()
        U += np.bincount(slots, np.concatenate([E, -E]).ravel(), minlength=n * r)
        U = U.reshape(n, r)
        return loss, U, n_active

    def grad(self, U):
        return 2.0 * (U.T @ self.Xc)


class DenseOracle:
    """Line oracle (:mod:`mahal._optimize`) over :class:`DenseProblem`, with the
    attributes :func:`mahal._lmnn_solver._lmnn_lbfgs` reads from the kernel path's
    oracle. Every value is exact, so every point counts as checked by a search."""

    numpy_steps = True  # (L-BFGS's own steps in NumPy too: see mahal._optimize)

    def __init__(self, problem, r, slack=0.15, max_period=16):
        self.problem = problem
        self.r = r
        self.smooth = 0.0
        self.low_precision = False
        self.current_slack = slack
        self.max_period = self.period = max_period
        self.n_evals = self.n_search = self.n_capped = self.n_missed = 0
        self.t_search = 0.0
        self.n_active = self.n_candidates = 0
        # (no candidate graph and no streaming: the whole distance matrix, bounded
        # by the size rule of use_dense)
        self.peak_candidates = self.n_streamed = 0
        self.run_start_f = None
        self.checked = None
        self.Z = self.ZP = self._last = None

    def new_run(self, exact_start=False):
        self.run_start_f = None

    def _eval(self, Z):
        self.n_evals += 1
        _dense.spend(1)
        return self.problem.weights(Z, self.smooth)

    def _settle(self, Z, evaluation):
        self.Z = Z
        f, U, act = evaluation
        self.n_active = act
        # ("candidates": the impostor pairs within the margins, all of them active)
        self.n_candidates = self.problem.n_pairs
        self.checked = (f, False)
        if self.run_start_f is None:
            self.run_start_f = f
        return f, self.problem.grad(U)

    def evaluate(self, L, force_search=False):
        Z = self.problem.transform(L)
        f, g = self._settle(Z, self._eval(Z))
        return f, g, False

    # line oracle (mahal._optimize)
    def start(self, x):
        f, g, _ = self.evaluate(x.reshape(self.r, -1))
        return f, g.ravel()

    def set_direction(self, p):
        self.ZP = self.problem.transform(p.reshape(self.r, -1))
        self._last = None

    def trial(self, alpha):
        Z = self.Z + alpha * self.ZP
        evaluation = self._eval(Z)
        self._last = alpha, Z, evaluation
        return evaluation[0], 2.0 * float(np.vdot(evaluation[1], self.ZP))

    def accept(self, alpha):
        if self._last is None or self._last[0] != alpha:
            self.trial(alpha)
        _, Z, evaluation = self._last
        self._last = None
        f, g = self._settle(Z, evaluation)
        return f, g.ravel()


def energy(training_side, Z_test, n_neighbors, mu):
    """:func:`mahal._lmnn_neighbors.lmnn_energy` from dense test-to-training
    distances (in blocks of test rows), or None when the training set is too large
    for that (more than ``_MAX_N`` points)."""
    Z, y, target_neighbors, target_dist, class_start = training_side
    n = Z.shape[0]
    if n > _MAX_N:
        return None
    C = class_start.shape[0] - 1
    valid = target_neighbors >= 0
    # (margins 1 + d_ij of the training triplets; −inf where there is no target)
    margin = np.where(valid, 1.0 + target_dist, -np.inf)
    onehot = np.zeros((n, C))
    onehot[np.arange(n), y] = 1.0
    norms = squared_norms(Z)
    E = np.empty((Z_test.shape[0], C))
    step = max(1, _MAX_TRIPLETS // (n * max(n_neighbors, target_neighbors.shape[1], 1)))
    for s in range(0, Z_test.shape[0], step):
        Zt = Z_test[s:s + step]
        D = squared_distances(Zt, Z, norms)
        # the test point as an impostor of training point i: Σ_j [1 + d_ij − D_ti]_+,
        # summed over the training points of the other classes
        push = np.maximum(margin[None, :, :] - D[:, :, None], 0.0).sum(axis=2)
        third = push.sum(axis=1)[:, None] - push @ onehot
        out = E[s:s + step]
        for c in range(C):
            a, b = class_start[c], class_start[c + 1]
            kc = min(n_neighbors, b - a)
            near = np.partition(D[:, a:b], kc - 1, axis=1)[:, :kc] if kc else D[:, :0]
            others = np.concatenate([D[:, :a], D[:, b:]], axis=1)
            # its own target neighbours (the kc nearest of class c) and impostors
            hinge = np.maximum(1.0 + near[:, :, None] - others[:, None, :], 0.0)
            out[:, c] = ((1.0 - mu) * near.sum(axis=1) + mu * hinge.sum(axis=(1, 2))
                         + mu * third[:, c])
    return E
