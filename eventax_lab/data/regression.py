r"""A temporal regression task: map an input spike time to a target spike time.

Each sample has two input neurons. Neuron 0 spikes at 0 ms as a reference, and
neuron 1 spikes at $x \sim U[x_\mathrm{min}, x_\mathrm{max})$ ms. The target is the
time at which an output neuron should spike,

$$t^*(x) = A \sin(2 \pi x / P) + x + c,$$

with amplitude $A$, period $P$ and offset $c$ in ms. The defaults
($x \in [0, 30)$, $A = 5$, $P = 10$, $c = 30$, window 80 ms) give targets in
[30, 60) ms.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from eventax_lab.data._checks import (
    validate_sample_count,
    validate_seed,
    validate_t_max,
    validate_window_time,
)
from eventax_lab.data.base import SpikeDataset

logger = logging.getLogger(__name__)

N_INPUTS = 2


def regression_target(
    x: np.ndarray, amplitude: float = 5.0, period: float = 10.0, offset: float = 30.0
) -> np.ndarray:
    r"""Return the target time $A \sin(2 \pi x / P) + x + c$ in ms for input times `x` in ms."""
    x = np.asarray(x, dtype=np.float64)
    return amplitude * np.sin(2.0 * np.pi * x / period) + x + offset


def regression_target_range(
    x_min: float, x_max: float, amplitude: float, period: float, offset: float
) -> tuple[float, float]:
    r"""Return the minimum and maximum of `regression_target` over $[x_\mathrm{min}, x_\mathrm{max}]$.

    The extrema lie at the interval ends or where the derivative
    $1 + (2 \pi A / P) \cos(2 \pi x / P)$ vanishes, that is where
    $\cos(2 \pi x / P) = -P / (2 \pi A)$. All such points in the interval are
    evaluated, so the range is exact up to rounding.
    """
    candidates = [x_min, x_max]
    if amplitude != 0.0:
        cosine = -period / (2.0 * math.pi * amplitude)
        if abs(cosine) <= 1.0:
            base_phase = math.acos(cosine)
            # The derivative vanishes at phases 2 pi x / P = +-base_phase + 2 pi k.
            k_first = math.floor(x_min / period) - 1
            k_last = math.ceil(x_max / period) + 1
            for k in range(k_first, k_last + 1):
                for phase in (base_phase, -base_phase):
                    x_critical = (phase + 2.0 * math.pi * k) * period / (2.0 * math.pi)
                    if x_min <= x_critical <= x_max:
                        candidates.append(x_critical)

    values = regression_target(np.array(candidates), amplitude, period, offset)
    return float(values.min()), float(values.max())


def _validate_regression_config(
    x_min: float, x_max: float, amplitude: float, period: float, offset: float, t_max: float
) -> None:
    t_max = validate_t_max(t_max)
    x_min = validate_window_time(x_min, "x_min", t_max=t_max)
    x_max = validate_window_time(x_max, "x_max", t_max=t_max)
    if x_max <= x_min:
        raise ValueError(f"x_max={x_max} ms must be > x_min={x_min} ms.")
    period = validate_t_max(period, "period")
    for label, value in (("amplitude", amplitude), ("offset", offset)):
        if not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number of ms, got {value}.")

    target_min, target_max = regression_target_range(x_min, x_max, amplitude, period, offset)
    if target_min < 0 or target_max >= t_max:
        raise ValueError(
            f"targets {amplitude} sin(2 pi x / {period}) + x + {offset} span "
            f"[{target_min:.4g}, {target_max:.4g}] ms for x in [{x_min}, {x_max}] ms, "
            f"which is not inside the window [0, t_max={t_max}) ms; change offset or "
            "amplitude, narrow [x_min, x_max], or increase t_max."
        )


def make_regression(
    n_train: int = 1000,
    n_val: int = 200,
    n_test: int = 200,
    seed_train: int = 0,
    seed_val: int = 1,
    seed_test: int = 2,
    x_min: float = 0.0,
    x_max: float = 30.0,
    amplitude: float = 5.0,
    period: float = 10.0,
    offset: float = 30.0,
    t_max: float = 80.0,
) -> dict[str, SpikeDataset]:
    """Build train, validation and test splits of the temporal regression task.

    Each split draws its input times with its own `np.random.default_rng(seed)`.
    The sample counts and seeds are this project's defaults, not published values.

    **Arguments:**

    - `n_train`, `n_val`, `n_test`: samples per split, >= 0.
    - `seed_train`, `seed_val`, `seed_test`: generator seeds per split.
    - `x_min`, `x_max`: range in ms of the input spike time of neuron 1.
    - `amplitude`, `period`, `offset`: parameters of the target function, in ms.
    - `t_max`: the simulation window in ms.

    **Returns:** `{"train": ..., "val": ..., "test": ...}`, each a `SpikeDataset` of
    shape `[n, 2, 1]` with float64 target times and `n_classes=None`.

    **Raises:** `ValueError` when an input time or a target for some x in
    `[x_min, x_max]` falls outside `[0, t_max)`.
    """
    _validate_regression_config(x_min, x_max, amplitude, period, offset, t_max)

    splits = {"train": (n_train, seed_train), "val": (n_val, seed_val), "test": (n_test, seed_test)}
    datasets = {}
    for split, (n_samples, seed) in splits.items():
        n_samples = validate_sample_count(n_samples, f"n_{split}")
        rng = np.random.default_rng(validate_seed(seed, f"seed_{split}"))

        x = rng.uniform(x_min, x_max, size=n_samples)
        spikes = np.stack([np.zeros(n_samples), x], axis=1)[:, :, None]
        datasets[split] = SpikeDataset(
            spikes=spikes,
            targets=regression_target(x, amplitude, period, offset),
            t_max=t_max,
            n_classes=None,
            name=f"regression/{split}",
        )

    logger.info("Built regression splits train=%d val=%d test=%d", n_train, n_val, n_test)
    return datasets
