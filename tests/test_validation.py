"""Every bad input gets a clear error that names the argument."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from mahal import Covariance
from mahal._validation import (
    check_n_components,
    check_pair_labels,
    check_points,
    check_tuples,
)


class _Dummy(BaseEstimator):
    def __init__(self, preprocessor=None):
        self.preprocessor = preprocessor


@pytest.mark.parametrize("value, word", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_points_non_finite(value, word):
    X = np.ones((4, 2))
    X[1, 1] = value
    with pytest.raises(ValueError, match=word):
        check_points(_Dummy(), X)


def test_points_wrong_ndim_and_sparse():
    with pytest.raises(ValueError, match=r"2-D array .* weakly supervised"):
        check_points(_Dummy(), np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="Expected 2D array"):
        check_points(_Dummy(), np.ones(3))
    with pytest.raises(TypeError, match="sparse"):
        check_points(_Dummy(), sp.csr_matrix(np.eye(3)))
    with pytest.raises(TypeError, match="sparse"):
        check_tuples(sp.csr_matrix(np.eye(3)), 2)


def test_points_need_two_classes():
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        check_points(_Dummy(), np.ones((4, 2)), np.zeros(4), classification=True)
    with pytest.raises(ValueError, match="Unknown label type"):
        check_points(_Dummy(), np.ones((4, 2)), np.linspace(0, 1, 4), classification=True)


@pytest.mark.parametrize("y", [
    np.array([0, 1, 2, 0]), np.array([3, 3, 5, 5], dtype=np.uint8),
    np.array([True, False, True, False]), np.array(["a", "b", "a", "c"]),
    np.array([0.0, 1.0, 2.0, 1.0]), np.linspace(0, 1, 4), np.array([b"a", b"b"] * 2),
    np.array(["a", 1, "b", 2], dtype=object), np.arange(8)[::2]])
def test_label_check_agrees_with_scikit_learn(y):
    # check_points skips scikit-learn's type_of_target for labels that are always
    # valid classes; it must accept and reject exactly what scikit-learn does.
    from sklearn.utils.multiclass import check_classification_targets

    try:
        check_classification_targets(y)
        expected = None
    except (ValueError, TypeError) as exc:
        expected = type(exc)
    if expected is None:
        check_points(_Dummy(), np.arange(8.0).reshape(4, 2), y, classification=True)
    else:
        with pytest.raises(expected):
            check_points(_Dummy(), np.arange(8.0).reshape(4, 2), y,
                         classification=True)


def test_tuples_shapes():
    with pytest.raises(ValueError, match=r"3-D array .*preprocessor=X"):
        check_tuples(np.ones((5, 2)), 2)
    with pytest.raises(ValueError, match="2 points per tuple"):
        check_tuples(np.ones((5, 3, 2)), 2)
    with pytest.raises(ValueError, match="empty"):
        check_tuples(np.ones((0, 2, 2)), 2)
    with pytest.raises(ValueError, match="NaN"):
        check_tuples(np.full((1, 2, 2), np.nan), 2)
    with pytest.raises(ValueError, match="fitted with 3 features"):
        check_tuples(np.ones((1, 2, 2)), 2, n_features=3)
    with pytest.raises(ValueError, match="integer indices"):
        check_tuples(np.ones((2, 2)) * 0.5, 2, preprocessor=np.eye(3))
    out = check_tuples(np.array([[0, 2]]), 2, preprocessor=np.eye(3))
    np.testing.assert_array_equal(out, [[[1, 0, 0], [0, 0, 1]]])


def test_pair_labels():
    np.testing.assert_array_equal(check_pair_labels([1, -1, 1.0], 3), [1, -1, 1])
    with pytest.raises(ValueError, match=r"\+1 \(similar\) or -1 .*found \[0, 2\]"):
        check_pair_labels([1, 0, 2], 3)
    with pytest.raises(ValueError, match="one label per pair"):
        check_pair_labels([1, -1], 3)
    with pytest.raises(ValueError, match="required"):
        check_pair_labels(None, 3)
    with pytest.raises(ValueError, match="dtype"):
        check_pair_labels(["a", "b"], 2)


def test_n_components():
    assert check_n_components(None, 5) == 5
    assert check_n_components(2, 5) == 2
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="n_components must be None or an integer"):
            check_n_components(bad, 5)


def test_estimator_reports_sparse_as_type_error():
    with pytest.raises(TypeError, match="sparse"):
        Covariance().fit(sp.csr_matrix(np.eye(3)))
