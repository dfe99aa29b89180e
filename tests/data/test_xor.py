import logging

import numpy as np
import pytest

from eventax_lab.data import make_xor


@pytest.fixture(scope="module")
def splits():
    return make_xor()


def test_split_sizes_and_shapes(splits):
    for name, size in (("train", 1000), ("val", 200), ("test", 200)):
        dataset = splits[name]
        assert len(dataset) == size
        assert dataset.spikes.shape == (size, 3, 1)
        assert dataset.n_classes == 2
        assert dataset.t_max == 30.0


def test_labels_follow_timing_rule(splits):
    for dataset in splits.values():
        first, second, reference = dataset.spikes[:, :, 0].T
        assert set(np.unique(first)) <= {0.0, 6.0}
        assert set(np.unique(second)) <= {0.0, 6.0}
        np.testing.assert_array_equal(reference, np.zeros(len(dataset)))
        np.testing.assert_array_equal(dataset.targets, (first != second).astype(np.int64))


def test_patterns_balanced():
    dataset = make_xor(n_train=1002, n_val=0, n_test=0, t_early=1.0, t_late=4.0, t_ref=2.0)["train"]
    times = dataset.spikes[:, :2, 0]
    patterns, counts = np.unique(times, axis=0, return_counts=True)
    np.testing.assert_array_equal(patterns, [[1.0, 1.0], [1.0, 4.0], [4.0, 1.0], [4.0, 4.0]])
    np.testing.assert_array_equal(np.sort(counts), [250, 250, 251, 251])
    np.testing.assert_array_equal(dataset.spikes[:, 2, 0], np.full(1002, 2.0))


def test_jitter_keeps_labels_and_spread():
    settings = dict(n_train=2000, n_val=0, n_test=0, t_early=10.0, t_late=16.0)
    clean = make_xor(**settings)["train"]
    noisy = make_xor(jitter_ms=0.5, **settings)["train"]

    np.testing.assert_array_equal(noisy.targets, clean.targets)
    np.testing.assert_array_equal(noisy.spikes[:, 2], clean.spikes[:, 2])
    noise = (noisy.spikes - clean.spikes)[:, :2, 0]
    assert abs(noise.std() - 0.5) < 0.025
    assert abs(noise.mean()) < 0.03


def test_jitter_clips_at_zero():
    dataset = make_xor(n_train=1000, n_val=0, n_test=0, jitter_ms=1.0)["train"]
    early = dataset.spikes[:, :2, 0][dataset.spikes[:, :2, 0] < 3.0]
    assert early.min() == 0.0
    # About half of the early spikes draw negative noise and are clipped to 0 ms.
    assert 0.4 < np.mean(early == 0.0) < 0.6


def test_jitter_clips_below_t_max(caplog):
    with caplog.at_level(logging.WARNING, logger="eventax_lab.data.xor"):
        dataset = make_xor(n_train=400, n_val=0, n_test=0, t_late=29.5, jitter_ms=1.0)["train"]
    assert (dataset.spikes < 30.0).all()
    assert (dataset.spikes == np.nextafter(30.0, 0.0)).any()
    assert "xor/train: clipped" in caplog.text


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(t_late=0.0), "t_early and t_late must differ"),
        (dict(t_late=30.0), "t_late=30.0 ms must be < t_max=30.0 ms"),
        (dict(t_ref=-2.0), "t_ref must be a finite time >= 0 ms"),
        (dict(jitter_ms=-0.1), "jitter_ms must be a finite time >= 0 ms"),
        (dict(seed_val=2.5), "seed_val must be an int >= 0"),
    ],
)
def test_rejects_bad_config(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        make_xor(**kwargs)
