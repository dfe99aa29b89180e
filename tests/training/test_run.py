"""End-to-end runs of `python -m eventax_lab.train`, in this process, on the smoke configuration.

All runs share `SMOKE` and differ only in settings that keep the compiled programs
(seed, initial weights, logger, figures), so the module compiles the training step,
the evaluation step and the trace simulation once each.
"""

import csv
import json
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np
import pytest
from matplotlib.image import imread
from omegaconf import OmegaConf

from eventax_lab import checkpoint as ckpt
from eventax_lab import training
from eventax_lab.experiment import build_experiment, configure_precision
from eventax_lab.run_config import ConfigError, validate_run_config
from eventax_lab.training import Trainer

SMOKE = ["experiment=smoke", "trainer.epochs=2"]
"""Overrides of every run here: 32/16/16 Yin-Yang samples, 2 epochs of 2 batches of 8."""


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _wandb_record(run_dir: Path, expected: bytes, timeout_s: float = 30.0) -> bytes:
    """Return the bytes of the run's offline wandb record file once they contain `expected`.

    The wandb service writes the file in the background, and may still be writing
    it when `run.finish()` has returned. wandb stores strings verbatim in this file.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(Path(run_dir, "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(records) == 1, records
        data = records[0].read_bytes()
        if expected in data or time.monotonic() > deadline:
            return data
        time.sleep(0.5)


def _checkpoint_leaves(path: Path) -> bytes:
    with open(path, "rb") as stream:
        data = stream.read()
    # The leaves follow the header; comparing bytes compares every leaf bit for bit.
    header_length = int.from_bytes(data[8:16], "little")
    return data[16 + header_length:]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, run_cli):
    """Run the smoke config with the offline wandb logger and the figures."""
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    run_cli([*SMOKE, "logger=wandb", "trainer.plots=true", f"hydra.run.dir={run_dir}"])
    return run_dir


def test_run_writes_resolved_config(smoke_run):
    text = (smoke_run / "config.yaml").read_text()
    config = OmegaConf.load(smoke_run / "config.yaml")

    assert "${" not in text
    assert config.model.neuron == "qif"
    assert list(config.model.hidden_sizes) == [32]
    assert list(config.logger.tags) == ["smoke"]
    assert config.trainer.epochs == 2


def test_run_writes_summary_with_final_metrics(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    metrics = summary["metrics"]

    assert summary["status"] == "completed"
    assert summary["epochs_completed"] == 2
    assert summary["best_epoch"] in (1, 2)
    assert summary["monitor"] == "val/accuracy"
    assert summary["overrides"]["experiment"] == "smoke"
    for key in ("train/loss", "train/accuracy", "val/accuracy", "val/silent_output_fraction",
                "val/hidden_spikes_per_neuron", "test/accuracy", "test/loss", "time/epoch_s"):
        assert key in metrics, key
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    assert metrics["test/accuracy"] * 16 == pytest.approx(round(metrics["test/accuracy"] * 16))


def test_run_writes_one_metrics_row_per_epoch(smoke_run):
    rows = _read_csv(smoke_run / "metrics.csv")

    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert [row["step"] for row in rows] == ["0", "2", "4"]
    assert rows[0]["train/loss"] == ""
    for column in ("val/loss", "val/accuracy"):
        assert all(row[column] != "" for row in rows), column
    for column in ("train/loss", "train/accuracy", "time/epoch_s", "train/learning_rate"):
        assert all(row[column] != "" for row in rows[1:]), column


def test_run_keeps_last_and_best_checkpoints(smoke_run):
    summary = json.loads((smoke_run / "summary.json").read_text())
    last = ckpt.read_header(smoke_run / "checkpoints" / "last.ckpt")
    best = ckpt.read_header(smoke_run / "checkpoints" / "best.ckpt")

    assert last["epoch"] == 2
    assert last["step"] == 4
    assert best["epoch"] == summary["best_epoch"]
    assert best["best_value"] == summary["best_value"]
    assert last["config"]["model"]["neuron"] == "qif"


def test_training_lowers_validation_loss(smoke_run):
    rows = _read_csv(smoke_run / "metrics.csv")
    untrained, first, second = (float(row["val/loss"]) for row in rows)

    assert first < untrained
    assert second < untrained


def test_run_saves_figures(smoke_run):
    for name in ("learning_curves", "spike_raster", "voltage_traces", "decision_map"):
        image = imread(smoke_run / "figures" / f"{name}.png")
        assert image.shape[0] > 200, name
        assert float(image[..., :3].std()) > 0.01, name


def test_run_logs_to_offline_wandb(smoke_run):
    data = _wandb_record(smoke_run, b"test/accuracy")
    for text in (b"val/accuracy", b"test/accuracy", b"figures/decision_map", b"hidden_sizes", b"smoke"):
        assert text in data, text


@pytest.fixture(scope="module")
def interrupted_run(smoke_run, tmp_path_factory, run_cli):
    """Run the smoke config and press Ctrl-C after the first batch of epoch 2."""
    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    original = training.iterate_batches

    def interrupting(dataset, batch_size, *, epoch, **kwargs):
        batches = original(dataset, batch_size, epoch=epoch, **kwargs)
        if epoch == 1 and dataset.name.endswith("/train"):
            yield next(batches)
            raise KeyboardInterrupt
        yield from batches

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "iterate_batches", interrupting)
        with pytest.raises(KeyboardInterrupt):
            run_cli([*SMOKE, f"hydra.run.dir={run_dir}"])
    return run_dir


def test_interrupt_keeps_last_finished_epoch(interrupted_run):
    summary = json.loads((interrupted_run / "summary.json").read_text())
    header = ckpt.read_header(interrupted_run / "checkpoints" / "last.ckpt")

    assert summary["status"] == "interrupted"
    assert header["epoch"] == 1
    assert header["step"] == 2
    assert [row["epoch"] for row in _read_csv(interrupted_run / "metrics.csv")] == ["0", "1"]
    assert not list((interrupted_run / "checkpoints").glob(".*tmp"))


def test_resume_reproduces_uninterrupted_run(smoke_run, interrupted_run, tmp_path, run_cli):
    resumed = tmp_path / "resumed"
    run_cli([*SMOKE, f"resume={interrupted_run}", f"hydra.run.dir={resumed}"])

    assert _checkpoint_leaves(resumed / "checkpoints" / "last.ckpt") == _checkpoint_leaves(
        smoke_run / "checkpoints" / "last.ckpt"
    )
    uninterrupted = json.loads((smoke_run / "summary.json").read_text())
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["best_epoch"] == uninterrupted["best_epoch"]
    for key in ("train/loss", "val/loss", "test/loss", "test/accuracy"):
        assert summary["metrics"][key] == uninterrupted["metrics"][key], key
    for resumed_row, interrupted_row in zip(_read_csv(resumed / "metrics.csv"),
                                            _read_csv(interrupted_run / "metrics.csv")):
        assert {key: resumed_row[key] for key in interrupted_row} == interrupted_row
    assert [row["epoch"] for row in _read_csv(resumed / "metrics.csv")] == ["0", "1", "2"]


def test_resume_restores_network_and_optimizer(smoke_run, compose_config):
    cfg = compose_config([*SMOKE, "logger=none"])
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)
    experiment = build_experiment(cfg, settings)
    trainer = Trainer(experiment.datasets, experiment.loss, experiment.config,
                      experiment.optimizer, settings.trainer)

    state = trainer.restore_state(smoke_run / "checkpoints" / "last.ckpt", experiment.network)

    assert (state.epoch, state.step) == (2, 4)
    assert [record["epoch"] for record in state.history] == [0, 1, 2]
    initial = jax.tree.leaves(eqx.filter(experiment.network, eqx.is_array))
    restored = jax.tree.leaves(eqx.filter(state.network, eqx.is_array))
    assert any(not np.array_equal(a, b) for a, b in zip(initial, restored))



def test_misspelled_monitor_reported_before_validation(compose_config, monkeypatch):
    cfg = compose_config([*SMOKE, "logger=none", "trainer.monitor=acuracy"])
    settings = validate_run_config(cfg)
    configure_precision(settings.trainer.dtype)
    experiment = build_experiment(cfg, settings)
    trainer = Trainer(experiment.datasets, experiment.loss, experiment.config,
                      experiment.optimizer, settings.trainer)

    def evaluate(*args, **kwargs):
        raise AssertionError("the validation ran before trainer.monitor was checked")

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    with pytest.raises(ConfigError, match=r"trainer.monitor='acuracy'.*'accuracy'"):
        trainer.fit(trainer.init_state(experiment.network))

def test_multirun_writes_results_table(tmp_path, run_cli):
    sweep_dir = tmp_path / "sweep"
    run_cli(
        [*SMOKE, "logger=wandb", "trainer.seed=0,1", "model.neuron_kwargs.weight_mean=5.0,6.0",
         f"hydra.sweep.dir={sweep_dir}"],
        multirun=True,
    )

    rows = _read_csv(sweep_dir / "results.csv")
    assert [row["job"] for row in rows] == ["0", "1", "2", "3"]
    assert {(row["trainer.seed"], row["model.neuron_kwargs.weight_mean"]) for row in rows} == {
        ("0", "5.0"), ("0", "6.0"), ("1", "5.0"), ("1", "6.0")
    }
    assert all(row["status"] == "completed" for row in rows)
    assert all(row["epochs_completed"] == "2" for row in rows)
    for row in rows:
        summary = json.loads((sweep_dir / row["run_dir"] / "summary.json").read_text())
        assert float(row["test/accuracy"]) == summary["metrics"]["test/accuracy"]
        assert float(row["val/accuracy"]) == summary["metrics"]["val/accuracy"]

    group = f"train-{sweep_dir.name}".encode()
    for row in rows:
        assert group in _wandb_record(sweep_dir / row["run_dir"], group)
