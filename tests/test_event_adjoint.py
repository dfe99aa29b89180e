"""The event adjoint (`SimulationConfig(adjoint="event")`) against closed forms,
finite differences and the gradients through the solver steps."""

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.network import make_feedforward, simulate_batch
from eventax_lab.neurons import EGRU, LIF, QIF, parameter, summed_weights, trainable_filter
from eventax_lab.simulate import (
    INPUT_WINDOW,
    OUT_OF_EVENTS,
    _backward_start,
    _Records,
    run_independent_neurons,
    run_population,
)

TAU_MEM, TAU_SYN = 20.0, 5.0
EVENT = SimulationConfig(
    t_end=60.0, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12, max_steps=4096,
    adjoint="event",
)
STEPS = dataclasses.replace(EVENT, adjoint="recursive_checkpoint")


def lif(n, n_sources, weight=None, **kwargs):
    kwargs = {"tau_mem": TAU_MEM, "tau_syn": TAU_SYN, "threshold": 1.0, **kwargs}
    model = LIF(n, n_sources, jax.random.PRNGKey(1), **kwargs)
    if weight is not None:
        model = eqx.tree_at(lambda m: m.weight, model, jnp.asarray(weight, float))
    return model


class VoltageJumpLIF(LIF):
    """LIF whose input spikes also jump the voltage, so one input can cross threshold."""

    additive_inputs = True  # both jumps add the weights

    def input_spike(self, y, from_idx, valid_mask):
        jump = jnp.sum(jnp.where(valid_mask, self.weight[:, from_idx], 0.0), axis=1)
        return y.at[:, 0].add(0.15 * jump).at[:, 1].add(jump)

    def replace_weight(self, weight, bias):
        return eqx.tree_at(
            lambda m: (m.weight, m.bias), self,
            (jnp.asarray(weight, float), jnp.full_like(self.bias, bias)),
        )


def finite_difference(fn, x, step):
    """Return the central difference quotient of scalar `fn` at every entry of array `x`."""
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        shift = np.zeros_like(x)
        shift[index] = step
        out[index] = (fn(x + shift) - fn(x - shift)) / (2 * step)
    return out


def test_bias_spike_gradient_closed_form():
    # With V(0) = 0 and a constant current i > theta, V(t) = i (1 - exp(-t / tau_mem)),
    # so the first spike is at t = tau_mem ln(i / (i - theta)).
    def first_spike(bias):
        model = eqx.tree_at(lambda m: m.bias, lif(1, 1), jnp.array([bias]))
        return run_population(model, jnp.array([jnp.inf]), jnp.array([0]), EVENT).spike_times[0, 0]

    bias = 1.7
    expected = TAU_MEM / bias - TAU_MEM / (bias - 1.0)  # d/di of tau ln(i / (i - 1))
    assert float(first_spike(bias)) == pytest.approx(TAU_MEM * np.log(bias / (bias - 1.0)), rel=1e-8)
    assert float(jax.grad(first_spike)(bias)) == pytest.approx(expected, rel=1e-6)


def test_input_spike_gradients_implicit_function():
    # One input at t_in with weight w: V(s) = w A (exp(-s / tau_mem) - exp(-s / tau_syn)),
    # A = tau_syn / (tau_mem - tau_syn). The crossing V(t - t_in) = 1 gives, by the
    # implicit function theorem, dt/dw = -V_w / V' and dt/dt_in = 1.
    amplitude = TAU_SYN / (TAU_MEM - TAU_SYN)

    def first_spike(weight, t_in):
        model = lif(1, 1, weight=[[weight]])
        result = run_population(model, jnp.array([t_in]), jnp.array([0]), EVENT)
        return result.spike_times[0, 0]

    weight, t_in = 8.0, 3.0
    t = float(first_spike(weight, t_in))
    s = t - t_in
    shape = np.exp(-s / TAU_MEM) - np.exp(-s / TAU_SYN)
    slope = weight * amplitude * (-np.exp(-s / TAU_MEM) / TAU_MEM + np.exp(-s / TAU_SYN) / TAU_SYN)
    assert weight * amplitude * shape == pytest.approx(1.0, abs=1e-9)
    d_weight, d_t_in = jax.grad(first_spike, argnums=(0, 1))(weight, t_in)
    assert float(d_weight) == pytest.approx(-amplitude * shape / slope, rel=1e-6)
    assert float(d_t_in) == pytest.approx(1.0, rel=1e-6)


def population_loss(model, times, config, **kwargs):
    """Weigh every recorded spike time, sample and integral differently, and sum."""
    result = run_population(model, times, jnp.arange(times.shape[0]) % model.n_sources, config, **kwargs)
    spikes = jnp.where(jnp.isfinite(result.spike_times), result.spike_times, 0.0)
    weights = jnp.linspace(0.5, 1.5, spikes.size).reshape(spikes.shape)
    loss = jnp.sum(weights * spikes)
    if kwargs.get("sample_ts") is not None:
        loss = loss + jnp.sum(jnp.sin(result.samples))
    return loss + jnp.sum(result.integral) + 2.0 * jnp.sum(result.exp_integral)


CASES = {
    # Several spikes per neuron from a bias current, with samples and both integrals.
    "repeated spikes, samples, integrals": (
        lif(2, 3, weight=[[1.5, 2.0, 1.0], [0.5, 1.0, 2.5]], bias_init=1.3),
        [2.0, 7.0, 20.5],
        dict(sample_ts=jnp.array([4.0, 17.0, 33.0]), integrals=True, exp_lambda=0.05),
    ),
    # Input 0 lifts neuron 0 above threshold at once: a spike at the jump time.
    "spike at an input jump": (
        VoltageJumpLIF(2, 2, jax.random.PRNGKey(1), tau_mem=TAU_MEM, tau_syn=TAU_SYN)
        .replace_weight([[8.0, 3.0], [2.0, 5.0]], bias=0.5),
        [5.0, 12.0],
        dict(sample_ts=jnp.array([30.0])),
    ),
    # Own spikes arrive at once as inputs of the other neurons.
    "recurrent": (
        lif(3, 5, weight=[[12.0, 5.0, -3.0, 0.0, -1.0], [1.0, 2.0, 8.0, -1.0, 0.0],
                          [1.0, 0.5, 2.0, 8.0, -1.0]]),
        [1.5, 3.0],
        dict(recurrent=True),
    ),
    "stop after the first spike": (
        lif(2, 3, weight=[[1.5, 2.0, 1.0], [0.5, 1.0, 2.5]], bias_init=1.3),
        [2.0, 7.0, 20.5],
        dict(stop_after_first_spike=True, integrals=True),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_population_gradients_finite_differences(case):
    model, times, kwargs = CASES[case]
    times = jnp.asarray(times)
    counts = run_population(model, times, jnp.arange(times.shape[0]) % model.n_sources, EVENT, **kwargs).spike_counts
    assert int(jnp.sum(counts)) >= 2, "the case must spike"
    if case == "spike at an input jump":
        at_jump = run_population(model, times, jnp.arange(2), EVENT, **kwargs).spike_times[0, 0]
        assert float(at_jump) == pytest.approx(5.0)

    grad = jax.jit(jax.grad(functools.partial(population_loss, config=EVENT, **kwargs), (0, 1)))
    g_model, g_times = grad(model, times)
    loss = jax.jit(functools.partial(population_loss, config=STEPS, **kwargs))

    def loss_of_weight(weight):
        return float(loss(eqx.tree_at(lambda m: m.weight, model, jnp.asarray(weight)), times))

    def loss_of_times(values):
        return float(loss(model, jnp.asarray(values)))

    def loss_of_bias(bias):
        return float(loss(eqx.tree_at(lambda m: m.bias, model, jnp.asarray(bias)), times))

    # The loss is accurate to about 1e-10, so a step of 1e-4 keeps the rounding
    # error of the quotient near 1e-6.
    step = 1e-4
    for analytic, numeric in (
        (g_model.weight, finite_difference(loss_of_weight, model.weight, step)),
        (g_model.bias, finite_difference(loss_of_bias, model.bias, step)),
        (g_times, finite_difference(loss_of_times, times, step)),
    ):
        np.testing.assert_allclose(np.asarray(analytic), numeric, rtol=1e-5, atol=1e-5)


def test_qif_network_gradients_finite_differences():
    # The default model of the trainer: phase-form QIF, two layers, a batch of three.
    # Its neurons start at their resting voltage, where the state does not move, so
    # the adaptive controller takes steps of several ms. Differentiating those steps
    # gives output-bias gradients about 0.2 % off; the adjoint solve has its own
    # error control and does not share that error.
    layer = dict(tau_mem=10.0, tau_syn=5.0, weight_mean=10.0, weight_std=2.0)
    network = make_feedforward(QIF, [3, 6, 2], jax.random.PRNGKey(4), [layer, layer])
    inputs = jnp.array([[[2.0], [9.0], [0.0]], [[14.0], [3.0], [0.0]], [[6.0], [6.5], [0.0]]])
    params, static = eqx.partition(network, trainable_filter(network))

    def loss(params, config):
        recording = simulate_batch(eqx.combine(params, static), inputs, config)
        times = jnp.where(jnp.isfinite(recording.first_spike_times), recording.first_spike_times, 60.0)
        hidden = recording.spike_times[0]
        hidden = jnp.where(jnp.isfinite(hidden), hidden, 0.0)
        return jnp.sum(jnp.cos(times / 7.0)) + 0.01 * jnp.sum(hidden)

    recording = simulate_batch(network, inputs, EVENT)
    assert bool(jnp.all(jnp.isfinite(recording.first_spike_times))), "every output must spike"
    grads = jax.jit(jax.grad(loss), static_argnums=1)(params, EVENT)
    value = jax.jit(loss, static_argnums=1)
    probes = [
        (lambda p: p.layers[0].weight, (0, 0)),
        (lambda p: p.layers[0].weight, (4, 1)),
        (lambda p: p.layers[0].bias, (2,)),
        (lambda p: p.layers[1].weight, (0, 3)),
        (lambda p: p.layers[1].bias, (0,)),
        (lambda p: p.layers[1].bias, (1,)),
    ]
    # Spike times are accurate to about 1e-9 here, so a step of 1e-3 keeps the
    # rounding error of the quotient near 1e-6, above its truncation error.
    step = 1e-3
    for get, index in probes:
        plus = eqx.tree_at(get, params, get(params).at[index].add(step))
        minus = eqx.tree_at(get, params, get(params).at[index].add(-step))
        numeric = (value(plus, EVENT) - value(minus, EVENT)) / (2 * step)
        assert float(get(grads)[index]) == pytest.approx(float(numeric), rel=2e-5, abs=1e-6)


@pytest.mark.parametrize("adjoint", ["event", "recursive_checkpoint"])
def test_window_split_inputs_act_as_one(adjoint):
    # More inputs at one time than one loop iteration delivers arrive over three
    # iterations. They must act as one input of their summed weight: all arrive
    # before the spike their jump causes. The first window alone lifts the voltage
    # above threshold (0.15 * 7.7 > 1), so a spike between windows, with the reset
    # to 0, would change every later spike time. The sample at the inputs' time
    # must see all of them.
    config = dataclasses.replace(EVENT, adjoint=adjoint)
    n_inputs = 2 * INPUT_WINDOW + 6
    weights = np.linspace(0.3, 0.02, n_inputs)
    assert 0.15 * weights[:INPUT_WINDOW].sum() > 1.0

    def make(weight):
        n_sources = len(weight)
        return VoltageJumpLIF(
            1, n_sources, jax.random.PRNGKey(1), tau_mem=TAU_MEM, tau_syn=TAU_SYN,
            reset_mode="value",
        ).replace_weight([weight], bias=0.5)

    def loss(model, times):
        result = run_population(
            model, times, jnp.arange(times.shape[0]), config, sample_ts=jnp.array([5.0, 30.0])
        )
        spikes = jnp.where(jnp.isfinite(result.spike_times), result.spike_times, 0.0)
        coefficients = jnp.linspace(0.5, 1.5, spikes.size).reshape(spikes.shape)
        return jnp.sum(coefficients * spikes) + jnp.sum(jnp.sin(result.samples)), result

    many, summed = make(weights), make([weights.sum()])
    many_times, summed_time = jnp.full((n_inputs,), 5.0), jnp.array([5.0])
    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    (g_many, g_many_times), many_result = grad(many, many_times)
    (g_summed, g_summed_time), summed_result = grad(summed, summed_time)

    assert int(summed_result.spike_counts[0]) >= 3
    assert float(summed_result.spike_times[0, 0]) == pytest.approx(5.0)
    np.testing.assert_allclose(many_result.spike_times, summed_result.spike_times, rtol=1e-9)
    np.testing.assert_allclose(many_result.samples, summed_result.samples, rtol=1e-9)
    # The jump reads the weights only through their sum.
    expected_weight_gradient = np.full((1, n_inputs), g_summed.weight[0, 0])
    np.testing.assert_allclose(g_many.weight, expected_weight_gradient, rtol=1e-6)
    np.testing.assert_allclose(g_many.bias, g_summed.bias, rtol=1e-6)
    # Shifting every input time together shifts the summed input.
    assert float(jnp.sum(g_many_times)) == pytest.approx(float(g_summed_time[0]), rel=1e-6)


def test_egru_tied_inputs_arrive_together():
    # EGRU's candidate jump is scaled by the reset gate before the event, and the
    # gate jump of the same event changes that gate. Its inputs at one time must
    # therefore arrive in one call, so 70 inputs act as one of the summed weights.
    n_inputs = 2 * INPUT_WINDOW + 6
    assert not EGRU.additive_inputs
    key_u, key_r, key_z = jax.random.split(jax.random.PRNGKey(3), 3)
    weights = {
        "weight_u": jax.random.normal(key_u, (1, n_inputs)) * 0.3,
        "weight_r": jax.random.normal(key_r, (1, n_inputs)) * 0.3 + 0.1,
        "weight_z": jax.random.normal(key_z, (1, n_inputs)) * 0.3 + 0.2,
    }

    def make(summed):
        model = EGRU(1, 1 if summed else n_inputs, jax.random.PRNGKey(0), threshold=0.3)
        values = {k: jnp.sum(v, axis=1, keepdims=True) if summed else v for k, v in weights.items()}
        return eqx.tree_at(
            lambda m: (m.weight_u, m.weight_r, m.weight_z), model,
            (values["weight_u"], values["weight_r"], values["weight_z"]),
        )

    def run(model, times):
        return run_population(
            model, times, jnp.arange(times.shape[0]), EVENT, sample_ts=jnp.array([6.0, 20.0])
        )

    many = run(make(False), jnp.full((n_inputs,), 6.0))
    summed = run(make(True), jnp.array([6.0]))
    assert int(summed.spike_counts[0]) >= 1
    np.testing.assert_allclose(many.samples, summed.samples, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(many.spike_times, summed.spike_times, rtol=1e-9)


def test_gradients_of_partial_arguments():
    # The weights enter only through the input jumps, and the bias only through the
    # dynamics. Each must still get its gradient when the other is held fixed.
    model = lif(1, 2, weight=[[6.0, 4.0]], bias_init=0.2)
    times = jnp.array([1.0, 4.0])

    def first_spike(weight, bias):
        m = eqx.tree_at(lambda m: (m.weight, m.bias), model, (weight, bias))
        return run_population(m, times, jnp.arange(2), EVENT).spike_times[0, 0]

    both = jax.grad(first_spike, argnums=(0, 1))(model.weight, model.bias)
    only_weight = jax.grad(first_spike, argnums=0)(model.weight, model.bias)
    only_bias = jax.grad(first_spike, argnums=1)(model.weight, model.bias)
    np.testing.assert_allclose(only_weight, both[0], rtol=1e-12)
    np.testing.assert_allclose(only_bias, both[1], rtol=1e-12)
    assert float(jnp.abs(both[1][0])) > 0
    assert float(jnp.min(jnp.abs(both[0]))) > 0


def test_backward_start_last_cotangent_event():
    # Events 0-3 are recorded (count 4). Slot 4 contains a stale spike past the count.
    # Neuron 0 spikes at events 1 (slot 0) and 3 (slot 1), and neuron 1 at event 2
    # with slot 2, past the capacity of 2 (an overflow, which writes no time).
    # Event 2 also takes sample 0.
    spiked = np.zeros((5, 2), bool)
    spiked[[1, 3, 4], 0] = True
    spiked[2, 1] = True
    slot = np.zeros((5, 2), np.int32)
    slot[3, 0], slot[2, 1], slot[4, 0] = 1, 2, 1
    records = _Records(
        count=jnp.asarray(4), dt=jnp.asarray(0.1), t=jnp.arange(5.0),
        pre=jnp.zeros((5, 2, 2)), post=jnp.zeros((5, 2, 2)),
        spiked=jnp.asarray(spiked), slot=jnp.asarray(slot),
        crossed=jnp.zeros(5, bool), tied=jnp.zeros(5, bool),
        first_input=jnp.zeros(5, jnp.int32), end_input=jnp.zeros(5, jnp.int32),
        sample=jnp.array([-1, -1, 0, -1, -1]),
    )
    no_samples = jnp.zeros((1, 2, 2))
    no_integrals = (None, None)

    def start(ct_spikes, ct_samples=no_samples, ct_acc=no_integrals):
        return int(_backward_start(records, jnp.asarray(ct_spikes, float), ct_samples, ct_acc))

    assert start([[1.0, 0.0], [0.0, 0.0]]) == 1
    assert start([[0.0, 2.0], [0.0, 0.0]]) == 3
    # Neuron 1's overflowing spike has no slot, so its cotangent reaches nothing.
    assert start([[0.0, 0.0], [5.0, 5.0]]) == -1
    assert start(np.zeros((2, 2)), ct_samples=jnp.ones((1, 2, 2))) == 2
    assert start([[1.0, 0.0], [0.0, 0.0]], ct_samples=jnp.ones((1, 2, 2))) == 2
    # A NaN cotangent is not zero: it must reach the gradients.
    assert start([[0.0, jnp.nan], [0.0, 0.0]]) == 3
    integrals = (jnp.zeros((2, 2)), jnp.zeros((2, 2)).at[1, 0].set(0.5))
    assert start(np.zeros((2, 2)), ct_acc=integrals) == 3
    assert start(np.zeros((2, 2)), ct_acc=(jnp.zeros((2, 2)), jnp.zeros((2, 2)))) == -1


@pytest.mark.parametrize("read", ["one neuron's first spike", "an early sample"])
def test_gradients_of_early_outputs_match_differences(read):
    # The loss reads one output early in the window. Spikes, inputs and a sample
    # follow it, and the backward pass starts at the event that output comes from.
    model = lif(2, 3, weight=[[1.5, 2.0, 1.0], [4.0, 1.0, 2.5]], bias_init=1.3)
    times = jnp.array([2.0, 7.0, 20.5])
    sample_ts = jnp.array([10.0, 40.0])

    def loss(model, times, config):
        result = run_population(model, times, jnp.arange(3), config, sample_ts=sample_ts)
        if read == "an early sample":
            return jnp.sum(jnp.cos(result.samples[0]))
        return result.spike_times[1, 0]

    result = run_population(model, times, jnp.arange(3), EVENT, sample_ts=sample_ts)
    first = float(result.spike_times[1, 0])
    later = np.asarray(result.spike_times)[np.isfinite(result.spike_times)]
    assert first < 10.0, "the output must come early"
    assert int(np.sum(later > 10.0)) >= 2, "spikes must follow the output"

    g_model, g_times = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(model, times, EVENT)
    value = jax.jit(loss, static_argnums=2)
    step = 1e-4
    numeric_weight = finite_difference(
        lambda w: float(value(eqx.tree_at(lambda m: m.weight, model, jnp.asarray(w)), times, STEPS)),
        model.weight, step,
    )
    numeric_bias = finite_difference(
        lambda b: float(value(eqx.tree_at(lambda m: m.bias, model, jnp.asarray(b)), times, STEPS)),
        model.bias, step,
    )
    numeric_times = finite_difference(
        lambda t: float(value(model, jnp.asarray(t), STEPS)), times, step
    )
    np.testing.assert_allclose(np.asarray(g_model.weight), numeric_weight, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_model.bias), numeric_bias, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_times), numeric_times, rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(g_model.bias))) > 1e-3


def test_vmapped_event_gradients_match_one_loop():
    # One loop over the population against one vmapped lane per neuron. The lanes
    # record different numbers of events, and two of them get no cotangent, so
    # the vmapped backward loop runs on after some lanes have finished.
    model = lif(4, 2, weight=[[2.5, 1.0], [0.2, 0.3], [1.5, 2.5], [0.4, 0.1]], bias_init=1.1)
    model = eqx.tree_at(lambda m: m.bias, model, jnp.array([1.3, 0.2, 1.1, 0.6]))
    times, sources = jnp.array([1.0, 4.0, 9.0, 20.0]), jnp.array([0, 1, 0, 1])

    def loss(model, times, simulate, integrals=False):
        result = simulate(model, times, sources, EVENT, integrals=integrals)
        value = result.spike_times[0, 0] + jnp.sin(result.spike_times[2, 1])
        return value + 0.01 * jnp.sum(result.integral[:, 0]) if integrals else value

    counts = run_population(model, times, sources, EVENT).spike_counts
    assert int(counts[0]) >= 2
    assert int(counts[2]) >= 2
    assert int(counts[1]) != int(counts[0]), "the lanes must record different events"
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=(2, 3))
    for integrals in (False, True):
        # With an integral in the loss, every lane's backward loop covers all its events.
        one_model, one_times = grad(model, times, run_population, integrals)
        lane_model, lane_times = grad(model, times, run_independent_neurons, integrals)
        np.testing.assert_allclose(lane_model.weight, one_model.weight, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(lane_model.bias, one_model.bias, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(lane_times, one_times, rtol=1e-7, atol=1e-12)
        if not integrals:
            # Neurons 1 and 3 reach no output, so their parameters get exactly nothing.
            np.testing.assert_array_equal(np.asarray(lane_model.weight)[[1, 3]], 0.0)
            np.testing.assert_array_equal(np.asarray(lane_model.bias)[[1, 3]], 0.0)
        assert float(jnp.min(jnp.abs(lane_model.bias[jnp.array([0, 2])]))) > 1e-3


class GainLIF(LIF):
    """LIF whose input weights scale with one trainable gain that all neurons share."""

    gain: jax.Array = parameter(per_neuron=False)

    def __init__(self, *args, gain=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = jnp.asarray(gain, self.weight.dtype)

    def input_spike(self, y, from_idx, valid_mask):
        return y.at[:, 1].add(self.gain * summed_weights(self.weight, from_idx, valid_mask))


# 3 samples x 6 neurons = 18 lanes, whose neurons spike from 0 to 2 times.
GAIN_MODEL = GainLIF(
    6, 2, jax.random.PRNGKey(3), tau_mem=TAU_MEM, tau_syn=TAU_SYN, weight_mean=2.5,
    weight_std=1.5, fan_in_scaling=False, gain=1.1,
)
GAIN_TIMES = jnp.array([[1.0, 4.0, 9.0], [2.0, 3.0, jnp.inf], [0.5, 6.0, 7.0]])
GAIN_SOURCES = jnp.array([[0, 1, 0], [1, 0, 1], [1, 1, 0]])


def gain_loss(model, times, lanes_per_vmap, first_only):
    """Return a loss of the 18 lanes' outputs; `lanes_per_vmap=0` runs one loop per sample."""
    config = dataclasses.replace(EVENT, lanes_per_vmap=lanes_per_vmap or None)
    sample_ts = jnp.array([5.0, 30.0])
    if lanes_per_vmap == 0:
        result = jax.vmap(
            lambda t, s: run_population(model, t, s, config, sample_ts=sample_ts)
        )(times, GAIN_SOURCES)
    else:
        result = run_independent_neurons(model, times, GAIN_SOURCES, config, sample_ts=sample_ts)
    spike_times = jnp.where(jnp.isfinite(result.spike_times), result.spike_times, 60.0)
    if first_only:
        # Only first spikes reach the loss, so the lanes' backward passes differ
        # in length, and those of silent neurons do nothing.
        return jnp.sum(spike_times[..., 0] ** 2)
    return jnp.sum(spike_times**2) + jnp.sum(result.samples[..., 0])


@pytest.mark.parametrize("first_only", [False, True], ids=["every spike", "first spikes"])
def test_worker_loops_match_one_loop(first_only):
    # The 18 lanes on 4 loops, which take the next lane as each finishes, and as
    # one vmap, against one loop over each sample's population. The lanes'
    # backward passes run in order of their work.
    simulate = jax.jit(
        lambda lanes: run_independent_neurons(
            GAIN_MODEL, GAIN_TIMES, GAIN_SOURCES, dataclasses.replace(EVENT, lanes_per_vmap=lanes)
        ),
        static_argnums=0,
    )
    whole, pooled = simulate(None), simulate(4)
    counts = np.asarray(whole.spike_counts)
    assert counts.min() == 0
    assert counts.max() >= 2
    np.testing.assert_array_equal(pooled.spike_counts, whole.spike_counts)
    np.testing.assert_allclose(pooled.spike_times, whole.spike_times, rtol=1e-12)

    grad = jax.jit(jax.grad(gain_loss, argnums=(0, 1)), static_argnums=(2, 3))
    model_one, times_one = grad(GAIN_MODEL, GAIN_TIMES, 0, first_only)
    for lanes in (None, 4):
        model_lanes, times_lanes = grad(GAIN_MODEL, GAIN_TIMES, lanes, first_only)
        for name in ("weight", "bias", "gain"):
            np.testing.assert_allclose(
                getattr(model_lanes, name), getattr(model_one, name), rtol=1e-7, atol=1e-10,
                err_msg=f"{name}, lanes_per_vmap={lanes}",
            )
        np.testing.assert_allclose(times_lanes, times_one, rtol=1e-7, atol=1e-10)
    assert float(jnp.max(jnp.abs(model_one.weight))) > 1.0


def test_shared_parameter_gradient_matches_differences():
    # The gain is one leaf for all 18 lanes: its gradient sums theirs.
    def loss_of_gain(gain):
        model = eqx.tree_at(lambda m: m.gain, GAIN_MODEL, jnp.asarray(gain))
        return float(gain_loss(model, GAIN_TIMES, 4, True))

    model_grad, _ = jax.grad(gain_loss, argnums=(0, 1))(GAIN_MODEL, GAIN_TIMES, 4, True)
    difference = finite_difference(loss_of_gain, 1.1, 1e-6)
    assert abs(float(model_grad.gain)) > 1.0
    assert float(model_grad.gain) == pytest.approx(float(difference), rel=1e-5)


def test_worker_loops_report_out_of_events():
    # Each lane gets max_events iterations whether it runs in a worker loop or in
    # one vmap, so the same lanes fail.
    def failures(lanes):
        config = dataclasses.replace(EVENT, lanes_per_vmap=lanes, max_events=4, errors="record")
        run = jax.jit(lambda: run_independent_neurons(GAIN_MODEL, GAIN_TIMES, GAIN_SOURCES, config))
        return np.asarray(run().failures)

    whole, pooled = failures(None), failures(4)
    assert np.any(whole == OUT_OF_EVENTS)
    np.testing.assert_array_equal(pooled, whole)


def test_idle_worker_loop_keeps_its_lane():
    # With stop_after_first_spike, neuron 0's bias makes it spike at 22 ms,
    # before any input of samples 1 to 3 arrives. Once no lane is left, such a
    # loop idles, and it must not read lane 0's inputs at 1 and 2 ms, which lie
    # before its time.
    model = lif(2, 1, weight=[[0.5], [0.5]])
    model = eqx.tree_at(lambda m: m.bias, model, jnp.array([1.5, 0.2]))
    times = jnp.array([[1.0, 2.0], [50.0, 55.0], [50.0, 55.0], [52.0, 55.0]])
    sources = jnp.zeros((4, 2), jnp.int32)

    def first_spikes(lanes):
        config = dataclasses.replace(EVENT, lanes_per_vmap=lanes)
        result = run_independent_neurons(model, times, sources, config, stop_after_first_spike=True)
        return np.asarray(result.spike_times[..., 0])

    whole, pooled = first_spikes(None), first_spikes(3)
    expected = TAU_MEM * np.log(1.5 / 0.5)
    np.testing.assert_allclose(whole[1:, 0], expected, rtol=1e-9)
    np.testing.assert_array_equal(np.isfinite(whole[:, 1]), False)
    np.testing.assert_allclose(pooled, whole, rtol=1e-12)


def test_unknown_adjoint_names_choices():
    with pytest.raises(ValueError, match="'event'"):
        SimulationConfig(adjoint="eventprop")
