import inspect

import numpy as np
import pytest

from eventax_lab.data import (
    classify_yinyang,
    encode_yinyang,
    latency_decode,
    make_yinyang,
    sample_yinyang,
)

YIN, YANG, DOT = 0, 1, 2


def _expected_labels(points: np.ndarray) -> np.ndarray:
    """Label points from the circle equations, written apart from the library's rule.

    Above the centre line (y > 0.5) a non-dot point is yang outside the radius-0.25
    circle around (0.75, 0.5); on or below it, yang inside the radius-0.25 circle
    around (0.25, 0.5). This matches the published rule except on the boundary
    circles themselves, which random points never hit.
    """
    x, y = points[:, 0], points[:, 1]
    left_sq = (x - 0.25) ** 2 + (y - 0.5) ** 2
    right_sq = (x - 0.75) ** 2 + (y - 0.5) ** 2
    in_dot = (left_sq < 0.1**2) | (right_sq < 0.1**2)
    upper = y > 0.5
    yang = (upper & (right_sq > 0.25**2)) | (~upper & (left_sq <= 0.25**2))
    return np.where(in_dot, DOT, np.where(yang, YANG, YIN))


def _points_of(dataset, t_early=0.0, t_late=30.0) -> np.ndarray:
    """Recover (x, y) from the first two spike times of each sample."""
    return latency_decode(dataset.spikes[:, :2, 0], t_early, t_late)


@pytest.fixture(scope="module")
def splits():
    return make_yinyang()


@pytest.mark.parametrize(
    "x, y, label",
    [
        (0.25, 0.5, DOT),
        (0.75, 0.5, DOT),
        (0.80, 0.55, DOT),
        (0.5, 0.9, YANG),
        (0.5, 0.1, YIN),
        (0.25, 0.3, YANG),
        (0.75, 0.7, YIN),
        (0.1, 0.55, YANG),
        (0.9, 0.45, YIN),
    ],
)
def test_classify_known_points(x, y, label):
    assert classify_yinyang(np.array([x]), np.array([y]))[0] == label


def test_classify_matches_circle_equations_on_grid():
    # The grid is shifted off the boundary circles and the centre line.
    axis = np.linspace(0.0, 1.0, 201) + 1e-3 * np.pi
    x, y = np.meshgrid(axis, axis)
    points = np.stack([x.ravel(), y.ravel()], axis=1)
    inside = np.hypot(points[:, 0] - 0.5, points[:, 1] - 0.5) <= 0.5
    points = points[inside]
    np.testing.assert_array_equal(classify_yinyang(points[:, 0], points[:, 1]), _expected_labels(points))


def test_classify_point_symmetry_swaps_yin_and_yang():
    points, labels = sample_yinyang(2000, seed=7)
    mirrored = classify_yinyang(1.0 - points[:, 0], 1.0 - points[:, 1])
    swapped = np.array([YANG, YIN, DOT])[labels]
    np.testing.assert_array_equal(mirrored, swapped)


def test_split_sizes_and_shapes(splits):
    assert set(splits) == {"train", "val", "test"}
    for name, size in (("train", 5000), ("val", 1000), ("test", 1000)):
        dataset = splits[name]
        assert len(dataset) == size
        assert dataset.spikes.shape == (size, 5, 1)
        assert dataset.n_classes == 3
        assert dataset.t_max == 60.0
        assert dataset.name == f"yinyang/{name}"


def test_class_balance(splits):
    counts = np.bincount(splits["train"].targets, minlength=3)
    assert counts.sum() == 5000
    for count in counts:
        assert abs(count / 5000 - 1 / 3) < 0.03


def test_points_satisfy_their_label(splits):
    for dataset in splits.values():
        points = _points_of(dataset)
        assert (np.hypot(points[:, 0] - 0.5, points[:, 1] - 0.5) <= 0.5 + 1e-12).all()
        np.testing.assert_array_equal(dataset.targets, _expected_labels(points))


def test_dot_class_fills_both_dots():
    # The two dots have equal areas, so each contains about half of the dot class.
    points, labels = sample_yinyang(6000, seed=3)
    dots = points[labels == DOT]
    in_left = np.hypot(dots[:, 0] - 0.25, dots[:, 1] - 0.5) < 0.1
    in_right = np.hypot(dots[:, 0] - 0.75, dots[:, 1] - 0.5) < 0.1
    assert (in_left ^ in_right).all()
    assert abs(in_left.mean() - 0.5) < 0.05


def test_encoding_is_latency_of_features(splits):
    dataset = splits["val"]
    points, _ = sample_yinyang(1000, seed=41)
    x, y = points[:, 0], points[:, 1]
    expected = np.stack([30 * x, 30 * y, 30 * (1 - x), 30 * (1 - y), np.zeros(1000)], axis=1)
    np.testing.assert_allclose(dataset.spikes[:, :, 0], expected, rtol=0, atol=1e-12)


def test_custom_times():
    dataset = make_yinyang(n_train=50, n_val=1, n_test=1, t_early=5.0, t_late=25.0, t_bias=2.0, t_max=40.0)
    spikes = dataset["train"].spikes[:, :, 0]
    np.testing.assert_array_equal(spikes[:, 4], np.full(50, 2.0))
    np.testing.assert_allclose(spikes[:, 0] + spikes[:, 2], np.full(50, 30.0), rtol=0, atol=1e-12)
    assert ((spikes[:, :4] >= 5.0) & (spikes[:, :4] <= 25.0)).all()


def test_published_seeds_are_defaults(splits):
    defaults = {
        name: parameter.default for name, parameter in inspect.signature(make_yinyang).parameters.items()
    }
    assert (defaults["n_train"], defaults["n_val"], defaults["n_test"]) == (5000, 1000, 1000)
    assert (defaults["seed_train"], defaults["seed_val"], defaults["seed_test"]) == (42, 41, 40)
    for name, size, seed in (("train", 5000, 42), ("val", 1000, 41), ("test", 1000, 40)):
        points, labels = sample_yinyang(size, seed)
        np.testing.assert_allclose(_points_of(splits[name]), points, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(splits[name].targets, labels)


def test_splits_pairwise_disjoint(splits):
    rows = {name: {tuple(row) for row in dataset.spikes[:, :2, 0]} for name, dataset in splits.items()}
    assert len(rows["train"]) == 5000
    assert not rows["train"] & rows["val"]
    assert not rows["train"] & rows["test"]
    assert not rows["val"] & rows["test"]


def test_same_seed_same_data():
    first = make_yinyang(n_train=300, n_val=10, n_test=10)
    second = make_yinyang(n_train=300, n_val=10, n_test=10)
    for name in first:
        np.testing.assert_array_equal(first[name].spikes, second[name].spikes)
        np.testing.assert_array_equal(first[name].targets, second[name].targets)

    other = make_yinyang(n_train=300, n_val=10, n_test=10, seed_train=43)
    assert not np.array_equal(first["train"].spikes, other["train"].spikes)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(t_late=60.0), "t_late=60.0 ms must be < t_max=60.0 ms"),
        (dict(t_bias=-1.0), "t_bias must be a finite time >= 0 ms"),
        (dict(n_val=-5), "n_val must be an int >= 0"),
        (dict(seed_test=-1), "seed_test must be an int >= 0"),
        (dict(t_early=30.0), "t_early and t_late must differ"),
    ],
)
def test_make_yinyang_rejects_bad_config(kwargs, fragment):
    arguments = dict(n_train=5, n_val=5, n_test=5) | kwargs
    with pytest.raises(ValueError, match=fragment):
        make_yinyang(**arguments)


def test_encode_yinyang_rejects_bad_points():
    with pytest.raises(ValueError, match=r"points must have shape \[n, 2\]"):
        encode_yinyang(np.zeros((4, 3)))
