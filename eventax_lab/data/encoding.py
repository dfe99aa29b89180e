"""Conversions between real values and input spike times (latency coding).

All times are in ms. A value that produces no spike is encoded as `np.inf`.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from eventax_lab.data._checks import validate_t_max, validate_time


def _validate_unit_interval(values: np.ndarray, label: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    outside = ~((array >= 0.0) & (array <= 1.0))  # also catches NaN
    if outside.any():
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise ValueError(
            f"{label} must lie in [0, 1], but {int(outside.sum())} entries do not "
            f"(first {array[index]} at index {index}); rescale them, for example "
            "with (v - v.min()) / (v.max() - v.min())."
        )
    return array


def _validate_latency_window(t_early: float, t_late: float) -> tuple[float, float]:
    t_early = validate_time(t_early, "t_early")
    t_late = validate_time(t_late, "t_late")
    if t_early == t_late:
        raise ValueError(
            f"t_early and t_late must differ, but both are {t_early} ms, which would "
            "give every value the same spike time."
        )
    return t_early, t_late


def latency_encode(values: np.ndarray, t_early: float, t_late: float) -> np.ndarray:
    r"""Map values in [0, 1] linearly to spike times in ms.

    $$t = t_\mathrm{early} + v \, (t_\mathrm{late} - t_\mathrm{early})$$

    so value 0 spikes at `t_early` and value 1 at `t_late`. `t_late < t_early` is
    allowed and makes large values spike first.

    **Arguments:**

    - `values`: array of any shape with entries in [0, 1].
    - `t_early`, `t_late`: finite, distinct times >= 0 ms.

    **Returns:** float64 spike times with the shape of `values`.

    **Raises:** `ValueError` when a value lies outside [0, 1] or is NaN, or when the
    times are negative, non-finite or equal.
    """
    t_early, t_late = _validate_latency_window(t_early, t_late)
    array = _validate_unit_interval(values, "latency_encode values")
    return t_early + array * (t_late - t_early)


def latency_decode(times: np.ndarray, t_early: float, t_late: float) -> np.ndarray:
    r"""Invert `latency_encode`: $v = (t - t_\mathrm{early}) / (t_\mathrm{late} - t_\mathrm{early})$.

    Times outside the window are decoded by the same affine map, so they give
    values outside [0, 1], and `np.inf` gives `+inf` or `-inf`. This lets a caller
    decode network output times, which need not lie inside the window.

    **Raises:** `ValueError` when `times` contains NaN, or for an invalid window as
    in `latency_encode`.
    """
    t_early, t_late = _validate_latency_window(t_early, t_late)
    array = np.asarray(times, dtype=np.float64)
    if np.isnan(array).any():
        raise ValueError(
            f"latency_decode times contains {int(np.isnan(array).sum())} NaN entries; "
            "use np.inf for a neuron that did not spike."
        )
    return (array - t_early) / (t_late - t_early)


def validate_intensity_code(t_max: float, threshold: float, mode: str) -> tuple[float, float]:
    """Validate the settings of `intensity_to_latency` and return `(t_max, threshold)` as floats."""
    t_max = validate_t_max(t_max)
    if mode not in ("linear", "log"):
        raise ValueError(f"mode must be 'linear' or 'log', got {mode!r}.")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise ValueError(f"threshold must be an intensity in [0, 1), got {threshold!r}.")
    threshold = float(threshold)
    if mode == "linear" and not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1) for mode='linear', got {threshold}.")
    if mode == "log" and not 0.0 < threshold < 1.0:
        raise ValueError(
            f"threshold must lie in (0, 1) for mode='log', got {threshold}, because "
            "ln(threshold) sets the time scale; use a small positive value such as 0.01."
        )
    return t_max, threshold


def intensity_to_latency(
    intensity: np.ndarray,
    t_max: float,
    threshold: float,
    mode: Literal["linear", "log"] = "linear",
) -> np.ndarray:
    r"""Encode pixel intensities in [0, 1] as one spike each, brighter pixels earlier.

    A pixel with intensity $I > \theta$ (`threshold`) spikes once, at

    - `mode="linear"`: $t = t_\mathrm{max} \, (1 - I)$,
    - `mode="log"`: $t = t_\mathrm{max} \, \ln I / \ln \theta$, which needs
      $0 < \theta < 1$. It maps $I = 1$ to 0 ms and $I \to \theta$ to
      $t_\mathrm{max}$. Because $dt/dI = -t_\mathrm{max} / (I \ln(1/\theta))$, dim
      pixels lie further apart in time and bright ones closer together than in the
      linear code.

    A pixel with $I \le \theta$ does not spike and gets `np.inf`. Every finite time
    lies in $[0, t_\mathrm{max})$.

    **Arguments:**

    - `intensity`: array of any shape with entries in [0, 1], such as
      `uint8_image / 255`.
    - `t_max`: the time scale in ms, finite and > 0. It is the latency that
      intensity 0 would get in the linear code and intensity $\theta$ in the log
      code, and every spike time is below it.
    - `threshold`: intensities at or below it do not spike; in [0, 1) for `"linear"`
      and in (0, 1) for `"log"`.
    - `mode`: `"linear"` or `"log"`.

    **Returns:** float64 spike times in ms with the shape of `intensity`.

    **Raises:** `ValueError` for intensities outside [0, 1] or NaN, and for a
    `t_max`, `threshold` or `mode` outside the ranges above.
    """
    t_max, threshold = validate_intensity_code(t_max, threshold, mode)
    array = _validate_unit_interval(intensity, "intensity_to_latency intensity")
    spiking = array > threshold

    times = np.full(array.shape, np.inf)
    if mode == "linear":
        times[spiking] = t_max * (1.0 - array[spiking])
    else:
        # ln(1/I) / ln(1/theta) equals ln I / ln theta but gives +0.0, not -0.0, at I = 1.
        times[spiking] = t_max * (np.log(1.0 / array[spiking]) / math.log(1.0 / threshold))

    # Rounding can put an intensity just above the threshold exactly at t_max,
    # so clamp to the largest float below it to keep the window half-open.
    np.minimum(times, np.nextafter(t_max, 0.0), out=times, where=spiking)
    return times
