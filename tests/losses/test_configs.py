"""Hydra loss configs and the argument checks of the loss constructors."""

import inspect
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from eventax_lab.losses import ExpIntegralLoss, IntegralLoss, MaxLoss, RegressionLoss, TemporalLoss
from eventax_lab.network import FeedForwardNetwork

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "loss"
CONFIGS = {
    "temporal": TemporalLoss,
    "max": MaxLoss,
    "integral": IntegralLoss,
    "exp_integral": ExpIntegralLoss,
    "regression": RegressionLoss,
}


def test_every_config_is_listed():
    assert sorted(path.stem for path in CONF_DIR.glob("*.yaml")) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_spells_out_every_parameter_but_t_end(name):
    config = OmegaConf.load(CONF_DIR / f"{name}.yaml")
    assert get_class(config._target_) is CONFIGS[name]

    parameters = inspect.signature(CONFIGS[name]).parameters
    keys = [key for key in config if key != "_target_"]
    assert keys == [key for key in parameters if key != "t_end"]
    for key in keys:
        assert config[key] == parameters[key].default, key


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_instantiate_with_t_end(name):
    loss = instantiate(OmegaConf.load(CONF_DIR / f"{name}.yaml"), t_end=80.0)
    assert isinstance(loss, CONFIGS[name])
    assert loss.t_end == 80.0
    simulate_keywords = inspect.signature(FeedForwardNetwork.simulate).parameters
    assert set(loss.simulation_options()) <= set(simulate_keywords)


def test_missing_spike_time_defaults_to_t_end():
    assert TemporalLoss(80.0).missing_spike_time == 80.0
    assert RegressionLoss(80.0, missing_spike_time=70.0).missing_spike_time == 70.0


def test_max_grid_covers_window():
    loss = MaxLoss(60.0, resolution=0.7)
    grid = loss.sample_times()
    # 60 / 0.7 = 85.7, so 86 steps of 0.698 ms.
    assert len(grid) == 87
    assert grid[0] == 0.0
    assert grid[-1] == 60.0
    assert np.max(np.diff(grid)) <= 0.7
    assert len(MaxLoss(60.0, resolution=0.1).sample_times()) == 601


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: TemporalLoss(0.0), "t_end=0.0"),
        (lambda: TemporalLoss(60.0, t0=-1.0), "t0=-1.0"),
        (lambda: TemporalLoss(60.0, tau1=float("inf")), "tau1=inf"),
        (lambda: TemporalLoss(60.0, alpha=-0.1), "alpha=-0.1"),
        (lambda: TemporalLoss(60.0, missing_spike_time=0.0), "missing_spike_time=0.0"),
        (lambda: RegressionLoss(60.0, missing_spike_time="late"), "missing_spike_time='late'"),
        (lambda: MaxLoss(60.0, resolution=31.0), "resolution=31.0"),
        (lambda: MaxLoss(60.0, channel=-1), "channel=-1"),
        (lambda: IntegralLoss(60.0, channel=1.0), "channel=1.0"),
        (lambda: ExpIntegralLoss(60.0, exp_lambda=-0.05), "exp_lambda=-0.05"),
        (lambda: ExpIntegralLoss(60.0, exp_lambda=float("nan")), "exp_lambda=nan"),
    ],
)
def test_invalid_argument_raises(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_channel_out_of_range_raises(make_recording):
    recording = make_recording(np.ones((1, 3)), n_observables=2)
    with pytest.raises(ValueError, match="channel=2 is out of range"):
        IntegralLoss(60.0, channel=2)(recording, jnp.asarray([0]), jnp.asarray([True]))


def test_max_without_samples_raises(make_recording):
    recording = make_recording(np.ones((1, 3)))
    with pytest.raises(ValueError, match="simulation_options"):
        MaxLoss(60.0)(recording, jnp.asarray([0]), jnp.asarray([True]))


def test_unbatched_recording_raises(make_recording):
    recording = make_recording(np.ones((1, 3)))
    single = eqx.tree_at(
        lambda r: r.first_spike_times, recording, recording.first_spike_times[0]
    )
    with pytest.raises(ValueError, match="batched recording"):
        TemporalLoss(60.0)(single, jnp.asarray([0]), jnp.asarray([True]))


def test_mask_shape_mismatch_raises(make_recording):
    recording = make_recording(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"mask has shape \(3,\)"):
        TemporalLoss(60.0)(recording, jnp.asarray([0, 1]), jnp.ones(3, bool))
