"""Input validation shared by every learner.

One clear message per failure, naming the argument and what was expected. The checks
for plain points ``X`` defer to scikit-learn's ``validate_data`` (so that
``n_features_in_``, feature names and the standard error messages behave as everywhere
in scikit-learn); tuples of points (pairs, triplets) are checked here.
"""

import functools
import numbers
import sys

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .exceptions import PreprocessorError

_TUPLE_NAMES = {2: "pairs", 3: "triplets", 4: "quadruplets"}

# Largest |x| accepted in fit: a squared distance is at most (2·max|x|)² · n_features,
# and it must stay below float64's max / 2⁶⁴, so that the losses and gradients, sums
# of such terms over up to 2⁶⁴ pairs, cannot overflow either.
_SCALE_HEADROOM = 2.0 ** 64
# Smallest non-zero max|x| accepted in fit: below it every squared difference is
# below float64's smallest normal number times 2⁵² (it loses all precision, or is 0).
_SCALE_FLOOR = np.sqrt(np.finfo(np.float64).tiny * 2.0 ** 52)


def check_preprocessor(preprocessor):
    """Raise ``ValueError`` unless ``preprocessor`` is None, array-like or callable.

    Checked in every ``fit``, also when the inputs are points (as metric-learn does),
    so that a wrong preprocessor never goes unnoticed until ``predict``.
    """
    if preprocessor is None or callable(preprocessor):
        return
    if (hasattr(preprocessor, "__len__") or hasattr(preprocessor, "shape")
            or hasattr(preprocessor, "__array__")) and not isinstance(preprocessor,
                                                                     (str, bytes)):
        return
    raise ValueError(f"Invalid type for the preprocessor: {type(preprocessor)}. It must "
                     "be None, an array-like of points, or a callable mapping a 1-D "
                     "array of identifiers to points.")


def check_scale(X, name="X"):
    """Raise ``ValueError`` when ``X``'s squared distances overflow or underflow float64.

    A squared distance is at most ``4 · n_features · max|x|²``; it must stay below
    ``finfo.max / 2⁶⁴`` (room for sums over up to 2⁶⁴ pairs), and, for data that is
    not all zero, ``max|x|`` must be above ``sqrt(finfo.tiny · 2⁵²)``. Rescaling inside
    would not give the same metric (LMNN's margin and MMC's constraint are not scale
    invariant), so the user is asked to rescale.
    """
    scale = max(float(X.max()), -float(X.min())) if X.size else 0.0  # no |X| copy
    check_scale_value(scale, X.shape[-1], name)


def check_scale_value(scale, n_features, name="X"):
    """:func:`check_scale` given ``scale = max|x|`` (e.g. reduced on a cluster)."""
    limit = np.sqrt(np.finfo(np.float64).max / (_SCALE_HEADROOM * 4.0 * n_features))
    if scale > limit:
        raise ValueError(
            f"{name} has entries up to {scale:.3g} in absolute value: its squared "
            f"distances (up to 4 · n_features · max|x|²) would overflow float64 "
            f"(with {n_features} features, max|x| must be at most {limit:.3g}). "
            f"Rescale the data, e.g. with sklearn.preprocessing.StandardScaler.")
    if 0.0 < scale < _SCALE_FLOOR:
        raise ValueError(
            f"{name} has entries at most {scale:.3g} in absolute value: its squared "
            f"distances underflow float64 (max|x| must be at least "
            f"{_SCALE_FLOOR:.3g}). Rescale the data, e.g. with "
            f"sklearn.preprocessing.StandardScaler.")


def _reject_sparse(X, name):
    if sp.issparse(X):
        raise TypeError(
            f"{name} is a sparse matrix, but mahal needs dense input: "
            f"call {name}.toarray() first."
        )


def _check_finite(X, name):
    if not np.all(np.isfinite(X)):
        what = "NaN" if np.isnan(X).any() else "infinity"
        raise ValueError(f"Input {name} contains {what}; remove or impute those values.")


def _is_index_array(X):
    return X.dtype.kind in "iu"


def _apply_preprocessor(indices, preprocessor, name):
    """Turn an integer array of identifiers into points with ``preprocessor``.

    ``preprocessor`` is either a 2-D array ``X`` (identifiers index its rows) or a
    callable that maps a 1-D array of identifiers to a 2-D array of points.
    """
    shape = indices.shape
    flat = indices.reshape(-1)
    if callable(preprocessor):
        try:
            points = np.asarray(preprocessor(flat))
        except Exception as e:
            raise PreprocessorError(e) from e
        if points.ndim != 2 or points.shape[0] != flat.shape[0]:
            raise ValueError(
                f"The preprocessor must return a 2-D array with one row per identifier "
                f"({flat.shape[0]}); it returned shape {points.shape}."
            )
    else:
        table = check_points_array(preprocessor, name="preprocessor")
        if not _is_index_array(flat):
            raise ValueError(
                f"With an array preprocessor, {name} must hold integer indices into it; "
                f"got dtype {flat.dtype}."
            )
        if flat.size and (flat.min() < -table.shape[0] or flat.max() >= table.shape[0]):
            raise PreprocessorError(IndexError(
                f"{name} holds indices outside [0, {table.shape[0]}), the rows of the "
                f"preprocessor array."
            ))
        points = table[flat]
    return points.reshape(shape + (points.shape[1],))


def check_points_array(X, name="X", ensure_min_samples=1):
    """Validate a 2-D float array of points without touching an estimator."""
    _reject_sparse(X, name)
    X = check_array(
        X, dtype=np.float64, ensure_all_finite=False, input_name=name,
        ensure_min_samples=ensure_min_samples,
    )
    _check_finite(X, name)
    return X


def preprocess_points(X, preprocessor, name="X"):
    """Map 1-D identifiers to points when a preprocessor is given, else return X."""
    if preprocessor is None:
        return X
    arr = np.asarray(X)
    if arr.ndim == 1:
        return _apply_preprocessor(arr, preprocessor, name)
    return X


def require_y(estimator, y):
    """Raise scikit-learn's error for a supervised ``fit`` called with ``y=None``."""
    if y is None:
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the "
                         f"target y is None.")


def check_points(estimator, X, y=None, *, reset=True, ensure_min_samples=1,
                 classification=False, min_classes=2, dtype=np.float64):
    """Validate points ``X`` (and labels ``y``) for ``estimator``.

    Applies the estimator's ``preprocessor`` to 1-D identifiers, rejects sparse input
    with a ``TypeError``, NaN/inf with a ``ValueError``, and, for ``classification``,
    fewer than ``min_classes`` classes. With ``reset`` (in ``fit``) it also checks the
    preprocessor's type and that squared distances of ``X`` fit in float64
    (:func:`check_scale`). ``dtype`` is passed to ``validate_data`` (a list keeps
    float32 input as float32, for ``transform``).
    """
    preprocessor = getattr(estimator, "preprocessor", None)
    if reset:
        check_preprocessor(preprocessor)
    X = preprocess_points(X, preprocessor)
    _reject_sparse(X, "X")
    ndim = getattr(X, "ndim", None)
    if ndim is not None and ndim > 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_samples, n_features); got an array of "
            f"shape {X.shape}. Tuples of points (pairs, triplets) are for the weakly "
            f"supervised learners such as MMC."
        )
    kwargs = dict(dtype=dtype, reset=reset, ensure_min_samples=ensure_min_samples)
    if y is None:
        X = validate_data(estimator, X, **kwargs)
        if reset:
            check_scale(X)
        return X
    X, y = validate_data(estimator, X, y, **kwargs)
    if reset:
        check_scale(X)
    if classification:
        check_classes(estimator, y, min_classes)
    return X, y


def check_classes(estimator, y, min_classes=2):
    """Raise ``ValueError`` unless ``y`` holds class labels of ``min_classes`` classes."""
    # Integer, boolean and string labels are always valid classes; scikit-learn's
    # full check (type_of_target) is a visible share of a small fit
    # (docs/solver_notes.rst, "Shared machinery").
    if not (y.ndim == 1 and y.dtype.kind in "biuU"):
        check_classification_targets(y)
    n_classes = np.unique(y).shape[0]
    if n_classes < min_classes:
        raise ValueError(
            f"y has {n_classes} class; {type(estimator).__name__} needs at least "
            f"{min_classes} classes to learn a metric."
        )


def is_dask_array(X):
    """Whether ``X`` is a ``dask.array.Array`` (without importing dask: an array of
    dask's can only exist once dask is imported)."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(X, module.Array)


def dask_rows(columns):
    """Decorate a fitted classifier's method ``method(self, X)`` so that a dask array
    ``X`` gives a dask array with ``X``'s row chunks, each block computed by the
    method itself on that block (:func:`mahal._dask_predict.map_row_blocks`).

    ``columns``: ``'classes'`` for one float column per class, None for one label
    per row.
    """
    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, X):
            if is_dask_array(X):  # (lazily, block by block)
                from ._dask_predict import map_row_blocks

                check_is_fitted(self, "classes_")
                n = self.classes_.shape[0] if columns == "classes" else None
                return map_row_blocks(self, method.__name__, X, n)
            return method(self, X)

        return wrapper

    return decorate


def check_tuples(tuples, tuple_size, preprocessor=None, name=None, n_features=None):
    """Validate tuples of points, shape ``(n_tuples, tuple_size, n_features)``.

    With a ``preprocessor``, ``tuples`` may instead be identifiers of shape
    ``(n_tuples, tuple_size)``. Without ``n_features`` (i.e. in ``fit``), the
    preprocessor's type and the scale of the points (:func:`check_scale`) are checked
    too.

    Returns
    -------
    tuples : ndarray of shape (n_tuples, tuple_size, n_features), float64
    """
    name = name or _TUPLE_NAMES.get(tuple_size, "tuples")
    if n_features is None:
        check_preprocessor(preprocessor)
    _reject_sparse(tuples, name)
    arr = np.asarray(tuples)
    if arr.dtype == object:
        raise ValueError(f"{name} must be a numeric array, got dtype object.")
    if preprocessor is not None and arr.ndim == 2:
        arr = _apply_preprocessor(arr, preprocessor, name)
    if arr.ndim != 3:
        expected = f"(n_{name}, {tuple_size}, n_features)"
        if preprocessor is not None:
            expected += f" or identifiers (n_{name}, {tuple_size})"
        else:
            expected += (" (pass preprocessor=X to give them as indices into X"
                         f" of shape (n_{name}, {tuple_size}))")
        raise ValueError(f"{name} must be a 3-D array of shape {expected}; "
                         f"got an array of shape {arr.shape}.")
    if arr.shape[1] != tuple_size:
        raise ValueError(f"{name} must have {tuple_size} points per tuple "
                         f"(shape (n, {tuple_size}, n_features)); got shape {arr.shape}.")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one tuple is required.")
    if arr.shape[2] == 0:
        raise ValueError(f"{name} has 0 features.")
    if n_features is not None and arr.shape[2] != n_features:
        raise ValueError(f"{name} have {arr.shape[2]} features, but this estimator was "
                         f"fitted with {n_features} features.")
    arr = np.asarray(arr, dtype=np.float64)
    _check_finite(arr, name)
    if n_features is None:
        check_scale(arr, name)
    return arr


def check_pair_labels(y, n_pairs):
    """Labels of pairs: +1 (similar) or -1 (dissimilar), one per pair."""
    if y is None:
        raise ValueError("y is required: one label per pair, +1 (similar) or -1 "
                         "(dissimilar).")
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_pairs:
        raise ValueError(f"y must be a 1-D array with one label per pair ({n_pairs}); "
                         f"got shape {y.shape}.")
    if y.dtype.kind not in "iufb":
        raise ValueError(f"Pair labels y must be +1 (similar) or -1 (dissimilar); got "
                         f"dtype {y.dtype}.")
    bad = ~np.isin(y, (-1, 1))
    if bad.any():
        raise ValueError(f"Pair labels y must be +1 (similar) or -1 (dissimilar); "
                         f"found {np.unique(y[bad])[:5].tolist()}.")
    return y.astype(np.int64)


def check_tuple_weights(weights, n_tuples, name="weights"):
    """Weights of tuples (LSML's quadruplets): one finite weight ≥ 0 per tuple.

    None means equal weights. Returns a new float64 array scaled to sum 1 (as
    metric-learn does; it divides the caller's array in place, this copies), so at
    least one weight must be positive.
    """
    if weights is None:
        return np.full(n_tuples, 1.0 / n_tuples)
    w = np.asarray(weights)
    if w.ndim != 1 or w.shape[0] != n_tuples:
        raise ValueError(f"{name} must be a 1-D array with one weight per tuple "
                         f"({n_tuples}); got shape {w.shape}.")
    if w.dtype.kind not in "iufb":
        raise ValueError(f"{name} must be numbers; got dtype {w.dtype}.")
    w = w.astype(np.float64)
    _check_finite(w, name)
    if (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"{name} must be non-negative with a positive sum; got "
                         f"min {w.min():g}, sum {w.sum():g}.")
    return w / w.sum()


def check_chunks(chunks, n_samples):
    """Chunklet labels for RCA: one integer per point, ``-1`` for no chunklet.

    Returns the chunklet ids as an int64 array; at least one chunklet of two or
    more points is required (a single point has no within-chunklet spread).
    """
    if chunks is None:
        raise ValueError("chunks is required: one chunklet id per point (-1 for a "
                         "point in no chunklet).")
    c = np.asarray(chunks)
    if c.ndim != 1 or c.shape[0] != n_samples:
        raise ValueError(f"chunks must be a 1-D array with one chunklet id per point "
                         f"({n_samples}); got shape {c.shape}.")
    if c.dtype.kind == "f" and np.all(np.isfinite(c)) and np.all(c == np.round(c)):
        c = c.astype(np.int64)
    if c.dtype.kind not in "iub":
        raise ValueError(f"chunks must hold integer chunklet ids (-1 for no "
                         f"chunklet); got dtype {c.dtype}.")
    c = c.astype(np.int64)
    if (c < -1).any():
        raise ValueError(f"chunks must be chunklet ids >= 0, or -1 for a point in no "
                         f"chunklet; found {np.unique(c[c < -1])[:5].tolist()}.")
    counts = np.bincount(c[c >= 0]) if (c >= 0).any() else np.zeros(0, int)
    if not (counts >= 2).any():
        raise ValueError("chunks has no chunklet of two or more points: RCA needs "
                         "points known to belong together.")
    return c


def check_n_components(n_components, n_features, name="n_components"):
    """None means ``n_features``; otherwise an int in ``[1, n_features]``."""
    if n_components is None:
        return n_features
    if (not isinstance(n_components, numbers.Integral) or isinstance(n_components, bool)
            or not 1 <= n_components <= n_features):
        raise ValueError(f"{name} must be None or an integer in [1, n_features="
                         f"{n_features}]; got {n_components!r}.")
    return int(n_components)


class IntAtLeast(Interval):
    """Parameter constraint (scikit-learn's ``_parameter_constraints``): an integer
    ≥ ``low``, and not a bool (``True`` is an ``Integral`` to Python, but passing it
    as a count is a mistake, not a 1).

    Parameters
    ----------
    low : int, default=1
        Smallest value allowed.
    """

    def __init__(self, low=1):
        super().__init__(numbers.Integral, low, None, closed="left")

    def is_satisfied_by(self, val):
        return (not isinstance(val, (bool, np.bool_))
                and super().is_satisfied_by(val))


# ``n_jobs`` as scikit-learn means it: None (one thread, or joblib's context), -1 all
# cores, -2 all but one, ..., or a positive count.
N_JOBS = [Interval(numbers.Integral, None, -1, closed="right"), IntAtLeast(1), None]

# The *_Supervised learners' number of constraints (None: the learner's default) and
# metric-learn's deprecated name for it.
N_CONSTRAINTS = {
    "n_constraints": [IntAtLeast(1), None],
    "num_constraints": [StrOptions({"deprecated"}), IntAtLeast(1), None],
}
