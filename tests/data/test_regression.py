import math

import numpy as np
import pytest

from eventax_lab.data import make_regression
from eventax_lab.data.regression import regression_target_range


@pytest.fixture(scope="module")
def splits():
    return make_regression()


def test_split_sizes_and_shapes(splits):
    for name, size in (("train", 1000), ("val", 200), ("test", 200)):
        dataset = splits[name]
        assert len(dataset) == size
        assert dataset.spikes.shape == (size, 2, 1)
        assert dataset.n_classes is None
        assert dataset.t_max == 80.0
        assert dataset.targets.dtype == np.float64


def test_targets_match_formula(splits):
    for dataset in splits.values():
        x = dataset.spikes[:, 1, 0]
        expected = np.array([5.0 * math.sin(2.0 * math.pi * value / 10.0) + value + 30.0 for value in x])
        np.testing.assert_allclose(dataset.targets, expected, rtol=0, atol=1e-12)


def test_inputs_reference_and_range(splits):
    for dataset in splits.values():
        np.testing.assert_array_equal(dataset.spikes[:, 0, 0], np.zeros(len(dataset)))
        x = dataset.spikes[:, 1, 0]
        assert x.min() >= 0.0
        assert x.max() < 30.0
    # For 1000 uniform draws on [0, 30), a 0.5 ms gap at one end has probability 5e-8.
    train_x = splits["train"].spikes[:, 1, 0]
    assert train_x.min() < 0.5
    assert train_x.max() > 29.5


def test_seeds_per_split():
    first = make_regression(n_train=50, n_val=50, n_test=50)
    second = make_regression(n_train=50, n_val=50, n_test=50)
    np.testing.assert_array_equal(first["train"].spikes, second["train"].spikes)
    assert not np.array_equal(first["train"].spikes, first["val"].spikes)
    assert not np.array_equal(first["val"].spikes, first["test"].spikes)

    reseeded = make_regression(n_train=50, n_val=50, n_test=50, seed_train=7)
    assert not np.array_equal(first["train"].spikes, reseeded["train"].spikes)
    np.testing.assert_array_equal(first["val"].spikes, reseeded["val"].spikes)


def test_custom_parameters():
    dataset = make_regression(
        n_train=100, n_val=0, n_test=0, x_min=2.0, x_max=4.0, amplitude=-1.0, period=3.0, offset=10.0, t_max=20.0
    )["train"]
    x = dataset.spikes[:, 1, 0]
    assert ((x >= 2.0) & (x < 4.0)).all()
    np.testing.assert_allclose(dataset.targets, -np.sin(2 * np.pi * x / 3.0) + x + 10.0, rtol=0, atol=1e-12)
    assert len(make_regression(n_val=0)["val"]) == 0


def test_target_range_default_endpoints():
    low, high = regression_target_range(0.0, 30.0, 5.0, 10.0, 30.0)
    assert low == pytest.approx(30.0, abs=1e-12)
    assert high == pytest.approx(60.0, abs=1e-12)


@pytest.mark.parametrize("x_min, x_max, amplitude, period", [(0.0, 5.0, 5.0, 10.0), (1.0, 13.0, -4.0, 7.0)])
def test_target_range_finds_interior_extrema(x_min, x_max, amplitude, period):
    x = np.linspace(x_min, x_max, 2_000_001)
    values = amplitude * np.sin(2 * np.pi * x / period) + x
    low, high = regression_target_range(x_min, x_max, amplitude, period, 0.0)
    assert low == pytest.approx(values.min(), abs=1e-9)
    assert high == pytest.approx(values.max(), abs=1e-9)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(offset=60.0), r"span \[60, 90\] ms .* not inside the window \[0, t_max=80.0\)"),
        (dict(offset=-1.0), r"span \[-1, "),
        (dict(x_max=80.0), "x_max=80.0 ms must be < t_max=80.0 ms"),
        (dict(x_min=10.0, x_max=5.0), "x_max=5.0 ms must be > x_min=10.0 ms"),
        (dict(period=0.0), "period must be a finite time > 0 ms"),
        (dict(n_test=-1), "n_test must be an int >= 0"),
    ],
)
def test_rejects_bad_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_regression(**kwargs)
