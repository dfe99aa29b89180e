import math

import numpy as np
import pytest

from eventax_lab.data import Batch, SpikeDataset, count_batches, iterate_batches, validate_spike_array


def _indexed_dataset(n_samples: int) -> SpikeDataset:
    """Regression dataset whose target is the sample index, so batches reveal their rows."""
    spikes = np.arange(n_samples, dtype=np.float64).reshape(n_samples, 1, 1)
    return SpikeDataset(
        spikes=spikes,
        targets=np.arange(n_samples, dtype=np.float64),
        t_max=float(n_samples + 1),
        n_classes=None,
        name="indexed",
    )


def _classification_dataset(**overrides) -> SpikeDataset:
    fields = dict(
        spikes=np.array([[[1.0, np.inf], [0.0, 2.5]], [[np.inf, np.inf], [3.0, 4.0]]]),
        targets=np.array([0, 2]),
        t_max=5.0,
        n_classes=3,
        name="toy",
    )
    fields.update(overrides)
    return SpikeDataset(**fields)


# --- SpikeDataset --------------------------------------------------------------------


def test_dataset_properties():
    dataset = _classification_dataset()
    assert len(dataset) == 2
    assert dataset.n_inputs == 2
    assert dataset.n_spikes_per_input == 2
    assert dataset.targets.dtype == np.int64
    assert dataset.t_max == 5.0


def test_dataset_arrays_read_only():
    spikes = np.zeros((2, 1, 1))
    dataset = SpikeDataset(spikes=spikes, targets=np.array([0, 1]), t_max=1.0, n_classes=2, name="ro")
    with pytest.raises(ValueError):
        dataset.spikes[0, 0, 0] = 0.5
    spikes[0, 0, 0] = 0.25  # the caller's own array stays writable
    assert dataset.spikes[0, 0, 0] == 0.25


@pytest.mark.parametrize(
    "spikes, fragment",
    [
        (np.array([[[np.nan]], [[1.0]]]), "NaN"),
        (np.array([[[-0.5]], [[1.0]]]), "negative"),
        (np.array([[[-np.inf]], [[1.0]]]), "negative"),
        (np.array([[1.0], [2.0]]), "3-D"),
        (np.array([[[5.0]], [[1.0]]]), "t_max=5.0"),
        (np.array([[["a"]], [["b"]]]), "dtype"),
    ],
)
def test_dataset_rejects_bad_spikes(spikes, fragment):
    with pytest.raises(ValueError, match="toy.spikes") as info:
        SpikeDataset(spikes=spikes, targets=np.array([0, 1]), t_max=5.0, n_classes=2, name="toy")
    assert fragment in str(info.value)


def test_dataset_accepts_inf_and_zero():
    dataset = _classification_dataset(spikes=np.array([[[0.0]], [[np.inf]]]))
    assert dataset.spikes[0, 0, 0] == 0.0
    assert math.isinf(dataset.spikes[1, 0, 0])


@pytest.mark.parametrize(
    "targets, fragment",
    [
        (np.array([0, 3]), "outside [0, n_classes=3)"),
        (np.array([-1, 0]), "outside [0, n_classes=3)"),
        (np.array([0.0, 1.0]), "integer class labels"),
        (np.array([0, 1, 2]), "shape (2,)"),
        (np.array([[0, 1]]), "shape (2,)"),
    ],
)
def test_dataset_rejects_bad_labels(targets, fragment):
    with pytest.raises(ValueError, match="toy.targets") as info:
        _classification_dataset(targets=targets)
    assert fragment in str(info.value)


def test_regression_targets_outside_window_rejected():
    with pytest.raises(ValueError, match=r"reg.targets .* outside \[0, t_max=5.0\)"):
        SpikeDataset(
            spikes=np.zeros((2, 1, 1)), targets=np.array([1.0, 5.0]), t_max=5.0, n_classes=None, name="reg"
        )


@pytest.mark.parametrize("t_max", [0.0, -1.0, np.inf, np.nan, "60"])
def test_dataset_rejects_bad_t_max(t_max):
    with pytest.raises(ValueError, match="toy.t_max"):
        _classification_dataset(t_max=t_max)


def test_dataset_rejects_single_class():
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        _classification_dataset(targets=np.array([0, 0]), n_classes=1)


def test_validate_spike_array_dtypes():
    as_float = validate_spike_array(np.array([[[1, 2]]]), "ints")
    assert as_float.dtype == np.float64
    np.testing.assert_array_equal(as_float, [[[1.0, 2.0]]])

    single = np.array([[[1.5]]], dtype=np.float32)
    assert validate_spike_array(single, "single") is single


def test_validate_spike_array_names_array():
    with pytest.raises(ValueError, match=r"my_input contains 2 NaN spike times \(first at index \(0, 1, 0\)\)"):
        validate_spike_array(np.array([[[0.0], [np.nan], [np.nan]]]), "my_input")


# --- iterate_batches -------------------------------------------------------------------


def _collect(dataset, batch_size, **kwargs) -> list[Batch]:
    return list(iterate_batches(dataset, batch_size, **kwargs))


def test_pad_covers_each_sample_once():
    dataset = _indexed_dataset(103)
    batches = _collect(dataset, 10, seed=3, epoch=0, last_batch="pad")

    assert len(batches) == 11
    for batch in batches:
        assert batch.spikes.shape == (10, 1, 1)
        assert batch.targets.shape == (10,)
        assert batch.mask.shape == (10,)
    seen = np.concatenate([batch.targets[batch.mask] for batch in batches])
    np.testing.assert_array_equal(np.sort(seen), np.arange(103))


def test_pad_rows_repeat_sample_zero():
    dataset = _indexed_dataset(103)
    last = _collect(dataset, 10, seed=3, epoch=0)[-1]
    np.testing.assert_array_equal(last.mask, [True] * 3 + [False] * 7)
    np.testing.assert_array_equal(last.targets[3:], np.zeros(7))
    np.testing.assert_array_equal(last.spikes[3:], np.zeros((7, 1, 1)))


def test_batch_rows_stay_aligned():
    dataset = _indexed_dataset(50)
    for batch in _collect(dataset, 8, seed=0, epoch=4):
        np.testing.assert_array_equal(batch.spikes[:, 0, 0], batch.targets)


def test_drop_covers_full_batches_once():
    dataset = _indexed_dataset(103)
    batches = _collect(dataset, 10, seed=3, epoch=0, last_batch="drop")

    assert len(batches) == 10
    assert all(batch.mask.all() for batch in batches)
    seen = np.concatenate([batch.targets for batch in batches])
    assert np.unique(seen).size == 100


def test_exact_multiple_has_no_padding():
    dataset = _indexed_dataset(40)
    for last_batch in ("pad", "drop"):
        batches = _collect(dataset, 10, seed=0, epoch=0, last_batch=last_batch)
        assert len(batches) == 4
        assert sum(int(batch.mask.sum()) for batch in batches) == 40


def test_order_depends_on_seed_and_epoch():
    dataset = _indexed_dataset(64)

    def order(seed, epoch):
        return np.concatenate([b.targets for b in _collect(dataset, 16, seed=seed, epoch=epoch)])

    np.testing.assert_array_equal(order(1, 0), order(1, 0))
    assert not np.array_equal(order(1, 0), order(1, 1))
    assert not np.array_equal(order(1, 0), order(2, 0))
    np.testing.assert_array_equal(
        order(1, 5), np.random.default_rng((1, 5)).permutation(64).astype(np.float64)
    )


def test_no_shuffle_keeps_dataset_order():
    dataset = _indexed_dataset(25)
    batches = _collect(dataset, 10, seed=0, epoch=7, shuffle=False)
    seen = np.concatenate([batch.targets[batch.mask] for batch in batches])
    np.testing.assert_array_equal(seen, np.arange(25))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(batch_size=0), "batch_size must be a positive int"),
        (dict(batch_size=4, last_batch="keep"), "last_batch must be 'pad' or 'drop'"),
        (dict(batch_size=20, last_batch="drop"), "yields no batch"),
        (dict(batch_size=4, seed=-1), "seed must be an int >= 0"),
        (dict(batch_size=4, epoch=1.5), "epoch must be an int >= 0"),
    ],
)
def test_iterate_batches_rejects_bad_arguments(kwargs, fragment):
    arguments = dict(seed=0, epoch=0) | kwargs
    batch_size = arguments.pop("batch_size")
    with pytest.raises(ValueError, match=fragment):
        iterate_batches(_indexed_dataset(10), batch_size, **arguments)


def test_count_batches_matches_iterator():
    dataset = _indexed_dataset(23)
    for batch_size in (1, 5, 23, 30):
        for last_batch in ("pad", "drop"):
            if last_batch == "drop" and batch_size > 23:
                continue
            expected = len(_collect(dataset, batch_size, seed=0, epoch=0, last_batch=last_batch))
            assert count_batches(23, batch_size, last_batch) == expected
