"""``python -m mahal.compile``: after it, fits compile nothing."""

import json
import os
import subprocess
import sys

# Fits of the shapes users meet (and of others than the warm-up's own), in a process
# that reports the seconds spent compiling mahal's kernels (0 if all were cached).
_USER_FITS = r"""
import json, warnings
import numpy as np
from sklearn.datasets import load_digits, load_wine
from sklearn.preprocessing import StandardScaler
import mahal
from mahal import _jit
warnings.simplefilter("ignore")
X, y = load_wine(return_X_y=True)
X = StandardScaler().fit_transform(X)
mahal.LMNN(random_state=0).fit(X, y)
mahal.LMNN(n_components=2, n_jobs=2, random_state=0).fit(X, y)
mahal.LMNNEnergyClassifier().fit(X, y).predict(X[:20])
mahal.LMNNMultiMetricClassifier(max_iter=5).fit(X, y).predict(X[:20])
mahal.MMC_Supervised(random_state=0).fit(X, y)
mahal.MMC_Supervised(diagonal=True, random_state=0).fit(X, y)
pairs, yp = np.stack([X[:40], X[40:80]], axis=1), np.where(y[:40] == y[40:80], 1, -1)
mahal.MMC(random_state=0).fit(pairs, yp)
mahal.ITML_Supervised(random_state=0).fit(X, y)
Xd, yd = load_digits(return_X_y=True)
Xd = StandardScaler().fit_transform(Xd[:600])
mahal.LMNN(max_iter=5, random_state=0).fit(Xd, yd[:600])
mahal.LMNN(max_iter=5, n_jobs=2, random_state=0).fit(Xd, yd[:600])
mahal.SDML_Supervised(random_state=0).fit(np.hstack([Xd, Xd[:, :8] ** 2]), yd[:600])
Xe = np.repeat(Xd, 2, axis=0) + 0.01 * np.random.default_rng(0).normal(size=(1200, 64))
mahal.LMNNEnergyClassifier(mahal.LMNN(max_iter=3)).fit(Xe, np.repeat(yd[:600], 2)
                                                     ).predict(Xd[:20])
mahal.TripletMargin_Supervised(mining="hard", max_iter=2, random_state=0).fit(X, y)
mahal.TripletMargin_Supervised(mining="all", max_iter=2, random_state=0).fit(X, y)
mahal.TripletMargin_Supervised(max_iter=2, random_state=0).fit(Xd, yd[:600])
mahal.NCA(max_iter=3).fit(X, y)
mahal.MLKR(max_iter=3, n_jobs=2).fit(Xd, yd[:600].astype(float))
print(json.dumps(_jit.notice.spent))
"""


def _run(args, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable] + args, env=env, capture_output=True,
                          text=True, check=True).stdout


def test_after_the_warm_up_fits_compile_nothing(tmp_path):
    out = _run(["-m", "mahal.compile"], tmp_path)
    assert "kernels compiled and cached" in out
    # (not vacuous: tests/test_jit.py checks that a compilation adds to ``spent``)
    assert json.loads(_run(["-c", _USER_FITS], tmp_path).strip()) == 0.0

