"""MNIST as input spike times: loaders for IDX files and tensorflow-datasets, and the encoder.

Each 28 x 28 image becomes 784 input neurons (row-major pixel order) that spike at
most once, brighter pixels earlier (see `intensity_to_latency`).
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from eventax_lab.data._checks import validate_sample_count, validate_seed, validate_t_max
from eventax_lab.data.base import SpikeDataset
from eventax_lab.data.encoding import intensity_to_latency, validate_intensity_code

logger = logging.getLogger(__name__)

IMAGES_MAGIC = 0x00000803
"""IDX magic number of an unsigned-byte array with 3 dimensions (images)."""
LABELS_MAGIC = 0x00000801
"""IDX magic number of an unsigned-byte array with 1 dimension (labels)."""

IDX_FILENAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""Standard MNIST IDX file names; each may also be present gzipped, with `.gz`."""

N_CLASSES = 10

# Rows encoded per step of make_mnist; bounds the float64 temporaries to about
# 5000 * 784 * 8 bytes = 31 MB instead of 340 MB for the full training set.
_ENCODE_CHUNK = 5000

_IDX_HINT = (
    "To use local files instead, put the four MNIST IDX files ("
    + ", ".join(IDX_FILENAMES.values())
    + ", each optionally ending in .gz) in one folder and call "
    "make_mnist(source='idx', idx_dir=FOLDER), or with Hydra set "
    "data.source=idx data.idx_dir=FOLDER."
)


class MnistArrays(NamedTuple):
    """The raw MNIST images (uint8 `[n, rows, cols]`, 0-255) and labels (uint8 `[n]`, 0-9)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def read_idx(path: str | os.PathLike, expected_magic: int) -> np.ndarray:
    """Read an unsigned-byte IDX file, plain or gzipped (by a `.gz` suffix).

    An IDX file starts with a big-endian 4-byte magic number, whose last byte is
    the number of dimensions, then one big-endian uint32 size per dimension, then
    the data as uint8 in C order.

    **Arguments:**

    - `path`: the file to read.
    - `expected_magic`: `IMAGES_MAGIC` or `LABELS_MAGIC`.

    **Returns:** a read-only uint8 array whose shape is the sizes in the header.

    **Raises:** `ValueError` when the magic number differs from `expected_magic`,
    when the file is shorter or longer than its header states, or when a gzipped
    file is corrupt or truncated.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                data = stream.read()
        else:
            data = path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise ValueError(
            f"{path} could not be decompressed ({type(error).__name__}: {error}): it is "
            "truncated or not gzip data. Download it again, or remove the .gz suffix "
            "if the file is not compressed."
        ) from error

    if len(data) < 4:
        raise ValueError(
            f"{path} is {len(data)} bytes long, too short for an IDX header; download it again."
        )
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"{path} has magic number 0x{magic:08x}, expected 0x{expected_magic:08x}; "
            "check that it is the right MNIST file, and give a gzipped file the .gz "
            "suffix so it is decompressed."
        )

    n_dims = data[3]
    header_size = 4 + 4 * n_dims
    if len(data) < header_size:
        raise ValueError(
            f"{path} is truncated inside its header ({len(data)} of {header_size} "
            "bytes); download it again."
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))

    n_expected = math.prod(shape)
    n_found = len(data) - header_size
    if n_found != n_expected:
        raise ValueError(
            f"{path} contains {n_found} data bytes but its header shape {shape} needs "
            f"{n_expected}; the file is truncated or corrupt, download it again."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _find_idx_files(directory: Path) -> dict[str, Path]:
    found = {}
    missing = []
    for key, stem in IDX_FILENAMES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        existing = [path for path in candidates if path.is_file()]
        if existing:
            found[key] = existing[0]
        else:
            missing.append(stem)

    if missing:
        state = "contains" if directory.is_dir() else "does not exist, so it contains"
        raise FileNotFoundError(
            f"MNIST IDX directory {directory} {state} no {', '.join(missing)} (plain or "
            f".gz). Expected files: {', '.join(IDX_FILENAMES.values())}, each plain or "
            "ending in .gz; download them into that folder or point idx_dir at the "
            "folder that contains them."
        )
    return found


def _check_split(images: np.ndarray, labels: np.ndarray, split: str, directory: object) -> None:
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST {split} images ({images.shape[0]}) and labels ({labels.shape[0]}) "
            f"in {directory} differ in count; the files do not belong together."
        )
    if labels.size and labels.max() >= N_CLASSES:
        raise ValueError(
            f"MNIST {split} labels in {directory} contain {int(labels.max())}, but MNIST "
            f"labels are 0 to {N_CLASSES - 1}; the labels file is not an MNIST file."
        )


def load_mnist_idx(directory: str | os.PathLike) -> MnistArrays:
    """Read the four standard MNIST IDX files from `directory`.

    Each file is looked up under its standard name (`IDX_FILENAMES`), first plain
    and then with `.gz`. The magic numbers, the sizes in the headers, the matching
    image and label counts and the label range 0-9 are checked.

    **Raises:** `FileNotFoundError` listing the expected file names and the directory
    when a file is missing, and `ValueError` for a file that fails a check.
    """
    directory = Path(directory).expanduser()
    paths = _find_idx_files(directory)

    arrays = MnistArrays(
        train_images=read_idx(paths["train_images"], IMAGES_MAGIC),
        train_labels=read_idx(paths["train_labels"], LABELS_MAGIC),
        test_images=read_idx(paths["test_images"], IMAGES_MAGIC),
        test_labels=read_idx(paths["test_labels"], LABELS_MAGIC),
    )
    _check_split(arrays.train_images, arrays.train_labels, "train", directory)
    _check_split(arrays.test_images, arrays.test_labels, "test", directory)
    if arrays.train_images.shape[1:] != arrays.test_images.shape[1:]:
        raise ValueError(
            f"MNIST train images {arrays.train_images.shape[1:]} and test images "
            f"{arrays.test_images.shape[1:]} in {directory} differ in size."
        )

    logger.info(
        "Read MNIST IDX files from %s: %d train and %d test images",
        directory, arrays.train_images.shape[0], arrays.test_images.shape[0],
    )
    return arrays


def load_mnist_tfds(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> MnistArrays:
    """Load MNIST through tensorflow-datasets, downloading it first if needed.

    Uses `tfds.data_source("mnist", ...)`, which reads the prepared data without
    TensorFlow. tensorflow-datasets is the optional extra `eventax-lab[mnist]`.

    NOTE: this path has never been run, because the test machines have neither
    tensorflow-datasets nor internet access. Preparing the download may need
    TensorFlow even though reading does not.

    **Arguments:**

    - `data_dir`: the tensorflow-datasets data folder; None uses its default
      (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
    - `download`: if True, download and prepare MNIST when it is not in `data_dir`.

    **Raises:** `ImportError` when tensorflow-datasets is not installed, and
    `RuntimeError` when it cannot provide the data (not downloaded and no network,
    or `download=False` with no prepared copy). Both messages explain how to read
    IDX files instead.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "make_mnist(source='tfds') needs tensorflow-datasets, which is not installed; "
            "install it with pip install 'eventax-lab[mnist]', or read local IDX files "
            "with source='idx'. " + _IDX_HINT
        ) from error

    try:
        sources = tfds.data_source("mnist", data_dir=data_dir, download=download)
    except Exception as error:
        # tensorflow-datasets raises its own not-found errors, download errors of its
        # HTTP stack and OSError; each means MNIST is not available this way.
        raise RuntimeError(
            f"tensorflow-datasets could not provide MNIST (data_dir={data_dir}, "
            f"download={download}): {type(error).__name__}: {error}. " + _IDX_HINT
        ) from error

    arrays = {}
    for split in ("train", "test"):
        source = sources[split]
        logger.info("Decoding %d MNIST %s images from tensorflow-datasets", len(source), split)
        examples = [source[index] for index in range(len(source))]
        # tfds stores MNIST images as [28, 28, 1]; drop the channel axis.
        arrays[f"{split}_images"] = np.stack(
            [np.asarray(example["image"], dtype=np.uint8)[..., 0] for example in examples]
        )
        arrays[f"{split}_labels"] = np.array([example["label"] for example in examples], dtype=np.uint8)

    result = MnistArrays(**arrays)
    _check_split(result.train_images, result.train_labels, "train", data_dir)
    _check_split(result.test_images, result.test_labels, "test", data_dir)
    return result


def _encode_images(
    images: np.ndarray, t_latency_max: float, threshold: float, mode: str
) -> np.ndarray:
    # float32 halves the memory of the padded spike array: [54000, 784, 1] is 170 MB.
    n_samples = images.shape[0]
    flat = images.reshape(n_samples, math.prod(images.shape[1:]))
    spikes = np.empty((n_samples, flat.shape[1], 1), dtype=np.float32)
    for start in range(0, n_samples, _ENCODE_CHUNK):
        intensity = flat[start : start + _ENCODE_CHUNK] / 255.0
        times = intensity_to_latency(intensity, t_latency_max, threshold, mode)
        spikes[start : start + _ENCODE_CHUNK, :, 0] = times

    # Rounding to float32 can lift a time just below t_latency_max onto it; clamp it back.
    latest = np.nextafter(np.float32(t_latency_max), np.float32(0.0))
    np.minimum(spikes, latest, out=spikes, where=np.isfinite(spikes))
    return spikes


def _take_subset(indices: np.ndarray, n_requested: int | None, label: str, split: str) -> np.ndarray:
    if n_requested is None:
        return indices
    n_requested = validate_sample_count(n_requested, label)
    if n_requested > indices.shape[0]:
        raise ValueError(
            f"{label}={n_requested} exceeds the {indices.shape[0]} samples of the {split}; "
            f"use {label} <= {indices.shape[0]} or None for all."
        )
    return indices[:n_requested]


def _validate_mnist_config(
    source: str, idx_dir: object, t_max: float, t_latency_max: float, val_fraction: float
) -> None:
    if source not in ("tfds", "idx"):
        raise ValueError(f"source must be 'tfds' or 'idx', got {source!r}.")
    if source == "idx" and idx_dir is None:
        raise ValueError(
            "source='idx' needs idx_dir, the folder with the MNIST IDX files; " + _IDX_HINT
        )
    t_max = validate_t_max(t_max)
    t_latency_max = validate_t_max(t_latency_max, "t_latency_max")
    if t_latency_max > t_max:
        raise ValueError(
            f"t_latency_max={t_latency_max} ms must be <= t_max={t_max} ms so that "
            "every input spike falls inside the window."
        )
    if isinstance(val_fraction, bool) or not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction!r}.")


def make_mnist(
    source: Literal["tfds", "idx"] = "tfds",
    data_dir: str | None = None,
    idx_dir: str | None = None,
    download: bool = True,
    t_max: float = 60.0,
    t_latency_max: float = 30.0,
    threshold: float = 0.2,
    mode: Literal["linear", "log"] = "linear",
    val_fraction: float = 0.1,
    split_seed: int = 0,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
) -> dict[str, SpikeDataset]:
    """Build MNIST train, validation and test splits as spike datasets.

    Images are flattened row-major to 784 inputs with at most one spike each:
    `intensity_to_latency(pixel / 255, t_latency_max, threshold, mode)`, so a pixel
    brighter than `threshold` spikes before `t_latency_max` and a darker one never.
    The validation split is a random `val_fraction` of the 60000 training images,
    drawn with `np.random.default_rng(split_seed)`. The test split is the 10000
    test images.

    **Arguments:**

    - `source`: `"tfds"` loads through tensorflow-datasets (`load_mnist_tfds`),
      `"idx"` reads IDX files from `idx_dir` (`load_mnist_idx`).
    - `data_dir`, `download`: passed to `load_mnist_tfds`.
    - `idx_dir`: the folder with the IDX files, for `source="idx"`.
    - `t_max`: the simulation window in ms.
    - `t_latency_max`: the latency in ms of an intensity-0 pixel, the upper bound
      of all input spike times; at most `t_max`.
    - `threshold`, `mode`: see `intensity_to_latency`.
    - `val_fraction`: share of the training images held out for validation, in
      [0, 1); 0 gives an empty validation split.
    - `split_seed`: seed of the train/validation split.
    - `n_train`, `n_val`, `n_test`: if given, keep only this many samples of the
      split for quick runs. Train and validation subsets are random (the leading
      entries of the shuffled split); the test subset is the first `n_test` test
      images in file order.

    **Returns:** `{"train": ..., "val": ..., "test": ...}`, each a `SpikeDataset` with
    float32 spikes of shape `[n, 784, 1]` (`[n, rows * cols, 1]` for IDX files of
    another image size) and `n_classes=10`.
    """
    _validate_mnist_config(source, idx_dir, t_max, t_latency_max, val_fraction)
    validate_intensity_code(t_latency_max, threshold, mode)
    split_seed = validate_seed(split_seed, "split_seed")

    if source == "idx":
        arrays = load_mnist_idx(idx_dir)
    else:
        arrays = load_mnist_tfds(data_dir, download=download)

    n_full_train = arrays.train_images.shape[0]
    n_val_full = int(round(val_fraction * n_full_train))
    order = np.random.default_rng(split_seed).permutation(n_full_train)
    split_indices = {
        "train": _take_subset(order[n_val_full:], n_train, "n_train", "training split"),
        "val": _take_subset(order[:n_val_full], n_val, "n_val", "validation split"),
        "test": _take_subset(
            np.arange(arrays.test_images.shape[0]), n_test, "n_test", "test split"
        ),
    }

    split_arrays = {
        "train": (arrays.train_images, arrays.train_labels),
        "val": (arrays.train_images, arrays.train_labels),
        "test": (arrays.test_images, arrays.test_labels),
    }
    datasets = {}
    for split, indices in split_indices.items():
        images, labels = split_arrays[split]
        spikes = _encode_images(images[indices], t_latency_max, threshold, mode)
        datasets[split] = SpikeDataset(
            spikes=spikes,
            targets=labels[indices].astype(np.int64),
            t_max=t_max,
            n_classes=N_CLASSES,
            name=f"mnist/{split}",
        )
        logger.info(
            "Encoded MNIST %s: %d samples, %.1f input spikes per sample on average",
            split, len(indices), float(np.isfinite(spikes).sum()) / max(len(indices), 1),
        )
    return datasets
