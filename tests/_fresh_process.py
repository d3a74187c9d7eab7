"""Running a snippet in a fresh interpreter (for what a new process imports or
compiles: numba, dask, the NumPy budgets)."""

import subprocess
import sys


def fresh_output(code):
    """The standard output of ``python -c code`` in a new process (which must
    succeed)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout
