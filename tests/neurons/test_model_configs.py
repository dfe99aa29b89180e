"""conf/model/*.yaml: each builds its model, and its defaults fire on Yin-Yang inputs."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from eventax_lab.config import SimulationConfig
from eventax_lab.data.yinyang import N_CLASSES, N_INPUTS, encode_yinyang, sample_yinyang
from eventax_lab.network import simulate_batch
from eventax_lab.neurons import MODELS

MODEL_CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"
HIDDEN_SIZE = 120
# Fractions of (sample, neuron) pairs with at least one spike at initialisation.
MIN_ACTIVE_HIDDEN = 0.75
MIN_ACTIVE_OUTPUT = 0.9
# The QIF default starts sparse on purpose: about 30% of hidden and 70% of output
# pairs fire, the setting of the recorded Yin-Yang run.
MIN_ACTIVE_BY_MODEL = {"qif": (0.2, 0.5)}


def build_from_config(name: str):
    config = OmegaConf.load(MODEL_CONFIG_DIR / f"{name}.yaml")
    return instantiate(config, n_inputs=N_INPUTS, n_outputs=N_CLASSES, key=jax.random.PRNGKey(0))


def test_every_model_has_a_config():
    names = {path.stem for path in MODEL_CONFIG_DIR.glob("*.yaml")}
    assert names == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_config_builds_its_model(name):
    network = build_from_config(name)
    assert [type(layer) for layer in network.layers] == [MODELS[name]] * 2
    assert [layer.n_neurons for layer in network.layers] == [HIDDEN_SIZE, N_CLASSES]
    assert network.n_inputs == N_INPUTS


def check_fires_on_yinyang(name: str):
    points, _ = sample_yinyang(4, seed=0)
    spikes = jnp.asarray(encode_yinyang(points))  # [4, 5, 1], times in [0, 30] ms
    network = build_from_config(name)
    recording = jax.jit(lambda n, s: simulate_batch(n, s, SimulationConfig(t_end=60.0)))(
        network, spikes
    )
    hidden_counts, output_counts = (np.asarray(c) for c in recording.spike_counts)
    min_hidden, min_output = MIN_ACTIVE_BY_MODEL.get(name, (MIN_ACTIVE_HIDDEN, MIN_ACTIVE_OUTPUT))
    assert np.mean(hidden_counts > 0) >= min_hidden, hidden_counts.mean(axis=0)
    assert np.mean(output_counts > 0) >= min_output, output_counts


@pytest.mark.parametrize("name", ["lif", "qif"])
def test_default_config_fires_on_yinyang(name):
    check_fires_on_yinyang(name)


# One forward compile each, about 15 s of CPU time on a 2-core development VM.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["alif", "eif", "izhikevich", "egru"])
def test_default_config_fires_on_yinyang_slow(name):
    check_fires_on_yinyang(name)
