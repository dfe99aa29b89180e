"""The temporal XOR task: classify whether two input spikes share their timing.

Inputs 0 and 1 each spike once, early (`t_early`) or late (`t_late`), and input 2
is a reference that spikes at `t_ref` in every sample. The label is 0 when inputs 0
and 1 have the same timing (early-early, late-late) and 1 when they differ
(early-late, late-early).
"""

from __future__ import annotations

import logging

import numpy as np

from eventax_lab.data._checks import (
    validate_sample_count,
    validate_seed,
    validate_t_max,
    validate_time,
    validate_window_time,
)
from eventax_lab.data.base import SpikeDataset

logger = logging.getLogger(__name__)

N_INPUTS = 3
N_CLASSES = 2

PATTERNS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
"""The four input patterns, one row each; 0 means early and 1 means late."""
PATTERN_LABELS = np.array([0, 1, 1, 0])
"""XOR label of each row of `PATTERNS`."""


def _sample_xor_split(
    n_samples: int,
    seed: int,
    t_early: float,
    t_late: float,
    t_ref: float,
    jitter_ms: float,
    t_max: float,
    name: str,
) -> SpikeDataset:
    rng = np.random.default_rng(seed)

    # Cycling through the patterns before permuting balances them, so the counts
    # differ by at most one.
    pattern_index = rng.permutation(np.arange(n_samples) % len(PATTERNS))
    is_late = PATTERNS[pattern_index]
    input_times = np.where(is_late == 1, t_late, t_early)

    if jitter_ms > 0:
        input_times = input_times + rng.normal(0.0, jitter_ms, size=input_times.shape)
        n_clipped_late = int((input_times >= t_max).sum())
        if n_clipped_late:
            logger.warning(
                "%s: clipped %d jittered spike times at or after t_max=%s ms to just below "
                "it; lower jitter_ms or raise t_max to avoid this",
                name, n_clipped_late, t_max,
            )
        input_times = np.clip(input_times, 0.0, np.nextafter(t_max, 0.0))

    reference_times = np.full((n_samples, 1), t_ref)
    spikes = np.concatenate([input_times, reference_times], axis=1)[:, :, None]
    return SpikeDataset(
        spikes=spikes,
        targets=PATTERN_LABELS[pattern_index],
        t_max=t_max,
        n_classes=N_CLASSES,
        name=name,
    )


def make_xor(
    n_train: int = 1000,
    n_val: int = 200,
    n_test: int = 200,
    seed_train: int = 0,
    seed_val: int = 1,
    seed_test: int = 2,
    t_early: float = 0.0,
    t_late: float = 6.0,
    t_ref: float = 0.0,
    jitter_ms: float = 0.0,
    t_max: float = 30.0,
) -> dict[str, SpikeDataset]:
    """Build train, validation and test splits of the temporal XOR task.

    Each split uses its own `np.random.default_rng(seed)`. The four patterns occur
    equally often up to one sample, in random order.

    With `jitter_ms > 0`, Gaussian noise of that standard deviation is added
    independently to the spike times of inputs 0 and 1, while the reference stays at
    `t_ref`. The results are clipped to `[0, t_max)`. A time below 0 ms becomes 0 ms,
    and one at or after `t_max` becomes the largest float below `t_max` and logs a
    warning. Labels always follow the pattern drawn, even when jitter reverses the
    order of an early and a late spike.
    The sample counts and seeds are this project's defaults, not published values.

    **Arguments:**

    - `n_train`, `n_val`, `n_test`: samples per split, >= 0.
    - `seed_train`, `seed_val`, `seed_test`: generator seeds per split.
    - `t_early`, `t_late`: the two spike times of inputs 0 and 1, in ms; they must
      differ.
    - `t_ref`: spike time of the reference input 2, in ms.
    - `jitter_ms`: standard deviation of the timing noise in ms, >= 0.
    - `t_max`: the simulation window in ms.

    **Returns:** `{"train": ..., "val": ..., "test": ...}`, each a `SpikeDataset` of
    shape `[n, 3, 1]` with `n_classes=2`.
    """
    t_max = validate_t_max(t_max)
    t_early = validate_window_time(t_early, "t_early", t_max=t_max)
    t_late = validate_window_time(t_late, "t_late", t_max=t_max)
    t_ref = validate_window_time(t_ref, "t_ref", t_max=t_max)
    jitter_ms = validate_time(jitter_ms, "jitter_ms")
    if t_early == t_late:
        raise ValueError(
            f"t_early and t_late must differ, both are {t_early} ms, so the two "
            "classes would have identical inputs."
        )

    splits = {"train": (n_train, seed_train), "val": (n_val, seed_val), "test": (n_test, seed_test)}
    datasets = {}
    for split, (n_samples, seed) in splits.items():
        datasets[split] = _sample_xor_split(
            validate_sample_count(n_samples, f"n_{split}"),
            validate_seed(seed, f"seed_{split}"),
            t_early,
            t_late,
            t_ref,
            jitter_ms,
            t_max,
            name=f"xor/{split}",
        )

    logger.info(
        "Built XOR splits train=%d val=%d test=%d (jitter %s ms)", n_train, n_val, n_test, jitter_ms
    )
    return datasets
