"""Izhikevich neuron with a current-based exponential synapse and the standard presets."""

from typing import Any, ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .base import NeuronModel, as_per_neuron, check_setting, parameter, setting, summed_weights
from .init import normal_weights

# (a, b, c, d) of three cortical cell classes from E. M. Izhikevich, "Simple model
# of spiking neurons", IEEE Trans. Neural Networks 14:1569-1572 (2003).
PRESETS: dict[str, tuple[float, float, float, float]] = {
    "regular_spiking": (0.02, 0.2, -65.0, 8.0),
    "chattering": (0.02, 0.2, -50.0, 2.0),
    "fast_spiking": (0.1, 0.2, -65.0, 2.0),
}


class Izhikevich(NeuronModel):
    r"""Izhikevich neurons with exponentially decaying synaptic current.

    State channels `[v, u, I]`, with v in mV and time in ms:

    $$\dot v = 0.04 v^2 + 5 v + 140 - u + I + i_\mathrm{bias}, \qquad
      \dot u = a (b v - u), \qquad \tau_\mathrm{syn} \dot I = -I.$$

    The currents $u$, $I$ and $i_\mathrm{bias}$ are in mV/ms, the unit the
    model's polynomial fixes. A neuron spikes when v crosses
    $v_\mathrm{peak}$ = 30 mV, then $v \leftarrow c$ and $u \leftarrow u + d$. A
    spike of source $j$ adds $w_{ij}$ to $I_i$. A trial starts at
    $v = v_\mathrm{init}$, $u = b\,v_\mathrm{init}$, $I = 0$.

    `spike_condition` returns $(v - v_\mathrm{peak}) / s$ in ms, where
    $s = 0.04 v_\mathrm{peak}^2 + 5 v_\mathrm{peak} + 140$ (326 mV/ms at 30 mV) is
    the upstroke speed at the peak without recovery or input currents. Its slope
    at a crossing is then close to 1, so the root finder's tolerance on the
    condition (`root_atol`) acts as a tolerance on the spike time. The unscaled
    v rises by about 300 mV/ms there, which float32 cannot resolve to the
    default `root_atol` of 1e-5.

    `preset` selects $(a, b, c, d)$ of a cell class from Izhikevich (2003):
    `"regular_spiking"` (0.02, 0.2, -65, 8), `"chattering"` (0.02, 0.2, -50, 2)
    or `"fast_spiking"` (0.1, 0.2, -65, 2). Any of `a`, `b`, `c`, `d` passed
    explicitly overrides the preset's value.

    **Arguments:**

    - `n_neurons`, `n_sources`: population size and number of presynaptic sources.
    - `key`: PRNG key for the weights.
    - `preset`: the cell class, see above.
    - `a` (1/ms), `b` (1/ms), `c` (mV), `d` (mV/ms): `None` for the preset's value,
      or scalars or arrays of shape `[n_neurons]`; fixed settings.
    - `tau_syn` (ms), `v_peak` (mV), `v_init` (mV): scalars or arrays of shape
      `[n_neurons]`; fixed settings.
    - `weight_mean`, `weight_std`, `fan_in_scaling`: the initial weights (mV/ms)
      are N(mean, std^2), divided by sqrt(n_sources) when `fan_in_scaling`.
    - `bias_init`: initial bias current (mV/ms, trainable).
    """

    weight: Float[Array, "n_neurons n_sources"] = parameter(connection=True)
    bias: Float[Array, " n_neurons"] = parameter()
    a: Float[Array, " n_neurons"] = setting()
    b: Float[Array, " n_neurons"] = setting()
    c: Float[Array, " n_neurons"] = setting()
    d: Float[Array, " n_neurons"] = setting()
    tau_syn: Float[Array, " n_neurons"] = setting()
    v_peak: Float[Array, " n_neurons"] = setting()
    v_init: Float[Array, " n_neurons"] = setting()

    # Each input adds its weight to a current, so simultaneous inputs may arrive in parts.
    additive_inputs: ClassVar[bool] = True

    def __init__(
        self,
        n_neurons: int,
        n_sources: int,
        key: PRNGKeyArray,
        *,
        preset: str = "regular_spiking",
        a: float | Array | None = None,
        b: float | Array | None = None,
        c: float | Array | None = None,
        d: float | Array | None = None,
        tau_syn: float | Array = 5.0,
        v_peak: float | Array = 30.0,
        v_init: float | Array = -65.0,
        weight_mean: float = 0.0,
        weight_std: float = 1.0,
        fan_in_scaling: bool = True,
        bias_init: float | Array = 0.0,
    ):
        if n_neurons < 1 or n_sources < 1:
            raise ValueError(
                f"n_neurons={n_neurons} and n_sources={n_sources} must both be >= 1."
            )

        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is unknown; choose one of {sorted(PRESETS)}.")
        preset_a, preset_b, preset_c, preset_d = PRESETS[preset]
        self.weight = normal_weights(
            key, n_neurons, n_sources, weight_mean, weight_std, fan_in_scaling
        )
        self.bias = as_per_neuron(bias_init, n_neurons, "bias_init")

        self.a = as_per_neuron(preset_a if a is None else a, n_neurons, "a")
        self.b = as_per_neuron(preset_b if b is None else b, n_neurons, "b")
        self.c = as_per_neuron(preset_c if c is None else c, n_neurons, "c")
        self.d = as_per_neuron(preset_d if d is None else d, n_neurons, "d")
        self.tau_syn = as_per_neuron(tau_syn, n_neurons, "tau_syn")
        self.v_peak = as_per_neuron(v_peak, n_neurons, "v_peak")
        self.v_init = as_per_neuron(v_init, n_neurons, "v_init")

        for name in ("a", "tau_syn"):
            value = getattr(self, name)
            check_setting(name, value, value > 0, "> 0")
        check_setting(
            "v_peak", self.v_peak, (self.v_peak > -62.5) & (self._upstroke_speed() > 0),
            "above -42.3 mV, the upper root of 0.04 v^2 + 5 v + 140, so that v runs away there",
        )
        check_setting(
            "c", self.c, self.c < self.v_peak,
            f"below v_peak={self.v_peak}, or a neuron would spike again at once",
        )
        check_setting(
            "v_init", self.v_init, self.v_init < self.v_peak,
            f"below v_peak={self.v_peak}, or a neuron would spike at the start of a trial",
        )

    @property
    def n_sources(self) -> int:
        return self.weight.shape[1]

    def init_state(self, n_neurons: int) -> Float[Array, "n 3"]:
        v = jnp.broadcast_to(self.v_init, (n_neurons,)).astype(self.weight.dtype)
        u = jnp.broadcast_to(self.b * self.v_init, (n_neurons,)).astype(self.weight.dtype)
        return jnp.stack([v, u, jnp.zeros_like(v)], axis=-1)

    def dynamics(self, t, y: Float[Array, "n 3"], args: Any) -> Float[Array, "n 3"]:
        v, u, i = y[:, 0], y[:, 1], y[:, 2]
        dv = 0.04 * v**2 + 5.0 * v + 140.0 - u + i + self.bias
        du = self.a * (self.b * v - u)
        di = -i / self.tau_syn
        return jnp.stack([dv, du, di], axis=-1)

    def _upstroke_speed(self) -> Float[Array, " n_neurons"]:
        """Return 0.04 v_peak^2 + 5 v_peak + 140, the dv/dt at v_peak in mV/ms when u = I = 0."""
        return 0.04 * self.v_peak**2 + 5.0 * self.v_peak + 140.0

    def spike_condition(self, t, y: Float[Array, "n 3"]) -> Float[Array, " n"]:
        return (y[:, 0] - self.v_peak) / self._upstroke_speed()

    def input_spike(
        self,
        y: Float[Array, "n 3"],
        from_idx: Int[Array, " m"],
        valid_mask: Bool[Array, " m"],
    ) -> Float[Array, "n 3"]:
        current_jump = summed_weights(self.weight, from_idx, valid_mask)
        return y.at[:, 2].add(current_jump)

    def reset_spiked(
        self, y: Float[Array, "n 3"], spike_mask: Bool[Array, " n"]
    ) -> Float[Array, "n 3"]:
        v, u = y[:, 0], y[:, 1]
        y = y.at[:, 0].set(jnp.where(spike_mask, self.c, v))
        return y.at[:, 1].set(jnp.where(spike_mask, u + self.d, u))

    def observe(self, y: Float[Array, "n 3"]) -> Float[Array, "n 3"]:
        """Return the state `[v, u, I]`."""
        return y
