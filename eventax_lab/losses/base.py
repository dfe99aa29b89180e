"""The loss interface, masked averages and the spike diagnostics every loss reports."""

import abc
import math
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from ..recording import Recording


def validate_positive(name: str, value) -> float:
    """Return `value` as a float, raising `ValueError` unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} must be a number > 0.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value} must be finite and > 0.")
    return float(value)


def validate_channel(channel) -> int:
    """Return `channel` as an int, raising `ValueError` unless it is an integer >= 0."""
    if isinstance(channel, bool) or not isinstance(channel, numbers.Integral) or channel < 0:
        raise ValueError(
            f"channel={channel!r} must be an integer >= 0, the index of an output "
            "observable (0 is the voltage)."
        )
    return int(channel)


def masked_mean(values: Float[Array, " batch"], mask: Bool[Array, " batch"]) -> Float[Array, ""]:
    """Average `values` over the rows where `mask` is true, or return 0.0 when no row is.

    Rows outside the mask are replaced by zero before the sum, so a NaN or inf in a
    padding row does not reach the result, and its row gets a zero gradient.
    """
    values = jnp.where(mask, values, 0.0)
    n_valid = jnp.maximum(jnp.sum(mask), 1)
    return jnp.sum(values) / n_valid


def spike_metrics(recording: Recording, mask: Bool[Array, " batch"]) -> dict[str, Array]:
    r"""Compute the diagnostics that reveal a silent network, over the valid rows.

    - `silent_output_fraction`: the fraction of (valid sample, output neuron)
      pairs without an output spike. It is 1.0 for a non-spiking output layer.
    - `hidden_spikes_per_neuron`: the spike count summed over all hidden layers
      (every layer but the last in `recording.spike_counts`) and valid samples,
      divided by (hidden neurons x valid samples). It is 0.0 without a hidden
      layer, and so also for a recurrent network, which records one population.

    Both are 0.0 when no row is valid.
    """
    n_valid = jnp.maximum(jnp.sum(mask), 1)
    silent = jnp.isinf(recording.first_spike_times) & mask[:, None]
    n_outputs = recording.first_spike_times.shape[1]
    silent_fraction = jnp.sum(silent) / (n_valid * n_outputs)

    hidden_counts = recording.spike_counts[:-1]
    if hidden_counts:
        counts = jnp.concatenate(hidden_counts, axis=1)
        counts = jnp.where(mask[:, None], counts, 0)
        hidden_rate = jnp.sum(counts) / (n_valid * counts.shape[1])
    else:
        hidden_rate = jnp.zeros((), silent_fraction.dtype)
    return {
        "silent_output_fraction": silent_fraction,
        "hidden_spikes_per_neuron": hidden_rate.astype(silent_fraction.dtype),
    }


def check_batch(
    recording: Recording, targets: Array, mask: Array
) -> tuple[Array, Bool[Array, " batch"]]:
    """Check that `recording`, `targets` and `mask` describe one batch.

    **Returns:** `(targets, mask)` as arrays, the mask as bool.
    """
    if jnp.ndim(recording.first_spike_times) != 2:
        raise ValueError(
            f"recording.first_spike_times has shape {jnp.shape(recording.first_spike_times)}; "
            "a loss expects a batched recording [batch, n_out], as simulate_batch returns."
        )
    batch = recording.first_spike_times.shape[0]
    targets = jnp.asarray(targets)
    mask = jnp.asarray(mask)
    if targets.shape != (batch,):
        raise ValueError(
            f"targets has shape {targets.shape}; expected ({batch},), one per row of the recording."
        )
    if mask.shape != (batch,):
        raise ValueError(
            f"mask has shape {mask.shape}; expected ({batch},), one flag per row of the recording."
        )
    return targets, mask.astype(bool)


def select_channel(observables: Float[Array, "... observables"], channel: int) -> Array:
    """Return `observables[..., channel]`, raising `ValueError` when the channel does not exist."""
    n_observables = observables.shape[-1]
    if channel >= n_observables:
        raise ValueError(
            f"channel={channel} is out of range: the output layer has {n_observables} "
            f"observables; choose 0..{n_observables - 1} (0 is the voltage)."
        )
    return observables[..., channel]


class Loss(eqx.Module):
    """A training objective read from a batched [`Recording`][] of the output layer.

    Every configuration field is static, so a loss can be closed over or passed
    to `jax.jit` without becoming a tracer. `t_end` is the simulated window in ms
    and must equal the `SimulationConfig.t_end` of the simulation that produced
    the recording.
    """

    t_end: float = eqx.field(static=True)

    @abc.abstractmethod
    def simulation_options(self) -> dict:
        """Return the keyword arguments of `simulate_batch` that record what this loss reads."""

    @abc.abstractmethod
    def __call__(
        self, recording: Recording, targets: Array, mask: Bool[Array, " batch"]
    ) -> tuple[Float[Array, ""], dict[str, Array]]:
        """Return the loss averaged over rows where `mask` is true, and its metrics."""

    @abc.abstractmethod
    def predict(self, recording: Recording) -> Array:
        """Return the prediction of each row: a class index, or a time in ms for regression."""


class ClassificationLoss(Loss):
    r"""Softmax cross-entropy over per-class scores $z_c$ read from the output layer.

    For label $y$ the per-sample loss is
    $-\log\big(e^{z_y} / \sum_c e^{z_c}\big) + \mathrm{penalty}$, averaged over
    the valid rows. The prediction is $\arg\max_c z_c$, and on ties the
    lowest class index wins. Subclasses define `scores` and may add a per-sample
    `penalty` (zero by default).
    """

    @abc.abstractmethod
    def scores(self, recording: Recording) -> Float[Array, "batch n_out"]:
        """Return the score $z_c$ of each class (output neuron)."""

    def penalty(
        self, recording: Recording, labels: Int[Array, " batch"]
    ) -> Float[Array, " batch"]:
        """Return a term added to each sample's cross-entropy, outside the log (zero by default)."""
        return jnp.zeros(labels.shape, recording.first_spike_times.dtype)

    def predict(self, recording: Recording) -> Int[Array, " batch"]:
        """Return the class with the highest score in each row."""
        return jnp.argmax(self.scores(recording), axis=-1)

    def __call__(self, recording, targets, mask):
        """Return the mean cross-entropy over the valid rows and the metrics.

        **Returns:** `(loss, metrics)` with metrics `accuracy`,
        `silent_output_fraction` and `hidden_spikes_per_neuron` (see
        [`spike_metrics`][]), all over the rows where `mask` is true.

        **Raises:** `ValueError` at trace time for mismatched shapes or float
        targets. At run time (through `equinox.error_if`) a valid row whose
        label lies outside `[0, n_out)` raises an error.
        """
        targets, mask = check_batch(recording, targets, mask)
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ValueError(
                f"targets has dtype {targets.dtype}; a classification loss expects "
                "integer class labels. Use RegressionLoss for target times."
            )
        scores = self.scores(recording)
        n_classes = scores.shape[-1]
        out_of_range = mask & ((targets < 0) | (targets >= n_classes))
        labels = jnp.where(mask, targets, 0)
        labels = eqx.error_if(
            labels,
            jnp.any(out_of_range),
            f"targets contains a label outside [0, {n_classes}) in a valid row; the "
            f"output layer has {n_classes} neurons, one per class.",
        )

        # Padding rows get neutral scores, so their values cannot reach the gradient.
        scores = jnp.where(mask[:, None], scores, 0.0)
        log_probabilities = jax.nn.log_softmax(scores, axis=-1)
        cross_entropy = -jnp.take_along_axis(log_probabilities, labels[:, None], axis=-1)[:, 0]
        per_sample = cross_entropy + jnp.where(mask, self.penalty(recording, labels), 0.0)
        loss = masked_mean(per_sample, mask)

        correct = jnp.argmax(scores, axis=-1) == targets
        metrics = {
            "accuracy": masked_mean(correct.astype(loss.dtype), mask),
            **spike_metrics(recording, mask),
        }
        return loss, metrics
