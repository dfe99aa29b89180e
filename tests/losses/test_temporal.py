"""Temporal and regression losses against values computed by hand with numpy."""

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.losses import RegressionLoss, TemporalLoss

T_END = 60.0
T0, ALPHA, TAU1 = 3.0, 0.005, 15.0
# Row 0: output 2, the label, never spikes. Row 1: every output spikes.
# Row 2 is padding, with an out-of-range label and no spikes, and must be ignored.
FIRST_SPIKES = np.array([[4.0, 7.5, np.inf], [12.0, 3.0, 9.0], [np.inf, np.inf, np.inf]])
LABELS = np.array([2, 1, 7])
MASK = np.array([True, True, False])
HIDDEN_COUNTS = np.array([[1, 0, 2, 0], [3, 1, 0, 0], [100, 100, 100, 100]])


def hand_temporal_loss(times, labels, missing):
    """Return the row mean of -log softmax(-t / t0)[label] + alpha (exp(t_label / tau1) - 1)."""
    times = np.where(np.isfinite(times), times, missing)
    total = 0.0
    for row, label in zip(times, labels):
        scores = -row / T0
        log_sum = np.log(np.sum(np.exp(scores)))
        total += -(scores[label] - log_sum) + ALPHA * (np.exp(row[label] / TAU1) - 1)
    return total / len(labels)


@pytest.mark.parametrize("missing_spike_time", [None, 45.0])
def test_temporal_loss_matches_hand_value(make_recording, missing_spike_time):
    recording = make_recording(FIRST_SPIKES, hidden_counts=HIDDEN_COUNTS)
    loss_fn = TemporalLoss(
        T_END, t0=T0, alpha=ALPHA, tau1=TAU1, missing_spike_time=missing_spike_time
    )
    loss, metrics = loss_fn(recording, jnp.asarray(LABELS), jnp.asarray(MASK))

    missing = T_END if missing_spike_time is None else missing_spike_time
    expected = hand_temporal_loss(FIRST_SPIKES[:2], LABELS[:2], missing)
    assert abs(float(loss) - expected) < 1e-12
    # Row 0 predicts output 0 (4.0 ms) for label 2, row 1 predicts output 1 correctly.
    assert float(metrics["accuracy"]) == 0.5
    assert float(metrics["silent_output_fraction"]) == pytest.approx(1 / 6)
    assert float(metrics["hidden_spikes_per_neuron"]) == pytest.approx(7 / 8)
    np.testing.assert_array_equal(loss_fn.predict(recording), [0, 1, 0])


def test_temporal_loss_gradient_by_hand(make_recording):
    def loss_of_times(times):
        recording = make_recording(FIRST_SPIKES, hidden_counts=HIDDEN_COUNTS)
        recording = eqx.tree_at(lambda r: r.first_spike_times, recording, times)
        return TemporalLoss(T_END, t0=T0, alpha=ALPHA, tau1=TAU1)(
            recording, jnp.asarray(LABELS), jnp.asarray(MASK)
        )[0]

    gradient = np.asarray(jax.grad(loss_of_times)(jnp.asarray(FIRST_SPIKES)))

    # d/dt_c of the row loss is -(softmax_c - [c = y]) / t0, plus
    # alpha / tau1 exp(t_y / tau1) for c = y. Silent outputs and padding get 0.
    expected = np.zeros_like(FIRST_SPIKES)
    for row in range(2):
        times = np.where(np.isfinite(FIRST_SPIKES[row]), FIRST_SPIKES[row], T_END)
        softmax = np.exp(-times / T0) / np.sum(np.exp(-times / T0))
        onehot = np.arange(3) == LABELS[row]
        row_gradient = -(softmax - onehot) / T0 + onehot * ALPHA / TAU1 * np.exp(times / TAU1)
        expected[row] = np.where(np.isfinite(FIRST_SPIKES[row]), row_gradient, 0.0) / 2
    np.testing.assert_allclose(gradient, expected, rtol=1e-12, atol=1e-15)


def test_temporal_all_silent_is_finite(make_recording):
    recording = make_recording(np.full((2, 3), np.inf))
    loss, metrics = TemporalLoss(T_END, t0=T0, alpha=ALPHA, tau1=TAU1)(recording, jnp.asarray([0, 2]), jnp.asarray([True, True]))
    # Every output sits at t_end: uniform softmax, penalty alpha (e^4 - 1).
    assert float(loss) == pytest.approx(np.log(3) + ALPHA * np.expm1(T_END / TAU1), rel=1e-12)
    assert float(metrics["silent_output_fraction"]) == 1.0
    assert float(metrics["hidden_spikes_per_neuron"]) == 0.0


def test_empty_mask_gives_zeros(make_recording):
    recording = make_recording(FIRST_SPIKES, hidden_counts=HIDDEN_COUNTS)
    loss, metrics = TemporalLoss(T_END, t0=T0, alpha=ALPHA, tau1=TAU1)(recording, jnp.asarray(LABELS), jnp.zeros(3, bool))
    assert float(loss) == 0.0
    assert {name: float(value) for name, value in metrics.items()} == {
        "accuracy": 0.0,
        "silent_output_fraction": 0.0,
        "hidden_spikes_per_neuron": 0.0,
    }


def test_label_out_of_range_raises(make_recording):
    recording = make_recording(FIRST_SPIKES)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"outside \[0, 3\)"):
        TemporalLoss(T_END, t0=T0, alpha=ALPHA, tau1=TAU1)(recording, jnp.asarray([0, 3, 1]), jnp.asarray(MASK))


def test_classification_rejects_float_targets(make_recording):
    recording = make_recording(FIRST_SPIKES)
    with pytest.raises(ValueError, match="integer class labels"):
        TemporalLoss(T_END, t0=T0, alpha=ALPHA, tau1=TAU1)(recording, jnp.asarray([0.0, 1.0, 2.0]), jnp.asarray(MASK))


def test_regression_matches_hand_value(make_recording):
    recording = make_recording([[20.0], [np.inf], [np.inf]], hidden_counts=[[2], [0], [9]])
    targets = jnp.asarray([22.5, 30.0, 999.0])
    loss_fn = RegressionLoss(T_END)
    loss, metrics = loss_fn(recording, targets, jnp.asarray(MASK))

    errors = np.array([20.0 - 22.5, T_END - 30.0])
    assert float(loss) == pytest.approx(np.mean((errors / T_END) ** 2), rel=1e-12)
    assert float(metrics["rmse_ms"]) == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-12)
    assert float(metrics["silent_output_fraction"]) == 0.5
    assert float(metrics["hidden_spikes_per_neuron"]) == 1.0
    np.testing.assert_array_equal(loss_fn.predict(recording), [20.0, T_END, T_END])


def test_regression_gradient_by_hand(make_recording):
    def loss_of_times(times):
        recording = make_recording(np.ones((3, 1)))
        recording = eqx.tree_at(lambda r: r.first_spike_times, recording, times)
        targets = jnp.asarray([22.5, 30.0, 5.0])
        return RegressionLoss(T_END)(recording, targets, jnp.asarray(MASK))[0]

    gradient = jax.grad(loss_of_times)(jnp.asarray([[20.0], [np.inf], [np.nan]]))
    # d/dt of mean(((t - target) / T)^2) over 2 rows is (t - target) / T^2.
    # The silent row and the padding row get 0.
    np.testing.assert_allclose(gradient[:, 0], [(20.0 - 22.5) / T_END**2, 0.0, 0.0], rtol=1e-12)


def test_regression_rejects_several_outputs(make_recording):
    recording = make_recording(FIRST_SPIKES)
    with pytest.raises(ValueError, match="n_out=3"):
        RegressionLoss(T_END)(recording, jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray(MASK))


def test_regression_rejects_integer_targets(make_recording):
    recording = make_recording([[20.0], [np.inf], [np.inf]])
    with pytest.raises(ValueError, match="target times"):
        RegressionLoss(T_END)(recording, jnp.asarray([1, 2, 3]), jnp.asarray(MASK))
