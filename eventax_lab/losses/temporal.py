r"""Losses on the first spike times of the output neurons.

The temporal loss follows J. Göltz et al., "Fast and energy-efficient neuromorphic
deep learning with first-spike times", Nature Machine Intelligence (2021):
a softmax over $-t_c/\tau_0$ with a late-spike regulariser $\alpha e^{t_y/\tau_1}$.
The authors' Yin-Yang configuration (experiment_configs/yin_yang.yaml in
github.com/JulianGoeltz/fastAndDeep) sets $\tau_0 = 0.2$, $\tau_1 = 1$ and
$\alpha = 0.005$ in units of $\tau_\mathrm{syn}$, with a window of
$4\,\tau_\mathrm{syn}$. Rescaled to a 60 ms window (1 unit = 15 ms) that gives
$\tau_0 = 3$ ms, $\tau_1 = 15$ ms and $\alpha = 0.005$. The defaults here,
$\tau_0 = 5$ ms without the regulariser ($\alpha = 0$), are the setting with
which the default QIF Yin-Yang run of this package reached 96.8% test accuracy
(`experiments/yinyang/README.md`); the rescaled values were not tried there. The
regulariser here subtracts 1, so it is zero for a spike at t = 0, which changes
neither gradient.
"""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ..recording import Recording
from .base import (
    ClassificationLoss,
    Loss,
    check_batch,
    masked_mean,
    spike_metrics,
    validate_positive,
)


def _validate_missing_spike_time(value, t_end: float) -> float:
    if value is None:
        return t_end
    return validate_positive("missing_spike_time", value)


def spike_times_or_default(
    first_spike_times: Float[Array, "batch n_out"], missing_spike_time: float
) -> Float[Array, "batch n_out"]:
    """Replace the inf of each output that never spiked by `missing_spike_time`.

    The replaced entries get a zero gradient, so a silent output contributes a
    finite loss and no NaN.
    """
    return jnp.where(jnp.isfinite(first_spike_times), first_spike_times, missing_spike_time)


class TemporalLoss(ClassificationLoss):
    r"""Cross-entropy over first spike times, with a late-spike penalty.

    With $t_c$ the first spike time of output neuron $c$ (or `missing_spike_time`
    if it never spikes) and label $y$, the per-sample loss is

    $$-\log \frac{e^{-t_y/\tau_0}}{\sum_c e^{-t_c/\tau_0}}
      + \alpha \left(e^{t_y/\tau_1} - 1\right).$$

    The prediction is the earliest-spiking output.

    **Arguments:**

    - `t_end`: the simulated window in ms.
    - `t0`: softmax time constant $\tau_0$ in ms.
    - `alpha`: weight of the late-spike penalty, >= 0.
    - `tau1`: time constant $\tau_1$ of the penalty in ms.
    - `missing_spike_time`: the time in ms assigned to an output that never
      spikes; `None` uses `t_end`.
    """

    t0: float = eqx.field(static=True)
    alpha: float = eqx.field(static=True)
    tau1: float = eqx.field(static=True)
    missing_spike_time: float = eqx.field(static=True)

    def __init__(
        self,
        t_end: float,
        t0: float = 5.0,
        alpha: float = 0.0,
        tau1: float = 15.0,
        missing_spike_time: float | None = None,
    ):
        self.t_end = validate_positive("t_end", t_end)
        self.t0 = validate_positive("t0", t0)
        self.tau1 = validate_positive("tau1", tau1)
        if alpha != 0:
            alpha = validate_positive("alpha", alpha)
        self.alpha = float(alpha)
        self.missing_spike_time = _validate_missing_spike_time(missing_spike_time, self.t_end)

    def simulation_options(self) -> dict:
        """Return `stop_after_first_spike=True`: the loss reads first spikes only."""
        return {"stop_after_first_spike": True}

    def spike_times(self, recording: Recording) -> Float[Array, "batch n_out"]:
        """Return each output's first spike time, `missing_spike_time` where it never spiked."""
        return spike_times_or_default(recording.first_spike_times, self.missing_spike_time)

    def scores(self, recording: Recording) -> Float[Array, "batch n_out"]:
        r"""Return $z_c = -t_c / \tau_0$."""
        return -self.spike_times(recording) / self.t0

    def penalty(self, recording: Recording, labels: Int[Array, " batch"]) -> Float[Array, " batch"]:
        r"""Return $\alpha (e^{t_y / \tau_1} - 1)$ for the label neuron $y$ of each row."""
        label_times = jnp.take_along_axis(self.spike_times(recording), labels[:, None], axis=-1)
        return self.alpha * jnp.expm1(label_times[:, 0] / self.tau1)


class RegressionLoss(Loss):
    r"""Mean squared error of the output's first spike time, in units of the window.

    With $t$ the first spike time of the single output neuron (or
    `missing_spike_time` if it never spikes) and target $\hat t$, both in ms, the
    per-sample loss is $((t - \hat t)/T)^2$ with $T$ = `t_end`. The prediction
    is $t$ in ms. The metrics are `rmse_ms` (the root-mean-square error in ms),
    `silent_output_fraction` and `hidden_spikes_per_neuron`.

    **Arguments:**

    - `t_end`: the simulated window $T$ in ms.
    - `missing_spike_time`: the time in ms assigned to a silent output; `None`
      uses `t_end`.
    """

    missing_spike_time: float = eqx.field(static=True)

    def __init__(self, t_end: float, missing_spike_time: float | None = None):
        self.t_end = validate_positive("t_end", t_end)
        self.missing_spike_time = _validate_missing_spike_time(missing_spike_time, self.t_end)

    def simulation_options(self) -> dict:
        """Return `stop_after_first_spike=True`: the loss reads the first spike only."""
        return {"stop_after_first_spike": True}

    def predict(self, recording: Recording) -> Float[Array, " batch"]:
        """Return the output's first spike time in ms, `missing_spike_time` if it never spiked."""
        n_outputs = recording.first_spike_times.shape[-1]
        if n_outputs != 1:
            raise ValueError(
                f"RegressionLoss reads one output neuron, but the recording has "
                f"n_out={n_outputs}; build the network with n_outputs=1."
            )
        return spike_times_or_default(recording.first_spike_times, self.missing_spike_time)[..., 0]

    def __call__(self, recording, targets, mask):
        """Return the mean squared relative timing error over the valid rows and the metrics."""
        targets, mask = check_batch(recording, targets, mask)
        if not jnp.issubdtype(targets.dtype, jnp.floating):
            raise ValueError(
                f"targets has dtype {targets.dtype}; RegressionLoss expects target times "
                "in ms as floats."
            )
        predicted = jnp.where(mask, self.predict(recording), 0.0)
        targets = jnp.where(mask, targets, 0.0)
        error_ms = predicted - targets
        loss = masked_mean((error_ms / self.t_end) ** 2, mask)
        metrics = {
            "rmse_ms": jnp.sqrt(masked_mean(error_ms**2, mask)),
            **spike_metrics(recording, mask),
        }
        return loss, metrics
