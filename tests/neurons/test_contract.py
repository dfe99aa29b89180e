"""The contract check on every built-in model, and on broken models that must fail it by name."""

from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jaxtyping import Array
from omegaconf import OmegaConf

from eventax_lab.neurons import LIF, MODELS, setting
from eventax_lab.neurons.contract import ContractError, check_neuron_model

MODEL_CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"
KEY = jax.random.PRNGKey(3)


def hidden_kwargs(name: str) -> dict:
    """Return the hidden-layer constructor arguments of conf/model/NAME.yaml."""
    config = OmegaConf.load(MODEL_CONFIG_DIR / f"{name}.yaml")
    return OmegaConf.to_container(config.neuron_kwargs)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_builtin_model_meets_contract(name):
    model = MODELS[name](3, 4, KEY, **hidden_kwargs(name))
    report = check_neuron_model(model)
    assert report.n_spikes > 0
    assert (report.n_neurons, report.n_sources) == (3, 4)


class NoResetLIF(LIF):
    def reset_spiked(self, y, spike_mask):
        return y


class ResetEveryoneLIF(LIF):
    def reset_spiked(self, y, spike_mask):
        return y.at[:, 0].set(0.0)


class LogLIF(LIF):
    def dynamics(self, t, y, args):
        # log(V) is -inf at the resting V = 0 and NaN below it.
        return super().dynamics(t, y, args).at[:, 0].add(jnp.log(y[:, 0]))


class Float32LIF(LIF):
    def dynamics(self, t, y, args):
        return super().dynamics(t, y, args).astype(jnp.float32)


class UnslicedGainLIF(LIF):
    gain: Array = setting(per_neuron=False)  # one value per neuron, declared as shared

    def __init__(self, n_neurons, n_sources, key, **kwargs):
        super().__init__(n_neurons, n_sources, key, **kwargs)
        self.gain = jnp.linspace(1.0, 2.0, n_neurons)

    def dynamics(self, t, y, args):
        return super().dynamics(t, y, args) * self.gain[:, None]


class MeanFieldLIF(LIF):
    def dynamics(self, t, y, args):
        # Couples the neurons, so one neuron simulated alone behaves differently.
        return super().dynamics(t, y, args).at[:, 0].add(-jnp.mean(y[:, 0]))


class StringOptionLIF(LIF):
    label: str  # not static, so jit and vmap see a str leaf

    def __init__(self, n_neurons, n_sources, key, **kwargs):
        super().__init__(n_neurons, n_sources, key, **kwargs)
        self.label = "broken"


class SaturatingLIF(LIF):
    additive_inputs = True  # a wrong claim, which the contract check must catch

    def input_spike(self, y, from_idx, valid_mask):
        # The jump saturates in the summed weight, so two halves add more than the whole.
        summed = jnp.sum(jnp.where(valid_mask, self.weight[:, from_idx], 0.0), axis=1)
        return y.at[:, 1].add(jnp.tanh(summed))


@pytest.mark.parametrize(
    ("model_class", "message"),
    [
        (NoResetLIF, "reset_spiked left neuron .* >= 0 after a threshold crossing"),
        (ResetEveryoneLIF, "reset_spiked changed neuron .* although its spike_mask was false"),
        (LogLIF, "dynamics or spike_condition returned NaN or inf"),
        (Float32LIF, "dynamics returned shape .* dtype float32"),
        (UnslicedGainLIF, "dynamics returned shape .* for a single neuron vmapped alone"),
        (MeanFieldLIF, "dynamics gives different values when vmapped over single neurons"),
        (StringOptionLIF, "field 'label' contains a str"),
        (SaturatingLIF, "additive_inputs is True, but with weights x1, input_spike"),
    ],
)
def test_broken_model_fails_contract(model_class, message):
    model = model_class(3, 4, KEY, **hidden_kwargs("lif"))
    with pytest.raises(ContractError, match=message):
        check_neuron_model(model)


def test_additive_claim_checked_at_small_weights():
    # tanh is nearly linear for weights of 0.01: only the probe's larger gains show it.
    kwargs = {**hidden_kwargs("lif"), "weight_mean": 0.0, "weight_std": 0.01}
    model = SaturatingLIF(3, 4, KEY, **kwargs)
    message = r"additive_inputs is True, but with \|?weights\|? x(10|100),"
    with pytest.raises(ContractError, match=message):
        check_neuron_model(model)


def test_redefined_input_spike_drops_additive_claim():
    class CustomLIF(LIF):
        def input_spike(self, y, from_idx, valid_mask):
            return super().input_spike(y, from_idx, valid_mask)

    assert LIF.additive_inputs
    assert not CustomLIF.additive_inputs


def test_quiet_model_fails_contract():
    # Zero weights never drive a neuron to threshold at any gain, so no reset is checked.
    model = MODELS["lif"](3, 4, KEY, weight_mean=0.0, weight_std=0.0)
    with pytest.raises(ContractError, match="no neuron reached threshold"):
        check_neuron_model(model)
