"""Argument checks shared by the dataset builders; each raises ValueError naming the argument."""

from __future__ import annotations

import math

from eventax_lab._values import is_int, is_real_number


def validate_t_max(t_max: float, label: str = "t_max") -> float:
    """Return `t_max` as a float after checking that it is finite and > 0 ms."""
    if not is_real_number(t_max) or not (math.isfinite(t_max) and t_max > 0):
        raise ValueError(f"{label} must be a finite time > 0 ms, got {t_max!r}.")
    return float(t_max)


def validate_time(value: float, label: str) -> float:
    """Return `value` as a float after checking that it is a finite time >= 0 ms."""
    if not is_real_number(value) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{label} must be a finite time >= 0 ms, got {value!r}.")
    return float(value)


def validate_window_time(value: float, label: str, *, t_max: float | None = None) -> float:
    """Return `value` as a float after checking that it lies in [0, t_max) ms.

    Without `t_max` only the lower bound and finiteness are checked.
    """
    value = validate_time(value, label)
    if t_max is not None:
        t_max = validate_t_max(t_max)
        if value >= t_max:
            raise ValueError(
                f"{label}={value} ms must be < t_max={t_max} ms, because every input "
                "spike must fall inside the window; increase t_max or decrease "
                f"{label}."
            )
    return value


def validate_sample_count(value: int, label: str) -> int:
    """Return `value` as an int after checking that it is an int >= 0."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{label} must be an int >= 0, got {value!r}.")
    return int(value)


def validate_seed(value: int, label: str) -> int:
    """Return `value` as an int after checking that it is a valid `default_rng` seed (int >= 0)."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{label} must be an int >= 0 to seed np.random.default_rng, got {value!r}.")
    return int(value)
