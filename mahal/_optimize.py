"""L-BFGS over a line oracle (used by LMNN).

scipy's ``L-BFGS-B`` asks for the full value and gradient at every trial point of
its line search. Where the objective is a function of a linear image of the
parameters (LMNN: of ``Z = X Lᵀ``), a trial along a direction ``P`` is much cheaper
than that: ``Z + α X Pᵀ`` is an axpy, and the directional derivative is an inner
product in the image space. :func:`lbfgs` therefore talks to a *line oracle*:

``start(x) -> (f, g)``
    value and gradient at ``x``; ``x`` becomes the current point.
``set_direction(p)``
    the search direction from the current point.
``trial(alpha) -> (f, dphi)``
    value and directional derivative at ``current + alpha p``.
``accept(alpha) -> (f, g)``
    move to ``current + alpha p`` and return the value and the full gradient
    there (the oracle may change the function at this point, e.g. refresh a
    cache: the returned ``f`` is the one the next iteration starts from).

:class:`FunctionLine` adapts a plain ``fun(x) -> (f, g)``.

The iteration is the textbook one (Nocedal & Wright, *Numerical Optimization*,
algorithms 7.4/7.5 and the strong-Wolfe line search 3.5/3.6 with safeguarded cubic
interpolation). The two-loop recursion and the update of the memory are numba
kernels (:mod:`mahal._optimize_kernels`), so the per-iteration overhead is small
against scipy's ``setulb`` (docs/solver_notes.rst, "L-BFGS"); an oracle whose own
evaluations run in NumPy (attribute ``numpy_steps = True``: LMNN's small problems)
gets their NumPy twins instead, so that its fit never loads numba. The stopping rules are scipy's: ``ftol`` on the
relative decrease (optionally averaged over a window of iterations), ``gtol`` on the
largest gradient entry.
"""

import numpy as np
from ._lazy import lazy_module

kernels = lazy_module("mahal._optimize_kernels")  # (numba: on first use)

# status codes (as scipy's L-BFGS-B)
CONVERGED, MAX_ITER, LINE_SEARCH_FAILED = 0, 1, 2
# The correction pairs are stored in float32 when they would take this many bytes
# in float64: the two-loop recursion is then bound by memory bandwidth, not
# arithmetic (its sums stay float64); smaller memories stay float64, where the
# saving is a small share of a fit (measurements: docs/solver_notes.rst, "L-BFGS").
_F32_MEMORY = 1 << 23
# A failed line search along a quasi-Newton direction whose predicted decrease
# ``−gᵀp`` is below this share of the value (a sum's rounding error grows with its
# terms) ends the run as converged, not as a failure.
_ROUNDING = 1e4 * np.finfo(np.float64).eps


def _two_loop_np(g, S, Y, rho, head, count, gamma):
    """:func:`mahal._optimize_kernels._two_loop` in NumPy (for few parameters)."""
    m = S.shape[0]
    q = g.copy()
    alpha = np.empty(m)
    for c in range(count):
        i = (head - 1 - c) % m
        alpha[i] = a = rho[i] * float(S[i] @ q)
        q -= a * Y[i]
    q *= gamma
    for c in range(count - 1, -1, -1):
        i = (head - 1 - c) % m
        q += (alpha[i] - rho[i] * float(Y[i] @ q)) * S[i]
    q = -q
    return q, float(q @ g)


def _update_np(x, p, alpha, g, g_new, S, Y, rho, head):
    """:func:`mahal._optimize_kernels._update` in NumPy (for few parameters)."""
    s = (alpha * p).astype(S.dtype)
    y = (g_new - g).astype(S.dtype)
    s64, y64 = s.astype(np.float64), y.astype(np.float64)
    sy = float(s64 @ y64)
    yy = float(y64 @ y64)
    # (NaN if g_new holds one: never "converged")
    gmax = float(np.max(np.abs(g_new)))
    stored = sy > 1e-10 * yy
    if stored:
        S[head] = s
        Y[head] = y
        rho[head] = 1.0 / sy
    x += alpha * p
    return stored, (sy / yy if stored else 0.0), gmax


def _two_loop(g, S, Y, rho, head, count, gamma):
    """``(p, ⟨p, g⟩)`` with ``p = −H g`` for the L-BFGS inverse Hessian of the
    ``count`` newest pairs (circular buffers ``S``, ``Y`` of shape (m, N), newest at
    ``head − 1``): the numba kernel (:func:`_two_loop_np` is its NumPy twin)."""
    return kernels._two_loop(g, S, Y, rho, head, count, gamma)


def _update(x, p, alpha, g, g_new, S, Y, rho, head):
    """After a step ``alpha p`` from ``x`` (gradient ``g``, now ``g_new``): ``x +=
    alpha p``, and the pair ``(s, y) = (alpha p, g_new − g)`` written into slot
    ``head`` of the memory if its curvature ``sᵀy`` exceeds ``1e-10 yᵀy``.
    Returns ``(stored, gamma, max |g_new|)``, ``gamma = sᵀy / yᵀy``, with ``s``
    and ``y`` rounded to the memory's dtype: the numba kernel
    (:func:`_update_np` is its NumPy twin)."""
    return kernels._update(x, p, alpha, g, g_new, S, Y, rho, head)


def _cubic_min(a, fa, da, b, fb, db):
    """Minimiser of the cubic interpolating (a, fa, da), (b, fb, db), or None."""
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    if disc < 0.0:
        return None
    d2 = np.copysign(np.sqrt(disc), b - a)
    den = db - da + 2.0 * d2
    if den == 0.0:
        return None
    return b - (b - a) * (db + d2 - d1) / den


def _zoom(oracle, f0, d0, lo, hi, c1, c2, evals_left):
    """Algorithm 3.6: ``lo`` satisfies sufficient decrease; the interval between
    ``lo`` and ``hi`` holds a strong-Wolfe point. Returns ``(alpha, f, evals)``;
    ``alpha`` is ``lo[0]`` (possibly 0) when the budget runs out."""
    (a_lo, f_lo, d_lo), (a_hi, f_hi, d_hi) = lo, hi
    n = 0
    while n < evals_left:
        width = a_hi - a_lo
        a = _cubic_min(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
        # safeguard: stay inside the central 80% of the bracket
        if a is None or not np.isfinite(a) or not (
                min(a_lo, a_hi) + 0.1 * abs(width) <= a
                <= max(a_lo, a_hi) - 0.1 * abs(width)):
            a = a_lo + 0.5 * width
        f, d = oracle.trial(a)
        n += 1
        if not np.isfinite(f) or f > f0 + c1 * a * d0 or f >= f_lo:
            a_hi, f_hi, d_hi = a, f, d
        else:
            if abs(d) <= -c2 * d0:
                return a, f, n
            if d * (a_hi - a_lo) >= 0.0:
                a_hi, f_hi, d_hi = a_lo, f_lo, d_lo
            a_lo, f_lo, d_lo = a, f, d
        if abs(a_hi - a_lo) <= 1e-12 * max(1.0, abs(a_lo)):
            break
    return a_lo, f_lo, n


def line_search(oracle, f0, d0, alpha0, c1=1e-4, c2=0.9, max_evals=20):
    """Strong-Wolfe line search (algorithm 3.5) along the oracle's direction.

    Returns ``(alpha, f, evals)``; ``alpha = 0`` when no point with sufficient
    decrease was found. When the budget runs out, the best point found with
    sufficient decrease is returned (the curvature condition may then fail; the
    caller skips such a pair).
    """
    a_prev, f_prev, d_prev = 0.0, f0, d0
    a = alpha0
    for n in range(max_evals):
        f, d = oracle.trial(a)
        if not np.isfinite(f) or f > f0 + c1 * a * d0 or (n > 0 and f >= f_prev):
            a, f, m = _zoom(oracle, f0, d0, (a_prev, f_prev, d_prev), (a, f, d),
                            c1, c2, max_evals - n - 1)
            return a, f, n + 1 + m
        if abs(d) <= -c2 * d0:
            return a, f, n + 1
        if d >= 0.0:
            a, f, m = _zoom(oracle, f0, d0, (a, f, d), (a_prev, f_prev, d_prev),
                            c1, c2, max_evals - n - 1)
            return a, f, n + 1 + m
        a_prev, f_prev, d_prev = a, f, d
        a = 4.0 * a
    return a_prev, f_prev, max_evals


class Result:
    """Outcome of :func:`lbfgs`: ``x``, ``fun``, ``nit``, ``nfev`` (trial
    evaluations), ``status`` (0 converged, 1 ``max_iter`` reached, 2 the line
    search failed from steepest descent) and ``memory`` (the correction pairs, for
    a warm start)."""

    def __init__(self, x, fun, nit, nfev, status, memory):
        self.x, self.fun, self.nit, self.nfev, self.status = x, fun, nit, nfev, status
        self.memory = memory


def lbfgs(oracle, x0, max_iter, ftol=1e-5, gtol=1e-12, memory=20, callback=None,
          warm=None, window=1, stall=None):
    """Minimise with L-BFGS over a line oracle (see the module docstring).

    Parameters
    ----------
    oracle : line oracle
    x0 : ndarray of shape (N,)
    max_iter : int
        Iterations (accepted steps).
    ftol : float
        Stop at iteration ``k`` when the objective fell by at most ``ftol``
        (relative) per iteration over the last ``w = window`` iterations:
        ``f_{k−w} − f_k ≤ w · ftol · max(|f_{k−w}|, |f_k|, 1)``, the decrease
        summed over the iterations as their line searches measured it (on the
        function of their line). ``window=1`` is scipy's ``ftol`` rule.
    gtol : float
        Stop when the largest absolute gradient entry is at most ``gtol``. A run
        also ends as converged when a line search fails along a quasi-Newton
        direction that promised a decrease below the rounding of the value
        (``−gᵀp ≤ 10⁴ ε max(|f|, 1)``).
    memory : int
        Number of correction pairs (float32 from ``_F32_MEMORY`` bytes of them in
        float64 on).
    callback : callable, optional
        Called as ``callback(nit, f, x)`` after every iteration (``x`` is the
        current point; copy it to keep it).
    warm : Result, optional
        A previous run on a related function (same ``N``) whose correction pairs
        start this one's memory.
    window : int, default=1
        Iterations over which ``ftol`` measures the decrease (see there). A
        window longer than 1 does not stop on one iteration of little progress,
        which on a piecewise-smooth objective (a hinge) says little about how far
        the optimum is; the ``ftol`` test starts after ``window`` iterations.
    stall : (int, float), optional
        ``(s, c)``: also stop when the objective fell by at most ``c · ftol``
        (relative) in all over the last ``s`` iterations, before or after
        ``window`` iterations. With ``c < 1`` this stops a flat run sooner than
        the window can, where each iteration is expensive, and not a run that
        still makes progress.

    Returns
    -------
    Result
    """
    x = np.array(x0, dtype=np.float64).ravel()
    N = x.shape[0]
    if warm is not None:
        S, Y, rho, head, count, gamma = (a.copy() if isinstance(a, np.ndarray) else a
                                         for a in warm.memory)
    else:
        # float32 pairs from _F32_MEMORY bytes on (see there)
        dtype = np.float32 if 16 * memory * N >= _F32_MEMORY else np.float64
        S = np.zeros((memory, N), dtype=dtype)
        Y = np.zeros((memory, N), dtype=dtype)
        rho = np.zeros(memory)
        head = count = 0
        gamma = 1.0
    # (NumPy steps for an oracle that runs in NumPy: see the module docstring)
    two_loop, update = ((_two_loop_np, _update_np) if getattr(oracle, "numpy_steps", False)
                        else (_two_loop, _update))
    f, g = oracle.start(x)
    gmax = np.abs(g).max()
    # the decreases of the last ``window`` (or ``stall``) iterations, each measured
    # along its line (the oracle may change the function at an accepted point), and
    # the value before them
    decreases = []
    f_before = [f]

    def fell_at_most(s, share, f_new):
        # the objective fell by at most share · ftol (relative) over the last s
        # iterations (the ftol rule with s = share = window; the stall test)
        return len(decreases) >= s and sum(decreases[-s:]) <= share * ftol * max(
            abs(f_before[-s - 1]), abs(f_new), 1.0)

    nit = nfev = 0
    retried = False
    status = MAX_ITER
    while nit < max_iter:
        if gmax <= gtol:
            status = CONVERGED
            break
        p, d0 = two_loop(g, S, Y, rho, head, count, gamma)
        if count == 0 or d0 >= 0.0:  # (not a descent direction: forget the memory)
            count = 0
            p = -g
            d0 = -float(g @ g)
            alpha0 = min(1.0, 1.0 / np.sqrt(-d0))
        else:
            alpha0 = 1.0
        oracle.set_direction(p)
        alpha, f_new, n = line_search(oracle, f, d0, alpha0)
        nfev += n
        if alpha == 0.0:
            if count and -d0 <= _ROUNDING * max(abs(f), 1.0):
                # the quasi-Newton step promised a decrease that rounding hides:
                # the point is optimal to the precision of the values
                status = CONVERGED
                break
            if retried:
                status = LINE_SEARCH_FAILED
                break
            # Retry once from steepest descent, with the value and gradient
            # evaluated again (the oracle may have changed the function during
            # the line search).
            f, g = oracle.start(x)
            gmax = np.abs(g).max()
            count = 0
            retried = True
            continue
        retried = False
        f_old = f
        f, g_new = oracle.accept(alpha)
        nit += 1
        stored, gamma_new, gmax = update(x, p, alpha, g, g_new, S, Y, rho, head)
        if stored:
            head = (head + 1) % memory
            count = min(count + 1, memory)
            gamma = gamma_new
        g = g_new
        if callback is not None:
            callback(nit, f, x)
        decreases.append(f_old - f_new)
        f_before.append(f)
        if len(decreases) > max(window, stall[0] if stall else 0):
            del decreases[0], f_before[0]
        if (fell_at_most(window, window, f_new)
                or (stall and fell_at_most(*stall, f_new))):
            status = CONVERGED
            break
    return Result(x, f, nit, nfev, status, (S, Y, rho, head, count, gamma))


class FunctionLine:
    """Line oracle of a plain ``fun(x) -> (f, g)``."""

    def __init__(self, fun):
        self.fun = fun
        self.n_evals = 0

    def _eval(self, x):
        self.n_evals += 1
        f, g = self.fun(x)
        return float(f), np.asarray(g, dtype=np.float64).ravel()

    def start(self, x):
        self.x = np.array(x, dtype=np.float64)
        self.last = None
        return self._eval(self.x)

    def set_direction(self, p):
        self.p = p
        self.last = None

    def trial(self, alpha):
        f, g = self._eval(self.x + alpha * self.p)
        self.last = alpha, f, g
        return f, float(g @ self.p)

    def accept(self, alpha):
        if self.last is None or self.last[0] != alpha:
            self.trial(alpha)
        self.x = self.x + alpha * self.p
        return self.last[1], self.last[2]


# minimize_components uses the NumPy two-loop up to this many parameters
_NUMPY_STEPS_MAX = 4096


def minimize_components(fun, L0, max_iter, tol, *, verbose=False, name="",
                        callback=None, window=1):
    """Minimise ``fun(L) -> (f, grad)`` over components ``L`` with :func:`lbfgs`.

    The driver of the learners whose objective is a plain function of ``L``
    (Contrastive, TripletMargin on fixed triplets): flattening, the verbose
    iteration table in the style of scikit-learn's
    ``NeighborhoodComponentsAnalysis``, and the user's ``callback(L, n_iter)``.

    Parameters
    ----------
    fun : callable
        ``fun(L)`` for ``L`` of shape ``L0.shape``; returns the value and the
        gradient (same shape as ``L``).
    L0 : ndarray of shape (n_components, n_features)
    max_iter : int
    tol : float
        :func:`lbfgs`'s ``ftol``.
    verbose : bool
    name : str
        Prefix of the verbose lines.
    callback : callable or None
        ``callback(L, n_iter)`` after every iteration (a copy of ``L``).
    window : int
        :func:`lbfgs`'s ``window``.

    Returns
    -------
    L : ndarray of shape (n_components, n_features)
    n_iter : int
    converged : bool
        False when ``max_iter`` was reached.
    f : float
        The final value.
    """
    import time

    shape = L0.shape

    def flat(x):
        f, g = fun(x.reshape(shape))
        return f, np.asarray(g, dtype=np.float64).ravel()

    t = [time.perf_counter()]
    if verbose:
        header = "{:>10} {:>20} {:>10}".format("Iteration", "Objective Value",
                                                "Time(s)")
        print(f"[{name}]\n[{name}] {header}\n[{name}] {'-' * len(header)}")

    def on_iteration(nit, f, x):
        if callback is not None:
            callback(x.reshape(shape).copy(), nit)
        if verbose:
            now = time.perf_counter()
            print("[{}] {:>10} {:>20.6e} {:>10.2f}".format(name, nit, f, now - t[0]),
                  flush=True)
            t[0] = now

    line = FunctionLine(flat)
    # (few parameters: the NumPy two-loop, so that such a fit never loads numba)
    line.numpy_steps = L0.size <= _NUMPY_STEPS_MAX
    res = lbfgs(line, np.asarray(L0, dtype=np.float64).ravel(), max_iter, ftol=tol,
                callback=on_iteration, window=window)
    return res.x.reshape(shape), int(res.nit), res.status != MAX_ITER, float(res.fun)
