"""Weight gradients of every loss on a small Yin-Yang network, checked by finite differences.

Two fresh networks share their initial weights: one with a spiking output layer,
read by all five losses, and one with a non-spiking output layer, read by the
three state readouts that normally use it.
"""

import functools

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.losses import ExpIntegralLoss, IntegralLoss, MaxLoss, RegressionLoss, TemporalLoss
from eventax_lab.network import build_network, simulate_batch

T_END = 60.0
CONFIG = SimulationConfig(
    t_end=T_END, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12, max_steps=4096
)
LOSSES = {
    "temporal": TemporalLoss(T_END, t0=3.0, alpha=0.005),  # with the late-spike penalty
    "max": MaxLoss(T_END, resolution=2.0),
    "integral": IntegralLoss(T_END),
    "exp_integral": ExpIntegralLoss(T_END),
    "regression": RegressionLoss(T_END),
}
HEADS = {
    "spiking": tuple(LOSSES),
    "non_spiking": ("max", "integral", "exp_integral"),
}
CASES = [(head, name) for head, names in HEADS.items() for name in names]
LABELS = jnp.asarray([0, 2])
TARGET_TIMES = jnp.asarray([15.0, 12.0])
MASK = jnp.asarray([True, True])


def yinyang_spikes(n_samples, seed):
    """Return Yin-Yang-like input spikes [n, 5, 1]: x, y, 1 - x, 1 - y times 30 ms, bias at 0."""
    points = np.random.default_rng(seed).uniform(0.1, 0.9, size=(n_samples, 2))
    features = np.concatenate([points, 1 - points], axis=1) * 30.0
    return jnp.asarray(np.concatenate([features, np.zeros((n_samples, 1))], axis=1)[:, :, None])


def weights_of(network):
    # A non-spiking output layer wraps its LIF model in `.model`.
    return tuple(getattr(layer, "model", layer).weight for layer in network.layers)


def evaluate_losses(weights, network, spikes, names):
    """Return the named losses as a vector, and (that vector, the first loss's metrics).

    One simulation records everything the losses read. The regression loss reads
    output neuron 0 alone. The vector is repeated in the auxiliary output so that
    one jitted `jacrev` also serves for the finite differences.
    """
    options = {}
    for name in names:
        options.update(LOSSES[name].simulation_options())
    options.pop("stop_after_first_spike", None)
    network = eqx.tree_at(weights_of, network, weights)
    recording = simulate_batch(network, spikes, CONFIG, **options)
    one_output = eqx.tree_at(
        lambda r: r.first_spike_times, recording, recording.first_spike_times[:, :1]
    )
    values, metrics = [], None
    for name in names:
        if name == "regression":
            value, loss_metrics = LOSSES[name](one_output, TARGET_TIMES, MASK)
        else:
            value, loss_metrics = LOSSES[name](recording, LABELS, MASK)
        values.append(value)
        metrics = loss_metrics if metrics is None else metrics
    values = jnp.stack(values)
    return values, (values, metrics)


jacobian_fn = eqx.filter_jit(jax.jacrev(evaluate_losses, has_aux=True))


@functools.cache
def fresh_case(head, n_hidden=16):
    """Return (network, spikes, losses, metrics, d losses / d weights) at initialisation."""
    # Fan-in-scaled N(5, 4^2) weights make every hidden neuron fire for these
    # inputs, and every output of the spiking head. With 120 hidden neurons the
    # output layer gets N(1, 2^2), which keeps the outputs at 1-3 spikes.
    output_kwargs = dict(weight_mean=1.0, weight_std=2.0) if n_hidden > 16 else None
    network = build_network(
        "lif",
        [n_hidden],
        5,
        3,
        jax.random.key(1),
        neuron_kwargs=dict(
            tau_mem=20.0, tau_syn=5.0, threshold=1.0, weight_mean=5.0, weight_std=4.0
        ),
        output_kwargs=output_kwargs,
        output_spiking=head == "spiking",
    )
    spikes = yinyang_spikes(2, seed=0)
    gradients, (values, metrics) = jacobian_fn(weights_of(network), network, spikes, HEADS[head])
    return network, spikes, values, metrics, gradients


@pytest.mark.parametrize("head", list(HEADS))
def test_fresh_network_fires(head):
    _, _, _, metrics, _ = fresh_case(head)
    assert float(metrics["hidden_spikes_per_neuron"]) > 0.5
    expected_silent = 0.0 if head == "spiking" else 1.0
    assert float(metrics["silent_output_fraction"]) == expected_silent


@pytest.mark.parametrize("head, name", CASES)
def test_fresh_network_gradient_nonzero(head, name):
    _, _, values, _, gradients = fresh_case(head)
    index = HEADS[head].index(name)
    assert np.isfinite(float(values[index]))
    for layer, gradient in enumerate(gradients):
        row = np.asarray(gradient[index])
        assert np.all(np.isfinite(row)), f"layer {layer}"
        assert np.linalg.norm(row) > 1e-6, f"layer {layer}"


@pytest.mark.parametrize("head", list(HEADS))
def test_gradients_match_central_differences(head):
    network, spikes, _, _, gradients = fresh_case(head)
    names = HEADS[head]
    weights = weights_of(network)
    keys = jax.random.split(jax.random.key(7), len(weights))
    direction = [jax.random.normal(key, w.shape, w.dtype) for key, w in zip(keys, weights)]
    norm = np.sqrt(sum(float(jnp.sum(d**2)) for d in direction))
    direction = tuple(d / norm for d in direction)

    epsilon = 1e-4
    plus = tuple(w + epsilon * d for w, d in zip(weights, direction))
    minus = tuple(w - epsilon * d for w, d in zip(weights, direction))
    _, (loss_plus, _) = jacobian_fn(plus, network, spikes, names)
    _, (loss_minus, _) = jacobian_fn(minus, network, spikes, names)
    finite_difference = np.asarray((loss_plus - loss_minus) / (2 * epsilon))
    directional = np.asarray(
        sum(jnp.tensordot(gradient, d, axes=d.ndim) for gradient, d in zip(gradients, direction))
    )
    for index, name in enumerate(names):
        expected = pytest.approx(finite_difference[index], rel=1e-5, abs=1e-9)
        assert directional[index] == expected, name


@pytest.mark.slow
@pytest.mark.parametrize("head", list(HEADS))
def test_yinyang_120_hidden_gradients_nonzero(head):
    _, _, values, metrics, gradients = fresh_case(head, n_hidden=120)
    assert float(metrics["hidden_spikes_per_neuron"]) > 0.5
    assert np.all(np.isfinite(np.asarray(values)))
    for index, name in enumerate(HEADS[head]):
        for layer, gradient in enumerate(gradients):
            row = np.asarray(gradient[index])
            assert np.all(np.isfinite(row)), f"{name}: layer {layer}"
            assert np.linalg.norm(row) > 1e-6, f"{name}: layer {layer}"
