import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from eventax_lab.data import intensity_to_latency, load_mnist_idx, load_mnist_tfds, make_mnist, read_idx
from eventax_lab.data.mnist import IMAGES_MAGIC, LABELS_MAGIC

REAL_MNIST_DIR = Path(
    os.environ.get(
        "EVENTAX_LAB_MNIST_DIR",
        Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist",
    )
)
HAS_TFDS_AND_TF = all(importlib.util.find_spec(name) is not None for name in ("tensorflow_datasets", "tensorflow"))


# --- read_idx -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_roundtrip(tmp_path, suffix, idx_bytes, write_bytes):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    image_path = write_bytes(tmp_path / f"images{suffix}", idx_bytes(images))
    label_path = write_bytes(tmp_path / f"labels{suffix}", idx_bytes(labels))

    read_images = read_idx(image_path, IMAGES_MAGIC)
    assert read_images.dtype == np.uint8
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_idx(label_path, LABELS_MAGIC), labels)


def test_read_idx_wrong_magic(tmp_path, idx_bytes, write_bytes):
    path = write_bytes(tmp_path / "labels", idx_bytes(np.array([1, 2], dtype=np.uint8)))
    with pytest.raises(ValueError, match="magic number 0x00000801, expected 0x00000803"):
        read_idx(path, IMAGES_MAGIC)


@pytest.mark.parametrize(
    "n_kept, fragment",
    [
        (10, r"truncated inside its header \(10 of 16 bytes\)"),
        (16 + 17, r"contains 17 data bytes but its header shape \(2, 3, 3\) needs 18"),
        (3, "too short for an IDX header"),
    ],
)
def test_read_idx_truncated(tmp_path, n_kept, fragment, idx_bytes, write_bytes):
    data = idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))
    path = write_bytes(tmp_path / "images", data[:n_kept])
    with pytest.raises(ValueError, match=fragment):
        read_idx(path, IMAGES_MAGIC)


def test_read_idx_trailing_bytes(tmp_path, idx_bytes, write_bytes):
    path = write_bytes(tmp_path / "labels", idx_bytes(np.array([1, 2], dtype=np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match=r"contains 3 data bytes but its header shape \(2,\) needs 2"):
        read_idx(path, LABELS_MAGIC)


def test_read_idx_truncated_gzip(tmp_path, idx_bytes, write_bytes):
    full = write_bytes(tmp_path / "full.gz", idx_bytes(np.arange(200, dtype=np.uint8)))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(full.read_bytes()[:-12])
    with pytest.raises(ValueError, match="could not be decompressed"):
        read_idx(cut, LABELS_MAGIC)


# --- load_mnist_idx ---------------------------------------------------------------------


def test_load_mnist_idx_mixed_compression(tiny_mnist, write_mnist_dir):
    loaded = load_mnist_idx(write_mnist_dir(tiny_mnist))
    for read, written in zip(loaded, tiny_mnist):
        np.testing.assert_array_equal(read, written)


def test_load_mnist_idx_missing_file(tmp_path, tiny_mnist, write_mnist_dir):
    write_mnist_dir(tiny_mnist)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_mnist_idx(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "contains no t10k-images-idx3-ubyte (plain or .gz)" in message
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        assert stem in message


def test_load_mnist_idx_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist_idx(tmp_path / "nowhere")


def test_load_mnist_idx_count_mismatch(tiny_mnist, write_mnist_dir):
    train_images, train_labels, test_images, test_labels = tiny_mnist
    directory = write_mnist_dir((train_images, train_labels[:-1], test_images, test_labels))
    with pytest.raises(ValueError, match=r"train images \(20\) and labels \(19\)"):
        load_mnist_idx(directory)


def test_load_mnist_idx_label_range(tiny_mnist, write_mnist_dir):
    train_images, train_labels, test_images, test_labels = tiny_mnist
    test_labels = test_labels.copy()
    test_labels[2] = 12
    directory = write_mnist_dir((train_images, train_labels, test_images, test_labels))
    with pytest.raises(ValueError, match="test labels .* contain 12"):
        load_mnist_idx(directory)


# --- make_mnist ---------------------------------------------------------------------


def _encoded_rows(images: np.ndarray, threshold: float, t_latency_max: float) -> set[bytes]:
    flat = images.reshape(images.shape[0], -1) / 255.0
    times = intensity_to_latency(flat, t_latency_max, threshold).astype(np.float32)
    return {row.tobytes() for row in times}


def test_make_mnist_idx_splits(tiny_mnist, write_mnist_dir):
    arrays = tiny_mnist
    splits = make_mnist(source="idx", idx_dir=str(write_mnist_dir(arrays)), threshold=0.3)

    assert [len(splits[name]) for name in ("train", "val", "test")] == [18, 2, 5]
    for dataset in splits.values():
        assert dataset.n_inputs == 20
        assert dataset.n_spikes_per_input == 1
        assert dataset.n_classes == 10
        assert dataset.spikes.dtype == np.float32

    train_rows = {row.tobytes() for row in splits["train"].spikes[:, :, 0]}
    val_rows = {row.tobytes() for row in splits["val"].spikes[:, :, 0]}
    assert not train_rows & val_rows
    assert train_rows | val_rows == _encoded_rows(arrays[0], 0.3, 30.0)

    np.testing.assert_array_equal(splits["test"].targets, arrays[3].astype(np.int64))
    expected_test = intensity_to_latency(arrays[2].reshape(5, -1) / 255.0, 30.0, 0.3).astype(np.float32)
    np.testing.assert_array_equal(splits["test"].spikes[:, :, 0], expected_test)


def test_make_mnist_labels_follow_images(tiny_mnist, write_mnist_dir):
    directory = write_mnist_dir(tiny_mnist)
    splits = make_mnist(source="idx", idx_dir=directory)
    # Pixel (0, 0) of training image i is 100 + i and its label is i % 10.
    t_corner = splits["train"].spikes[:, 0, 0].astype(np.float64)
    image_index = np.rint(255.0 * (1.0 - t_corner / 30.0)).astype(int) - 100
    np.testing.assert_array_equal(splits["train"].targets, image_index % 10)


def test_make_mnist_split_seed(tiny_mnist, write_mnist_dir):
    directory = write_mnist_dir(tiny_mnist)
    first = make_mnist(source="idx", idx_dir=directory, val_fraction=0.25)
    second = make_mnist(source="idx", idx_dir=directory, val_fraction=0.25)
    other = make_mnist(source="idx", idx_dir=directory, val_fraction=0.25, split_seed=1)
    assert len(first["val"]) == 5
    np.testing.assert_array_equal(first["val"].spikes, second["val"].spikes)
    assert not np.array_equal(first["val"].spikes, other["val"].spikes)


def test_make_mnist_subsets(tiny_mnist, write_mnist_dir):
    directory = write_mnist_dir(tiny_mnist)
    full = make_mnist(source="idx", idx_dir=directory)
    subset = make_mnist(source="idx", idx_dir=directory, n_train=7, n_val=1, n_test=3)
    assert [len(subset[name]) for name in ("train", "val", "test")] == [7, 1, 3]
    np.testing.assert_array_equal(subset["train"].spikes, full["train"].spikes[:7])
    np.testing.assert_array_equal(subset["test"].spikes, full["test"].spikes[:3])


def test_make_mnist_zero_validation(tiny_mnist, write_mnist_dir):
    directory = write_mnist_dir(tiny_mnist)
    splits = make_mnist(source="idx", idx_dir=directory, val_fraction=0.0)
    assert len(splits["train"]) == 20
    assert len(splits["val"]) == 0


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(source="idx"), "source='idx' needs idx_dir"),
        (dict(source="hub"), "source must be 'tfds' or 'idx'"),
        (dict(source="idx", idx_dir=".", t_latency_max=70.0), "t_latency_max=70.0 ms must be <= t_max=60.0 ms"),
        (dict(source="idx", idx_dir=".", val_fraction=1.0), r"val_fraction must lie in \[0, 1\)"),
        (dict(source="idx", idx_dir=".", mode="log", threshold=0.0), "threshold must lie in"),
    ],
)
def test_make_mnist_rejects_bad_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_mnist(**kwargs)


def test_make_mnist_subset_too_large(tiny_mnist, write_mnist_dir):
    directory = write_mnist_dir(tiny_mnist)
    with pytest.raises(ValueError, match="n_train=50 exceeds the 18 samples of the training split"):
        make_mnist(source="idx", idx_dir=directory, n_train=50)


# --- tensorflow-datasets ------------------------------------------------------------------


def test_tfds_missing_explains_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError) as info:
        make_mnist(source="tfds")
    message = str(info.value)
    assert "pip install 'eventax-lab[mnist]'" in message
    assert "source='idx'" in message
    assert "train-images-idx3-ubyte" in message


@pytest.mark.skipif(not HAS_TFDS_AND_TF, reason="tensorflow_datasets and tensorflow are not both installed")
def test_tfds_without_data_points_to_idx(tmp_path):
    with pytest.raises(RuntimeError, match="source='idx'"):
        load_mnist_tfds(tmp_path, download=False)


# --- the real MNIST files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def real_mnist():
    if not REAL_MNIST_DIR.is_dir():
        pytest.skip(f"no MNIST IDX files at {REAL_MNIST_DIR}; set EVENTAX_LAB_MNIST_DIR to a folder with them")
    return load_mnist_idx(REAL_MNIST_DIR)


def test_real_mnist_sizes(real_mnist):
    assert real_mnist.train_images.shape == (60000, 28, 28)
    assert real_mnist.train_labels.shape == (60000,)
    assert real_mnist.test_images.shape == (10000, 28, 28)
    assert real_mnist.test_labels.shape == (10000,)


def test_real_mnist_labels(real_mnist):
    counts = np.bincount(real_mnist.train_labels, minlength=10)
    np.testing.assert_array_equal(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    np.testing.assert_array_equal(real_mnist.train_labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])


def test_real_mnist_encoding_counts_bright_pixels(real_mnist):
    splits = make_mnist(source="idx", idx_dir=REAL_MNIST_DIR, n_train=200, n_val=50, n_test=100, threshold=0.5)
    assert len(splits["val"]) == 50
    test_spikes = splits["test"].spikes[:, :, 0]
    bright = real_mnist.test_images[:100].reshape(100, -1) > 0.5 * 255
    np.testing.assert_array_equal(np.isfinite(test_spikes), bright)
    np.testing.assert_array_equal(splits["test"].targets, real_mnist.test_labels[:100])
