"""Exponential integrate-and-fire neuron with a current-based exponential synapse."""

from typing import Any, ClassVar

import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .base import NeuronModel, as_per_neuron, check_setting, parameter, setting, summed_weights
from .init import normal_weights

class EIF(NeuronModel):
    r"""Exponential integrate-and-fire neurons with exponentially decaying synaptic current.

    State channels `[V, I]`, with V in mV, time in ms, and currents expressed as
    the voltage they would hold the membrane at (mV, the membrane resistance
    absorbed):

    $$\tau_\mathrm{mem} \dot V = E_L - V
        + \Delta_T \exp\!\big((V - V_T) / \Delta_T\big) + I + i_\mathrm{bias},
      \qquad \tau_\mathrm{syn} \dot I = -I.$$

    The exponential term makes V run away to infinity in finite time once it
    passes $V_T$ by a few $\Delta_T$. A neuron spikes when V crosses the peak
    voltage $V_\mathrm{peak}$, then $V \leftarrow V_\mathrm{reset}$. A spike of
    source $j$ adds $w_{ij}$ to $I_i$. A trial starts at $V = E_L$, $I = 0$.

    At the default peak $V_T + 5 \Delta_T$ = -40 mV, V would run from the peak
    to infinity in about $\tau_\mathrm{mem} e^{-5}$ = 0.135 ms without input, so a
    higher peak would shift spike times only slightly while making the ODE
    stiffer near the spike.

    Above $V_\mathrm{peak}$ the exponential term continues along its tangent at
    $V_\mathrm{peak}$, $\Delta_T e^{x_p} (1 + x - x_p)$ with
    $x = (V - V_T)/\Delta_T$ and $x_p$ its value at the peak. A trajectory
    never gets there before its spike, so spike times are those of the equations
    above. Only solver steps that overshoot a spike evaluate that region, and
    the linear continuation keeps their derivatives moderate there. With the
    exponential merely capped 10 slope factors above the peak, the Yin-Yang
    network of `conf/model/eif.yaml` failed in the spike-time root finder in
    float32 at rtol = atol = 1e-4.

    `spike_condition` returns $(V - V_\mathrm{peak}) / s$ in ms, where
    $s = (E_L - V_\mathrm{peak} + \Delta_T e^{(V_\mathrm{peak} - V_T)/\Delta_T})
    / \tau_\mathrm{mem}$ is the upstroke speed at the peak without input. Its
    slope at a crossing is then close to 1, so the root finder's tolerance on
    the condition (`root_atol`) acts as a tolerance on the spike time. The
    unscaled V rises by about 14 mV/ms there at the defaults, faster with input,
    and float32 cannot resolve that to the default `root_atol` of 1e-5.

    **Arguments:**

    - `n_neurons`, `n_sources`: population size and number of presynaptic sources.
    - `key`: PRNG key for the weights.
    - `tau_mem`, `tau_syn` (ms), `e_leak`, `v_threshold`, `delta_t`, `v_peak`,
      `v_reset` (mV): scalars or arrays of shape `[n_neurons]`; fixed settings.
      `delta_t` is the slope factor $\Delta_T$ and `v_threshold` the soft
      threshold $V_T$.
    - `weight_mean`, `weight_std`, `fan_in_scaling`: the initial weights (mV) are
      N(mean, std^2), divided by sqrt(n_sources) when `fan_in_scaling`.
    - `bias_init`: initial bias current (mV, trainable).
    """

    weight: Float[Array, "n_neurons n_sources"] = parameter(connection=True)
    bias: Float[Array, " n_neurons"] = parameter()
    tau_mem: Float[Array, " n_neurons"] = setting()
    tau_syn: Float[Array, " n_neurons"] = setting()
    e_leak: Float[Array, " n_neurons"] = setting()
    v_threshold: Float[Array, " n_neurons"] = setting()
    delta_t: Float[Array, " n_neurons"] = setting()
    v_peak: Float[Array, " n_neurons"] = setting()
    v_reset: Float[Array, " n_neurons"] = setting()

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
        e_leak: float | Array = -65.0,
        v_threshold: float | Array = -50.0,
        delta_t: float | Array = 2.0,
        v_peak: float | Array = -40.0,
        v_reset: float | Array = -65.0,
        weight_mean: float = 0.0,
        weight_std: float = 1.0,
        fan_in_scaling: bool = True,
        bias_init: float | Array = 0.0,
    ):
        if n_neurons < 1 or n_sources < 1:
            raise ValueError(
                f"n_neurons={n_neurons} and n_sources={n_sources} must both be >= 1."
            )

        self.weight = normal_weights(
            key, n_neurons, n_sources, weight_mean, weight_std, fan_in_scaling
        )
        self.bias = as_per_neuron(bias_init, n_neurons, "bias_init")

        self.tau_mem = as_per_neuron(tau_mem, n_neurons, "tau_mem")
        self.tau_syn = as_per_neuron(tau_syn, n_neurons, "tau_syn")
        self.e_leak = as_per_neuron(e_leak, n_neurons, "e_leak")
        self.v_threshold = as_per_neuron(v_threshold, n_neurons, "v_threshold")
        self.delta_t = as_per_neuron(delta_t, n_neurons, "delta_t")
        self.v_peak = as_per_neuron(v_peak, n_neurons, "v_peak")
        self.v_reset = as_per_neuron(v_reset, n_neurons, "v_reset")

        for name in ("tau_mem", "tau_syn", "delta_t"):
            value = getattr(self, name)
            check_setting(name, value, value > 0, "> 0")
        check_setting(
            "v_peak", self.v_peak, self.v_peak > self.v_threshold,
            f"above v_threshold={self.v_threshold}, where the run-away has started",
        )
        check_setting(
            "v_reset", self.v_reset, self.v_reset < self.v_peak,
            f"below v_peak={self.v_peak}, or a neuron would spike again at once",
        )
        check_setting(
            "v_peak", self.v_peak, self._upstroke_speed() > 0,
            "far enough above v_threshold that e_leak - v_peak + delta_t "
            "exp((v_peak - v_threshold) / delta_t) > 0, so that V runs away at v_peak "
            "without input",
        )
        check_setting(
            "e_leak", self.e_leak, self.e_leak < self.v_peak,
            f"below v_peak={self.v_peak}, or a neuron would spike at the start of a trial",
        )

    @property
    def n_sources(self) -> int:
        return self.weight.shape[1]

    def init_state(self, n_neurons: int) -> Float[Array, "n 2"]:
        v = jnp.broadcast_to(self.e_leak, (n_neurons,)).astype(self.weight.dtype)
        return jnp.stack([v, jnp.zeros_like(v)], axis=-1)

    def dynamics(self, t, y: Float[Array, "n 2"], args: Any) -> Float[Array, "n 2"]:
        v, i = y[:, 0], y[:, 1]
        exponent = (v - self.v_threshold) / self.delta_t
        exponent_peak = (self.v_peak - self.v_threshold) / self.delta_t
        # The exponential is exact below v_peak and follows its tangent line above.
        spike_current = (
            self.delta_t
            * jnp.exp(jnp.minimum(exponent, exponent_peak))
            * (1 + jnp.maximum(exponent - exponent_peak, 0.0))
        )
        dv = (self.e_leak - v + spike_current + i + self.bias) / self.tau_mem
        di = -i / self.tau_syn
        return jnp.stack([dv, di], axis=-1)

    def _upstroke_speed(self) -> Float[Array, " n_neurons"]:
        """Return dV/dt at V = v_peak without input, in mV/ms."""
        spike_current = self.delta_t * jnp.exp((self.v_peak - self.v_threshold) / self.delta_t)
        return (self.e_leak - self.v_peak + spike_current) / self.tau_mem

    def spike_condition(self, t, y: Float[Array, "n 2"]) -> Float[Array, " n"]:
        return (y[:, 0] - self.v_peak) / self._upstroke_speed()

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
        return y.at[:, 0].set(jnp.where(spike_mask, self.v_reset, v))

    def observe(self, y: Float[Array, "n 2"]) -> Float[Array, "n 2"]:
        """Return the state `[V, I]` in mV."""
        return y
