"""The training and evaluation steps' failure codes, from a real simulation."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.losses import TemporalLoss
from eventax_lab.network import FeedForwardNetwork
from eventax_lab.neurons import LIF, trainable_filter
from eventax_lab.simulate import INVALID_INPUT, SimulationError, raise_failures
from eventax_lab.steps import FAILURES_KEY, Keyed, eval_step, train_step


@pytest.mark.parametrize("step", ["eval", "train"])
def test_step_failures_per_sample(step):
    # Samples 1 and 3 have a negative input time, which the simulator reports
    # as INVALID_INPUT, but sample 3 is a padding row.
    layer = LIF(1, 1, jax.random.PRNGKey(0), tau_mem=20.0, tau_syn=5.0, threshold=1.0)
    network = FeedForwardNetwork([layer])
    good, bad = [1.0, 20.0], [1.0, -20.0]
    spikes = jnp.array([good, bad, good, bad])[:, None, :]  # [sample, input, spike]
    targets = jnp.zeros(4, jnp.int32)
    mask = jnp.array([True, True, True, False])
    config = SimulationConfig(t_end=60.0, errors="record")
    loss = TemporalLoss(t_end=60.0)

    if step == "eval":
        _, metrics, _ = eval_step(network, spikes, targets, mask, loss, config)
    else:
        params, static = eqx.partition(network, trainable_filter(network))
        optimizer = Keyed("sgd 0.1", optax.sgd(0.1))
        _, _, _, metrics = train_step(
            params, static, optimizer.value.init(params), spikes, targets, mask, loss, config,
            optimizer,
        )
    codes = np.asarray(metrics[FAILURES_KEY])
    assert codes.tolist() == [0, INVALID_INPUT, 0, 0]
    with pytest.raises(SimulationError, match="^1 of 4 simulations failed.*negative or NaN"):
        raise_failures(codes)
