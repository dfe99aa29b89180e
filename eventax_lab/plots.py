"""Figures of a run: learning curves, spike rasters, voltage traces, the Yin-Yang decision map, the regression fit.

Every function draws one PNG with matplotlib's object-oriented API (no pyplot, so
no display or global figure state is needed) and returns its path. Times are in ms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

CLASS_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def _save(figure: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Plot training and validation loss and every shared metric against the epoch.

    One panel per metric name that appears as `train/NAME` or `val/NAME`; validation
    points exist only for the epochs that were validated.
    """
    names = []
    for record in history:
        for key in record:
            split, _, name = key.partition("/")
            if split in ("train", "val") and name not in names and name != "learning_rate":
                names.append(name)
    figure = Figure(figsize=(4 * min(len(names), 3), 3 * -(-len(names) // 3)), layout="constrained")
    axes = figure.subplots(-(-len(names) // 3), min(len(names), 3), squeeze=False).ravel()
    for axis, name in zip(axes, names):
        for split, style in (("train", "-"), ("val", "o-")):
            points = [(record["epoch"], record[f"{split}/{name}"]) for record in history
                      if f"{split}/{name}" in record]
            if points:
                epochs, values = zip(*points)
                axis.plot(epochs, values, style, label=split, markersize=3)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
    for axis in axes[len(names):]:
        axis.set_visible(False)
    return _save(figure, path)


def plot_spike_raster(
    input_spikes: np.ndarray,
    layer_spikes: list[np.ndarray],
    labels: list[str],
    path: Path,
    t_end: float,
) -> Path:
    """Draw the spikes of every layer for a few samples, one column per sample.

    **Arguments:**

    - `input_spikes`: `[samples, n_in, K]` input spike times, inf for no spike.
    - `layer_spikes`: per layer, `[samples, n_l, max_spikes]` spike times.
    - `labels`: one title per sample, such as its target and prediction.
    - `t_end`: the simulated window.
    """
    n_samples = input_spikes.shape[0]
    populations = [("input", input_spikes)] + [
        (f"layer {index + 1}", spikes) for index, spikes in enumerate(layer_spikes)
    ]
    figure = Figure(figsize=(4 * n_samples, 4), layout="constrained")
    axes = figure.subplots(1, n_samples, squeeze=False)[0]
    for sample, axis in enumerate(axes):
        offset = 0
        for (name, spikes), color in zip(populations, CLASS_COLORS):
            times = spikes[sample]
            neuron, _ = np.nonzero(np.isfinite(times))
            axis.scatter(times[np.isfinite(times)], neuron + offset, s=6, color=color, label=name)
            offset += times.shape[0]
            axis.axhline(offset - 0.5, color="lightgray", linewidth=0.5)
        axis.set_xlim(0, t_end)
        axis.set_title(labels[sample], fontsize=9)
        axis.set_xlabel("time (ms)")
    axes[0].set_ylabel("neuron (inputs, then each layer)")
    axes[0].legend(loc="upper right", fontsize=7)
    return _save(figure, path)


def plot_voltage_traces(
    sample_ts: np.ndarray,
    voltages: np.ndarray,
    output_spikes: np.ndarray,
    labels: list[str],
    path: Path,
) -> Path:
    """Plot each output neuron's voltage (its first observable) for a few samples.

    Dashed vertical lines mark the output spikes. The y-axis spans the 1st to 99th
    percentile of the voltages, so that the divergence of a QIF voltage at its
    spikes does not flatten the rest of the trace.

    **Arguments:**

    - `sample_ts`: `[p]` sample times.
    - `voltages`: `[samples, p, n_out]` voltages at those times.
    - `output_spikes`: `[samples, n_out, max_spikes]` output spike times, inf-padded.
    - `labels`: one title per sample.
    """
    n_samples = voltages.shape[0]
    figure = Figure(figsize=(4 * n_samples, 3), layout="constrained")
    axes = figure.subplots(1, n_samples, squeeze=False)[0]
    finite = voltages[np.isfinite(voltages)]
    low, high = np.percentile(finite, [1, 99]) if finite.size else (-1.0, 1.0)
    margin = 0.15 * max(high - low, 1e-6)
    for sample, axis in enumerate(axes):
        for neuron in range(voltages.shape[2]):
            color = CLASS_COLORS[neuron % len(CLASS_COLORS)]
            axis.plot(sample_ts, voltages[sample, :, neuron], color=color, label=f"output {neuron}")
            for time in output_spikes[sample, neuron][np.isfinite(output_spikes[sample, neuron])]:
                axis.axvline(time, color=color, linestyle="--", linewidth=0.8)
        axis.set_ylim(low - margin, high + margin)
        axis.set_title(labels[sample], fontsize=9)
        axis.set_xlabel("time (ms)")
    axes[0].set_ylabel("output voltage")
    axes[0].legend(fontsize=7)
    return _save(figure, path)


def plot_decision_map(
    grid_x: np.ndarray,
    grid_y: np.ndarray,
    grid_predictions: np.ndarray,
    grid_labels: np.ndarray,
    test_points: np.ndarray,
    test_correct: np.ndarray,
    path: Path,
) -> Path:
    """Draw the network's Yin-Yang class over the unit square, with the true boundaries and test errors.

    **Arguments:**

    - `grid_x`, `grid_y`: `[m, m]` point coordinates (as from `np.meshgrid`).
    - `grid_predictions`, `grid_labels`: `[m, m]` predicted and true classes, -1
      outside the big circle.
    - `test_points`: `[n, 2]` test-set points; `test_correct`: `[n]` bool.
    """
    figure = Figure(figsize=(5, 5), layout="constrained")
    axis = figure.subplots()
    predicted = np.ma.masked_less(grid_predictions, 0)
    from matplotlib.colors import ListedColormap

    axis.pcolormesh(grid_x, grid_y, predicted, cmap=ListedColormap(CLASS_COLORS[:3]),
                    vmin=-0.5, vmax=2.5, alpha=0.45, shading="auto")
    axis.contour(grid_x, grid_y, np.ma.masked_less(grid_labels, 0), levels=[0.5, 1.5],
                 colors="black", linewidths=0.8)
    wrong = ~test_correct
    axis.scatter(test_points[wrong, 0], test_points[wrong, 1], marker="x", color="black", s=12,
                 label=f"misclassified test points ({int(wrong.sum())}/{len(wrong)})")
    grid_accuracy = np.mean(grid_predictions[grid_labels >= 0] == grid_labels[grid_labels >= 0])
    axis.set_title(f"predicted class (accuracy on the grid {grid_accuracy:.3f})")
    axis.set_aspect("equal")
    axis.set_xlabel("x")
    axis.set_ylabel("y")
    axis.legend(loc="lower left", fontsize=7)
    return _save(figure, path)


def plot_regression_fit(
    inputs_ms: np.ndarray, targets_ms: np.ndarray, predictions_ms: np.ndarray, path: Path
) -> Path:
    """Plot target and predicted output spike time against the input spike time."""
    order = np.argsort(inputs_ms)
    figure = Figure(figsize=(5, 4), layout="constrained")
    axis = figure.subplots()
    axis.plot(inputs_ms[order], targets_ms[order], color="black", label="target")
    axis.scatter(inputs_ms, predictions_ms, s=6, color="tab:orange", label="network")
    rmse = np.sqrt(np.mean((predictions_ms - targets_ms) ** 2))
    axis.set_title(f"regression fit (RMSE {rmse:.3g} ms)")
    axis.set_xlabel("input spike time (ms)")
    axis.set_ylabel("output spike time (ms)")
    axis.legend()
    return _save(figure, path)
