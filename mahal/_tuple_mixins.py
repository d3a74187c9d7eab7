"""Classifier API of the weakly supervised learners: pairs, triplets, quadruplets.

Moved out of :mod:`mahal.base` (which re-exports every name here) when the
quadruplet learners came. :class:`PairsClassifierMixin` (label +1 similar / −1
dissimilar, a distance threshold), :class:`TripletsClassifierMixin` (anchor, closer,
farther) and :class:`QuadrupletsClassifierMixin` (the pair ``(a, b)`` closer than
``(c, d)``) follow metric-learn's ``_PairsClassifierMixin``,
``_TripletsClassifierMixin`` and ``_QuadrupletsClassifierMixin``.
"""

import numbers

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ._validation import check_pair_labels, check_tuples

def _row_norms(Z):
    return np.sqrt(np.einsum("ij,ij->i", Z, Z))


_STRATEGIES = ("accuracy", "f_beta", "max_tpr", "max_tnr")


class _TupleInputMixin:
    """Tuples of ``_tuple_size`` points as input: scikit-learn's input tags (3-D
    arrays), and their check in ``fit``."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    def _validate_tuples_fit(self, tuples):
        """Check tuples for ``fit``; sets ``n_features_in_``."""
        tuples = check_tuples(tuples, self._tuple_size,
                              getattr(self, "preprocessor", None))
        self.n_features_in_ = tuples.shape[2]
        return tuples


class PairsClassifierMixin(_TupleInputMixin, ClassifierMixin):
    """Classifier API for learners fitted on pairs with labels +1 (similar) / −1.

    A pair is predicted similar (+1) when its learned distance is at most
    ``threshold_``. ``decision_function`` is ``threshold_ − distance`` (positive for
    predicted-similar pairs, as scikit-learn expects); ``score`` is the ROC AUC.
    """

    _tuple_size = 2

    def _validate_pairs_fit(self, pairs, y):
        """Check pairs and labels for ``fit``; sets ``n_features_in_`` and ``classes_``."""
        pairs = check_tuples(pairs, 2, getattr(self, "preprocessor", None))
        y = check_pair_labels(y, pairs.shape[0])
        self.n_features_in_ = pairs.shape[2]
        self.classes_ = np.array([-1, 1])
        return pairs, y

    def decision_function(self, pairs):
        """``threshold_ − distance`` for each pair (positive: predicted similar).

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)

        Returns
        -------
        scores : ndarray of shape (n_pairs,)
        """
        check_is_fitted(self, "threshold_")
        return self.threshold_ - self.pair_distance(pairs)

    def predict(self, pairs):
        """Predict +1 (similar) when the distance is at most ``threshold_``, else −1.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            The pairs to classify (identifiers with a ``preprocessor``).

        Returns
        -------
        y_pred : ndarray of shape (n_pairs,)
        """
        return np.where(self.decision_function(pairs) >= 0, 1, -1)

    def score(self, pairs, y):
        """ROC AUC of :meth:`decision_function` against the pair labels ``y``.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or of identifiers when a ``preprocessor`` was given.
        y : array-like of shape (n_pairs,)
            +1 for a similar pair, −1 for a dissimilar one.

        Returns
        -------
        score : float
        """
        from sklearn.metrics import roc_auc_score

        y = check_pair_labels(y, np.asarray(pairs).shape[0])
        return roc_auc_score(y, self.decision_function(pairs))

    def set_threshold(self, threshold):
        """Set the distance threshold below which pairs are predicted similar.

        The learner must be fitted (``NotFittedError`` otherwise, as in metric-learn):
        a threshold only means something for a learned metric.

        Parameters
        ----------
        threshold : float
            The new ``threshold_`` (finite).

        Returns
        -------
        self
        """
        check_is_fitted(self, "components_")
        if not isinstance(threshold, numbers.Real) or not np.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number; got {threshold!r}.")
        self.threshold_ = float(threshold)
        return self

    @staticmethod
    def _validate_calibration_params(strategy="accuracy", min_rate=None, beta=1.0):
        """Check :meth:`calibrate_threshold`'s parameters (metric-learn's name).

        Learners call it at the start of ``fit`` with ``calibration_params``, so that
        a mistake there fails before the metric is learned.
        """
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}; got {strategy!r}.")
        if strategy in ("max_tpr", "max_tnr"):
            if (min_rate is None or not isinstance(min_rate, numbers.Real)
                    or not 0 <= min_rate <= 1):
                raise ValueError(f"strategy={strategy!r} needs min_rate, a number in "
                                 f"[0, 1]; got {min_rate!r}.")
        if strategy == "f_beta" and not (isinstance(beta, numbers.Real)
                                         and np.isfinite(beta)):
            raise ValueError(f"beta must be a real number; got {beta!r}.")

    def calibrate_threshold(self, pairs_valid, y_valid, strategy="accuracy",
                            min_rate=None, beta=1.0):
        """Choose ``threshold_`` on labelled pairs.

        Parameters
        ----------
        pairs_valid : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Validation pairs (metric-learn's name; any labelled pairs).
        y_valid : array-like of shape (n_pairs,)
            +1 (similar) or −1 (dissimilar).
        strategy : {'accuracy', 'f_beta', 'max_tpr', 'max_tnr'}, default='accuracy'
            Maximise accuracy; maximise the F-beta score; maximise the true positive
            rate subject to a true negative rate ≥ ``min_rate``; maximise the true
            negative rate subject to a true positive rate ≥ ``min_rate``.
        min_rate : float in [0, 1], optional
            Required for 'max_tpr' and 'max_tnr'.
        beta : float, default=1.0
            For 'f_beta': recall weighs ``beta²`` times as much as precision. Any
            real number, as in metric-learn: ``beta=0`` maximises the precision, and
            ``-beta`` means the same as ``beta``.

        Returns
        -------
        self
        """
        self._validate_calibration_params(strategy, min_rate, beta)
        dist = self.pair_distance(pairs_valid)
        y = check_pair_labels(y_valid, dist.shape[0])
        order = np.argsort(dist, kind="stable")
        d, pos = dist[order], (y[order] == 1)
        n = d.shape[0]
        # Cut k: the k closest pairs are predicted similar. Only cuts between
        # distinct distances are realisable by a threshold.
        tp = np.concatenate(([0], np.cumsum(pos)))
        fp = np.arange(n + 1) - tp
        n_pos, n_neg = tp[-1], n - tp[-1]
        fn, tn = n_pos - tp, n_neg - fp
        valid = np.ones(n + 1, dtype=bool)
        valid[1:n] = d[1:] > d[:-1]
        tpr = tp / max(n_pos, 1)
        tnr = tn / max(n_neg, 1)
        if strategy == "accuracy":
            crit = (tp + tn).astype(float)
        elif strategy == "f_beta":
            b2 = beta ** 2
            denom = (1 + b2) * tp + b2 * fn + fp
            crit = np.where(denom > 0, (1 + b2) * tp / np.maximum(denom, 1), 0.0)
        elif strategy == "max_tpr":
            valid &= tnr >= min_rate
            crit = tpr + 1e-9 * tnr  # ties: prefer the larger true negative rate
        else:
            valid &= tpr >= min_rate
            crit = tnr + 1e-9 * tpr
        if not valid.any():
            raise ValueError(f"No threshold reaches min_rate={min_rate} with strategy "
                             f"{strategy!r} on these pairs.")
        k = int(np.flatnonzero(valid)[np.argmax(crit[valid])])
        if k == 0:
            threshold = d[0] - max(1.0, abs(d[0]))
        elif k == n:
            threshold = d[-1] + max(1.0, abs(d[-1]))
        else:
            threshold = 0.5 * (d[k - 1] + d[k])
        self.threshold_ = float(threshold)
        return self


class TripletsClassifierMixin(_TupleInputMixin):
    """Classifier API for learners fitted on triplets (anchor, closer, farther).

    ``decision_function`` is ``d(anchor, farther) − d(anchor, closer)``: positive when
    the learned metric orders the triplet as given; ``predict`` is its sign (±1) and
    ``score`` the fraction of triplets ordered correctly.
    """

    _tuple_size = 3

    def _validate_triplets_fit(self, triplets):
        """Check triplets for ``fit``; sets ``n_features_in_``."""
        return self._validate_tuples_fit(triplets)

    def decision_function(self, triplets):
        """``d(anchor, farther) − d(anchor, closer)`` for each triplet.

        Parameters
        ----------
        triplets : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)

        Returns
        -------
        scores : ndarray of shape (n_triplets,)
        """
        t = self._check_tuples(triplets, 3)
        G = self.components_
        return (_row_norms((t[:, 0] - t[:, 2]) @ G.T)
                - _row_norms((t[:, 0] - t[:, 1]) @ G.T))

    def predict(self, triplets):
        """+1 where the anchor is strictly closer to the second point, else −1.

        Parameters
        ----------
        triplets : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            (anchor, closer, farther) triplets of points, or of identifiers when a
            ``preprocessor`` was given.

        Returns
        -------
        y_pred : ndarray of shape (n_triplets,)
        """
        return np.where(self.decision_function(triplets) > 0, 1, -1)

    def score(self, triplets, y=None):
        """Fraction of triplets whose order the learned metric respects.

        Parameters
        ----------
        triplets : array-like of shape (n_triplets, 3, n_features) or (n_triplets, 3)
            (anchor, closer, farther) triplets.
        y : None
            Ignored (scikit-learn's signature).

        Returns
        -------
        score : float
        """
        return float(np.mean(self.predict(triplets) == 1))


class QuadrupletsClassifierMixin(_TupleInputMixin):
    """Classifier API for learners fitted on quadruplets ``(a, b, c, d)``.

    A quadruplet says that ``a`` is closer to ``b`` than ``c`` is to ``d``.
    ``decision_function`` is ``d(c, d) − d(a, b)`` (metric-learn's
    ``pair_score(a, b) − pair_score(c, d)``): positive when the learned metric orders
    the quadruplet as given; ``predict`` is its sign (±1; a tie is −1, where
    metric-learn's ``np.sign`` gives 0) and ``score`` the fraction of quadruplets
    ordered correctly.
    """

    _tuple_size = 4

    def decision_function(self, quadruplets):
        """``d(c, d) − d(a, b)`` for each quadruplet ``(a, b, c, d)``.

        Parameters
        ----------
        quadruplets : array-like of shape (n_quadruplets, 4, n_features) or \
(n_quadruplets, 4)
            Quadruplets of points, or of identifiers when a ``preprocessor`` was
            given.

        Returns
        -------
        scores : ndarray of shape (n_quadruplets,)
        """
        q = self._check_tuples(quadruplets, 4)
        G = self.components_
        return (_row_norms((q[:, 2] - q[:, 3]) @ G.T)
                - _row_norms((q[:, 0] - q[:, 1]) @ G.T))

    def predict(self, quadruplets):
        """+1 where ``a`` is strictly closer to ``b`` than ``c`` to ``d``, else −1.

        Parameters
        ----------
        quadruplets : array-like of shape (n_quadruplets, 4, n_features) or \
(n_quadruplets, 4)
            Quadruplets of points, or of identifiers when a ``preprocessor`` was
            given.

        Returns
        -------
        y_pred : ndarray of shape (n_quadruplets,)
        """
        return np.where(self.decision_function(quadruplets) > 0, 1, -1)

    def score(self, quadruplets, y=None):
        """Fraction of quadruplets whose order the learned metric respects.

        Parameters
        ----------
        quadruplets : array-like of shape (n_quadruplets, 4, n_features) or \
(n_quadruplets, 4)
            Quadruplets ``(a, b, c, d)`` with ``a`` closer to ``b`` than ``c`` to
            ``d``.
        y : None
            Ignored (scikit-learn's signature).

        Returns
        -------
        score : float
        """
        return float(np.mean(self.predict(quadruplets) == 1))
