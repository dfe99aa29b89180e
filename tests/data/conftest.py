"""Factories for small synthetic MNIST IDX files, shared by the MNIST and config tests."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_bytes(array: np.ndarray) -> bytes:
    # Magic 0x000008NN: unsigned bytes with NN dimensions, then one big-endian uint32 per dimension.
    magic = 0x00000800 | array.ndim
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _write_bytes(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as stream:
            stream.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def idx_bytes():
    """Return the function that encodes a uint8 array as the bytes of an IDX file."""
    return _idx_bytes


@pytest.fixture
def write_bytes():
    """Return the function that writes bytes to a path, gzipped when it ends in `.gz`."""
    return _write_bytes


@pytest.fixture
def tiny_mnist():
    """Return 20 train and 5 test images of 4 x 5 pixels with labels, as uint8 arrays.

    Pixel (0, 0) of training image i is 100 + i and its label is i % 10, so every
    training image is unique and can be traced through a split.
    """
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, size=(20, 4, 5), dtype=np.uint8)
    train_images[:, 0, 0] = np.arange(20) + 100
    test_images = rng.integers(0, 256, size=(5, 4, 5), dtype=np.uint8)
    train_labels = (np.arange(20) % 10).astype(np.uint8)
    test_labels = ((np.arange(5) + 3) % 10).astype(np.uint8)
    return train_images, train_labels, test_images, test_labels


@pytest.fixture
def write_mnist_dir(tmp_path):
    """Return a function that writes four arrays as the MNIST IDX files into `tmp_path`.

    The train images and test labels are gzipped and the other two files are plain,
    so every loader test covers both forms.
    """

    def write(arrays) -> Path:
        for stem, array in zip(IDX_STEMS, arrays):
            name = f"{stem}.gz" if stem in (IDX_STEMS[0], IDX_STEMS[3]) else stem
            _write_bytes(tmp_path / name, _idx_bytes(array))
        return tmp_path

    return write
