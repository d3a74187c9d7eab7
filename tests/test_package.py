"""The package surface: public names, and a light ``import mahal``."""

import subprocess
import sys

import pytest

import mahal


def test_import_mahal_loads_neither_numba_nor_sklearn():
    # Lazy public names: `import mahal` must not pay for scikit-learn (~1 s here) or
    # numba, let alone compile a kernel.
    code = ("import sys, mahal; "
            "print(sorted(m for m in ('numba', 'sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_public_names_resolve():
    for name in mahal.__all__:
        obj = getattr(mahal, name)
        assert obj.__name__ == name
    assert set(mahal.__all__) <= set(dir(mahal))
    with pytest.raises(AttributeError, match="NotALearner"):
        mahal.NotALearner
