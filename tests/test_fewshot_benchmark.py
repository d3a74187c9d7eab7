"""Tests of benchmarks/fewshot.py's vectorised episode rules against the estimators."""

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

from mahal import PrototypeClassifier
from mahal.fewshot import evaluate_episodes, sample_episodes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fewshot as bench  # noqa: E402


@pytest.mark.parametrize("n_shot", [1, 3])
def test_vectorised_rules_equal_the_classifiers(n_shot):
    X, y = load_digits(return_X_y=True)
    # (continuous coordinates: no ties between distances)
    X = X + np.random.default_rng(0).normal(scale=1e-3, size=X.shape)
    ep = sample_episodes(y, n_way=4, n_shot=n_shot, n_query=6, n_episodes=25,
                         random_state=3)
    fast = bench.episode_accuracies(X, ep, 4, n_shot, 6, block=7)
    for rule, clf in (("1-NN", KNeighborsClassifier(1)), ("proto", PrototypeClassifier()),
                      ("cos", PrototypeClassifier(metric="cosine"))):
        np.testing.assert_allclose(fast[rule], evaluate_episodes(clf, X, y, ep))


def test_lake_runs_rule_is_one_nearest_neighbour():
    rng = np.random.default_rng(1)
    runs = []
    for _ in range(3):
        train = rng.normal(size=(5, 4))
        answer = rng.permutation(5)
        runs.append((train, train[answer] + 0.01 * rng.normal(size=(5, 4)), answer))
    acc = bench.lake_accuracies(lambda Z: Z, runs)
    np.testing.assert_array_equal(acc["1-NN"], np.ones(3))
    # a transform that collapses everything: argmin picks the first training image
    acc = bench.lake_accuracies(lambda Z: np.zeros_like(Z), runs)
    np.testing.assert_allclose(acc["1-NN"], [np.mean(r[2] == 0) for r in runs])
