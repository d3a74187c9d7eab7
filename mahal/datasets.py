"""Benchmark data sets with fixed train/test splits.

:func:`load_dataset` gives every benchmark data set used by the project as a
:class:`sklearn.utils.Bunch` with ``X_train, X_test, y_train, y_test``.

* ``iris``, ``wine``, ``breast_cancer`` and ``digits`` come from the copies
  bundled with scikit-learn; ``balance`` is generated from its definition.
  These need no file (see :data:`BUNDLED`).
* ``letter``, ``isolet`` and ``mnist`` are read from ``<name>.npz`` files
  whose SHA-256 checksums are verified.  The folder is ``data_home`` or the
  environment variable ``MAHAL_DATA``.
"""

import hashlib
import itertools
import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import (fetch_openml, load_breast_cancer, load_digits,
                              load_iris, load_wine)
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch

__all__ = ["load_dataset", "deskew", "make_balance_scale", "ChecksumError",
           "DATASETS", "BUNDLED", "FILE_DATASETS"]

BUNDLED = ("iris", "wine", "breast_cancer", "digits", "balance")
FILE_DATASETS = ("letter", "isolet", "mnist")
DATASETS = BUNDLED + FILE_DATASETS

#: Environment variable naming the folder that holds the ``<name>.npz`` files.
ENV_VAR = "MAHAL_DATA"

# SHA-256 of the reference files (the project's shared benchmark data).
_SHA256 = {
    "balance": "fc9bb0a5ae376d44c9217396fc6c4196a1d39198aa4ddbb40e544173375d3a17",
    "isolet": "6831a798721f01e04a26a96b0bc4babb5f8011eafb6ada319fb4d8f74422048a",
    "letter": "b0abe1314444f284a1708a0884c24861821506a50ec14e13c54b139bf9a3dc14",
    "mnist": "f8d7addc92b8535268fe532abc78894d0fe74ccd7e0ea5680ffc7957c51a1e12",
}

_SKLEARN_LOADERS = {
    "iris": load_iris,
    "wine": load_wine,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
}

_DESCRIPTIONS = {
    "iris": "Iris (150 x 4, 3 classes), scikit-learn's bundled copy; "
            "stratified 70/30 split.",
    "wine": "Wine (178 x 13, 3 classes), scikit-learn's bundled copy; "
            "stratified 70/30 split.",
    "breast_cancer": "Breast Cancer Wisconsin (diagnostic) (569 x 30, 2 "
                     "classes), scikit-learn's bundled copy; stratified "
                     "70/30 split.",
    "digits": "Optical digits 8x8 (1797 x 64, 10 classes), scikit-learn's "
              "bundled copy; stratified 70/30 split.",
    "balance": "UCI Balance Scale (625 x 4, classes L/B/R), generated from "
               "its definition in UCI row order; stratified 70/30 split.",
    "letter": "UCI Letter Recognition (20000 x 16, 26 classes); first 16000 "
              "rows train, last 4000 test.",
    "isolet": "UCI ISOLET, partial (617 features, 26 classes): isolet1 "
              "(1560 rows) train, isolet5 (1559 rows, the official test "
              "part) test; isolet2-4 are not included.",
    "mnist": "MNIST (784 pixel features, 10 classes), official 60000 train "
             "/ 10000 test; uint8 pixels converted to float64 in 0-255 "
             "(not rescaled).",
}

# OpenML copies used only as a fallback when no file is found.
_OPENML = {
    "letter": {"name": "letter", "version": 1},
    "isolet": {"name": "isolet", "version": 1},
    "mnist": {"name": "mnist_784", "version": 1},
}

# (real path, size, mtime_ns) -> hex digest, so a file is hashed once per
# process unless it changes.
_HASH_CACHE = {}


class ChecksumError(ValueError):
    """A data file's SHA-256 does not match the expected checksum."""


def make_balance_scale():
    """Generate the full UCI Balance Scale data set from its definition.

    Every combination of left weight ``LW``, left distance ``LD``, right
    weight ``RW`` and right distance ``RD`` in ``1..5`` is one row, in the
    UCI order (``LW`` varies slowest, ``RD`` fastest).  The label is ``'L'``
    if ``LW * LD > RW * RD``, ``'R'`` if it is smaller and ``'B'``
    (balanced) if equal.

    Returns
    -------
    X : ndarray of float64 of shape (625, 4)
        Columns ``LW, LD, RW, RD``.
    y : ndarray of str of shape (625,)
        Labels ``'L'``, ``'B'`` or ``'R'``.
    """
    X = np.array(list(itertools.product(range(1, 6), repeat=4)),
                 dtype=np.float64)
    left = X[:, 0] * X[:, 1]
    right = X[:, 2] * X[:, 3]
    y = np.where(left > right, "L", np.where(left < right, "R", "B"))
    return X, y


def deskew(images, shape=(28, 28)):
    """Deskew images by their second moments (the MNIST preprocessing of LMNN).

    Each image is sheared horizontally so that its ink has no correlation
    between row and column, and shifted so that its ink's centroid lands on
    the centre of the frame: with the intensity-weighted means ``(r̄, c̄)``
    of the pixel coordinates, the skew ``α = cov(r, c) / var(r)`` and the
    centre ``(h / 2, w / 2)``, the output pixel ``(r, c)`` takes the
    (bilinearly interpolated) input at ``(r̄ + r − h / 2,
    c̄ + c − w / 2 + α (r − h / 2))``, zero outside the frame.  A stroke
    slanted by ``α`` columns per row becomes upright.  Weinberger & Saul (2009) evaluate LMNN on MNIST
    images deskewed in this way (after LeCun et al., 1998).

    Parameters
    ----------
    images : array-like of shape (n_images, h * w)
        The images, one flattened row-major image per row (uint8 or float;
        intensity is ink).
    shape : tuple of int, default=(28, 28)
        ``(h, w)``, the shape of one image.

    Returns
    -------
    deskewed : ndarray of shape (n_images, h * w), float64
        The deskewed images, in the input's intensity units; an image with
        no ink, or with all its ink in one row, is returned unchanged.

    References
    ----------
    .. [1] K. Q. Weinberger and L. K. Saul, "Distance Metric Learning for
       Large Margin Nearest Neighbor Classification", JMLR 10, 2009.
    .. [2] Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based
       learning applied to document recognition", Proc. IEEE 86(11), 1998.

    Examples
    --------
    A stroke slanted by half a column per row becomes a vertical line:

    >>> import numpy as np
    >>> from mahal.datasets import deskew
    >>> image = np.zeros((28, 28))
    >>> for r in range(4, 24):
    ...     image[r, 8 + r // 2] = 1.0
    >>> upright = deskew(image.reshape(1, -1)).reshape(28, 28)
    >>> cols = np.arange(28)
    >>> centres = [(upright[r] * cols).sum() / upright[r].sum()
    ...            for r in range(8, 20)]
    >>> bool(np.ptp(centres) < 0.6)
    True
    """
    h, w = (int(v) for v in shape)
    X = np.asarray(images, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != h * w:
        raise ValueError(
            f"deskew expects an array of shape (n_images, {h * w}) for images "
            f"of shape {(h, w)}; got shape {X.shape}.")
    rows, cols = (a.ravel().astype(np.float64) for a in np.mgrid[:h, :w])
    out = X.copy()
    batch = 2048  # images per batch: a few (batch, h * w) arrays in memory
    for start in range(0, X.shape[0], batch):
        B = X[start:start + batch]
        mass = B.sum(axis=1)
        ok = mass > 0
        P = B[ok] / mass[ok, None]
        r_mean, c_mean = P @ rows, P @ cols
        var_r = P @ rows ** 2 - r_mean ** 2
        cov = P @ (rows * cols) - r_mean * c_mean
        keep = var_r > 1e-12 * h * h
        idx = np.flatnonzero(ok)[keep]
        if idx.size:
            dr = rows - h / 2.0
            src_r = r_mean[keep, None] + dr
            src_c = (c_mean[keep, None] + (cols - w / 2.0)
                     + (cov[keep] / var_r[keep])[:, None] * dr)
            out[start + idx] = _bilinear(B[idx], src_r, src_c, h, w)
    return out


def _bilinear(images, src_r, src_c, h, w):
    """Sample each flattened image at its own points, bilinearly, zero outside."""
    r0, c0 = np.floor(src_r), np.floor(src_c)
    fr, fc = src_r - r0, src_c - c0
    r0, c0 = r0.astype(np.intp), c0.astype(np.intp)
    base = (np.arange(images.shape[0]) * (h * w))[:, None]
    flat = images.ravel()
    result = np.zeros(src_r.shape)
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            r, c = r0 + dr, c0 + dc
            inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            pixel = np.where(inside, base + r * w + c, 0)
            result += np.where(inside, flat[pixel], 0.0) * wr * wc
    return result


_deskew_images = deskew  # load_dataset's parameter of the same name hides it


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path, expected):
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``expected``."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    actual = _HASH_CACHE.get(key)
    if actual is None:
        actual = _sha256(path)
        _HASH_CACHE[key] = actual
    if actual != expected:
        raise ChecksumError(
            f"Checksum mismatch for data file {path}: expected SHA-256 "
            f"{expected}, got {actual}. The file is corrupted or is not the "
            f"reference copy; replace it with the reference "
            f"{Path(path).name}.")


def _read_npz(path, keys):
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in keys if k not in f.files]
        if missing:
            raise ValueError(
                f"Data file {path} lacks the arrays {missing}; expected "
                f"arrays {list(keys)}.")
        return {k: f[k] for k in keys}


def _split_file_arrays(name, arrays):
    """Map the arrays of ``<name>.npz`` to the train/test split."""
    if name == "letter":
        X, y = arrays["X"], arrays["y"]
        return X[:16000], X[16000:], y[:16000], y[16000:]
    return arrays["X"], arrays["X_test"], arrays["y"], arrays["y_test"]


def _file_keys(name):
    return ("X", "y") if name == "letter" else ("X", "y", "X_test", "y_test")


def _search_dir(data_home):
    """Folder to look in for the data files, and a note on where it came from."""
    if data_home is not None:
        return Path(data_home).expanduser(), "data_home"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"environment variable {ENV_VAR}"
    return Path.home() / ".mahal_data", (
        f"default folder, as data_home is None and {ENV_VAR} is not set")


def _as_int_labels(y):
    y = np.asarray(y)
    try:
        return y.astype(np.int64)
    except ValueError:
        return y.astype(np.float64).astype(np.int64)


def _download(name, folder):
    """Fetch ``name`` from OpenML and cache it as ``<name>-openml.npz``."""
    spec = _OPENML[name]
    data = fetch_openml(as_frame=False, **spec)
    X = np.asarray(data.data, dtype=np.float64)
    y = np.asarray(data.target)
    if name == "letter":
        arrays = {"X": X, "y": y.astype(str)}
    elif name == "isolet":
        # OpenML holds isolet1-4 (6238 rows) followed by isolet5 (1559)
        arrays = {"X": X[:-1559], "y": _as_int_labels(y[:-1559]),
                  "X_test": X[-1559:], "y_test": _as_int_labels(y[-1559:])}
    else:  # mnist: 60000 train followed by 10000 test
        X = np.rint(X).astype(np.uint8)
        y = _as_int_labels(y)
        arrays = {"X": X[:60000], "y": y[:60000],
                  "X_test": X[60000:], "y_test": y[60000:]}
    source = (f"OpenML {spec['name']} version {spec['version']}, downloaded "
              "by mahal; not checked against the reference SHA-256")
    path = folder / f"{name}-openml.npz"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, source=np.array(source), **arrays)
    except OSError as exc:
        warnings.warn(f"Could not cache the downloaded {name} data as "
                      f"{path}: {exc}", UserWarning, stacklevel=3)
        path = None
    return arrays, source, path


def _load_file_dataset(name, data_home, download_if_missing):
    folder, origin = _search_dir(data_home)
    filename = f"{name}.npz"
    path = folder / filename
    keys = _file_keys(name)
    if path.is_file():
        _verify(path, _SHA256[name])
        return _read_npz(path, keys), str(path)
    cached = folder / f"{name}-openml.npz"
    if cached.is_file():
        return _read_npz(cached, keys), f"{cached} (OpenML copy, unverified)"

    message = (
        f"Data file {filename!r} for the {name!r} data set was not found: "
        f"looked for {path} (folder from {origin}). To fix this, put "
        f"{filename} (from the project's shared benchmark data) in a folder "
        f"and pass data_home=<that folder> to load_dataset, or set the "
        f"environment variable {ENV_VAR} to that folder.")
    if not download_if_missing:
        raise FileNotFoundError(
            message + " Downloading from OpenML was not attempted "
            "(download_if_missing=False).")
    try:
        arrays, source, saved = _download(name, folder)
    except Exception as exc:  # any network / OpenML failure
        raise FileNotFoundError(
            message + f" Downloading it from OpenML failed too: "
            f"{type(exc).__name__}: {exc}") from exc
    where = saved if saved is not None else "not cached"
    return arrays, f"{source} ({where})"


def load_dataset(name, data_home=None, random_state=0,
                 download_if_missing=True, deskew=False):
    """Load a benchmark data set with its train/test split.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``'iris'``, ``'wine'``, ``'breast_cancer'``,
        ``'digits'``, ``'balance'``, ``'letter'``, ``'isolet'``, ``'mnist'``.
    data_home : str or path-like, default=None
        Folder holding ``<name>.npz`` for ``letter``, ``isolet`` and
        ``mnist``.  If None, the folder named by the environment variable
        ``MAHAL_DATA`` is used, or ``~/.mahal_data`` if that is unset.
        Ignored for the data sets in :data:`BUNDLED`.
    random_state : int, RandomState instance or None, default=0
        Seed of the train/test split of the data sets in :data:`BUNDLED`.
        The other data sets have a fixed split and ignore it.
    download_if_missing : bool, default=True
        If ``<name>.npz`` is not found, try to fetch the data set from
        OpenML with :func:`sklearn.datasets.fetch_openml` (``letter``
        version 1, ``isolet`` version 1, ``mnist_784`` version 1) and cache
        it as ``<name>-openml.npz`` in the same format in the folder above.
        The OpenML copies may differ from the reference files and are not
        checked against their SHA-256 (OpenML's ``isolet`` holds isolet1-4
        as training part, where the reference file holds isolet1 only).
    deskew : bool, default=False
        ``mnist`` only: deskew every image (train and test) by its second
        moments with :func:`mahal.datasets.deskew`, the preprocessing of
        LMNN's MNIST results (Weinberger & Saul, 2009).

    Returns
    -------
    data : :class:`sklearn.utils.Bunch`
        With ``X_train``, ``X_test`` (float64 arrays), ``y_train``,
        ``y_test`` (labels), ``name``, ``description`` (a short provenance
        string) and ``source`` (where the data was read from).

    Raises
    ------
    ValueError
        If ``name`` is not a known data set, or ``deskew`` is asked for a
        data set other than ``mnist``.
    FileNotFoundError
        If the file of ``letter``, ``isolet`` or ``mnist`` is missing and
        could not be downloaded; the message says how to provide it.
    ChecksumError
        If a ``<name>.npz`` file does not have the expected SHA-256.

    Notes
    -----
    Splits:

    * ``iris``, ``wine``, ``breast_cancer``, ``digits`` and ``balance``:
      ``train_test_split(X, y, test_size=0.3, stratify=y,
      random_state=random_state)``; with the default ``random_state=0`` the
      split is fixed (e.g. iris 105 train / 45 test).
    * ``letter``: the first 16000 rows train, the last 4000 test.
    * ``isolet``: isolet1 (1560 rows) train, isolet5 (1559 rows) test.
    * ``mnist``: the official 60000 train / 10000 test; the uint8 pixels are
      converted to float64 without rescaling (values 0-255).

    The SHA-256 of each file is computed once per process (again only if
    the file's size or modification time changes).

    Examples
    --------
    >>> from mahal import load_dataset
    >>> data = load_dataset("iris")
    >>> data.X_train.shape, data.X_test.shape
    ((105, 4), (45, 4))
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(
            f"Unknown data set name {name!r}; expected one of "
            f"{', '.join(DATASETS)}.")
    if deskew and name != "mnist":
        raise ValueError(
            f"deskew=True applies to the images of 'mnist' only, not {name!r}.")

    if name in BUNDLED:
        if name == "balance":
            X, y = make_balance_scale()
            source = "generated from the Balance Scale definition"
        else:
            X, y = _SKLEARN_LOADERS[name](return_X_y=True)
            source = f"sklearn.datasets.load_{name}"
        X_train, X_test, y_train, y_test = train_test_split(
            np.asarray(X, dtype=np.float64), y, test_size=0.3, stratify=y,
            random_state=random_state)
    else:
        arrays, source = _load_file_dataset(name, data_home,
                                            download_if_missing)
        X_train, X_test, y_train, y_test = _split_file_arrays(name, arrays)
        X_train = np.asarray(X_train, dtype=np.float64)
        X_test = np.asarray(X_test, dtype=np.float64)
        if deskew:
            X_train, X_test = _deskew_images(X_train), _deskew_images(X_test)
            source += ", deskewed"

    return Bunch(X_train=X_train, X_test=X_test, y_train=y_train,
                 y_test=y_test, name=name, description=_DESCRIPTIONS[name],
                 source=source)
