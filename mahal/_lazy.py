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
        if module is None:
            module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self):
        return f"<lazy module {self._name!r}>"
