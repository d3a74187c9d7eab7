"""Helpers shared by the tests of the softmax learners (NCA, MLKR)."""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning


def central_differences(fun, L, h=1e-6):
    """The gradient of the scalar ``fun`` at ``L`` by central differences."""
    grad = np.zeros_like(L)
    for idx in np.ndindex(L.shape):
        E = np.zeros_like(L)
        E[idx] = h
        grad[idx] = (fun(L + E) - fun(L - E)) / (2 * h)
    return grad


def fits_for_each_n_jobs(make, X, y):
    """``[make(n_jobs=1).fit(X, y), make(n_jobs=2).fit(X, y)]`` (short fits: their
    ``ConvergenceWarning`` is ignored)."""
    fits = []
    for n_jobs in (1, 2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(make(n_jobs=n_jobs).fit(X, y))
    return fits
