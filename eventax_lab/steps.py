"""The jitted training and evaluation steps, and the averaging of their metrics over batches.

Both steps are module-level `equinox.filter_jit` functions, so their compiled
programs are cached for the whole process: every run (or in-process sweep job)
with the same network structure, batch shape, loss, simulation config and optimizer
reuses them. The loss and `SimulationConfig` compare by value. An optax optimizer is
a pair of closures that compare by identity, so it travels wrapped in `Keyed`.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Bool, Float, PyTree

from .config import SimulationConfig
from .network import simulate_batch

# The metrics key of a step's failure codes (see `SimulationConfig.errors`), one
# per sample and 0 for padding rows, which the trainer removes and checks before
# it averages the other metrics.
FAILURES_KEY = "simulation_failures"


def _sample_failures(recording, mask: Bool[Array, " batch"]) -> Array:
    """Return each sample's failure code, 0 for padding rows, so that errors count samples."""
    return jnp.where(mask, recording.failures, 0)


class Keyed:
    """A value that `jax.jit` treats as static and compares by `key` rather than identity.

    Two `Keyed` with equal keys must hold values that behave identically, because a
    program compiled for one is reused for the other.
    """

    __slots__ = ("key", "value")

    def __init__(self, key: str, value: Any):
        self.key = key
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keyed) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Keyed(key={self.key!r})"


def simulate_for_loss(network, spikes: Float[Array, "batch n_in k"], loss, config: SimulationConfig):
    """Simulate a batch with the recording options that `loss` reads."""
    return simulate_batch(network, spikes, config, **loss.simulation_options())


@eqx.filter_jit
def train_step(
    params: PyTree,
    static: PyTree,
    opt_state: PyTree,
    spikes: Float[Array, "batch n_in k"],
    targets: Array,
    mask: Bool[Array, " batch"],
    loss,
    config: SimulationConfig,
    optimizer: Keyed,
) -> tuple[PyTree, PyTree, Float[Array, ""], dict[str, Array]]:
    """Simulate a batch, take the gradient of the loss and apply one optimizer update.

    `params` contains the trainable leaves of the network and `static` the rest, as
    split by `eqx.partition(network, trainable_filter(network))`.

    **Returns:** `(params, opt_state, loss value, metrics)`. The metrics are the loss's
    own plus `grad_norm`, the global norm of the gradient before clipping, and
    `FAILURES_KEY`, the failure code of each sample.
    """

    def objective(trainable):
        network = eqx.combine(trainable, static)
        recording = simulate_for_loss(network, spikes, loss, config)
        value, metrics = loss(recording, targets, mask)
        return value, {**metrics, FAILURES_KEY: _sample_failures(recording, mask)}

    (value, metrics), grads = eqx.filter_value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = optimizer.value.update(grads, opt_state, params)
    params = eqx.apply_updates(params, updates)
    metrics = {**metrics, "grad_norm": optax.tree.norm(grads)}
    return params, opt_state, value, metrics


@eqx.filter_jit
def eval_step(
    network,
    spikes: Float[Array, "batch n_in k"],
    targets: Array,
    mask: Bool[Array, " batch"],
    loss,
    config: SimulationConfig,
) -> tuple[Float[Array, ""], dict[str, Array], Array]:
    """Simulate a batch and return `(loss value, metrics, predictions)`.

    The metrics include `FAILURES_KEY`, the failure code of each sample.
    """
    recording = simulate_for_loss(network, spikes, loss, config)
    value, metrics = loss(recording, targets, mask)
    metrics = {**metrics, FAILURES_KEY: _sample_failures(recording, mask)}
    return value, metrics, loss.predict(recording)


class MetricAverage:
    """Average per-batch metrics over batches, weighted by each batch's count of valid samples.

    Each batch metric must be a mean over the batch's valid rows, as the losses
    return. A metric whose name starts with `rmse` is combined as a root mean
    square, so the result equals the RMSE over all samples. Every other metric is
    combined as a weighted mean.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._count = 0

    def add(self, metrics: dict[str, Any], n_valid: int) -> None:
        """Add one batch's metrics, computed over `n_valid` samples."""
        if n_valid == 0:
            return
        for name, value in metrics.items():
            value = float(value)
            contribution = value * value if name.startswith("rmse") else value
            self._sums[name] = self._sums.get(name, 0.0) + contribution * n_valid
        self._count += n_valid

    @property
    def count(self) -> int:
        """Number of valid samples added."""
        return self._count

    def result(self) -> dict[str, float]:
        """Return the averaged metrics, or an empty dict when no sample was added."""
        if self._count == 0:
            return {}
        averages = {}
        for name, total in self._sums.items():
            mean = total / self._count
            averages[name] = float(np.sqrt(mean)) if name.startswith("rmse") else mean
        return averages


def to_device_batch(batch, dtype, regression: bool) -> tuple[Array, Array, Array]:
    """Convert a numpy `Batch` to `(spikes, targets, mask)` arrays of the run's dtype."""
    spikes = jnp.asarray(batch.spikes, dtype=dtype)
    targets = jnp.asarray(batch.targets, dtype=dtype if regression else jnp.int32)
    mask = jnp.asarray(batch.mask, dtype=bool)
    return spikes, targets, mask
