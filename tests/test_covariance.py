import numpy as np
import pytest
from scipy.linalg import pinvh
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import Covariance


def test_covariance_equals_pinvh_of_np_cov():
    X = np.random.default_rng(0).normal(size=(200, 5)) @ np.random.default_rng(1).normal(
        size=(5, 5))
    est = Covariance().fit(X)
    np.testing.assert_allclose(est.get_mahalanobis_matrix(), pinvh(np.cov(X.T)),
                               rtol=1e-8, atol=1e-10)


def test_covariance_whitens():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 4)) + 3.0
    Z = Covariance().fit_transform(X)
    np.testing.assert_allclose(np.cov(Z.T), np.eye(4), atol=1e-10)


def test_covariance_singular_uses_pseudo_inverse():
    rng = np.random.default_rng(3)
    B = rng.normal(size=(100, 2))
    # third feature collinear with the first two, fourth constant
    X = np.column_stack([B, B[:, 0] - 2 * B[:, 1], np.full(100, 7.0)])
    est = Covariance().fit(X)
    np.testing.assert_allclose(est.get_mahalanobis_matrix(), pinvh(np.cov(X.T)), atol=1e-8)
    Z = est.transform(X)
    assert np.all(np.isfinite(Z))
    # Two whitened directions (unit variance), two with none.
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(np.cov(Z.T))), [0, 0, 1, 1],
                               atol=1e-8)


def test_covariance_errors():
    with pytest.raises(ValueError, match="1 sample"):
        Covariance().fit(np.ones((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        Covariance().fit(np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0]]))
    est = Covariance().fit(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(ValueError, match="3 features"):
        est.transform(np.ones((2, 4)))


@parametrize_with_checks([Covariance()])
def test_sklearn_compatible(estimator, check):
    check(estimator)
