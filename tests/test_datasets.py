"""Tests of mahal.datasets.

Tests that need the reference files read them from the folder named by the
environment variable MAHAL_DATA (in CI: ../shared/datasets relative to the
repository) and are skipped when it is unset.  No test downloads anything:
the OpenML fallback is exercised with a stand-in for fetch_openml.
"""

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets as skdatasets
from sklearn.utils import Bunch

from mahal import datasets as mds
from mahal.datasets import (BUNDLED, DATASETS, ChecksumError, load_dataset,
                            make_balance_scale)


def _data_dir():
    path = os.environ.get("MAHAL_DATA")
    if not path:
        pytest.skip("set MAHAL_DATA to the folder holding the reference "
                    "data files (letter.npz, isolet.npz, mnist.npz, "
                    "balance.npz) to run this test")
    return Path(path)


def _sorted_rows(X, y):
    """Rows of (X, y) in a canonical order, to compare multisets of rows."""
    y = np.asarray(y).astype(str)
    order = np.lexsort(np.vstack([X.T[::-1], y[None, :]])[::-1])
    return X[order], y[order]


# ---------------------------------------------------------------- bundled
SKLEARN_NAMES = ["iris", "wine", "breast_cancer", "digits"]


def test_name_tuples():
    assert BUNDLED == ("iris", "wine", "breast_cancer", "digits", "balance")
    assert set(DATASETS) == set(BUNDLED) | {"letter", "isolet", "mnist"}


@pytest.mark.parametrize("name", SKLEARN_NAMES)
def test_sklearn_datasets_split(name):
    X, y = getattr(skdatasets, f"load_{name}")(return_X_y=True)
    data = load_dataset(name)
    n_test = math.ceil(0.3 * len(y))
    assert data.X_test.shape == (n_test, X.shape[1])
    assert data.X_train.shape == (len(y) - n_test, X.shape[1])
    assert data.X_train.dtype == np.float64
    assert data.name == name and isinstance(data.description, str)
    # train + test is exactly the data set (as a multiset of rows)
    both = _sorted_rows(np.vstack([data.X_train, data.X_test]),
                        np.concatenate([data.y_train, data.y_test]))
    ref = _sorted_rows(X.astype(float), y)
    np.testing.assert_array_equal(both[0], ref[0])
    np.testing.assert_array_equal(both[1], ref[1])
    # stratified: each class's test count is within 1 of 30 % of it
    for label in np.unique(y):
        assert abs(np.sum(data.y_test == label)
                   - 0.3 * np.sum(y == label)) <= 1


def test_iris_sizes_and_determinism():
    a = load_dataset("iris")
    b = load_dataset("iris", random_state=0)
    c = load_dataset("iris", random_state=1)
    assert (len(a.y_train), len(a.y_test)) == (105, 45)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.X_train, c.X_train)
    np.testing.assert_array_equal(np.bincount(a.y_test), [15, 15, 15])


# ---------------------------------------------------------------- balance
def test_balance_matches_definition():
    X, y = make_balance_scale()
    assert X.shape == (625, 4) and X.dtype == np.float64
    rows = []
    for lw in range(1, 6):
        for ld in range(1, 6):
            for rw in range(1, 6):
                for rd in range(1, 6):
                    rows.append((lw, ld, rw, rd))
    np.testing.assert_array_equal(X, np.array(rows, dtype=float))
    for (lw, ld, rw, rd), label in zip(rows, y):
        torque = lw * ld - rw * rd
        assert label == ("L" if torque > 0 else "R" if torque < 0 else "B")
    # the UCI class counts
    assert {k: int(np.sum(y == k)) for k in "LBR"} == {"L": 288, "B": 49,
                                                       "R": 288}


def test_balance_split():
    X, y = make_balance_scale()
    data = load_dataset("balance", random_state=3)
    assert data.X_train.shape == (437, 4) and data.X_test.shape == (188, 4)
    assert data.y_train.dtype.kind == "U"
    both = _sorted_rows(np.vstack([data.X_train, data.X_test]),
                        np.concatenate([data.y_train, data.y_test]))
    ref = _sorted_rows(X, y)
    np.testing.assert_array_equal(both[0], ref[0])
    np.testing.assert_array_equal(both[1], ref[1])
    assert abs(np.sum(data.y_test == "B") - 0.3 * 49) <= 1


def test_balance_matches_reference_file():
    path = _data_dir() / "balance.npz"
    ref = np.load(path)
    X, y = make_balance_scale()
    np.testing.assert_array_equal(X, ref["X"])
    np.testing.assert_array_equal(y, ref["y"])
    assert X.dtype == ref["X"].dtype


# ------------------------------------------------------ reference files
def test_letter_from_env():
    folder = _data_dir()
    data = load_dataset("letter", download_if_missing=False)
    ref = np.load(folder / "letter.npz")
    assert data.X_train.shape == (16000, 16)
    assert data.X_test.shape == (4000, 16)
    np.testing.assert_array_equal(data.X_train, ref["X"][:16000])
    np.testing.assert_array_equal(data.y_test, ref["y"][16000:])
    assert len(np.unique(data.y_train)) == 26
    # data_home overrides the environment variable and gives the same data
    again = load_dataset("letter", data_home=folder,
                         download_if_missing=False)
    np.testing.assert_array_equal(again.X_test, data.X_test)


def test_isolet_from_env():
    _data_dir()
    data = load_dataset("isolet", download_if_missing=False)
    assert data.X_train.shape == (1560, 617)
    assert data.X_test.shape == (1559, 617)
    assert data.X_train.dtype == np.float64
    np.testing.assert_array_equal(np.unique(data.y_train), np.arange(1, 27))


def test_mnist_from_env():
    folder = _data_dir()
    data = load_dataset("mnist", download_if_missing=False)
    assert data.X_train.shape == (60000, 784)
    assert data.X_test.shape == (10000, 784)
    assert data.X_train.dtype == np.float64
    assert len(data.y_train) == 60000 and len(data.y_test) == 10000
    ref = np.load(folder / "mnist.npz")
    # converted to float, not rescaled
    np.testing.assert_array_equal(data.X_test, ref["X_test"].astype(float))
    assert data.X_train.max() == 255.0


# ------------------------------------------------------------- checksums
def _write_letter_like(path, n=20000):
    rng = np.random.RandomState(0)
    np.savez(path, X=rng.rand(n, 2), y=rng.choice(list("ABC"), n))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checksum_mismatch_raises(tmp_path):
    actual = _write_letter_like(tmp_path / "letter.npz")
    with pytest.raises(ChecksumError) as info:
        load_dataset("letter", data_home=tmp_path, download_if_missing=False)
    message = str(info.value)
    assert "letter.npz" in message
    assert actual in message and mds._SHA256["letter"] in message


def test_corrupted_copy_of_reference_raises(tmp_path):
    data = bytearray((_data_dir() / "letter.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "letter.npz").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="letter.npz"):
        load_dataset("letter", data_home=tmp_path, download_if_missing=False)


def test_verified_file_loads_and_hash_is_cached(tmp_path, monkeypatch):
    path = tmp_path / "letter.npz"
    digest = _write_letter_like(path)
    monkeypatch.setitem(mds._SHA256, "letter", digest)
    calls = []
    real = mds._sha256
    monkeypatch.setattr(mds, "_sha256",
                        lambda p: calls.append(p) or real(p))
    data = load_dataset("letter", data_home=tmp_path,
                        download_if_missing=False)
    ref = np.load(path)
    np.testing.assert_array_equal(data.X_train, ref["X"][:16000])
    np.testing.assert_array_equal(data.y_test, ref["y"][16000:])
    load_dataset("letter", data_home=tmp_path, download_if_missing=False)
    assert len(calls) == 1
    # a changed file is hashed again and rejected
    _write_letter_like(path, n=20001)
    with pytest.raises(ChecksumError):
        load_dataset("letter", data_home=tmp_path, download_if_missing=False)
    assert len(calls) == 2


# -------------------------------------------------------- missing / names
def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist", data_home=tmp_path, download_if_missing=False)
    message = str(info.value)
    assert "mnist.npz" in message and str(tmp_path) in message
    assert "MAHAL_DATA" in message and "data_home" in message


def test_missing_file_via_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MAHAL_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="isolet.npz") as info:
        load_dataset("isolet", download_if_missing=False)
    assert str(tmp_path) in str(info.value)
    assert "environment variable MAHAL_DATA" in str(info.value)


def test_failed_download_is_reported(tmp_path, monkeypatch):
    def offline(**kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(mds, "fetch_openml", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("letter", data_home=tmp_path)
    message = str(info.value)
    assert "letter.npz" in message and "MAHAL_DATA" in message
    assert "failed too" in message and "network unreachable" in message


def test_download_fallback_caches_npz(tmp_path, monkeypatch):
    rng = np.random.RandomState(0)
    pixels = rng.randint(0, 256, (70000, 3)).astype(float)
    target = rng.randint(0, 10, 70000).astype(str)
    requests = []

    def fake_fetch(**kwargs):
        requests.append(kwargs)
        return Bunch(data=pixels, target=target)

    monkeypatch.setattr(mds, "fetch_openml", fake_fetch)
    data = load_dataset("mnist", data_home=tmp_path)
    assert requests[0]["name"] == "mnist_784"
    np.testing.assert_array_equal(data.X_train, pixels[:60000])
    np.testing.assert_array_equal(data.y_test, target[60000:].astype(int))
    cached = np.load(tmp_path / "mnist-openml.npz")
    assert cached["X"].dtype == np.uint8
    assert cached["X_test"].shape == (10000, 3)

    # the cached copy is used afterwards, without fetching
    monkeypatch.setattr(mds, "fetch_openml", None)
    again = load_dataset("mnist", data_home=tmp_path,
                         download_if_missing=False)
    np.testing.assert_array_equal(again.X_test, data.X_test)
    np.testing.assert_array_equal(again.y_train, data.y_train)


@pytest.mark.parametrize("name", ["mnist784", "Iris", "", None])
def test_unknown_name(name):
    with pytest.raises(ValueError, match="Unknown data set") as info:
        load_dataset(name)
    for valid in DATASETS:
        assert valid in str(info.value)


# ---------------------------------------------------------------- deskew


def _stroke(rows, col_of_row, shape=(28, 28)):
    image = np.zeros(shape)
    for r in rows:
        image[r, col_of_row(r)] = 1.0
    return image


@pytest.mark.parametrize("c0", [0, 2])
def test_deskew_straightens_a_slanted_stroke(c0):
    # The stroke c = c0 + r, rows 4..24: by hand, r̄ = 14, c̄ = c0 + 14 and the
    # skew α = cov(r, c) / var(r) = 1, so the output pixel (r, c) reads the
    # input at (r, c0 + r + c − 14): the stroke becomes column 14, rows 4..24,
    # exactly (integer sample points, so no interpolation blur).
    image = _stroke(range(4, 25), lambda r: c0 + r)
    expected = _stroke(range(4, 25), lambda r: 14)
    out = mds.deskew(image.reshape(1, -1)).reshape(28, 28)
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_deskew_shifts_the_centroid_to_the_centre():
    # An upright stroke off centre (column 5, rows 2..12: centroid (7, 5)) is only
    # moved: to column 14, rows 9..19.
    image = _stroke(range(2, 13), lambda r: 5)
    expected = _stroke(range(9, 20), lambda r: 14)
    out = mds.deskew(image.reshape(1, -1)).reshape(28, 28)
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_deskew_half_column_slant_against_the_formula():
    # A shear of α = 1/2 with bilinear interpolation, against the formula of the
    # docstring evaluated pixel by pixel with scipy's map_coordinates.
    from scipy.ndimage import map_coordinates
    rng = np.random.RandomState(0)
    image = _stroke(range(3, 25), lambda r: 4 + r // 2) * rng.uniform(0.5, 1, (28, 28))
    p = image / image.sum()
    r_idx, c_idx = np.mgrid[:28, :28].astype(float)
    rm, cm = (p * r_idx).sum(), (p * c_idx).sum()
    alpha = (p * (r_idx - rm) * (c_idx - cm)).sum() / (p * (r_idx - rm) ** 2).sum()
    src_r = rm + r_idx - 14
    src_c = cm + c_idx - 14 + alpha * (r_idx - 14)
    expected = map_coordinates(image, [src_r, src_c], order=1, mode="grid-constant")
    out = mds.deskew(image.reshape(1, -1)).reshape(28, 28)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    # and the result has (almost) no row/column correlation left
    q = out / out.sum()
    rm2, cm2 = (q * r_idx).sum(), (q * c_idx).sum()
    assert abs((q * (r_idx - rm2) * (c_idx - cm2)).sum()) < 0.05 * abs(
        (p * (r_idx - rm) * (c_idx - cm)).sum())


def test_deskew_keeps_blank_images_and_checks_shape():
    X = np.zeros((2, 784))
    X[1, 300] = 7.0
    out = mds.deskew(X)
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(out[1], X[1])  # ink in one row: no skew to measure
    with pytest.raises(ValueError, match="shape"):
        mds.deskew(np.zeros((3, 100)))


def test_deskew_only_for_mnist():
    with pytest.raises(ValueError, match="mnist"):
        load_dataset("iris", deskew=True)


def test_mnist_deskewed_from_env():
    data_dir = _data_dir()
    plain = load_dataset("mnist", data_home=data_dir)
    b = load_dataset("mnist", data_home=data_dir, deskew=True)
    assert b.X_train.shape == plain.X_train.shape
    assert b.X_test.shape == plain.X_test.shape
    np.testing.assert_allclose(b.X_train[:50], mds.deskew(plain.X_train[:50]))
    np.testing.assert_allclose(b.X_test[-50:], mds.deskew(plain.X_test[-50:]))
    assert "deskewed" in b.source
