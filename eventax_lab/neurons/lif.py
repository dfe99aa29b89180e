"""Leaky integrate-and-fire neuron with current-based exponential synapses."""

from typing import Any, ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .base import NeuronModel, as_per_neuron, check_setting, parameter, setting, summed_weights
from .init import normal_weights


class LIF(NeuronModel):
    r"""Leaky integrate-and-fire neurons with exponentially decaying synaptic current.

    State channels `[V, I]`, with time in the unit of the time constants:

    $$\tau_\mathrm{mem} \dot V = -V + I + i_\mathrm{bias}, \qquad
      \tau_\mathrm{syn} \dot I = -I.$$

    A spike of source $j$ adds $w_{ij}$ to $I_i$. Neuron $i$ spikes when $V_i$
    crosses $\vartheta$ from below, then either $V \leftarrow V - \vartheta$
    (`reset_mode="subtract"`) or $V \leftarrow V_\mathrm{reset}$ (`"value"`).

    **Arguments:**

    - `n_neurons`, `n_sources`: population size and number of presynaptic sources.
    - `key`: PRNG key for the weights.
    - `tau_mem`, `tau_syn`, `threshold`, `v_reset`: scalars or arrays of shape
      `[n_neurons]`; fixed settings.
    - `reset_mode`: `"subtract"` or `"value"`.
    - `weight_mean`, `weight_std`, `fan_in_scaling`: the initial weights are
      N(mean, std^2), divided by sqrt(n_sources) when `fan_in_scaling`.
    - `bias_init`: initial bias current (trainable).
    """

    weight: Float[Array, "n_neurons n_sources"] = parameter(connection=True)
    bias: Float[Array, " n_neurons"] = parameter()
    tau_mem: Float[Array, " n_neurons"] = setting()
    tau_syn: Float[Array, " n_neurons"] = setting()
    threshold: Float[Array, " n_neurons"] = setting()
    v_reset: Float[Array, " n_neurons"] = setting()
    reset_mode: Literal["subtract", "value"] = eqx.field(static=True, default="subtract")

    # Each input adds its weight to a current, so simultaneous inputs may arrive in parts.
    additive_inputs: ClassVar[bool] = True

    def __init__(
        self,
        n_neurons: int,
        n_sources: int,
        key: PRNGKeyArray,
        *,
        tau_mem: float | Array = 20.0,
        tau_syn: float | Array = 5.0,
        threshold: float | Array = 1.0,
        v_reset: float | Array = 0.0,
        reset_mode: Literal["subtract", "value"] = "subtract",
        weight_mean: float = 0.0,
        weight_std: float = 1.0,
        fan_in_scaling: bool = True,
        bias_init: float = 0.0,
    ):
        if n_neurons < 1 or n_sources < 1:
            raise ValueError(
                f"n_neurons={n_neurons} and n_sources={n_sources} must both be >= 1."
            )
        if reset_mode not in ("subtract", "value"):
            raise ValueError(f"reset_mode={reset_mode!r}; use 'subtract' or 'value'.")
        self.weight = normal_weights(
            key, n_neurons, n_sources, weight_mean, weight_std, fan_in_scaling
        )
        self.bias = as_per_neuron(bias_init, n_neurons, "bias_init")
        self.tau_mem = as_per_neuron(tau_mem, n_neurons, "tau_mem")
        self.tau_syn = as_per_neuron(tau_syn, n_neurons, "tau_syn")
        self.threshold = as_per_neuron(threshold, n_neurons, "threshold")
        self.v_reset = as_per_neuron(v_reset, n_neurons, "v_reset")
        self.reset_mode = reset_mode
        for name in ("tau_mem", "tau_syn", "threshold"):
            value = getattr(self, name)
            check_setting(name, value, value > 0, "> 0")
        if reset_mode == "value":
            check_setting(
                "v_reset", self.v_reset, self.v_reset < self.threshold,
                "below threshold, or a neuron would spike again at once",
            )

    @property
    def n_sources(self) -> int:
        return self.weight.shape[1]

    def init_state(self, n_neurons: int) -> Float[Array, "n 2"]:
        return jnp.zeros((n_neurons, 2), dtype=self.weight.dtype)

    def dynamics(self, t, y: Float[Array, "n 2"], args: Any) -> Float[Array, "n 2"]:
        v, i = y[:, 0], y[:, 1]
        dv = (-v + i + self.bias) / self.tau_mem
        di = -i / self.tau_syn
        return jnp.stack([dv, di], axis=-1)

    def spike_condition(self, t, y: Float[Array, "n 2"]) -> Float[Array, " n"]:
        return y[:, 0] - self.threshold

    def input_spike(
        self,
        y: Float[Array, "n 2"],
        from_idx: Int[Array, " m"],
        valid_mask: Bool[Array, " m"],
    ) -> Float[Array, "n 2"]:
        current_jump = summed_weights(self.weight, from_idx, valid_mask)
        return y.at[:, 1].add(current_jump)

    def reset_spiked(
        self, y: Float[Array, "n 2"], spike_mask: Bool[Array, " n"]
    ) -> Float[Array, "n 2"]:
        v = y[:, 0]
        if self.reset_mode == "subtract":
            v_after = v - self.threshold
        else:
            v_after = self.v_reset
        return y.at[:, 0].set(jnp.where(spike_mask, v_after, v))

    def observe(self, y: Float[Array, "n 2"]) -> Float[Array, "n 2"]:
        return y
