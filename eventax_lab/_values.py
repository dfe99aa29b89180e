"""Type predicates for settings, shared by the simulator config and the dataset builders."""

from __future__ import annotations

import numpy as np


def is_real_number(value: object) -> bool:
    """Return whether `value` is a Python or NumPy int or float, but not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def is_int(value: object) -> bool:
    """Return whether `value` is a Python or NumPy int, but not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))
