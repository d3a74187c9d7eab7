"""The package surface: public names, and a light ``import mahal``."""

import pytest
from _fresh_process import fresh_output

import mahal


def test_import_mahal_loads_neither_numba_nor_sklearn():
    # Lazy public names: `import mahal` must not pay for scikit-learn (~1 s here) or
    # numba, let alone compile a kernel.
    code = ("import sys, mahal; "
            "print(sorted(m for m in ('numba', 'sklearn', 'scipy') if m in sys.modules))")
    out = fresh_output(code).strip()
    assert out == "[]"


_SMALL_FITS = """
import sys, warnings
import numpy as np
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler
from mahal import LMNN, MMC, Covariance, LMNNEnergyClassifier, MMC_Supervised
from mahal import ITML_Supervised, TripletMargin_Supervised, NCA, MLKR
warnings.simplefilter("ignore")
X, y = load_wine(return_X_y=True)
X = StandardScaler().fit_transform(X)
LMNN().fit(X, y).transform(X)
LMNN(n_components=2, n_passes=2).fit(X, y)
LMNNEnergyClassifier().fit(X, y).predict(X)
Covariance().fit(X)
for diagonal in (False, True):
    MMC_Supervised(diagonal=diagonal).fit(X, y)
    MMC(diagonal=diagonal).fit(np.stack([X[:60], X[60:120]], axis=1),
                               np.where(y[:60] == y[60:120], 1, -1))
ITML_Supervised(random_state=0).fit(X, y)
TripletMargin_Supervised(random_state=0).fit(X, y)
NCA(random_state=0).fit(X, y)
MLKR(random_state=0).fit(X, y.astype(float))
for mining in ("all", "hard"):  # (short: the process's NumPy budget is 400 batches)
    TripletMargin_Supervised(mining=mining, max_iter=5, random_state=0).fit(X, y)
print("numba" in sys.modules)
"""


@pytest.mark.parametrize("large", [False, True])
def test_small_fits_never_import_numba(large):
    # numba's start-up in a process costs more than a small fit: small problems run
    # in NumPy (mahal._lmnn_dense, mahal._mmc_small, mahal._triplet_small, ITML's
    # first sweeps, NCA's and MLKR's blocks) and kernel modules are imported
    # on first use. A problem above the bounds does use the kernels.
    code = _SMALL_FITS
    if large:
        code = ("import sys, warnings\nimport numpy as np\nfrom mahal import LMNN\n"
                "warnings.simplefilter('ignore')\n"
                "X = np.random.default_rng(0).normal(size=(1100, 4))\n"
                "LMNN(max_iter=2).fit(X, np.arange(1100) % 3)\n"
                "print('numba' in sys.modules)\n")
    out = fresh_output(code).strip()
    assert out == str(large)


def test_public_names_resolve():
    for name in mahal.__all__:
        obj = getattr(mahal, name)
        assert obj.__name__ == name
    assert set(mahal.__all__) <= set(dir(mahal))
    with pytest.raises(AttributeError, match="NotALearner"):
        mahal.NotALearner
