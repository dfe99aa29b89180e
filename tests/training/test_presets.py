"""Every experiment preset trains for a few batches.

Each preset takes one to three minutes on a 2-core CPU, almost all of it the
compilation of its own training step. CI runs the presets in `IN_CI`, one per
data set plus the max readout, and `pytest -m slow` runs the others.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from eventax_lab import checkpoint as ckpt
from eventax_lab.experiment import build_experiment, configure_precision
from eventax_lab.run_config import validate_run_config
from eventax_lab.training import Trainer

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# MNIST IDX files next to the checkout, where this project's machines keep them.
MNIST_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"
PRESETS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml") if path.stem != "smoke")
IN_CI = {"mnist_lif", "regression_qif", "yinyang_max", "yinyang_qif"}


@pytest.mark.parametrize(
    "preset",
    [name if name in IN_CI else pytest.param(name, marks=pytest.mark.slow) for name in PRESETS],
)
def test_preset_trains_a_few_batches(preset, tmp_path, run_cli):
    overrides = [f"experiment=[{preset},smoke]", f"hydra.run.dir={tmp_path}"]
    if preset.startswith("mnist"):
        if not MNIST_DIR.is_dir():
            pytest.skip(f"no MNIST IDX files at {MNIST_DIR}")
        overrides += ["data.source=idx", f"data.idx_dir={MNIST_DIR}"]

    run_cli(overrides)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs_completed"] == 1
    assert summary["overrides"]["experiment"] == f"[{preset},smoke]"
    assert np.isfinite(summary["metrics"]["train/loss"])
    assert np.isfinite(summary["metrics"]["test/loss"])
    assert ckpt.read_header(tmp_path / "checkpoints" / "last.ckpt")["step"] == 2


@pytest.mark.slow
def test_float64_run_keeps_float64_parameters(tmp_path, run_cli, compose_config):
    overrides = ["experiment=smoke", "trainer.dtype=float64"]
    run_cli([*overrides, f"hydra.run.dir={tmp_path}"])

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed"

    cfg = compose_config([*overrides, "logger=none"])
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)
    experiment = build_experiment(cfg, settings)
    trainer = Trainer(experiment.datasets, experiment.loss, experiment.config,
                      experiment.optimizer, settings.trainer)
    state = trainer.restore_state(tmp_path / "checkpoints" / "last.ckpt", experiment.network)

    network_dtypes = {leaf.dtype for leaf in jax.tree.leaves(state.network)}
    assert network_dtypes == {np.dtype("float64")}
    adam_moments = [leaf for leaf in jax.tree.leaves(state.opt_state) if leaf.ndim > 0]
    assert adam_moments
    assert {leaf.dtype for leaf in adam_moments} == {np.dtype("float64")}
