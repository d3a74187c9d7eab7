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

# === end MMC ===


# === LMNN (owned by the LMNN module's author) ===

# === end LMNN ===
