"""mahal: fast, scikit-learn-compatible classical Mahalanobis metric learners.

Public names are imported lazily, so that ``import mahal`` is fast; each learner's
module (and scikit-learn, numba) is imported on first use.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "Covariance": "covariance",
    "MMC": "mmc",
    "MMC_Supervised": "mmc",
    "LMNN": "lmnn",
    "LMNNEnergyClassifier": "lmnn",
    "LMNNMultiMetricClassifier": "lmnn_multi",
    "Constraints": "constraints",
    "load_dataset": "datasets",
    "MahalanobisDistance": "base",
    "LSML": "lsml",
    "LSML_Supervised": "lsml",
    "RCA": "rca",
    "RCA_Supervised": "rca",
    "Contrastive": "contrastive",
    "Contrastive_Supervised": "contrastive",
    "TripletMargin": "triplet_margin",
    "TripletMargin_Supervised": "triplet_margin",
    "LFDA": "lfda",
    "ITML": "itml",
    "ITML_Supervised": "itml",
    "SDML": "sdml",
    "SDML_Supervised": "sdml",
    "NCA": "nca",
    "MLKR": "mlkr",
    "NCMML": "ncmml",
    "PrototypeClassifier": "prototype",
    "MetricKNeighborsClassifier": "neighbors",
    "SCML": "scml",
    "SCML_Supervised": "scml",
}

# Submodules reachable as attributes after ``import mahal``, as in metric-learn
# (``metric_learn.exceptions.NonPSDError``).
_SUBMODULES = ("exceptions", "fewshot")

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _PUBLIC:
        module = importlib.import_module(f".{_PUBLIC[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mahal' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
