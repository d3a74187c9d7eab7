"""Weak supervision built from (partially) labelled data.

This module turns class labels into the kinds of side information that the
weakly supervised metric learners consume: similar / dissimilar pairs,
chunklets (small groups of same-class points) and k-nearest-neighbour
triplets.  It mirrors :class:`metric_learn.Constraints` (metric-learn 0.7)
with the following fixes:

* every method is deterministic given ``random_state``;
* pair sampling never returns the same unordered pair twice, never pairs a
  point with itself, never loops forever and scales to large data sets
  without enumerating all ``n ** 2`` pairs;
* :meth:`Constraints.chunks` can draw chunks from every class;
* string labels are supported.
"""

import warnings

import numpy as np
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import validate_parameter_constraints

from ._validation import IntAtLeast

__all__ = ["Constraints", "wrap_pairs"]

# Above this many candidate pairs (and more than _ENUMERATE_FACTOR times the
# number requested) pairs are drawn by rejection-free random sampling with
# deduplication instead of being enumerated exactly: both are uniform, and drawing
# costs O(n_constraints) where listing every pair costs O(n²).
_ENUMERATE_MAX_PAIRS = 10 ** 4
_ENUMERATE_FACTOR = 4
_MAX_SAMPLING_ROUNDS = 100


def _check_positive_int(value, name):
    """Return ``value`` as a Python int, or raise scikit-learn's
    ``InvalidParameterError`` (a ``ValueError``) if it is not an int >= 1: the same
    declarative check, and message, as the estimators' parameters."""
    validate_parameter_constraints(
        {name: [IntAtLeast(1)]}, {name: value}, caller_name="Constraints")
    return int(value)


def _resolve_deprecated(new_value, new_name, old_value, old_name):
    """Handle a renamed parameter the way metric-learn 0.7 does."""
    if isinstance(old_value, str) and old_value == "deprecated":
        return new_value
    warnings.warn(
        f"'{old_name}' was renamed to '{new_name}' and will be removed in a "
        f"future version; use '{new_name}' instead.", FutureWarning,
        stacklevel=3)
    return old_value


class Constraints:
    """Generate pairs, chunks and triplets from partially known labels.

    Parameters
    ----------
    partial_labels : array-like of shape (n_samples,)
        Class label of every sample.  For numeric labels the value ``-1``
        marks a sample whose label is unknown; such samples are never used
        in a constraint.  Labels of any other dtype (e.g. strings) are all
        treated as known.

    Attributes
    ----------
    partial_labels : ndarray of shape (n_samples,)
        The labels as given (converted to a NumPy array).
    known_label_idx : ndarray of shape (n_known,)
        Indices (into ``partial_labels``) of the samples with a known label,
        in increasing order.
    known_labels : ndarray of shape (n_known,)
        ``partial_labels[known_label_idx]``.
    classes_ : ndarray of shape (n_classes,)
        The distinct known labels, sorted.

    References
    ----------
    E. P. Xing, A. Y. Ng, M. I. Jordan and S. Russell, "Distance metric learning,
    with application to clustering with side-information", NIPS 15 (2002): similar
    and dissimilar pairs from labels.

    A. Bar-Hillel, T. Hertz, N. Shental and D. Weinshall, "Learning a Mahalanobis
    Metric from Equivalence Constraints", JMLR 6 (2005), 937–965: chunklets.

    Y. Shi, A. Bellet and F. Sha, "Sparse Compositional Metric Learning", AAAI 2014:
    k-NN triplets (``generate_knntriplets``).

    Examples
    --------
    >>> from mahal.constraints import Constraints
    >>> cons = Constraints([0, 0, 1, 1, -1])
    >>> a, b, c, d = cons.all_pairs()
    >>> a.tolist(), b.tolist()
    ([0, 2], [1, 3])
    >>> c.tolist(), d.tolist()
    ([0, 0, 1, 1], [2, 3, 2, 3])
    """

    def __init__(self, partial_labels):
        labels = np.asarray(partial_labels)
        if labels.ndim != 1:
            raise ValueError(
                "partial_labels must be a 1-D array-like of labels, got an "
                f"array of shape {labels.shape}.")
        if labels.dtype.kind in "iuf":
            if labels.dtype.kind == "f" and not np.all(np.isfinite(labels)):
                raise ValueError(
                    "partial_labels must not contain NaN or infinite values; "
                    "use -1 to mark an unknown label.")
            known = labels != -1
        else:
            known = np.ones(labels.shape[0], dtype=bool)
        self.partial_labels = labels
        self.known_label_idx = np.flatnonzero(known)
        self.known_labels = labels[self.known_label_idx]

        # Integer class code of every known sample, and the known samples
        # (as positions 0..n_known-1) grouped by class: the members of class
        # c are _order[_starts[c]:_starts[c + 1]], in increasing order.
        self.classes_, codes = np.unique(self.known_labels,
                                         return_inverse=True)
        self._codes = codes.ravel().astype(np.intp)
        self._counts = np.bincount(self._codes,
                                   minlength=len(self.classes_)).astype(
                                       np.int64)
        self._order = np.argsort(self._codes, kind="stable").astype(np.intp)
        self._starts = np.concatenate([[0], np.cumsum(self._counts)])

    # ------------------------------------------------------------------ pairs
    @property
    def _n_known(self):
        return int(self.known_label_idx.shape[0])

    def _n_pairs(self, same_label):
        """Number of distinct unordered similar or dissimilar pairs."""
        n_similar = int(np.sum(self._counts * (self._counts - 1) // 2))
        if same_label:
            return n_similar
        n = self._n_known
        return n * (n - 1) // 2 - n_similar

    def _members(self, c):
        return self._order[self._starts[c]:self._starts[c + 1]]

    def _enumerate_pairs(self, same_label):
        """All distinct pairs (i < j) as positions among the known samples."""
        firsts, seconds = [np.empty(0, np.intp)], [np.empty(0, np.intp)]
        n_classes = len(self.classes_)
        for c in range(n_classes):
            members = self._members(c)
            if same_label:
                i, j = np.triu_indices(len(members), 1)
                firsts.append(members[i])
                seconds.append(members[j])
            elif c < n_classes - 1:
                # pair class c with every later class, so each pair is
                # listed once
                others = self._order[self._starts[c + 1]:]
                i = np.repeat(members, len(others))
                j = np.tile(others, len(members))
                firsts.append(np.minimum(i, j))
                seconds.append(np.maximum(i, j))
        return np.concatenate(firsts), np.concatenate(seconds)

    def _draw_pairs(self, n_pairs, same_label, rng):
        """Draw ``n_pairs`` distinct pairs uniformly without enumerating.

        A pair is drawn by picking its class ``c`` with probability
        proportional to the number of pairs whose first point lies in ``c``,
        a first point uniformly in ``c`` and a second point uniformly among
        the valid partners (``c`` minus the first point, or every other
        class).  This is exactly uniform over ordered pairs, hence over
        unordered ones.  Duplicates are removed, keeping the first draw.
        """
        n_known = self._n_known
        counts = self._counts
        if same_label:
            weights = counts * (counts - 1)
        else:
            weights = counts * (n_known - counts)
        p = weights / weights.sum()
        keys = np.empty(0, dtype=np.int64)
        for _ in range(_MAX_SAMPLING_ROUNDS):
            need = n_pairs - keys.shape[0]
            if need <= 0:
                break
            size = 2 * need + 16
            cls = rng.choice(len(counts), size=size, p=p)
            n_c = counts[cls]
            start = self._starts[cls]
            u = np.minimum((rng.random_sample(size) * n_c).astype(np.int64),
                           n_c - 1)
            if same_label:
                v = np.minimum(
                    (rng.random_sample(size) * (n_c - 1)).astype(np.int64),
                    n_c - 2)
                v += v >= u  # skip the first point itself
                second = self._order[start + v]
            else:
                n_other = n_known - n_c
                v = np.minimum(
                    (rng.random_sample(size) * n_other).astype(np.int64),
                    n_other - 1)
                v += np.where(v >= start, n_c, 0)  # skip class c's block
                second = self._order[v]
            first = self._order[start + u]
            lo = np.minimum(first, second).astype(np.int64)
            hi = np.maximum(first, second).astype(np.int64)
            keys = np.concatenate([keys, lo * n_known + hi])
            _, first_seen = np.unique(keys, return_index=True)
            keys = keys[np.sort(first_seen)]
        keys = keys[:n_pairs]
        return (keys // n_known).astype(np.intp), (keys % n_known).astype(
            np.intp)

    def _pairs(self, n_constraints, same_label, rng):
        """Sample up to ``n_constraints`` distinct pairs (original indices)."""
        n_possible = self._n_pairs(same_label)
        kind = "similar" if same_label else "dissimilar"
        if n_possible < n_constraints:
            warnings.warn(
                f"Only {n_possible} distinct {kind} pairs exist among the "
                f"{self._n_known} samples with a known label, fewer than the "
                f"{n_constraints} requested (n_constraints); returning all "
                f"{n_possible} of them.", UserWarning, stacklevel=3)
        if (n_possible <= _ENUMERATE_MAX_PAIRS
                or n_possible <= _ENUMERATE_FACTOR * n_constraints):
            first, second = self._enumerate_pairs(same_label)
            pick = rng.permutation(n_possible)[:n_constraints]
            first, second = first[pick], second[pick]
        else:
            first, second = self._draw_pairs(n_constraints, same_label, rng)
        return self.known_label_idx[first], self.known_label_idx[second]

    def positive_negative_pairs(self, n_constraints=None, same_length=False,
                                random_state=None,
                                num_constraints="deprecated"):
        """Sample similar (same label) and dissimilar (different label) pairs.

        Pairs are drawn uniformly at random without replacement among the
        distinct unordered pairs of samples with a known label; a sample is
        never paired with itself.  Each returned pair ``(i, j)`` has
        ``i < j``, and the pairs come in random order.

        When at most ``max(10**4, 4 * n_constraints)`` pairs of a kind exist
        they are enumerated and sampled exactly; otherwise they are drawn in
        vectorised batches and deduplicated, which costs
        ``O(n_samples + n_constraints)`` memory.

        Parameters
        ----------
        n_constraints : int
            Number of similar pairs and (separately) of dissimilar pairs to
            return.  If fewer distinct pairs of a kind exist, all of them are
            returned and a :class:`UserWarning` says how many were found.
        same_length : bool, default=False
            If True, truncate both kinds to the length of the shorter one.
        random_state : int, RandomState instance or None, default=None
            Seed or random number generator; an int gives reproducible
            output.
        num_constraints : int, default="deprecated"
            Deprecated alias of ``n_constraints`` (as in metric-learn).

        Returns
        -------
        a, b : ndarray of int
            Indices of the similar pairs ``(a[i], b[i])``.
        c, d : ndarray of int
            Indices of the dissimilar pairs ``(c[i], d[i])``.
        """
        n_constraints = _resolve_deprecated(
            n_constraints, "n_constraints", num_constraints, "num_constraints")
        n_constraints = _check_positive_int(n_constraints, "n_constraints")
        rng = check_random_state(random_state)
        a, b = self._pairs(n_constraints, True, rng)
        c, d = self._pairs(n_constraints, False, rng)
        if same_length and len(a) != len(c):
            n = min(len(a), len(c))
            return a[:n], b[:n], c[:n], d[:n]
        return a, b, c, d

    def all_pairs(self):
        """Return every distinct similar and dissimilar pair.

        Only samples with a known label are used.  This needs memory
        proportional to the number of pairs, i.e. ``O(n_samples ** 2)``; use
        :meth:`positive_negative_pairs` for large data.

        Returns
        -------
        a, b : ndarray of int
            All similar pairs ``(a[i], b[i])`` with ``a[i] < b[i]``, sorted
            by ``a`` then ``b``.
        c, d : ndarray of int
            All dissimilar pairs ``(c[i], d[i])`` with ``c[i] < d[i]``,
            sorted by ``c`` then ``d``.
        """
        out = []
        for same_label in (True, False):
            first, second = self._enumerate_pairs(same_label)
            order = np.lexsort((second, first))
            out.append(self.known_label_idx[first[order]])
            out.append(self.known_label_idx[second[order]])
        return tuple(out)

    # ----------------------------------------------------------------- chunks
    def chunks(self, n_chunks=100, chunk_size=2, random_state=None,
               num_chunks="deprecated"):
        """Group samples into chunklets of same-class points (for RCA).

        Each class ``c`` is cut into ``count_c // chunk_size`` disjoint
        candidate chunks (a random partition of its members); ``n_chunks``
        of all these candidates are then picked uniformly at random without
        replacement, so every class can be drawn and larger classes
        contribute chunks in proportion to their size.

        Parameters
        ----------
        n_chunks : int, default=100
            Number of chunks to form.
        chunk_size : int, default=2
            Number of samples in each chunk.
        random_state : int, RandomState instance or None, default=None
            Seed or random number generator; an int gives reproducible
            output.
        num_chunks : int, default="deprecated"
            Deprecated alias of ``n_chunks`` (as in metric-learn).

        Returns
        -------
        chunks : ndarray of int of shape (n_samples,)
            Chunk id (``0 .. n_chunks - 1``) of every sample, or ``-1`` for a
            sample in no chunk.  Samples with an unknown label are never in
            a chunk.

        Raises
        ------
        ValueError
            If the classes cannot provide ``n_chunks`` disjoint chunks of
            ``chunk_size`` points; the message gives the maximum possible.
        """
        n_chunks = _resolve_deprecated(n_chunks, "n_chunks", num_chunks,
                                       "num_chunks")
        n_chunks = _check_positive_int(n_chunks, "n_chunks")
        chunk_size = _check_positive_int(chunk_size, "chunk_size")
        rng = check_random_state(random_state)

        capacity = self._counts // chunk_size
        max_chunks = int(capacity.sum())
        if n_chunks > max_chunks:
            raise ValueError(
                f"Not enough samples to form n_chunks={n_chunks} chunks of "
                f"chunk_size={chunk_size} same-class samples: the "
                f"{len(self.classes_)} known classes (sizes "
                f"{self._counts.tolist()}) allow at most {max_chunks} "
                "chunks.")
        # candidate chunk k belongs to class slot_class[k]; draw n_chunks of
        # them, chunk id = position in the draw
        slot_class = np.repeat(np.arange(len(capacity)), capacity)
        picked = rng.permutation(max_chunks)[:n_chunks]
        picked_class = slot_class[picked]

        chunks = np.full(self.partial_labels.shape[0], -1, dtype=int)
        for c in np.unique(picked_class):
            ids = np.flatnonzero(picked_class == c)
            members = rng.permutation(self._members(c))
            members = members[:len(ids) * chunk_size]
            chunks[self.known_label_idx[members]] = np.repeat(ids, chunk_size)
        return chunks

    # --------------------------------------------------------------- triplets
    def generate_knntriplets(self, X, k_genuine, k_impostor):
        """Build (anchor, genuine neighbour, impostor) triplets from k-NN.

        For every sample ``i`` with a known label, take its ``k_genuine``
        nearest neighbours of the same class (excluding ``i``) and its
        ``k_impostor`` nearest neighbours of any other class (Euclidean
        distance), and form all ``k_genuine * k_impostor`` combinations, as
        metric-learn 0.7 does.  Samples with an unknown label are ignored.

        If a class has too few members (or too few samples lie outside it),
        ``k_genuine`` (or ``k_impostor``) is reduced for that class with a
        :class:`UserWarning`; a class left with no genuine neighbour or no
        impostor yields no triplet.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The samples the labels refer to.
        k_genuine : int
            Number of same-class neighbours per anchor.
        k_impostor : int
            Number of other-class neighbours per anchor.

        Returns
        -------
        triplets : ndarray of int of shape (n_triplets, 3)
            Rows ``(anchor, genuine, impostor)`` of indices into ``X``.
            Unlike metric-learn, which indexes the known-label subset, these
            always index the full ``X`` (the two agree when every label is
            known).  Rows are ordered by class (sorted labels), then anchor
            index, then genuine neighbour (nearest first), then impostor
            (nearest first).
        """
        X = check_array(X)
        n_samples = self.partial_labels.shape[0]
        if X.shape[0] != n_samples:
            raise ValueError(
                f"X has {X.shape[0]} samples but partial_labels has "
                f"{n_samples}; they must match.")
        k_genuine = _check_positive_int(k_genuine, "k_genuine")
        k_impostor = _check_positive_int(k_impostor, "k_impostor")
        X_known = X[self.known_label_idx]
        n_known = self._n_known

        blocks = [np.empty((0, 3), dtype=np.intp)]
        for c, label in enumerate(self.classes_.tolist()):
            members = self._members(c)
            n_c = len(members)
            k_gen = min(k_genuine, n_c - 1)
            k_imp = min(k_impostor, n_known - n_c)
            if k_gen < k_genuine:
                warnings.warn(
                    f"The class {label!r} has {n_c} elements, which is not "
                    f"sufficient to generate {k_genuine} genuine neighbors "
                    f"as specified by k_genuine. Will generate {k_gen} "
                    "genuine neighbors instead.", UserWarning, stacklevel=2)
            if k_imp < k_impostor:
                warnings.warn(
                    f"The class {label!r} has {n_known - n_c} elements of "
                    f"other classes, which is not sufficient to generate "
                    f"{k_impostor} impostor neighbors as specified by "
                    f"k_impostor. Will generate {k_imp} impostor neighbors "
                    "instead.", UserWarning, stacklevel=2)
            if k_gen == 0 or k_imp == 0:
                continue
            nn = NearestNeighbors(n_neighbors=k_gen).fit(X_known[members])
            genuine = members[nn.kneighbors(return_distance=False)]
            others = np.flatnonzero(self._codes != c)
            nn = NearestNeighbors(n_neighbors=k_imp).fit(X_known[others])
            impostors = others[nn.kneighbors(X_known[members],
                                             return_distance=False)]
            blocks.append(np.column_stack([
                np.repeat(members, k_gen * k_imp),
                np.repeat(genuine.ravel(), k_imp),
                np.tile(impostors, (1, k_gen)).ravel(),
            ]))
        triplets = np.concatenate(blocks)
        return self.known_label_idx[triplets]


def wrap_pairs(X, constraints):
    """Turn index pairs into a pairs array and +1/-1 labels.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The samples.
    constraints : tuple (a, b, c, d) of 1-D int arrays
        Similar pairs ``(a[i], b[i])`` and dissimilar pairs ``(c[i], d[i])``,
        e.g. from :meth:`Constraints.positive_negative_pairs`.

    Returns
    -------
    pairs : ndarray of shape (n_pairs, 2, n_features)
        The similar pairs followed by the dissimilar pairs.
    y : ndarray of int of shape (n_pairs,)
        ``+1`` for each similar pair, ``-1`` for each dissimilar pair.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(
            f"X must be a 2-D array (n_samples, n_features), got shape "
            f"{X.shape}.")
    if len(constraints) != 4:
        raise ValueError(
            "constraints must be a tuple (a, b, c, d) of four index arrays, "
            f"got {len(constraints)} items.")
    a, b, c, d = (np.asarray(v).ravel() for v in constraints)
    for name, v in zip("abcd", (a, b, c, d)):
        if v.size and v.dtype.kind not in "iu":
            raise ValueError(
                f"constraints index array {name} must hold integers, got "
                f"dtype {v.dtype}.")
        if v.size and (v.min() < 0 or v.max() >= X.shape[0]):
            raise ValueError(
                f"constraints index array {name} has indices outside "
                f"[0, {X.shape[0]}) for X with {X.shape[0]} samples.")
    if len(a) != len(b) or len(c) != len(d):
        raise ValueError(
            "constraints a and b (and c and d) must have equal lengths, got "
            f"{len(a)}, {len(b)}, {len(c)}, {len(d)}.")
    idx = np.vstack([np.column_stack([a, b]),
                     np.column_stack([c, d])]).astype(np.intp)
    y = np.concatenate([np.ones(len(a), dtype=int),
                        -np.ones(len(c), dtype=int)])
    return X[idx], y
