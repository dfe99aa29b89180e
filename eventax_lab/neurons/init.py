"""Weight initialisation shared by the neuron models."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


def normal_weights(
    key: PRNGKeyArray,
    n_neurons: int,
    n_sources: int,
    mean: float,
    std: float,
    fan_in_scaling: bool,
    dtype=float,
) -> Float[Array, "n_neurons n_sources"]:
    """Draw weights from N(mean, std^2), divided by sqrt(n_sources) if `fan_in_scaling`.

    The matrix is laid out `[receiving neuron, source]`.
    """
    if std < 0:
        raise ValueError(f"weight std={std} is negative; pass a std >= 0.")
    weights = mean + std * jax.random.normal(key, (n_neurons, n_sources), dtype=dtype)
    if fan_in_scaling:
        weights = weights / jnp.sqrt(n_sources)
    return weights
