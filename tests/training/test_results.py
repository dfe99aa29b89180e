"""Metric averaging, the optimizer's schedules, result files and the sweep table, without training."""

import csv
import json
import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from eventax_lab.optim import current_learning_rate, make_optimizer
from eventax_lab.results import parse_overrides, update_sweep_table, write_summary
from eventax_lab.steps import MetricAverage
from eventax_lab.train import config_differences, describe_error


def test_metric_average_weights_by_valid_samples():
    average = MetricAverage()
    average.add({"accuracy": 1.0, "loss": 2.0}, n_valid=3)
    average.add({"accuracy": 0.0, "loss": 4.0}, n_valid=1)
    average.add({"accuracy": 0.5, "loss": 100.0}, n_valid=0)

    result = average.result()
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["loss"] == pytest.approx(2.5)
    assert average.count == 4


def test_metric_average_combines_rmse_exactly():
    errors = [np.array([1.0, -2.0, 3.0]), np.array([4.0])]
    average = MetricAverage()
    for batch in errors:
        average.add({"rmse_ms": float(np.sqrt(np.mean(batch**2)))}, n_valid=batch.size)

    everything = np.concatenate(errors)
    assert average.result()["rmse_ms"] == pytest.approx(np.sqrt(np.mean(everything**2)))


def _learning_rates(optimizer, steps: int) -> list[float]:
    """Return the learning rate of each of the first `steps` updates."""
    params = {"w": jnp.ones(2)}
    state = optimizer.init(params)
    rates = []
    for _ in range(steps):
        _, state = optimizer.update({"w": jnp.ones(2)}, state, params)
        rates.append(current_learning_rate(state))
    return rates


def test_cosine_schedule_warms_up_and_decays():
    optimizer = make_optimizer(
        steps_per_epoch=10, epochs=5, learning_rate=0.1, schedule="cosine",
        warmup_epochs=1.0, final_lr_fraction=0.01,
    )
    rates = _learning_rates(optimizer, 51)
    assert rates[0] == pytest.approx(0.0)
    assert rates[10] == pytest.approx(0.1)
    assert rates[50] == pytest.approx(0.001, rel=1e-3)
    assert all(later <= earlier + 1e-9 for earlier, later in zip(rates[10:], rates[11:]))


def test_exponential_schedule_decays_once_per_epoch():
    optimizer = make_optimizer(
        steps_per_epoch=4, epochs=3, learning_rate=0.1, schedule="exponential", decay_per_epoch=0.5
    )
    rates = _learning_rates(optimizer, 9)
    assert rates[:4] == pytest.approx([0.1] * 4)
    assert rates[4:8] == pytest.approx([0.05] * 4)
    assert rates[8] == pytest.approx(0.025)


def test_clipping_limits_the_first_adam_step():
    # Adam's first update is -lr * g / (|g| + eps) elementwise, so only clipping the
    # gradient to a norm far below eps changes it.
    params = {"w": jnp.zeros(2)}
    gradient = {"w": jnp.array([3.0, 4.0])}
    clipped = make_optimizer(steps_per_epoch=1, epochs=1, learning_rate=1.0, clip_norm=1e-9, eps=1e-6)
    updates, _ = clipped.update(gradient, clipped.init(params), params)
    assert float(optax.tree.norm(updates)) < 1e-2


@pytest.mark.parametrize(
    "arguments, name",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"b1": 1.0}, "b1"),
        ({"clip_norm": -1.0}, "clip_norm"),
        ({"schedule": "linear"}, "schedule"),
        ({"warmup_epochs": 9.0}, "warmup_epochs"),
        ({"final_lr_fraction": 2.0}, "final_lr_fraction"),
    ],
)
def test_invalid_optimizer_setting_names_it(arguments, name):
    with pytest.raises(ValueError, match=name):
        make_optimizer(steps_per_epoch=2, epochs=3, **arguments)


def test_parse_overrides_strips_append_and_delete_prefixes():
    parsed = parse_overrides(["model=lif", "+trainer.max_batches_per_epoch=2", "~logger", "a.b=[1,2]"])
    assert parsed == {"model": "lif", "trainer.max_batches_per_epoch": "2", "logger": "", "a.b": "[1,2]"}


def _write_job(sweep_dir, number, overrides, metrics, status="completed", error=None):
    run_dir = sweep_dir / str(number)
    run_dir.mkdir(parents=True)
    summary = {"status": status, "job": number, "overrides": overrides, "metrics": metrics, "error": error}
    write_summary(run_dir, summary)


def test_sweep_table_lists_every_job(tmp_path):
    _write_job(tmp_path, 1, {"model": "qif", "loss": "temporal"}, {"test/accuracy": 0.9})
    _write_job(tmp_path, 0, {"model": "lif", "loss": "temporal"}, {"test/accuracy": 0.8, "val/loss": math.nan})
    _write_job(tmp_path, 2, {"model": "lif", "loss": "max"}, {}, status="failed", error="ConfigError: x")

    path = update_sweep_table(tmp_path)
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))

    assert [row["job"] for row in rows] == ["0", "1", "2"]
    assert [row["model"] for row in rows] == ["lif", "qif", "lif"]
    assert [row["status"] for row in rows] == ["completed", "completed", "failed"]
    assert rows[0]["test/accuracy"] == "0.8"
    assert rows[0]["val/loss"] == "nan"
    assert rows[2]["test/accuracy"] == ""
    assert rows[2]["error"] == "ConfigError: x"
    assert rows[0]["error"] == ""
    assert list(rows[0]) == ["job", "status", "model", "loss", "test/accuracy", "val/loss", "error", "run_dir"]
    assert rows[1]["run_dir"] == "1"


def test_summary_writes_nan_as_string(tmp_path):
    path = write_summary(tmp_path, {"metrics": {"val/loss": math.inf}})
    assert json.loads(path.read_text())["metrics"]["val/loss"] == "inf"


def test_describe_error_keeps_message_of_jitted_error():
    message = (
        "Above is the stack outside of JIT. Below is the stack inside of JIT:\n  File x\n\n"
        "equinox.EquinoxRuntimeError: The ODE solve needed more than max_steps.\n\n----\nAn error occurred"
    )
    assert describe_error(RuntimeError(message)) == "RuntimeError: The ODE solve needed more than max_steps."
    assert describe_error(ValueError("bad value\n  second line")) == "ValueError: bad value second line"
    assert len(describe_error(ValueError("x" * 2000))) == 500


def test_config_differences_ignore_logger_and_plots():
    saved = {"trainer": {"epochs": 2, "plots": False}, "logger": {"mode": "offline"}, "model": {"neuron": "lif"}}
    current = {"trainer": {"epochs": 3, "plots": True}, "logger": {"_target_": "x"}, "model": {"neuron": "lif"}}
    assert config_differences(saved, current) == ["trainer.epochs: 2 -> 3"]
