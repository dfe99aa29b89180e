"""Event-based gated recurrent unit (EGRU) in continuous time."""

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .base import NeuronModel, as_per_neuron, check_setting, parameter, setting, summed_weights
from .init import normal_weights

# Column of each state channel in the `[n, 4]` state.
_C, _A_U, _A_R, _A_Z = 0, 1, 2, 3


class EGRU(NeuronModel):
    r"""Event-based gated recurrent units: GRU cells that spike when their state crosses threshold.

    State channels `[c, a_u, a_r, a_z]`: the cell state $c$ and the
    pre-activations of the update gate, the reset gate and the candidate state.
    Time is in the unit of the time constants (ms in the shipped configs), and
    all channels are dimensionless. Between events, for $x \in \{u, r, z\}$,

    $$\tau_\mathrm{syn} \dot a_x = -a_x + b_x, \qquad
      \tau_\mathrm{mem} \dot c = \sigma(a_u)\,(\tanh(a_z) - c),$$

    with $\sigma$ the logistic sigmoid. A spike of source $j$ arriving at neuron
    $i$ changes its pre-activations by

    $$a_u \mathrel{+}= W^u_{ij}, \qquad a_r \mathrel{+}= W^r_{ij}, \qquad
      a_z \mathrel{+}= W^z_{ij}\,\sigma(a_r),$$

    where $\sigma(a_r)$ is the receiving neuron's reset gate just before the
    event. It gates the input to the candidate state, much as the reset gate of
    a discrete GRU gates the recurrent input to its candidate. Spikes from
    several sources at the same time all see that same $\sigma(a_r)$. Neuron $i$
    spikes when $c_i$ crosses $\vartheta$ from below, then
    $c \leftarrow c - \vartheta$.

    Since $c$ relaxes towards $\tanh(a_z) \in (-1, 1)$, a neuron starting at
    $c = 0$ can only spike if $0 < \vartheta < 1$. A trial starts with $c = 0$ and
    each pre-activation at its resting value $a_x = b_x$.

    **Arguments:**

    - `n_neurons`, `n_sources`: population size and number of presynaptic sources.
    - `key`: PRNG key for the weights.
    - `tau_mem`, `tau_syn`, `threshold`: scalars or arrays of shape `[n_neurons]`;
      fixed settings. `threshold` must lie in (0, 1).
    - `weight_mean`, `weight_std`: distribution of the candidate weights $W^z$.
    - `gate_weight_mean`, `gate_weight_std`: distribution of the gate weights
      $W^u$ and $W^r$.
    - `fan_in_scaling`: divide every initial weight by sqrt(n_sources).
    - `bias_init`: initial candidate bias $b_z$ (trainable).
    - `gate_bias_init`: initial gate biases $b_u$ and $b_r$ (trainable).
    """

    weight_u: Float[Array, "n_neurons n_sources"] = parameter(connection=True)
    weight_r: Float[Array, "n_neurons n_sources"] = parameter(connection=True)
    weight_z: Float[Array, "n_neurons n_sources"] = parameter(connection=True)
    bias_u: Float[Array, " n_neurons"] = parameter()
    bias_r: Float[Array, " n_neurons"] = parameter()
    bias_z: Float[Array, " n_neurons"] = parameter()
    tau_mem: Float[Array, " n_neurons"] = setting()
    tau_syn: Float[Array, " n_neurons"] = setting()
    threshold: Float[Array, " n_neurons"] = setting()

    def __init__(
        self,
        n_neurons: int,
        n_sources: int,
        key: PRNGKeyArray,
        *,
        tau_mem: float | Array = 10.0,
        tau_syn: float | Array = 5.0,
        threshold: float | Array = 0.5,
        weight_mean: float = 0.0,
        weight_std: float = 1.0,
        gate_weight_mean: float = 0.0,
        gate_weight_std: float = 1.0,
        fan_in_scaling: bool = True,
        bias_init: float | Array = 0.0,
        gate_bias_init: float | Array = 0.0,
    ):
        if n_neurons < 1 or n_sources < 1:
            raise ValueError(
                f"n_neurons={n_neurons} and n_sources={n_sources} must both be >= 1."
            )

        key_u, key_r, key_z = jax.random.split(key, 3)
        self.weight_u = normal_weights(
            key_u, n_neurons, n_sources, gate_weight_mean, gate_weight_std, fan_in_scaling
        )
        self.weight_r = normal_weights(
            key_r, n_neurons, n_sources, gate_weight_mean, gate_weight_std, fan_in_scaling
        )
        self.weight_z = normal_weights(
            key_z, n_neurons, n_sources, weight_mean, weight_std, fan_in_scaling
        )
        self.bias_u = as_per_neuron(gate_bias_init, n_neurons, "gate_bias_init")
        self.bias_r = as_per_neuron(gate_bias_init, n_neurons, "gate_bias_init")
        self.bias_z = as_per_neuron(bias_init, n_neurons, "bias_init")

        self.tau_mem = as_per_neuron(tau_mem, n_neurons, "tau_mem")
        self.tau_syn = as_per_neuron(tau_syn, n_neurons, "tau_syn")
        self.threshold = as_per_neuron(threshold, n_neurons, "threshold")

        for name in ("tau_mem", "tau_syn"):
            value = getattr(self, name)
            check_setting(name, value, value > 0, "> 0")
        check_setting(
            "threshold", self.threshold, (self.threshold > 0) & (self.threshold < 1),
            "in (0, 1), because c relaxes towards tanh(a_z), which lies in (-1, 1)",
        )

    @property
    def n_sources(self) -> int:
        return self.weight_z.shape[1]

    def _biases(self) -> Float[Array, "n 3"]:
        return jnp.stack([self.bias_u, self.bias_r, self.bias_z], axis=-1)

    def init_state(self, n_neurons: int) -> Float[Array, "n 4"]:
        biases = jnp.broadcast_to(self._biases(), (n_neurons, 3))
        cell = jnp.zeros((n_neurons, 1), dtype=biases.dtype)
        return jnp.concatenate([cell, biases], axis=-1)

    def dynamics(self, t, y: Float[Array, "n 4"], args: Any) -> Float[Array, "n 4"]:
        c, a_u, a_z = y[:, _C], y[:, _A_U], y[:, _A_Z]
        d_c = jax.nn.sigmoid(a_u) * (jnp.tanh(a_z) - c) / self.tau_mem
        d_a = (self._biases() - y[:, _A_U:]) / self.tau_syn[:, None]
        return jnp.concatenate([d_c[:, None], d_a], axis=-1)

    def spike_condition(self, t, y: Float[Array, "n 4"]) -> Float[Array, " n"]:
        return y[:, _C] - self.threshold

    def input_spike(
        self,
        y: Float[Array, "n 4"],
        from_idx: Int[Array, " m"],
        valid_mask: Bool[Array, " m"],
    ) -> Float[Array, "n 4"]:
        # Per receiving neuron, the summed weights of every source that fired now.
        def summed(weight):
            return summed_weights(weight, from_idx, valid_mask)

        # The reset gate before this event scales the candidate jump.
        reset_gate = jax.nn.sigmoid(y[:, _A_R])
        y = y.at[:, _A_U].add(summed(self.weight_u))
        y = y.at[:, _A_R].add(summed(self.weight_r))
        return y.at[:, _A_Z].add(summed(self.weight_z) * reset_gate)

    def reset_spiked(
        self, y: Float[Array, "n 4"], spike_mask: Bool[Array, " n"]
    ) -> Float[Array, "n 4"]:
        c = y[:, _C]
        return y.at[:, _C].set(jnp.where(spike_mask, c - self.threshold, c))

    def observe(self, y: Float[Array, "n 4"]) -> Float[Array, "n 4"]:
        """Return the state `[c, a_u, a_r, a_z]`, with the cell state c first in place of a voltage."""
        return y
