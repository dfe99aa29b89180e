"""Experiment trackers: Weights & Biases, or none, behind one small interface.

The trainer calls `log_metrics` once per epoch and every `trainer.log_every_n_steps`
steps, and the entry point calls `log_figures` and `finish` at the end of a run. Every run
also keeps its metrics locally (`metrics.csv`, `summary.json`, the log file), so a
tracker is optional.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class NullTracker:
    """A tracker that sends nothing anywhere, for `logger=none`."""

    def __init__(self, **settings: Any):
        del settings

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Drop the metrics."""

    def log_figures(self, figures: dict[str, Path], step: int) -> None:
        """Drop the figures."""

    def finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        """Do nothing."""


class WandbTracker:
    """Log a run to Weights & Biases.

    **Arguments:**

    - `run_dir`: the Hydra run directory. wandb writes its files under `run_dir/wandb`.
    - `run_config`: the resolved run config, stored as the wandb run config.
    - `project`, `entity`: the destination of an online run. `entity=None` uses the
      account's default team or user.
    - `mode`: `"offline"`, `"online"` or `"disabled"`. An offline run needs no
      account or network, and `wandb sync RUN_DIR/wandb/offline-run-*` uploads it
      later. A `WANDB_MODE` environment variable of `offline` or `disabled` takes
      precedence over `"online"`.
    - `group`: the wandb group. `None` uses `default_group` (the sweep in a multirun).
    - `name`: the wandb run name. `None` uses `default_name`.
    - `tags`: wandb tags, usually the experiment's `tags`.
    - `log_figures`: upload the PNG figures as images.
    - `default_group`, `default_name`: filled in by the entry point.
    """

    def __init__(
        self,
        run_dir: str,
        run_config: dict,
        project: str = "eventax-lab",
        entity: str | None = None,
        mode: str = "offline",
        group: str | None = None,
        name: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        log_figures: bool = True,
        default_group: str | None = None,
        default_name: str | None = None,
    ):
        import wandb

        self._wandb = wandb
        self.log_figures_enabled = log_figures
        environment_mode = os.environ.get("WANDB_MODE")
        if mode == "online" and environment_mode in ("offline", "disabled", "dryrun"):
            # wandb 0.31 lets init(mode=...) override WANDB_MODE. Here the environment wins,
            # so that CI and test machines that set WANDB_MODE=offline never upload.
            logger.warning(
                "logger.mode=online, but the environment sets WANDB_MODE=%s, so the run is %s.",
                environment_mode, environment_mode,
            )
            mode = "offline" if environment_mode == "dryrun" else environment_mode
        self.run = wandb.init(
            project=project,
            entity=entity,
            mode=mode,
            group=group or default_group,
            name=name or default_name,
            tags=[str(tag) for tag in tags],
            dir=str(run_dir),
            config=run_config,
            # Console capture would duplicate the log file and garble the progress bars.
            settings=wandb.Settings(console="off", silent=True),
        )
        logger.info(
            "wandb run %s (%s mode) in %s", self.run.name, mode, Path(run_dir) / "wandb"
        )

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log a dict of metrics at optimizer step `step`."""
        self.run.log(dict(metrics), step=step)

    def log_figures(self, figures: dict[str, Path], step: int) -> None:
        """Log PNG files as wandb images under `figures/NAME`."""
        if not self.log_figures_enabled or not figures:
            return
        images = {f"figures/{name}": self._wandb.Image(str(path)) for name, path in figures.items()}
        self.run.log(images, step=step)

    def finish(self, summary: dict[str, Any], exit_code: int = 0) -> None:
        """Store the final metrics in the run summary and close the run."""
        scalars = {key: value for key, value in summary.items() if isinstance(value, (int, float, str))}
        self.run.summary.update(scalars)
        self.run.finish(exit_code=exit_code)
