"""Adaptive leaky integrate-and-fire neuron: LIF with a spike-triggered threshold increase."""

from typing import Any, ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .base import NeuronModel, as_per_neuron, check_setting, parameter, setting, summed_weights
from .init import normal_weights


class ALIF(NeuronModel):
    r"""Adaptive leaky integrate-and-fire neurons: LIF whose threshold rises at each spike.

    State channels `[V, I, A]`, with time in the unit of the time constants (ms
    in the shipped configs) and V, I and A in the unit of the threshold:

    $$\tau_\mathrm{mem} \dot V = -V + I + i_\mathrm{bias}, \qquad
      \tau_\mathrm{syn} \dot I = -I, \qquad
      \tau_\mathrm{adapt} \dot A = -A.$$

    A spike of source $j$ adds $w_{ij}$ to $I_i$. Neuron $i$ spikes when $V_i$
    crosses the adaptive threshold $\vartheta + A_i$ from below. Then $V$ is
    reset, either $V \leftarrow V - (\vartheta + A)$ (`reset_mode="subtract"`,
    which leaves V at 0 after a spike found by the root finder) or
    $V \leftarrow V_\mathrm{reset}$ (`"value"`), and $A \leftarrow A + \beta$ with
    $\beta$ = `adaptation_increment`. A trial starts at $V = I = A = 0$. With
    $\beta = 0$ the model is the LIF model.

    **Arguments:**

    - `n_neurons`, `n_sources`: population size and number of presynaptic sources.
    - `key`: PRNG key for the weights.
    - `tau_mem`, `tau_syn`, `tau_adapt`, `threshold`, `adaptation_increment`,
      `v_reset`: scalars or arrays of shape `[n_neurons]`; fixed settings.
    - `reset_mode`: `"subtract"` or `"value"`.
    - `weight_mean`, `weight_std`, `fan_in_scaling`: the initial weights are
      N(mean, std^2), divided by sqrt(n_sources) when `fan_in_scaling`.
    - `bias_init`: initial bias current (trainable).
    """

    weight: Float[Array, "n_neurons n_sources"] = parameter(connection=True)
    bias: Float[Array, " n_neurons"] = parameter()
    tau_mem: Float[Array, " n_neurons"] = setting()
    tau_syn: Float[Array, " n_neurons"] = setting()
    tau_adapt: Float[Array, " n_neurons"] = setting()
    threshold: Float[Array, " n_neurons"] = setting()
    adaptation_increment: Float[Array, " n_neurons"] = setting()
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
        tau_adapt: float | Array = 100.0,
        threshold: float | Array = 1.0,
        adaptation_increment: float | Array = 0.5,
        v_reset: float | Array = 0.0,
        reset_mode: Literal["subtract", "value"] = "subtract",
        weight_mean: float = 0.0,
        weight_std: float = 1.0,
        fan_in_scaling: bool = True,
        bias_init: float | Array = 0.0,
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
        self.tau_adapt = as_per_neuron(tau_adapt, n_neurons, "tau_adapt")
        self.threshold = as_per_neuron(threshold, n_neurons, "threshold")
        self.adaptation_increment = as_per_neuron(
            adaptation_increment, n_neurons, "adaptation_increment"
        )
        self.v_reset = as_per_neuron(v_reset, n_neurons, "v_reset")
        self.reset_mode = reset_mode

        for name in ("tau_mem", "tau_syn", "tau_adapt", "threshold"):
            value = getattr(self, name)
            check_setting(name, value, value > 0, "> 0")
        check_setting(
            "adaptation_increment", self.adaptation_increment,
            self.adaptation_increment >= 0,
            ">= 0, so that the threshold after a spike is at least the one it crossed",
        )
        if reset_mode == "value":
            check_setting(
                "v_reset", self.v_reset, self.v_reset < self.threshold,
                "below threshold, or a neuron would spike again at once",
            )

    @property
    def n_sources(self) -> int:
        return self.weight.shape[1]

    def init_state(self, n_neurons: int) -> Float[Array, "n 3"]:
        return jnp.zeros((n_neurons, 3), dtype=self.weight.dtype)

    def dynamics(self, t, y: Float[Array, "n 3"], args: Any) -> Float[Array, "n 3"]:
        v, i, adaptation = y[:, 0], y[:, 1], y[:, 2]
        dv = (-v + i + self.bias) / self.tau_mem
        di = -i / self.tau_syn
        d_adaptation = -adaptation / self.tau_adapt
        return jnp.stack([dv, di, d_adaptation], axis=-1)

    def spike_condition(self, t, y: Float[Array, "n 3"]) -> Float[Array, " n"]:
        return y[:, 0] - (self.threshold + y[:, 2])

    def input_spike(
        self,
        y: Float[Array, "n 3"],
        from_idx: Int[Array, " m"],
        valid_mask: Bool[Array, " m"],
    ) -> Float[Array, "n 3"]:
        current_jump = summed_weights(self.weight, from_idx, valid_mask)
        return y.at[:, 1].add(current_jump)

    def reset_spiked(
        self, y: Float[Array, "n 3"], spike_mask: Bool[Array, " n"]
    ) -> Float[Array, "n 3"]:
        v, adaptation = y[:, 0], y[:, 2]
        if self.reset_mode == "subtract":
            v_after = v - (self.threshold + adaptation)
        else:
            v_after = self.v_reset
        y = y.at[:, 0].set(jnp.where(spike_mask, v_after, v))
        return y.at[:, 2].set(
            jnp.where(spike_mask, adaptation + self.adaptation_increment, adaptation)
        )

    def observe(self, y: Float[Array, "n 3"]) -> Float[Array, "n 3"]:
        """Return the state `[V, I, A]`, with the neuron's threshold at `threshold + A`."""
        return y
