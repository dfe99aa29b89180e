"""The training loop: epochs of jitted steps, validation, best and last checkpoints, and the test.

A run's randomness is its seed alone: the initial parameters come from
`trainer.seed`, and epoch `e` visits the training batches in the order drawn by
`np.random.default_rng((seed, e))`. A checkpoint written after epoch `e` therefore
contains everything needed to continue, so a resumed run repeats the uninterrupted
one exactly: the same compiled programs run on the same inputs.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from pathlib import Path
from typing import Any, Protocol

import equinox as eqx
import jax
import numpy as np
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .config import SimulationConfig
from .data import SpikeDataset, count_batches, iterate_batches
from .neurons import trainable_filter
from .optim import current_learning_rate
from .run_config import ConfigError, TrainerConfig
from .simulate import SimulationError, raise_failures
from .steps import FAILURES_KEY, Keyed, MetricAverage, eval_step, to_device_batch, train_step

logger = logging.getLogger(__name__)


class Tracker(Protocol):
    """Interface of an experiment tracker (wandb, or none) that receives the trainer's metrics."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


@dataclasses.dataclass
class TrainingState:
    """Everything the loop changes, and everything a checkpoint stores.

    **Fields:**

    - `network`: the current network (trainable and fixed leaves).
    - `opt_state`: the optimizer state of the trainable leaves.
    - `epoch`: number of completed epochs.
    - `step`: number of completed optimizer steps.
    - `best_value`, `best_epoch`: the best monitored validation value so far and
      the epoch that reached it, `None` before the first validation.
    - `history`: one dict of metrics per completed epoch.
    """

    network: Any
    opt_state: Any
    epoch: int = 0
    step: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Evaluation:
    """Metrics of one split, and the prediction of every sample in dataset order."""

    metrics: dict[str, float]
    predictions: np.ndarray


@dataclasses.dataclass(frozen=True)
class Monitor:
    """The validation metric that selects the best checkpoint, and whether higher is better."""

    metric: str
    higher_is_better: bool

    def improved(self, value: float, best: float | None) -> bool:
        """Return whether `value` beats `best`. A NaN never does, and any number beats None."""
        if math.isnan(value):
            return False
        if best is None or math.isnan(best):
            return True
        return value > best if self.higher_is_better else value < best


def choose_monitor(settings: TrainerConfig, regression: bool) -> Monitor:
    """Resolve `trainer.monitor` and `trainer.monitor_mode`, including their `auto` values."""
    metric = settings.monitor
    if metric == "auto":
        metric = "rmse_ms" if regression else "accuracy"
    mode = settings.monitor_mode
    if mode == "auto":
        mode = "max" if metric == "accuracy" else "min"
    return Monitor(metric=metric, higher_is_better=mode == "max")


class Trainer:
    """Train a network on a dataset dict with a loss, a simulation config and an optimizer.

    **Arguments:**

    - `datasets`: `{"train": ..., "val": ..., "test": ...}` of `SpikeDataset`s.
    - `loss`: a loss object (see `eventax_lab.losses`).
    - `config`: the simulator's numerical settings.
    - `optimizer`: the optax optimizer wrapped in `Keyed` (its key identifies it
      in the compilation cache).
    - `settings`: the `trainer` config group.
    - `checkpoint_dir`: folder for `last.ckpt` and `best.ckpt`. `None` keeps the
      best network in memory only.
    - `tracker`: receives the metrics. `None` logs locally only.
    - `header`: extra JSON-serialisable entries stored in every checkpoint header,
      such as the run config.
    """

    def __init__(
        self,
        datasets: dict[str, SpikeDataset],
        loss,
        config: SimulationConfig,
        optimizer: Keyed,
        settings: TrainerConfig,
        *,
        checkpoint_dir: Path | None = None,
        tracker: Tracker | None = None,
        header: dict | None = None,
    ):
        self.datasets = datasets
        self.loss = loss
        self.config = config
        self.optimizer = optimizer
        self.settings = settings
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.tracker = tracker
        self.header = dict(header or {})
        self.dtype = np.dtype(settings.dtype)
        self.regression = datasets["train"].n_classes is None
        self.monitor = choose_monitor(settings, self.regression)
        self.steps_per_epoch = count_steps_per_epoch(len(datasets["train"]), settings)
        self.eval_batch_size = min(
            settings.eval_batch_size, max(len(datasets["val"]), len(datasets["test"]))
        )
        self._best_in_memory = None
        self._stepped = False
        self.latest_state: TrainingState | None = None

    def init_state(self, network) -> TrainingState:
        """Return the state before the first epoch: the network and a fresh optimizer state."""
        params, _ = eqx.partition(network, trainable_filter(network))
        return TrainingState(network=network, opt_state=self.optimizer.value.init(params))

    def restore_state(self, path: Path, network_like) -> TrainingState:
        """Load a checkpoint written by this trainer into a `TrainingState`."""
        template = self.init_state(network_like)
        network, opt_state, header = ckpt.load_checkpoint(path, template.network, template.opt_state)
        return TrainingState(
            network=network,
            opt_state=opt_state,
            epoch=int(header["epoch"]),
            step=int(header["step"]),
            best_value=header.get("best_value"),
            best_epoch=header.get("best_epoch"),
            history=list(header.get("history", [])),
        )

    def _save(self, name: str, state: TrainingState) -> None:
        if self.checkpoint_dir is None:
            return
        header = {
            **self.header,
            "epoch": state.epoch,
            "step": state.step,
            "best_value": state.best_value,
            "best_epoch": state.best_epoch,
            "monitor": f"val/{self.monitor.metric}",
            "seed": self.settings.seed,
            "history": state.history,
        }
        ckpt.save_checkpoint(self.checkpoint_dir / name, state.network, state.opt_state, header)

    def best_network(self, state: TrainingState):
        """Return the network of the best validation epoch (the current one if never validated)."""
        if self.checkpoint_dir is not None and (self.checkpoint_dir / ckpt.BEST).is_file():
            template = self.init_state(state.network)
            network, _, _ = ckpt.load_checkpoint(
                self.checkpoint_dir / ckpt.BEST, template.network, template.opt_state
            )
            return network
        if self._best_in_memory is not None:
            return self._best_in_memory
        return state.network

    def fit(self, state: TrainingState) -> TrainingState:
        """Train from `state.epoch` to `trainer.epochs`, validating and checkpointing as configured.

        After each epoch `last.ckpt` is rewritten, and `best.ckpt` when the monitored
        validation metric improved. A Ctrl-C during an epoch leaves the checkpoints
        of the previous epoch in place.
        """
        settings = self.settings
        if state.epoch == 0 and not state.history:
            state = self._validate_initial_network(state)
        self.latest_state = state
        if state.epoch >= settings.epochs:
            logger.info(
                "The checkpoint has completed %d of %d epochs, so there is nothing to train.",
                state.epoch, settings.epochs,
            )
            return state

        epochs = tqdm(
            range(state.epoch, settings.epochs),
            initial=state.epoch,
            total=settings.epochs,
            desc="epochs",
            unit="epoch",
            disable=not settings.progress_bar,
        )
        for epoch in epochs:
            state, record = self._run_epoch(state, epoch)
            self.latest_state = state
            epochs.set_postfix({key: f"{value:.4g}" for key, value in record.items()
                                if key in ("train/loss", f"val/{self.monitor.metric}")})
        epochs.close()
        return state

    def _require_monitor(self, names) -> None:
        """Raise a `ConfigError` unless `trainer.monitor` is among the metric `names`."""
        if self.monitor.metric not in names:
            raise ConfigError(
                f"trainer.monitor={self.monitor.metric!r} is not a validation metric of this "
                f"loss. Choose one of {sorted(names)} or auto."
            )

    def _validate(self, network) -> tuple[dict[str, float], float]:
        """Return the validation metrics under `val/` names and the monitored value."""
        validation = self.evaluate(network, self.datasets["val"], desc="val")
        self._require_monitor(validation.metrics)
        value = validation.metrics[self.monitor.metric]
        return {f"val/{name}": metric for name, metric in validation.metrics.items()}, value

    def _check_monitor(self, network) -> None:
        """Check `trainer.monitor` against the names of the evaluation's metrics.

        The names come from tracing one evaluation step without compiling it, so a
        misspelled metric is reported in seconds rather than after the first
        validation compiles.
        """
        batch = next(iter(iterate_batches(
            self.datasets["val"], self.eval_batch_size, seed=0, epoch=0, shuffle=False,
            last_batch="pad",
        )))
        spikes, targets, mask = to_device_batch(batch, self.dtype, self.regression)
        _, metrics, _ = eqx.filter_eval_shape(
            eval_step, network, spikes, targets, mask, self.loss, self.config
        )
        # `evaluate` averages the loss value and every metric but the failure code.
        self._require_monitor({"loss", *metrics} - {FAILURES_KEY})

    def _validate_initial_network(self, state: TrainingState) -> TrainingState:
        """Record the untrained network's validation metrics as epoch 0.

        This also checks `trainer.monitor`, first from the metric names alone.
        """
        self._check_monitor(state.network)
        start = time.perf_counter()
        metrics, _ = self._validate(state.network)
        record = {"epoch": 0, "step": 0, **metrics, "time/eval_s": time.perf_counter() - start}
        logger.info("Epoch 0 (untrained): %s", format_metrics(record))
        if self.tracker is not None:
            self.tracker.log_metrics(record, step=0)
        return dataclasses.replace(state, history=[record])

    def _run_epoch(self, state: TrainingState, epoch: int) -> tuple[TrainingState, dict[str, float]]:
        start = time.perf_counter()
        state, train_metrics, first_step_seconds = self._train_epoch(state, epoch)
        train_seconds = time.perf_counter() - start

        record = {"epoch": epoch + 1, "step": state.step}
        record.update({f"train/{name}": value for name, value in train_metrics.items()})
        learning_rate = current_learning_rate(state.opt_state)
        if learning_rate is not None:
            record["train/learning_rate"] = learning_rate
        record["time/epoch_s"] = train_seconds
        if first_step_seconds is not None:
            record["time/first_step_s"] = first_step_seconds

        is_last = epoch + 1 == self.settings.epochs
        improved = False
        if (epoch + 1) % self.settings.eval_every == 0 or is_last:
            start = time.perf_counter()
            metrics, value = self._validate(state.network)
            record["time/eval_s"] = time.perf_counter() - start
            record.update(metrics)
            improved = self.monitor.improved(value, state.best_value)

        state = dataclasses.replace(state, epoch=epoch + 1, history=[*state.history, record])
        if improved:
            state = dataclasses.replace(
                state, best_value=record[f"val/{self.monitor.metric}"], best_epoch=epoch + 1
            )
            self._save(ckpt.BEST, state)
            if self.checkpoint_dir is None:
                self._best_in_memory = state.network
        self._save(ckpt.LAST, state)

        logger.info("Epoch %d/%d: %s", epoch + 1, self.settings.epochs, format_metrics(record))
        if self.tracker is not None:
            self.tracker.log_metrics(record, step=state.step)
        return state, record

    def _train_epoch(
        self, state: TrainingState, epoch: int
    ) -> tuple[TrainingState, dict[str, float], float | None]:
        """Run one epoch of training steps.

        **Returns:** the new state, the epoch's averaged training metrics, and the
        seconds of the first step when this was the trainer's first step (which
        includes compiling it), else None.
        """
        settings = self.settings
        first_step_seconds = None
        params, static = eqx.partition(state.network, trainable_filter(state.network))
        opt_state, step = state.opt_state, state.step
        average = MetricAverage()
        non_finite = zero_gradient = 0

        batches = iterate_batches(
            self.datasets["train"], settings.batch_size, seed=settings.seed, epoch=epoch,
            shuffle=True, last_batch="pad",
        )
        batches = itertools.islice(batches, self.steps_per_epoch)
        progress = tqdm(
            batches,
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}",
            unit="batch",
            leave=False,
            disable=not settings.progress_bar,
        )
        for batch_index, batch in enumerate(progress):
            spikes, targets, mask = to_device_batch(batch, self.dtype, self.regression)
            step_start = time.perf_counter()
            params, opt_state, value, metrics = train_step(
                params, static, opt_state, spikes, targets, mask, self.loss, self.config, self.optimizer
            )
            _raise_batch_failures(
                metrics.pop(FAILURES_KEY), batch.mask,
                f"Training step {step + 1} (epoch {epoch + 1}, batch {batch_index + 1} of "
                f"{self.steps_per_epoch})",
            )
            value = float(value)
            if not self._stepped:
                first_step_seconds = time.perf_counter() - step_start
                logger.info(
                    "First training step took %.1f s, including its compilation unless this "
                    "process had compiled it already.", first_step_seconds,
                )
                self._stepped = True
            step += 1

            if not math.isfinite(value):
                non_finite += 1
            zero_gradient += float(metrics["grad_norm"]) == 0.0
            average.add({"loss": value, **metrics}, int(batch.mask.sum()))
            progress.set_postfix(loss=f"{value:.4g}")
            if self.tracker is not None and step % settings.log_every_n_steps == 0:
                self.tracker.log_metrics({"train/step_loss": value, "epoch": epoch + 1}, step=step)

        progress.close()
        if non_finite:
            logger.warning(
                "Epoch %d: the training loss was NaN or infinite in %d of %d steps. Lower "
                "optimizer.learning_rate or set optimizer.clip_norm.",
                epoch + 1, non_finite, self.steps_per_epoch,
            )
        if zero_gradient == self.steps_per_epoch:
            # Silent spiking outputs give a loss without a gradient, and nothing
            # then moves the weights again.
            silent = average.result().get("silent_output_fraction")
            logger.warning(
                "Epoch %d: the gradient was zero in every step, so the weights no longer "
                "change%s. Lower optimizer.learning_rate, or raise the output layer's "
                "initial weights (model.output_kwargs.weight_mean) so that the outputs spike.",
                epoch + 1,
                "" if silent is None else f" (silent_output_fraction={silent:.3g})",
            )
        network = eqx.combine(params, static)
        state = dataclasses.replace(state, network=network, opt_state=opt_state, step=step)
        return state, average.result(), first_step_seconds

    def evaluate(self, network, dataset: SpikeDataset, *, desc: str = "eval") -> Evaluation:
        """Return the loss, metrics and predictions of `network` on every sample of `dataset`."""
        average = MetricAverage()
        predictions = []
        batches = iterate_batches(
            dataset, self.eval_batch_size, seed=0, epoch=0, shuffle=False, last_batch="pad"
        )
        n_batches = count_batches(len(dataset), self.eval_batch_size)
        progress = tqdm(batches, total=n_batches, desc=desc, unit="batch", leave=False,
                        disable=not self.settings.progress_bar)
        for batch_index, batch in enumerate(progress):
            spikes, targets, mask = to_device_batch(batch, self.dtype, self.regression)
            value, metrics, predicted = eval_step(network, spikes, targets, mask, self.loss, self.config)
            _raise_batch_failures(
                metrics.pop(FAILURES_KEY), batch.mask,
                f"Evaluation on {desc!r} (batch {batch_index + 1} of {n_batches})",
            )
            average.add({"loss": value, **metrics}, int(batch.mask.sum()))
            predictions.append(np.asarray(predicted)[batch.mask])
        return Evaluation(metrics=average.result(), predictions=np.concatenate(predictions))


def _raise_batch_failures(codes, mask, where: str) -> None:
    """Raise `raise_failures`' error for a batch's real (unmasked) samples, with `where` in front."""
    try:
        raise_failures(np.asarray(codes)[mask])
    except SimulationError as error:
        raise SimulationError(f"{where}: {error}") from None


def count_steps_per_epoch(n_train: int, settings: TrainerConfig) -> int:
    """Return the training steps per epoch: every batch, or `trainer.max_batches_per_epoch`."""
    n_batches = count_batches(n_train, settings.batch_size, "pad")
    if settings.max_batches_per_epoch is None:
        return n_batches
    return min(n_batches, settings.max_batches_per_epoch)


def format_metrics(metrics: dict[str, float]) -> str:
    """Format a metric dict as `name=value` pairs for a log line."""
    parts = []
    for name, value in metrics.items():
        if name in ("epoch", "step"):
            continue
        parts.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(parts)


def cast_floats(tree, dtype) -> Any:
    """Cast every floating-point array leaf of `tree` to `dtype`."""
    def cast(leaf):
        if eqx.is_inexact_array(leaf):
            return leaf.astype(dtype)
        return leaf
    return jax.tree.map(cast, tree)
