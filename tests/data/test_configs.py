import inspect
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import get_method, instantiate
from omegaconf import OmegaConf

from eventax_lab.data import make_regression, make_xor, make_yinyang

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "data"
CONFIG_NAMES = ["yinyang", "regression", "xor", "mnist"]


@pytest.mark.parametrize("config_name", CONFIG_NAMES)
def test_config_spells_out_every_parameter(config_name):
    config = OmegaConf.load(CONF_DIR / f"{config_name}.yaml")
    target = get_method(config._target_)
    assert target.__name__ == f"make_{config_name}"

    parameters = inspect.signature(target).parameters
    keys = [key for key in config if key != "_target_"]
    assert keys == list(parameters)
    for key in keys:
        assert config[key] == parameters[key].default, key


@pytest.mark.parametrize(
    "config_name, builder", [("yinyang", make_yinyang), ("regression", make_regression), ("xor", make_xor)]
)
def test_instantiate_matches_direct_call(config_name, builder):
    config = OmegaConf.load(CONF_DIR / f"{config_name}.yaml")
    splits = instantiate(config)
    direct = builder()
    assert set(splits) == {"train", "val", "test"}
    for name in splits:
        np.testing.assert_array_equal(splits[name].spikes, direct[name].spikes)
        np.testing.assert_array_equal(splits[name].targets, direct[name].targets)
        assert splits[name].t_max == direct[name].t_max


def test_instantiate_mnist_from_idx(tiny_mnist, write_mnist_dir):
    directory = write_mnist_dir(tiny_mnist)
    config = OmegaConf.load(CONF_DIR / "mnist.yaml")
    config.source = "idx"
    config.idx_dir = str(directory)
    splits = instantiate(config)
    assert [len(splits[name]) for name in ("train", "val", "test")] == [18, 2, 5]
    assert splits["train"].n_inputs == 20
