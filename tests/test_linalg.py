import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from mahal.linalg import (
    check_psd,
    components_from_metric,
    metric_from_components,
    psd_project,
    psd_project_nb,
    symmetrize,
)


def _random_symmetric(rng, d):
    B = rng.standard_normal((d, d))
    return B + B.T


def _eigen_clip_reference(A):
    # Independent reference: scipy's eigh, clip, reconstruct as a sum of outer products.
    w, V = scipy.linalg.eigh(0.5 * (A + A.T))
    return sum(max(wi, 0.0) * np.outer(V[:, i], V[:, i]) for i, wi in enumerate(w))


@pytest.mark.parametrize("d", [1, 2, 5, 12])
def test_psd_project_equals_eigen_clip_and_is_idempotent(d):
    rng = np.random.default_rng(d)
    A = _random_symmetric(rng, d)
    P = psd_project(A)
    np.testing.assert_allclose(P, _eigen_clip_reference(A), atol=1e-10)
    np.testing.assert_allclose(psd_project(P), P, atol=1e-10)
    assert np.linalg.eigvalsh(P).min() > -1e-10
    # The numba kernel used inside solvers gives the same projection.
    P_nb, w_nb = psd_project_nb(A)
    np.testing.assert_allclose(P_nb, P, atol=1e-10)
    assert w_nb.min() >= 0


def test_psd_project_is_nearest_psd_matrix():
    rng = np.random.default_rng(0)
    A = _random_symmetric(rng, 6)
    P = psd_project(A)
    for _ in range(50):
        R = rng.standard_normal((6, 3))
        B = R @ R.T  # another PSD matrix, rank 3
        assert np.linalg.norm(A - P) <= np.linalg.norm(A - B) + 1e-12
    # A PSD matrix is its own projection.
    C = rng.standard_normal((6, 6))
    np.testing.assert_allclose(psd_project(C @ C.T), C @ C.T, atol=1e-10)


@pytest.mark.parametrize("rank", [6, 4, 1, 0])
def test_components_metric_round_trip(rank):
    rng = np.random.default_rng(rank)
    R = rng.standard_normal((6, rank))
    A = R @ R.T
    G = components_from_metric(A)
    assert G.shape == (6, 6)
    np.testing.assert_allclose(metric_from_components(G), A, atol=1e-10)
    # Distances agree: ||G(x - x')||^2 == (x - x')^T A (x - x')
    diff = rng.standard_normal(6)
    np.testing.assert_allclose(np.sum((G @ diff) ** 2), diff @ A @ diff, atol=1e-10)
    if rank == 6:
        # Definite: the Cholesky factor, upper triangular.
        np.testing.assert_allclose(G, np.triu(G))
    else:
        # Rank-deficient: exactly `rank` non-zero rows.
        assert np.sum(np.linalg.norm(G, axis=1) > 1e-8) == rank


def test_components_from_metric_round_trips_G():
    rng = np.random.default_rng(1)
    G0 = rng.standard_normal((3, 5))  # rank 3, 3 components
    G = components_from_metric(metric_from_components(G0))
    np.testing.assert_allclose(G.T @ G, G0.T @ G0, atol=1e-10)


def test_components_from_metric_rejects_indefinite():
    with pytest.raises(ValueError, match="not positive semi-definite"):
        components_from_metric(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="square"):
        components_from_metric(np.ones((2, 3)))


def test_check_psd():
    np.testing.assert_allclose(check_psd(np.eye(3)), np.eye(3))
    with pytest.raises(ValueError, match="symmetric"):
        check_psd(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive semi-definite"):
        check_psd(np.diag([1.0, -0.5]))
    with pytest.raises(ValueError, match="NaN"):
        check_psd(np.array([[np.nan, 0.0], [0.0, 1.0]]))


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_projection_properties_hypothesis(d, seed):
    A = _random_symmetric(np.random.default_rng(seed), d)
    P = psd_project(A)
    # Moreau: A = P - Q with P, Q PSD and <P, Q> = 0.
    Q = P - symmetrize(A)
    assert np.linalg.eigvalsh(Q).min() > -1e-9 * max(1, np.abs(A).max())
    assert abs(np.sum(P * Q)) < 1e-8 * max(1, np.abs(A).max() ** 2)
