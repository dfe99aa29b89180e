"""Shared settings and helpers of the training tests.

wandb is forced offline and kept out of the home directory. The compiled training
and evaluation steps are cached for the whole process, so test runs that differ
only in seeds, initial weights, logger or figures share them. Each compilation
takes about a minute on a 2-core CPU.
"""

import sys
from pathlib import Path

import jax
import pytest
from hydra import compose, initialize_config_dir

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _run_cli(overrides: list[str], *, multirun: bool = False) -> None:
    from eventax_lab.train import main

    argv = ["eventax_lab.train", *(["-m"] if multirun else []), *overrides]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        main()


@pytest.fixture(autouse=True, scope="session")
def offline_wandb(tmp_path_factory):
    """Force wandb offline for the session and keep its settings and caches in a temporary folder."""
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            patch.setenv(variable, str(home))
        yield


@pytest.fixture(scope="session")
def compose_config():
    """Return a function that composes `conf/config.yaml` with overrides, as the command line would."""
    return _compose_config


@pytest.fixture(scope="session")
def run_cli():
    """Return a function that runs `python -m eventax_lab.train [-m] OVERRIDES` in this process."""
    return _run_cli


@pytest.fixture(autouse=True, scope="module")
def restore_x64_flag():
    """Restore JAX's global x64 flag, which a run sets from `trainer.dtype`, after each module."""
    previous = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", previous)
