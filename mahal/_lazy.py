"""Modules imported on first use (numba's kernel modules: a small problem that
never needs a kernel never imports numba, whose start-up in a process costs far
more than such a fit)."""

import importlib


class lazy_module:
    """Stands for the module ``name``, imported at the first attribute access."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # (later accesses skip __getattr__)
        return value

    def __repr__(self):
        return f"<lazy module {self._name!r}>"
