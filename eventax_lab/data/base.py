"""Spike-time datasets and a fixed-shape batch iterator.

Every dataset in this package is a `SpikeDataset`: input spike times in ms as an
array `[n_samples, n_inputs, K]` padded with `np.inf` ("no spike"), one target per
sample, and the simulation window `[0, t_max)` that all finite spike times lie in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Literal

import numpy as np

from eventax_lab.data._checks import validate_sample_count, validate_seed, validate_t_max

LastBatch = Literal["pad", "drop"]
_LAST_BATCH_MODES = ("pad", "drop")


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def validate_spike_array(
    spikes: np.ndarray, name: str, *, t_max: float | None = None
) -> np.ndarray:
    """Validate an array of input spike times and return it as a float array.

    **Arguments:**

    - `spikes`: spike times in ms, shape `[n_samples, n_inputs, K]`, with `np.inf` in
      the slots of spikes that do not happen.
    - `name`: the array's name in error messages, such as `"yinyang/train.spikes"`.
    - `t_max`: if given, every finite spike time must be below it (ms).

    **Returns:** `spikes` as a floating-point array. Integer input becomes float64,
    float32 input stays float32, and no copy is made when the dtype already fits.

    **Raises:** `ValueError` naming `name` when the array is not 3-D, is not real
    numbers, contains NaN or negative times (including `-inf`), or has finite
    times at or after `t_max`.
    """
    array = np.asarray(spikes)

    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"{name} must contain real spike times in ms, got dtype {array.dtype}; "
            "convert it with np.asarray(spikes, dtype=np.float64)."
        )
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)

    if array.ndim != 3:
        raise ValueError(
            f"{name} must be 3-D [n_samples, n_inputs, K], got shape {array.shape}; "
            "for one spike per input, add the last axis with spikes[..., None]."
        )

    nan_mask = np.isnan(array)
    if nan_mask.any():
        raise ValueError(
            f"{name} contains {int(nan_mask.sum())} NaN spike times (first at index "
            f"{_first_index(nan_mask)}); mark a missing spike with np.inf, not NaN."
        )

    negative_mask = array < 0
    if negative_mask.any():
        raise ValueError(
            f"{name} contains {int(negative_mask.sum())} negative spike times (minimum "
            f"{float(array.min())} ms at index {_first_index(negative_mask)}); spike "
            "times must be >= 0 ms, so shift them to start the window at 0 ms."
        )

    if t_max is not None:
        late_mask = np.isfinite(array) & (array >= t_max)
        if late_mask.any():
            latest = float(array[late_mask].max())
            raise ValueError(
                f"{name} contains {int(late_mask.sum())} spike times >= t_max={t_max} ms "
                f"(latest {latest} ms, first at index {_first_index(late_mask)}); "
                "increase t_max or move the spikes into [0, t_max)."
            )

    return array


def _validate_targets(
    targets: np.ndarray, n_samples: int, n_classes: int | None, t_max: float, name: str
) -> np.ndarray:
    array = np.asarray(targets)
    if array.ndim != 1 or array.shape[0] != n_samples:
        raise ValueError(
            f"{name}.targets must have shape ({n_samples},), one per sample of "
            f"{name}.spikes, got shape {array.shape}."
        )

    if n_classes is None:
        return _validate_regression_targets(array, t_max, name)
    return _validate_labels(array, n_classes, name)


def _validate_regression_targets(array: np.ndarray, t_max: float, name: str) -> np.ndarray:
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"{name}.targets must be target times in ms for a regression dataset "
            f"(n_classes=None), got dtype {array.dtype}."
        )
    array = array.astype(np.float64, copy=False)

    outside = ~((array >= 0) & (array < t_max))
    if outside.any():
        index = _first_index(outside)
        raise ValueError(
            f"{name}.targets contains {int(outside.sum())} target times outside "
            f"[0, t_max={t_max}) ms (first {float(array[index])} at index {index}); "
            "increase t_max or change the target function so every target is a "
            "time inside the window."
        )
    return array


def _validate_labels(array: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        raise ValueError(
            f"{name}.targets must be integer class labels for a classification dataset "
            f"(n_classes={n_classes}), got dtype {array.dtype}; for regression targets "
            "set n_classes=None."
        )
    array = array.astype(np.int64, copy=False)

    outside = (array < 0) | (array >= n_classes)
    if outside.any():
        index = _first_index(outside)
        raise ValueError(
            f"{name}.targets contains {int(outside.sum())} labels outside "
            f"[0, n_classes={n_classes}) (first {int(array[index])} at index {index}); "
            "relabel the classes as 0 .. n_classes - 1 or increase n_classes."
        )
    return array


def _read_only_view(array: np.ndarray) -> np.ndarray:
    # A view keeps the caller's own array writable while this one is frozen.
    view = array.view()
    view.flags.writeable = False
    return view


@dataclasses.dataclass(frozen=True, eq=False)
class SpikeDataset:
    """A set of input spike trains with one classification or regression target each.

    **Fields:**

    - `spikes`: input spike times in ms, float, `[n_samples, n_inputs, K]`, where `K`
      is the maximum number of spikes per input and `np.inf` fills unused slots.
    - `targets`: int64 class labels in `[0, n_classes)`, or, for regression
      (`n_classes=None`), float64 target spike times in ms inside `[0, t_max)`.
    - `t_max`: the simulation window in ms. Every finite spike time lies in
      `[0, t_max)`.
    - `n_classes`: the number of classes, or `None` for regression.
    - `name`: a label such as `"yinyang/train"` used in logs and error messages.

    Construction validates every field and raises `ValueError` naming the array. The
    stored arrays are read-only views, so a dataset cannot change after it is built.
    """

    spikes: np.ndarray
    targets: np.ndarray
    t_max: float
    n_classes: int | None
    name: str

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"SpikeDataset.name must be a non-empty string, got {name!r}.")

        t_max = validate_t_max(self.t_max, f"{name}.t_max")
        spikes = validate_spike_array(self.spikes, f"{name}.spikes", t_max=t_max)

        n_classes = self.n_classes
        if n_classes is not None:
            if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)):
                raise ValueError(
                    f"{name}.n_classes must be an int or None (regression), got {n_classes!r}."
                )
            n_classes = int(n_classes)
            if n_classes < 2:
                raise ValueError(
                    f"{name}.n_classes must be >= 2 for classification, got {n_classes}; "
                    "use n_classes=None for a regression dataset."
                )

        targets = _validate_targets(self.targets, spikes.shape[0], n_classes, t_max, name)

        object.__setattr__(self, "spikes", _read_only_view(spikes))
        object.__setattr__(self, "targets", _read_only_view(targets))
        object.__setattr__(self, "t_max", t_max)
        object.__setattr__(self, "n_classes", n_classes)

    @property
    def n_inputs(self) -> int:
        """Number of input neurons."""
        return int(self.spikes.shape[1])

    @property
    def n_spikes_per_input(self) -> int:
        """Maximum number of spikes per input neuron, `K`."""
        return int(self.spikes.shape[2])

    def __len__(self) -> int:
        return int(self.spikes.shape[0])

    def __repr__(self) -> str:
        kind = "regression" if self.n_classes is None else f"n_classes={self.n_classes}"
        return (
            f"SpikeDataset(name={self.name!r}, n_samples={len(self)}, "
            f"n_inputs={self.n_inputs}, K={self.n_spikes_per_input}, "
            f"t_max={self.t_max} ms, {kind})"
        )


@dataclasses.dataclass(frozen=True, eq=False)
class Batch:
    """A fixed-size batch of samples.

    **Fields:**

    - `spikes`: input spike times in ms, `[batch_size, n_inputs, K]`.
    - `targets`: labels or target times, `[batch_size]`.
    - `mask`: bool `[batch_size]`, False on padding rows, which a loss or metric must
      leave out.
    """

    spikes: np.ndarray
    targets: np.ndarray
    mask: np.ndarray


def _validate_batching(batch_size: int, last_batch: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if last_batch not in _LAST_BATCH_MODES:
        raise ValueError(f"last_batch must be 'pad' or 'drop', got {last_batch!r}.")


def count_batches(n_samples: int, batch_size: int, last_batch: LastBatch = "pad") -> int:
    """Return how many batches `iterate_batches` yields for `n_samples` samples."""
    n_samples = validate_sample_count(n_samples, "n_samples")
    _validate_batching(batch_size, last_batch)
    if last_batch == "drop":
        return n_samples // batch_size
    return -(-n_samples // batch_size)


def iterate_batches(
    dataset: SpikeDataset,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    last_batch: LastBatch = "pad",
) -> Iterator[Batch]:
    """Split one epoch of `dataset` into batches that all have the same shape.

    Equal shapes let a jitted training step compile once. With `shuffle=True`, the
    order is a permutation drawn by `np.random.default_rng((seed, epoch))`, so the
    same `(seed, epoch)` gives the same order and different epochs draw
    independent orders.

    **Arguments:**

    - `dataset`: the samples to iterate over.
    - `batch_size`: the number of rows in every batch.
    - `seed`, `epoch`: non-negative ints that fix the order when shuffling.
    - `shuffle`: if False, yield the samples in dataset order.
    - `last_batch`: what to do with a final partial batch. `"pad"` fills it up to
      `batch_size` with copies of sample 0 whose `mask` is False, so every sample
      appears exactly once with `mask` True. `"drop"` leaves it out, so up to
      `batch_size - 1` samples are skipped in that epoch.

    **Returns:** an iterator over `Batch`es. The arguments are checked when this
    function is called, before the first batch is requested.

    **Raises:** `ValueError` for a non-positive `batch_size`, a negative seed or
    epoch, an unknown `last_batch`, an empty dataset, or `"drop"` with fewer
    samples than `batch_size`.
    """
    _validate_batching(batch_size, last_batch)
    seed = validate_seed(seed, "seed")
    epoch = validate_seed(epoch, "epoch")

    n_samples = len(dataset)
    if n_samples == 0:
        raise ValueError(f"dataset {dataset.name!r} is empty, so it has no batches.")
    if last_batch == "drop" and n_samples < batch_size:
        raise ValueError(
            f"last_batch='drop' with batch_size={batch_size} yields no batch from "
            f"dataset {dataset.name!r} of {n_samples} samples; use last_batch='pad' "
            "or a batch_size <= the number of samples."
        )

    if shuffle:
        order = np.random.default_rng((seed, epoch)).permutation(n_samples)
    else:
        order = np.arange(n_samples)
    return _generate_batches(dataset, order, batch_size, count_batches(n_samples, batch_size, last_batch))


def _generate_batches(
    dataset: SpikeDataset, order: np.ndarray, batch_size: int, n_batches: int
) -> Iterator[Batch]:
    for batch_index in range(n_batches):
        indices = order[batch_index * batch_size : (batch_index + 1) * batch_size]
        n_real = indices.shape[0]
        mask = np.ones(batch_size, dtype=bool)
        if n_real < batch_size:
            padding = np.zeros(batch_size - n_real, dtype=indices.dtype)
            indices = np.concatenate([indices, padding])
            mask[n_real:] = False

        yield Batch(
            spikes=dataset.spikes[indices],
            targets=dataset.targets[indices],
            mask=mask,
        )
