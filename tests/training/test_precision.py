"""`trainer.dtype` switches JAX to 64-bit floats and builds the network and batches in that dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.data import iterate_batches
from eventax_lab.experiment import build_experiment, configure_precision
from eventax_lab.run_config import validate_run_config
from eventax_lab.steps import to_device_batch


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dtype_sets_network_and_batch_precision(dtype, compose_config):
    cfg = compose_config(["experiment=smoke", f"trainer.dtype={dtype}"])
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)

    experiment = build_experiment(cfg, settings)
    batch = next(iterate_batches(experiment.datasets["train"], 8, seed=0, epoch=0))
    spikes, targets, mask = to_device_batch(batch, np.dtype(dtype), regression=False)

    assert jax.config.jax_enable_x64 == (dtype == "float64")
    floats = [leaf for leaf in jax.tree.leaves(experiment.network) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert floats
    assert {leaf.dtype for leaf in floats} == {np.dtype(dtype)}
    assert spikes.dtype == np.dtype(dtype)
    assert targets.dtype == jnp.int32
    assert mask.dtype == jnp.bool_
