"""The Hydra entry point: `python -m eventax_lab.train [OVERRIDES]`, and `-m` for a sweep.

A run validates its config, builds the data, network, loss, solver and optimizer,
trains with checkpoints in its Hydra output directory, tests the best-validation
checkpoint, draws its figures, and writes `config.yaml` (resolved), `metrics.csv` and
`summary.json` there. Each job of a multirun also rewrites `results.csv` in the
sweep directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tqdm.contrib.logging import logging_redirect_tqdm

from . import checkpoint as ckpt
from .experiment import build_experiment, configure_compile_cache, configure_precision
from .report import draw_figures
from .results import parse_overrides, update_sweep_table, write_metrics_table, write_summary
from .run_config import ConfigError, instantiate_group, validate_run_config
from .training import Trainer, TrainingState

logger = logging.getLogger(__name__)

# Keys that may differ between a checkpoint's run and the run that resumes it
# without changing the result.
_RESUME_IGNORED_KEYS = ("resume", "logger", "tags", "task_name", "trainer.progress_bar",
                        "trainer.plots", "trainer.n_plot_samples", "trainer.log_every_n_steps")


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """The output location of a run and its place in a sweep.

    **Fields:**

    - `run_dir`: the run's output directory.
    - `overrides`: the command-line overrides of this job, `{key: value}`.
    - `number`: the job number in a multirun, `None` for a single run.
    - `sweep_dir`: the multirun's directory, `None` for a single run.
    - `group`, `name`: default wandb group (the sweep) and run name.
    """

    run_dir: Path
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)
    number: int | None = None
    sweep_dir: Path | None = None
    group: str | None = None
    name: str | None = None


def current_job(task_name: str) -> JobInfo:
    """Return the `JobInfo` of the running Hydra job."""
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)
    overrides = parse_overrides(list(hydra_config.overrides.task))
    if hydra_config.mode != RunMode.MULTIRUN:
        return JobInfo(run_dir=run_dir, overrides=overrides, name=run_dir.name)
    sweep_dir = Path(hydra_config.sweep.dir).resolve()
    return JobInfo(
        run_dir=run_dir,
        overrides=overrides,
        number=int(hydra_config.job.num),
        sweep_dir=sweep_dir,
        group=f"{task_name}-{sweep_dir.name}",
        name=hydra_config.job.override_dirname or f"job{hydra_config.job.num}",
    )


def describe_error(error: BaseException, max_length: int = 500) -> str:
    """Return `ExceptionType: message` in one line of at most `max_length` characters.

    An error raised inside jitted code (`equinox.EquinoxRuntimeError`) carries stack
    traces in its message, so only the line after its last `EquinoxRuntimeError: ` is
    kept. Other messages keep all their lines, joined by spaces.
    """
    message = str(error)
    marker = "EquinoxRuntimeError: "
    if marker in message:
        message = message.rsplit(marker, 1)[1].strip().splitlines()[0]
    text = f"{type(error).__name__}: {' '.join(message.split())}"
    return text if len(text) <= max_length else text[: max_length - 3] + "..."


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        flat = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: node}


def config_differences(saved: dict, current: dict) -> list[str]:
    """List the `key: saved -> current` changes between two resolved configs, ignoring `_RESUME_IGNORED_KEYS`."""
    saved_flat, current_flat = _flatten(saved), _flatten(current)
    changes = []
    for key in sorted(set(saved_flat) | set(current_flat)):
        if any(key == ignored or key.startswith(f"{ignored}.") for ignored in _RESUME_IGNORED_KEYS):
            continue
        before, after = saved_flat.get(key, "<absent>"), current_flat.get(key, "<absent>")
        if before != after:
            changes.append(f"{key}: {before!r} -> {after!r}")
    return changes


class RunRecord:
    """The summary, history and tracker of a run, written to disk whatever way the run ends."""

    def __init__(self, job: JobInfo):
        self.job = job
        self.start = time.perf_counter()
        self.tracker = None
        self.history: list[dict[str, float]] = []
        self.summary: dict[str, Any] = {
            "status": "running",
            "job": job.number,
            "run_dir": str(job.run_dir),
            "overrides": dict(job.overrides),
            "metrics": {},
            "error": None,
        }

    def close(self, exit_code: int) -> None:
        """Write `metrics.csv`, `summary.json` and the sweep table, and finish the tracker.

        Each step runs even if an earlier one fails, so that a broken tracker cannot
        hide the local results. Failures are logged.
        """
        self.summary["metrics"]["time/total_s"] = time.perf_counter() - self.start
        steps = [
            ("metrics.csv", lambda: write_metrics_table(self.job.run_dir, self.history)),
            ("summary.json", lambda: write_summary(self.job.run_dir, self.summary)),
        ]
        if self.job.sweep_dir is not None:
            steps.append(("the sweep table", lambda: update_sweep_table(self.job.sweep_dir)))
        if self.tracker is not None:
            flat = {**self.summary["metrics"], "status": self.summary["status"]}
            steps.append(("the tracker", lambda: self.tracker.finish(flat, exit_code=exit_code)))
        for target, step in steps:
            try:
                step()
            except Exception:
                logger.exception("Writing %s failed", target)


def _summarise(record: RunRecord, state: TrainingState, monitor_key: str, test_metrics: dict) -> None:
    metrics = record.summary["metrics"]
    last = state.history[-1] if state.history else {}
    best = next((item for item in state.history if item["epoch"] == state.best_epoch), last)
    metrics.update({key: value for key, value in last.items() if key.startswith("train/")})
    metrics.update({key: value for key, value in best.items() if key.startswith("val/")})
    metrics.update({f"test/{name}": value for name, value in test_metrics.items()})
    # The epoch of a process's first step also compiles it, so the mean leaves it out
    # unless it is the only epoch.
    trained = [item for item in state.history if "time/epoch_s" in item]
    steady = [item for item in trained if "time/first_step_s" not in item] or trained
    if steady:
        metrics["time/epoch_s"] = sum(item["time/epoch_s"] for item in steady) / len(steady)
    record.summary.update(
        epochs_completed=state.epoch,
        best_epoch=state.best_epoch,
        monitor=monitor_key,
        best_value=state.best_value,
    )


def _resume(trainer: Trainer, network, resolved: dict, resume: str, checkpoint_dir: Path) -> TrainingState:
    path = ckpt.resolve_checkpoint(resume)
    header = ckpt.read_header(path)
    changes = config_differences(header.get("config", {}), resolved)
    if changes:
        logger.warning(
            "Resuming with settings that differ from the checkpoint's run, so the result can "
            "differ from an uninterrupted run: %s", "; ".join(changes),
        )
    state = trainer.restore_state(path, network)
    best = path.parent / ckpt.BEST
    target = checkpoint_dir / ckpt.BEST
    if best.is_file() and best.resolve() != target.resolve():
        ckpt.copy_checkpoint(best, target)
    logger.info("Resumed from %s after epoch %d (step %d).", path, state.epoch, state.step)
    return state


def _execute(cfg: DictConfig, record: RunRecord) -> None:
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)
    configure_compile_cache(settings.trainer.compile_cache_dir)
    experiment = build_experiment(cfg, settings)
    # equinox reads EQX_ON_ERROR at import. Under "nan" or "off", eqx.error_if
    # compiles no host callback, and the trainer still raises from the failure code.
    on_error = os.environ.get("EQX_ON_ERROR", "raise")
    if settings.trainer.compile_cache_dir is not None and on_error not in ("nan", "off"):
        logger.warning(
            "trainer.compile_cache_dir is set, but with EQX_ON_ERROR=%s the training step "
            "compiles host callbacks, which JAX's cache does not store, so every process "
            "still runs XLA. Run with EQX_ON_ERROR=nan in the environment; the trainer "
            "still raises when a simulation fails.", on_error,
        )

    run_dir = record.job.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("hydra", None)
    OmegaConf.save(OmegaConf.create(resolved), run_dir / "config.yaml")

    # A partial, so that Hydra does not try to instantiate the `_target_` keys of the config dict.
    make_tracker = instantiate_group(cfg, "logger", _partial_=True)
    record.tracker = make_tracker(
        run_dir=str(run_dir), run_config=resolved,
        default_group=record.job.group, default_name=record.job.name,
    )
    checkpoint_dir = run_dir / ckpt.CHECKPOINT_DIR
    trainer = Trainer(
        experiment.datasets, experiment.loss, experiment.config, experiment.optimizer,
        settings.trainer, checkpoint_dir=checkpoint_dir, tracker=record.tracker,
        header={"config": resolved},
    )
    if settings.resume:
        state = _resume(trainer, experiment.network, resolved, settings.resume, checkpoint_dir)
    else:
        state = trainer.init_state(experiment.network)
    record.history = state.history

    try:
        state = trainer.fit(state)
    finally:
        # Keeps the epochs finished before an interruption or error in metrics.csv.
        if trainer.latest_state is not None:
            record.history = trainer.latest_state.history

    best_network = trainer.best_network(state)
    test = trainer.evaluate(best_network, experiment.datasets["test"], desc="test")
    monitor_key = f"val/{trainer.monitor.metric}"
    _summarise(record, state, monitor_key, test.metrics)
    logger.info(
        "Test metrics of the best checkpoint (epoch %s by %s): %s",
        state.best_epoch, monitor_key,
        " ".join(f"{name}={value:.4g}" for name, value in test.metrics.items()),
    )

    if settings.trainer.plots:
        figures = draw_figures(
            trainer, best_network, test, state.history, run_dir / "figures",
            OmegaConf.to_container(cfg.data, resolve=True), settings.trainer.n_plot_samples,
        )
        record.tracker.log_figures(figures, step=state.step)


def run(cfg: DictConfig, job: JobInfo) -> dict[str, Any]:
    """Train, test and report one run; return its summary (also written to `summary.json`).

    On Ctrl-C the summary status is `interrupted`, and the checkpoints of the last
    finished epoch stay in place for `resume=RUN_DIR`. On an error the status is
    `failed`, with the message. Both re-raise after the files are written.
    """
    record = RunRecord(job)
    logger.info("Run directory: %s", job.run_dir)
    exit_code = 0
    try:
        with logging_redirect_tqdm():
            _execute(cfg, record)
        record.summary["status"] = "completed"
    except KeyboardInterrupt:
        exit_code = 130
        record.summary["status"] = "interrupted"
        logger.warning(
            "Interrupted. The last finished epoch's checkpoint is in %s; continue with resume=%s",
            job.run_dir / ckpt.CHECKPOINT_DIR, job.run_dir,
        )
        raise
    except Exception as error:
        exit_code = 1
        record.summary["status"] = "failed"
        record.summary["error"] = describe_error(error)
        logger.error("Run failed: %s", record.summary["error"])
        raise
    finally:
        record.close(exit_code)
    return record.summary


# NOTE: conf/ sits next to the package in the source tree, so the entry point finds
# it in a checkout or an editable install, but a wheel install does not ship conf/.
# The path is absolute because Hydra resolves a relative path against the package
# (`pkg://eventax_lab`) when the module is imported rather than run with -m.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run one job; return the best monitored validation value for Hydra sweepers such as Optuna.

    A config mistake or an unusable `resume` in a single run exits with status 1
    after `run` has logged it, without Hydra's traceback: the message names the
    key and the fix. In a sweep the error reaches Hydra, which records the job
    as failed, runs the others and exits with status 1 at the end.
    """
    job = current_job(str(cfg.get("task_name") or "train"))
    try:
        summary = run(cfg, job)
    except (ConfigError, ckpt.CheckpointError):
        if job.number is not None:
            raise
        raise SystemExit(1) from None
    return summary.get("best_value")


if __name__ == "__main__":
    main()
