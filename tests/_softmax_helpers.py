"""Helpers shared by the tests of the softmax learners (NCA, MLKR)."""

import numpy as np


def central_differences(fun, L, h=1e-6):
    """The gradient of the scalar ``fun`` at ``L`` by central differences."""
    grad = np.zeros_like(L)
    for idx in np.ndindex(L.shape):
        E = np.zeros_like(L)
        E[idx] = h
        grad[idx] = (fun(L + E) - fun(L - E)) / (2 * h)
    return grad
