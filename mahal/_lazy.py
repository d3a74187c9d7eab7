"""Modules imported on first use (numba's kernel modules: a small problem that
never needs a kernel never imports numba, whose start-up in a process costs far
more than such a fit)."""

import importlib
import sys


class lazy_module:
    """Stands for the module ``name``, imported at the first attribute access.

    Every access looks the attribute up in the module itself (a dictionary look-up
    more than a plain module reference), so that a kernel replaced on the module
    (tests, ``benchmarks/paired_kernels.py``) is the one called."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        module = sys.modules.get(self._name)
        # (a module another thread is still importing: import_module waits for it)
        if module is None or getattr(module.__spec__, "_initializing", False):
            module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self):
        return f"<lazy module {self._name!r}>"


class NumpyBudget:
    """A process's budget of NumPy work before the kernels of ``module`` take over.

    Small problems run in NumPy so that they never import numba; once the process
    has done ``limit`` units of such work (about what loading numba and the cached
    kernels costs), or once the kernel module is loaded anyway (by a larger
    problem), the kernels run instead, so that a process that fits many small
    problems pays numba's start-up once."""

    def __init__(self, module, limit):
        self.module = module
        self.limit = limit
        self.done = 0  # units of NumPy work done in this process

    def left(self):
        """Units of work still to run in NumPy (none once the kernels are loaded)."""
        return 0 if self.module in sys.modules else self.limit - self.done

    def spend(self, units):
        self.done += units
