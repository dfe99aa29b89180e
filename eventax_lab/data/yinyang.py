r"""The Yin-Yang classification dataset, encoded as input spike times.

The dataset is from L. Kriener, J. Göltz and M. A. Petrovici, "The Yin-Yang dataset"
(2021, arXiv:2102.08211): points in the unit square inside a yin-yang symbol, with
three classes. The geometry, class rule, sampling procedure and the split sizes and
seeds (train 5000 with seed 42, validation 1000 with seed 41, test 1000 with seed
40) follow the authors' reference generator (github.com/lkriener/yin_yang_data_set).

NOTE: the reference generator draws from NumPy's legacy global random state, while
this module draws from `np.random.default_rng(seed)`. The points therefore follow the
same distribution but are not the published points.
"""

from __future__ import annotations

import logging

import numpy as np

from eventax_lab.data._checks import (
    validate_sample_count,
    validate_seed,
    validate_window_time,
)
from eventax_lab.data.base import SpikeDataset
from eventax_lab.data.encoding import latency_encode

logger = logging.getLogger(__name__)

R_BIG = 0.5
"""Radius of the big circle, centred at (0.5, 0.5)."""
R_SMALL = 0.1
"""Radius of the two dots, centred at (0.25, 0.5) and (0.75, 0.5)."""
CLASS_NAMES = ("yin", "yang", "dot")
"""Class names indexed by label, in the order of the reference generator."""
N_CLASSES = 3
N_INPUTS = 5
"""Four feature inputs (x, y, 1 - x, 1 - y) and one bias input."""

_LEFT_DOT = (0.5 * R_BIG, R_BIG)
_RIGHT_DOT = (1.5 * R_BIG, R_BIG)


def classify_yinyang(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Return the Yin-Yang class label (0 yin, 1 yang, 2 dot) of each point.

    With $d_L$ and $d_R$ the distances of $(x, y)$ to the left dot centre (0.25, 0.5)
    and the right dot centre (0.75, 0.5), $r_s = 0.1$ the dot radius and
    $r_b = 0.5$ the radius of the big circle, the rule checks in this order:

    1. dot (2) if $d_L < r_s$ or $d_R < r_s$;
    2. yang (1) if $d_R \le r_s$, or $r_s < d_L \le r_b/2$, or
       ($y > r_b$ and $d_R > r_b/2$);
    3. yin (0) otherwise.

    The yin/yang boundary is made of the two half-circles of radius $r_b/2 = 0.25$
    around the dot centres. Yang is the upper half of the big disc ($y > 0.5$) minus
    the upper half-disc of radius 0.25 around the right dot, plus the lower half-disc
    of radius 0.25 around the left dot, without the left dot. Yin is its mirror image
    under a point reflection through (0.5, 0.5). Each of yin and yang covers an area
    of $\pi (1/8 - 1/100) \approx 0.361$ and each dot $\pi / 100 \approx 0.031$.

    The rule assumes the point lies inside the big circle. Points outside it still
    get a label from the same inequalities, so mask them when plotting.

    **Arguments:** `x`, `y`: coordinates in the unit square, arrays of one shape.

    **Returns:** int64 labels with the shape of `x`.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d_left = np.hypot(x - _LEFT_DOT[0], y - _LEFT_DOT[1])
    d_right = np.hypot(x - _RIGHT_DOT[0], y - _RIGHT_DOT[1])

    in_dot = (d_left < R_SMALL) | (d_right < R_SMALL)
    is_yang = (
        (d_right <= R_SMALL)
        | ((d_left > R_SMALL) & (d_left <= 0.5 * R_BIG))
        | ((y > R_BIG) & (d_right > 0.5 * R_BIG))
    )
    return np.where(in_dot, 2, np.where(is_yang, 1, 0)).astype(np.int64)


def sample_yinyang(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw Yin-Yang points with balanced classes by rejection sampling.

    A generator `np.random.default_rng(seed)` first draws every sample's class
    uniformly from {0, 1, 2}. Then, in rounds, it draws one candidate point uniformly
    in the unit square for each sample still without a point. A candidate is
    accepted when it lies inside the big circle and `classify_yinyang` gives it the
    sample's class. Each round accepts a pending sample with probability at least
    pi / 100 = 0.031 (the area of one dot), so a sample is still pending after k
    rounds with probability at most 0.969^k, below 1e-13 for k = 1000.

    **Arguments:**

    - `n_samples`: number of points, >= 0.
    - `seed`: non-negative int seed of the generator.

    **Returns:** `(points, labels)`: float64 `[n_samples, 2]` coordinates `(x, y)`
    and int64 `[n_samples]` labels.
    """
    n_samples = validate_sample_count(n_samples, "n_samples")
    seed = validate_seed(seed, "seed")
    rng = np.random.default_rng(seed)

    labels = rng.integers(0, N_CLASSES, size=n_samples).astype(np.int64)
    points = np.empty((n_samples, 2))
    pending = np.arange(n_samples)
    while pending.size > 0:
        candidates = rng.random((pending.size, 2)) * (2.0 * R_BIG)
        inside = np.hypot(candidates[:, 0] - R_BIG, candidates[:, 1] - R_BIG) <= R_BIG
        matches = classify_yinyang(candidates[:, 0], candidates[:, 1]) == labels[pending]
        accepted = inside & matches

        points[pending[accepted]] = candidates[accepted]
        pending = pending[~accepted]

    return points, labels


def yinyang_features(points: np.ndarray) -> np.ndarray:
    """Return the four input features `(x, y, 1 - x, 1 - y)`, shape `[n, 4]`.

    The four features sum to 2 for every point. The dataset authors add the
    mirrored copies so that neuron models without an intrinsic bias can be trained.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape [n, 2] of (x, y), got {points.shape}.")
    x, y = points[:, 0], points[:, 1]
    return np.stack([x, y, 1.0 - x, 1.0 - y], axis=1)


def encode_yinyang(
    points: np.ndarray, t_early: float = 0.0, t_late: float = 30.0, t_bias: float = 0.0
) -> np.ndarray:
    """Encode points as input spike times in ms, shape `[n, 5, 1]`.

    Inputs 0 to 3 spike once each at `t_early + v (t_late - t_early)` for the
    features v = x, y, 1 - x, 1 - y. Input 4 is a bias that spikes at `t_bias` for
    every sample. Use this to encode a grid of points for a decision map.
    """
    t_bias = validate_window_time(t_bias, "t_bias")
    feature_times = latency_encode(yinyang_features(points), t_early, t_late)
    bias_times = np.full((feature_times.shape[0], 1), t_bias)
    return np.concatenate([feature_times, bias_times], axis=1)[:, :, None]


def make_yinyang(
    n_train: int = 5000,
    n_val: int = 1000,
    n_test: int = 1000,
    seed_train: int = 42,
    seed_val: int = 41,
    seed_test: int = 40,
    t_early: float = 0.0,
    t_late: float = 30.0,
    t_bias: float = 0.0,
    t_max: float = 60.0,
) -> dict[str, SpikeDataset]:
    """Build the Yin-Yang train, validation and test splits as spike datasets.

    Each split draws its points with its own `np.random.default_rng(seed)`, see
    `sample_yinyang`. The defaults are the published split sizes and seeds. Points
    are encoded by `encode_yinyang`, giving 5 inputs with one spike each.

    **Arguments:**

    - `n_train`, `n_val`, `n_test`: samples per split, >= 0.
    - `seed_train`, `seed_val`, `seed_test`: generator seeds per split. Keep them
      distinct, because equal seeds and sizes give identical splits.
    - `t_early`, `t_late`: spike times in ms of feature values 0 and 1.
    - `t_bias`: spike time in ms of the bias input.
    - `t_max`: the simulation window in ms; every input time must be below it.

    **Returns:** `{"train": ..., "val": ..., "test": ...}`, each a `SpikeDataset` with
    `n_classes=3` and names `"yinyang/train"` and so on.
    """
    for label, value in (("t_early", t_early), ("t_late", t_late), ("t_bias", t_bias)):
        validate_window_time(value, label, t_max=t_max)

    splits = {"train": (n_train, seed_train), "val": (n_val, seed_val), "test": (n_test, seed_test)}
    datasets = {}
    for split, (n_samples, seed) in splits.items():
        points, labels = sample_yinyang(
            validate_sample_count(n_samples, f"n_{split}"), validate_seed(seed, f"seed_{split}")
        )
        datasets[split] = SpikeDataset(
            spikes=encode_yinyang(points, t_early, t_late, t_bias),
            targets=labels,
            t_max=t_max,
            n_classes=N_CLASSES,
            name=f"yinyang/{split}",
        )

    logger.info(
        "Built Yin-Yang splits train=%d val=%d test=%d (seeds %d, %d, %d)",
        n_train, n_val, n_test, seed_train, seed_val, seed_test,
    )
    return datasets
