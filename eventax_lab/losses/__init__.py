"""Readouts of the output layer and the losses built on them.

Classification losses are softmax cross-entropies over per-class scores: first
spike times (`TemporalLoss`), or a functional of each output's voltage trajectory
(`MaxLoss`, `IntegralLoss`, `ExpIntegralLoss`). `RegressionLoss` fits the first
spike time of a single output to a target time. Each loss names the
`simulate_batch` options it needs in `simulation_options()`, and returns its
metrics with the loss.
"""

from .base import ClassificationLoss, Loss, masked_mean, spike_metrics
from .state import ExpIntegralLoss, IntegralLoss, MaxLoss, parabolic_peak
from .temporal import RegressionLoss, TemporalLoss, spike_times_or_default

__all__ = [
    "ClassificationLoss",
    "ExpIntegralLoss",
    "IntegralLoss",
    "Loss",
    "MaxLoss",
    "RegressionLoss",
    "TemporalLoss",
    "masked_mean",
    "parabolic_peak",
    "spike_metrics",
    "spike_times_or_default",
]
