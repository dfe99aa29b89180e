"""Draw the figures of a finished run from its best network (see `plots` for the drawings)."""

from __future__ import annotations

import logging
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import plots
from .data import SpikeDataset, classify_yinyang, encode_yinyang, latency_decode
from .training import Evaluation, Trainer

logger = logging.getLogger(__name__)

TRACE_POINTS = 240
"""Voltage samples per trace, evenly spaced over the window."""
DECISION_GRID = 60
"""Grid points per axis of the Yin-Yang decision map."""


@eqx.filter_jit
def simulate_traces(network, spikes, config, sample_ts):
    """Simulate each sample fully (no early stop) and record the output observables at `sample_ts`."""
    return jax.vmap(lambda sample: network.simulate(sample, config, sample_ts=sample_ts))(spikes)


def _describe(target, prediction, regression: bool) -> str:
    if regression:
        return f"target {float(target):.1f} ms, predicted {float(prediction):.1f} ms"
    return f"label {int(target)}, predicted {int(prediction)}"


def draw_figures(
    trainer: Trainer,
    network,
    test: Evaluation,
    history: list[dict[str, float]],
    figure_dir: Path,
    data_settings: dict,
    n_samples: int,
) -> dict[str, Path]:
    """Draw the figures of a run as PNG files.

    The figures are the learning curves, a spike raster and voltage traces of the
    first test samples, and the decision map (Yin-Yang) or the fit (regression).

    **Arguments:**

    - `trainer`: the run's trainer, for its datasets, loss and simulation config.
    - `network`: the network to show (the best checkpoint's).
    - `test`: its evaluation on the test split, whose predictions the plots reuse.
    - `history`: the per-epoch metrics.
    - `figure_dir`: the folder for the PNG files.
    - `data_settings`: the resolved `data` config, for the Yin-Yang encoding window.
    - `n_samples`: test samples in the raster and the traces.

    **Returns:** `{figure name: PNG path}`.
    """
    figure_dir = Path(figure_dir)
    dataset = trainer.datasets["test"]
    figures = {"learning_curves": plots.plot_learning_curves(history, figure_dir / "learning_curves.png")}

    count = min(n_samples, len(dataset))
    spikes = jnp.asarray(dataset.spikes[:count], dtype=trainer.dtype)
    sample_ts = jnp.linspace(0.0, dataset.t_max, TRACE_POINTS + 1, dtype=trainer.dtype)[:-1]
    recording = simulate_traces(network, spikes, trainer.config, sample_ts)
    labels = [
        _describe(dataset.targets[index], test.predictions[index], trainer.regression)
        for index in range(count)
    ]
    layer_spikes = [np.asarray(times) for times in recording.spike_times]
    figures["spike_raster"] = plots.plot_spike_raster(
        np.asarray(dataset.spikes[:count]), layer_spikes, labels, figure_dir / "spike_raster.png",
        dataset.t_max,
    )
    figures["voltage_traces"] = plots.plot_voltage_traces(
        np.asarray(sample_ts), np.asarray(recording.samples[..., 0]), layer_spikes[-1], labels,
        figure_dir / "voltage_traces.png",
    )

    if dataset.name.startswith("yinyang"):
        figures["decision_map"] = _draw_decision_map(trainer, network, test, data_settings, figure_dir)
    if trainer.regression:
        figures["regression_fit"] = plots.plot_regression_fit(
            np.asarray(dataset.spikes[:, 1, 0]), np.asarray(dataset.targets), test.predictions,
            figure_dir / "regression_fit.png",
        )
    logger.info("Saved figures %s in %s", sorted(figures), figure_dir)
    return figures


def _draw_decision_map(trainer: Trainer, network, test: Evaluation, data_settings: dict, figure_dir: Path) -> Path:
    t_early = data_settings.get("t_early", 0.0)
    t_late = data_settings.get("t_late", 30.0)
    t_bias = data_settings.get("t_bias", 0.0)

    axis = (np.arange(DECISION_GRID) + 0.5) / DECISION_GRID
    grid_x, grid_y = np.meshgrid(axis, axis)
    points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    inside = np.hypot(points[:, 0] - 0.5, points[:, 1] - 0.5) <= 0.5

    labels = classify_yinyang(points[inside, 0], points[inside, 1])
    grid = SpikeDataset(
        spikes=encode_yinyang(points[inside], t_early, t_late, t_bias),
        targets=labels,
        t_max=trainer.datasets["test"].t_max,
        n_classes=trainer.datasets["test"].n_classes,
        name="yinyang/decision_map",
    )
    predictions = trainer.evaluate(network, grid, desc="decision map").predictions

    grid_predictions = np.full(points.shape[0], -1)
    grid_predictions[inside] = predictions
    grid_labels = np.full(points.shape[0], -1)
    grid_labels[inside] = labels

    test_spikes = trainer.datasets["test"].spikes
    test_points = latency_decode(test_spikes[:, :2, 0], t_early, t_late)
    test_correct = test.predictions == trainer.datasets["test"].targets
    return plots.plot_decision_map(
        grid_x, grid_y, grid_predictions.reshape(grid_x.shape), grid_labels.reshape(grid_x.shape),
        test_points, test_correct, figure_dir / "decision_map.png",
    )
