"""Gradients of a first-spike loss against finite differences, and short training runs.

A two-layer network (2 inputs, 4 hidden neurons, 2 outputs) gets four latency-coded
samples of a separable two-class problem: class 0 has input 0 early and input 1
late, class 1 the reverse. The loss is the first-spike cross-entropy
-log_softmax(-t / T0)[label], with a silent output counted as spiking at t_end.
Each model's jitted value-and-gradient function is compiled once and shared by
its finite-difference test and its training test.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.network import make_feedforward, simulate_batch
from eventax_lab.neurons import MODELS, trainable_filter

T_END = 30.0  # ms
T0 = 5.0  # ms, softmax temperature of the first-spike times
CONFIG = SimulationConfig(
    t_end=T_END, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12, max_steps=4096
)
# [sample, input, spike]: input spike times in ms.
SPIKES = jnp.array([[[2.0], [8.0]], [[3.0], [9.0]], [[8.0], [2.0]], [[9.0], [3.0]]])
LABELS = jnp.array([0, 0, 1, 1])
N_TRAINING_STEPS = 20
# The loss starts near log 2 = 0.69. Adam steps along a gradient of the wrong sign
# would raise it, and steps along a zero gradient would leave it unchanged.
MIN_LOSS_DECREASE = 0.02

# Per model: constructor keyword arguments that make every output neuron spike
# for every sample at initialisation, and the Adam learning rate. The rates were
# picked by trying a few per model. Larger ones made the loss jump, or silenced
# both outputs, which leaves it stuck at log 2 with a zero gradient.
CASES = {
    "alif": (dict(weight_mean=6.0, weight_std=2.0), 0.05),
    "egru": (dict(weight_mean=8.0, weight_std=3.0, gate_weight_mean=2.0), 0.05),
    "eif": (dict(weight_mean=100.0, weight_std=30.0), 0.6),
    "qif": (dict(weight_mean=10.0, weight_std=3.0), 0.2),
    "izhikevich": (dict(weight_mean=20.0, weight_std=8.0), 0.6),
}


def first_spike_loss(network, spikes, labels):
    """Return the mean first-spike cross-entropy and the output first-spike times [batch, 2]."""
    first_spike_times = simulate_batch(network, spikes, CONFIG).first_spike_times
    times = jnp.where(jnp.isfinite(first_spike_times), first_spike_times, T_END)
    log_probs = jax.nn.log_softmax(-times / T0, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))
    return loss, first_spike_times


@pytest.fixture(scope="module")
def case(request):
    """Return (trainable parameters, jitted loss-and-gradient function, learning rate) of a model.

    The function maps the parameters to `((loss, first_spike_times), gradient)`.
    """
    kwargs, learning_rate = CASES[request.param]
    network = make_feedforward(
        MODELS[request.param], [2, 4, 2], jax.random.PRNGKey(1), [kwargs, kwargs]
    )
    params, static = eqx.partition(network, trainable_filter(network))

    @jax.jit
    def loss_and_grad(params):
        return jax.value_and_grad(
            lambda p: first_spike_loss(eqx.combine(p, static), SPIKES, LABELS), has_aux=True
        )(params)

    return params, loss_and_grad, learning_rate


def tree_dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("case", ["alif", "egru", "eif"], indirect=True)
def test_gradient_matches_finite_differences(case):
    params, loss_and_grad, _ = case
    (_, first_spike_times), gradient = loss_and_grad(params)
    assert bool(jnp.all(jnp.isfinite(first_spike_times))), "every output must spike at init"

    # A random unit direction in parameter space. A step of 1e-4 along it keeps
    # the finite-difference truncation error far below the tolerance.
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    direction = [jax.random.normal(key, leaf.shape) for key, leaf in zip(keys, leaves)]
    norm = jnp.sqrt(sum(jnp.sum(d**2) for d in direction))
    direction = jax.tree.unflatten(treedef, [d / norm for d in direction])
    step = 1e-4
    (loss_plus, _), _ = loss_and_grad(jax.tree.map(lambda p, d: p + step * d, params, direction))
    (loss_minus, _), _ = loss_and_grad(jax.tree.map(lambda p, d: p - step * d, params, direction))

    finite_difference = float((loss_plus - loss_minus) / (2 * step))
    analytic = float(tree_dot(gradient, direction))
    assert abs(analytic) > 1e-4, "the direction must change the loss"
    np.testing.assert_allclose(analytic, finite_difference, rtol=1e-4)


def run_training(case):
    params, loss_and_grad, learning_rate = case
    optimizer = optax.adam(learning_rate)
    state = optimizer.init(params)
    losses = []
    for _ in range(N_TRAINING_STEPS):
        (loss, _), gradient = loss_and_grad(params)
        losses.append(float(loss))
        updates, state = optimizer.update(gradient, state, params)
        params = optax.apply_updates(params, updates)
    (final_loss, first_spike_times), _ = loss_and_grad(params)
    return losses + [float(final_loss)], first_spike_times


@pytest.mark.parametrize("case", ["alif", "egru", "eif"], indirect=True)
def test_training_lowers_loss(case):
    losses, _ = run_training(case)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - MIN_LOSS_DECREASE, f"losses per step: {losses}"


# Each needs one more value-and-gradient compile, about 30 s of CPU time measured on
# a 2-core development VM, so these run only with `pytest -m slow`.
@pytest.mark.slow
@pytest.mark.parametrize("case", ["qif", "izhikevich"], indirect=True)
def test_training_lowers_loss_slow(case):
    losses, _ = run_training(case)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0] - MIN_LOSS_DECREASE, f"losses per step: {losses}"
