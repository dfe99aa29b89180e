"""Feed-forward and recurrent networks: finite-difference gradients, jit, vmap, connectivity."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.network import (
    FeedForwardNetwork,
    RecurrentNetwork,
    build_network,
    make_feedforward,
    simulate_batch,
)
from eventax_lab.neurons import LIF, trainable_filter

CONFIG = SimulationConfig(
    t_end=60.0, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12, max_steps=4096
)
LAYER = dict(tau_mem=20.0, tau_syn=5.0, threshold=1.0, weight_mean=7.0, weight_std=3.0)
INPUTS = jnp.array(
    [[[2.0], [9.0], [0.0]], [[14.0], [3.0], [0.0]], [[6.0], [6.0], [0.0]]]
)  # [batch 3, inputs 3, K 1] in ms
LABELS = jnp.array([0, 1, 0])


@pytest.fixture(scope="module")
def network():
    return make_feedforward(LIF, [3, 4, 2], jax.random.PRNGKey(3), [LAYER, LAYER])


def first_spike_loss(network, inputs, labels):
    recording = simulate_batch(network, inputs, CONFIG)
    times = jnp.where(jnp.isfinite(recording.first_spike_times), recording.first_spike_times, 60.0)
    return -jnp.mean(jax.nn.log_softmax(-times / 5.0)[jnp.arange(labels.shape[0]), labels])


def test_two_layer_gradient_matches_finite_differences(network):
    recording = simulate_batch(network, INPUTS, CONFIG)
    assert bool(jnp.all(jnp.isfinite(recording.first_spike_times))), "every output must spike"
    params, static = eqx.partition(network, trainable_filter(network))

    @jax.jit
    def loss(params):
        return first_spike_loss(eqx.combine(params, static), INPUTS, LABELS)

    grads = jax.grad(loss)(params)
    # Central differences on a few weights of each layer and one bias.
    probes = [
        (lambda p: p.layers[0].weight, (0, 0)),
        (lambda p: p.layers[0].weight, (2, 1)),
        (lambda p: p.layers[1].weight, (0, 3)),
        (lambda p: p.layers[1].weight, (1, 1)),
        (lambda p: p.layers[1].bias, (0,)),
    ]
    # The loss is accurate to about 1e-11 (solver and root tolerances), so a step of
    # 1e-4 keeps the difference quotient's rounding error near 1e-7.
    step = 1e-4
    scale = max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(grads))
    for get, index in probes:
        plus = eqx.tree_at(get, params, get(params).at[index].add(step))
        minus = eqx.tree_at(get, params, get(params).at[index].add(-step))
        numeric = (loss(plus) - loss(minus)) / (2 * step)
        analytic = get(grads)[index]
        assert float(analytic) == pytest.approx(float(numeric), rel=1e-4, abs=1e-5 * scale)


def test_jit_matches_eager_and_vmap_matches_loop(network):
    # The batch runs as one vmap over (sample, neuron) lanes. Each sample alone, and a
    # user's own vmap over samples, must give the same spikes, samples and integrals.
    sample_ts = jnp.array([5.0, 10.0, 20.0, 30.0])
    options = dict(sample_ts=sample_ts, integrals=True, exp_lambda=0.05)
    batched = jax.jit(lambda n, x: simulate_batch(n, x, CONFIG, **options))(network, INPUTS)
    nested = jax.vmap(lambda x: network.simulate(x, CONFIG, **options))(INPUTS)
    assert batched.samples.shape == (3, 4, 2, 2)  # [batch, sample time, output, channel]
    # The sampled synaptic current of an output neuron in closed form: the sum of
    # w exp(-(t - s) / tau_syn) over the hidden spikes s <= t reaching it.
    hidden = np.asarray(batched.spike_times[0])[:, None, None, :, :]  # [b, 1, 1, hidden, k]
    t = np.asarray(sample_ts)[None, :, None, None, None]
    weight = np.asarray(network.layers[1].weight)[None, None, :, :, None]  # [1, 1, out, hidden, 1]
    decay = np.exp(-np.where(hidden <= t, t - hidden, np.inf) / LAYER["tau_syn"])
    current = np.sum(weight * decay, axis=(3, 4))
    np.testing.assert_allclose(np.asarray(batched.samples[..., 1]), current, rtol=1e-8, atol=1e-10)
    for index in range(INPUTS.shape[0]):
        eager = network.simulate(INPUTS[index], CONFIG, **options)
        for layer in range(2):
            np.testing.assert_allclose(
                batched.spike_times[layer][index], eager.spike_times[layer], rtol=1e-10
            )
            np.testing.assert_allclose(
                nested.spike_times[layer][index], eager.spike_times[layer], rtol=1e-10
            )
        np.testing.assert_array_equal(batched.spike_counts[1][index], eager.spike_counts[1])
        for field in ("samples", "integral", "exp_integral"):
            np.testing.assert_allclose(
                getattr(batched, field)[index], getattr(eager, field), rtol=1e-9, atol=1e-12
            )
    # The recordings differ between batch entries, so a mixed-up lane would show.
    assert not np.allclose(batched.samples[0], batched.samples[1])


def test_recurrent_connection_delivers_spike_at_once():
    # Neuron 0 is driven by the input; neuron 1 only by neuron 0 through a
    # recurrent weight. Neuron 1's spike must follow the closed form of a PSP that
    # starts at neuron 0's spike time.
    model = LIF(2, 3, jax.random.PRNGKey(0), tau_mem=20.0, tau_syn=5.0)
    weights = jnp.array([[8.0, 0.0, 0.0], [0.0, 8.0, 0.0]])  # sources: input, neuron 0, neuron 1
    model = eqx.tree_at(lambda m: m.weight, model, weights)
    network = RecurrentNetwork(model, mask=jnp.ones((2, 3), bool), n_outputs=1)
    recording = network.simulate(jnp.array([[1.0]]), CONFIG)
    t0, t1 = recording.spike_times[0][:, 0]
    # Both neurons get the same PSP, so neuron 1 lags neuron 0 by t0 - 1 ms.
    assert float(t1 - t0) == pytest.approx(float(t0 - 1.0), rel=1e-8)
    assert float(recording.first_spike_times[0]) == float(t1)


def test_recurrent_mask_removes_connection():
    model = LIF(2, 3, jax.random.PRNGKey(0), tau_mem=20.0, tau_syn=5.0)
    model = eqx.tree_at(lambda m: m.weight, model, jnp.array([[8.0, 0.0, 0.0], [0.0, 8.0, 0.0]]))
    mask = jnp.array([[True, True, True], [True, False, True]])
    recording = RecurrentNetwork(model, mask, n_outputs=1).simulate(jnp.array([[1.0]]), CONFIG)
    assert int(recording.spike_counts[0][1]) == 0
    assert int(recording.spike_counts[0][0]) == 1


def test_bad_shapes_and_names_raise():
    network = make_feedforward(LIF, [3, 2], jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="input_spikes has shape"):
        network.simulate(jnp.zeros((4, 1)), CONFIG)
    with pytest.raises(ValueError, match="expected \\[batch, n_inputs, K\\]"):
        simulate_batch(network, jnp.zeros((3, 1)), CONFIG)
    with pytest.raises(ValueError, match="model.neuron='nope'"):
        build_network("nope", [4], 3, 2, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="hidden_sizes"):
        build_network("lif", [0], 3, 2, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="n_sources=3"):
        FeedForwardNetwork([LIF(2, 3, jax.random.PRNGKey(0)), LIF(2, 3, jax.random.PRNGKey(1))])
    with pytest.raises(ValueError, match="tau_mem"):
        LIF(2, 3, jax.random.PRNGKey(0), tau_mem=-1.0)
    with pytest.raises(ValueError, match="hidden_sizes=16 must be a list of ints"):
        build_network("lif", 16, 3, 2, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="tau_mem='abc' must be a number"):
        LIF(2, 3, jax.random.PRNGKey(0), tau_mem="abc")
    with pytest.raises(ValueError, match="input_spikes has dtype bool"):
        simulate_batch(network, jnp.ones((1, 3, 1), bool), CONFIG)


def test_integer_spike_times_act_as_floats(network):
    # Integer arrays cannot hold inf, so they arrive as whole-ms spike times.
    whole_ms = [[[2], [9], [0]], [[14], [3], [0]]]
    expected = simulate_batch(network, jnp.asarray(whole_ms, float), CONFIG).first_spike_times
    assert bool(jnp.all(jnp.isfinite(expected)))
    for spikes in (jnp.asarray(whole_ms), whole_ms):
        got = simulate_batch(network, spikes, CONFIG).first_spike_times
        np.testing.assert_array_equal(got, expected)
    single_sample = network.simulate(np.asarray(whole_ms[0]), CONFIG).first_spike_times
    np.testing.assert_allclose(single_sample, expected[0], rtol=1e-9)
