"""Build the objects of a training run from its composed config, failing before any compilation."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from .config import SimulationConfig
from .data import SpikeDataset
from .losses import ClassificationLoss
from .run_config import ConfigError, RunSettings, instantiate_group
from .steps import Keyed
from .training import cast_floats, count_steps_per_epoch

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Experiment:
    """The datasets, initial network, loss, simulation config and optimizer of one run."""

    datasets: dict[str, SpikeDataset]
    network: object
    loss: object
    config: SimulationConfig
    optimizer: Keyed


def configure_precision(dtype: str) -> None:
    """Switch JAX to 64-bit floats for `dtype="float64"`, and back to 32-bit otherwise.

    Call it before creating any array of the run: arrays made earlier keep their dtype.
    """
    jax.config.update("jax_enable_x64", dtype == "float64")


def configure_compile_cache(directory: str | None) -> None:
    """Point JAX's persistent compilation cache at `directory`, or leave it off for `None`.

    Programs are cached however briefly they compiled; JAX's default skips those
    under 1 s.
    """
    if directory is None:
        return
    folder = Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _check_datasets(datasets: object) -> dict[str, SpikeDataset]:
    if not isinstance(datasets, dict) or set(datasets) != set(SPLITS):
        raise ConfigError(
            f"data must build a dict with the splits {list(SPLITS)}, got {type(datasets).__name__}"
            f"{sorted(datasets) if isinstance(datasets, dict) else ''}. Check data._target_."
        )
    for split in SPLITS:
        if len(datasets[split]) == 0:
            raise ConfigError(
                f"data.n_{split}=0 leaves the {split} split empty, but training needs at least "
                f"one {split} sample. Set data.n_{split} >= 1."
            )
    return datasets


def _check_loss_fits_task(cfg: DictConfig, loss: object, regression: bool) -> None:
    is_classification_loss = isinstance(loss, ClassificationLoss)
    if regression and is_classification_loss:
        raise ConfigError(
            f"loss._target_={cfg.loss._target_} is a classification loss, but the data "
            f"(data._target_={cfg.data._target_}) is a regression task. Use loss=regression."
        )
    if not regression and not is_classification_loss:
        raise ConfigError(
            f"loss._target_={cfg.loss._target_} is not a classification loss, but the data "
            f"(data._target_={cfg.data._target_}) has class labels. Use loss=temporal, max, "
            "integral or exp_integral."
        )


def _check_readout_is_bounded(cfg: DictConfig, loss: object, network: object) -> None:
    channel = getattr(loss, "channel", None)
    layers = getattr(network, "layers", ())
    if channel is None or not layers:
        return
    output = layers[-1]
    if channel in output.unbounded_observables:
        raise ConfigError(
            f"loss={type(loss).__name__} reads observable loss.channel={channel} of the "
            f"{type(output).__name__} output layer (model.neuron={cfg.model.get('neuron')}), "
            "which diverges at each spike, so its maximum and integrals are undefined. "
            "Use loss=temporal, a bounded channel (for QIF loss.channel=2, the phase), or "
            "another model."
        )


def optimizer_key(cfg: DictConfig, steps_per_epoch: int, epochs: int) -> str:
    """Return a string that identifies the optimizer a config builds, for the compilation cache."""
    settings = OmegaConf.to_container(cfg.optimizer, resolve=True)
    return json.dumps(
        {"optimizer": settings, "steps_per_epoch": steps_per_epoch, "epochs": epochs}, sort_keys=True
    )


def build_experiment(cfg: DictConfig, settings: RunSettings) -> Experiment:
    """Instantiate the `data`, `model`, `loss`, `solver` and `optimizer` groups of a run.

    The data decides the network's input and output sizes (one output per class, or
    one for regression) and the simulated window `t_end` of the loss and the solver.
    Call `configure_precision` first, so that the network is built in the run's dtype.

    **Raises:** `ConfigError` naming the offending key when a group cannot be built.
    """
    trainer = settings.trainer
    datasets = _check_datasets(instantiate_group(cfg, "data"))
    train = datasets["train"]
    regression = train.n_classes is None

    network = instantiate_group(
        cfg,
        "model",
        n_inputs=train.n_inputs,
        n_outputs=1 if regression else train.n_classes,
        key=jax.random.PRNGKey(trainer.seed),
    )
    network = cast_floats(network, np.dtype(trainer.dtype))

    loss = instantiate_group(cfg, "loss", t_end=train.t_max)
    _check_loss_fits_task(cfg, loss, regression)
    _check_readout_is_bounded(cfg, loss, network)
    config = instantiate_group(cfg, "solver", t_end=train.t_max)

    steps_per_epoch = count_steps_per_epoch(len(train), trainer)
    optimizer = instantiate_group(cfg, "optimizer", steps_per_epoch=steps_per_epoch, epochs=trainer.epochs)
    keyed_optimizer = Keyed(optimizer_key(cfg, steps_per_epoch, trainer.epochs), optimizer)

    logger.info(
        "Data: %s. Network sizes %s, %d steps per epoch.",
        ", ".join(repr(datasets[split]) for split in SPLITS),
        [network.n_inputs] + [layer.n_neurons for layer in getattr(network, "layers", ())],
        steps_per_epoch,
    )
    return Experiment(
        datasets=datasets, network=network, loss=loss, config=config, optimizer=keyed_optimizer
    )
