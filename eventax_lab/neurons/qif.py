"""Quadratic integrate-and-fire neuron in phase form, with a current-based synapse."""

from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from .base import NeuronModel, as_per_neuron, check_setting, parameter, setting, summed_weights
from .init import normal_weights


def phase_to_voltage(phi: Array) -> Array:
    r"""Map the phase $\varphi \in [0, 1]$ to the voltage $V = \tan(\pi(\varphi - 1/2))$.

    Computed as $-\cos(\pi\varphi) / \sin(\pi\varphi)$, so that the reset phase
    $\varphi = 0$ gives exactly $V = -\infty$. The tangent form would round
    $\pi(0 - 1/2)$ to just beyond $-\pi/2$ in float32 and return a large positive V.
    """
    sin = jnp.sin(jnp.pi * phi)
    at_reset = sin == 0
    # The inner `where` keeps the derivative finite (zero) at the reset phase, so a
    # zero cotangent for V there does not become 0 * inf = NaN in a backward pass.
    safe_sin = jnp.where(at_reset, 1.0, sin)
    return jnp.where(at_reset, -jnp.inf, -jnp.cos(jnp.pi * phi) / safe_sin)


def voltage_to_phase(v: Array) -> Array:
    r"""Map a voltage to its phase $\varphi = 1/2 + \arctan(V) / \pi$; $V = -\infty$ maps to 0."""
    return 0.5 + jnp.arctan(v) / jnp.pi


class QIF(NeuronModel):
    r"""Quadratic integrate-and-fire neurons, simulated in phase form (theta neuron).

    The voltage model, with time in the unit of the time constants (ms in the
    shipped configs) and a dimensionless voltage $V$:

    $$\tau_\mathrm{mem} \dot V = V^2 + I + i_\mathrm{bias}, \qquad
      \tau_\mathrm{syn} \dot I = -I.$$

    $V$ reaches $+\infty$ in finite time, so the state stores the phase
    $\varphi$ with $V = \tan(\pi(\varphi - 1/2))$ instead. Since
    $dV/d\varphi = \pi / \cos^2(\pi(\varphi - 1/2))$ and
    $V^2 \cos^2(\pi(\varphi - 1/2)) = \sin^2(\pi(\varphi - 1/2))$,

    $$\tau_\mathrm{mem} \dot\varphi = \frac{1}{2\pi}\Big[(1 + \cos 2\pi\varphi)
      + (1 - \cos 2\pi\varphi)(I + i_\mathrm{bias})\Big],$$

    which is finite everywhere and equals $1 / \pi$ at $\varphi = 0$ and
    $\varphi = 1$ whatever the current. A spike ($V \to +\infty$) is the crossing
    of $\varphi = 1$, and the reset to $V = -\infty$ sets $\varphi = 0$. The phase
    therefore stays in $[0, 1]$ between events. A spike of source $j$ adds
    $w_{ij}$ to $I_i$.

    With a constant total current $I_0 > 0$ and no synaptic input, a neuron
    starting at $V_0$ spikes at
    $t = \tau_\mathrm{mem} I_0^{-1/2} (\pi/2 - \arctan(V_0 I_0^{-1/2}))$, and from
    $V = -\infty$ it fires periodically with period $\pi \tau_\mathrm{mem} I_0^{-1/2}$.
    For $I_0 < 0$ the neuron rests at $V = -\sqrt{-I_0}$ and spikes only when its
    input carries $V$ past the unstable fixed point $+\sqrt{-I_0}$. The time spent
    near that point grows without bound as the input approaches the threshold
    input. As a parameter changes, a spike therefore appears or disappears only by
    moving through the end of the trial, never in its middle, so a first-spike
    time clipped at the end of the trial is continuous in the parameters.

    **Arguments:**

    - `n_neurons`, `n_sources`: population size and number of presynaptic sources.
    - `key`: PRNG key for the weights.
    - `tau_mem`, `tau_syn`: time constants, scalars or arrays of shape
      `[n_neurons]`; fixed settings.
    - `v_init`: voltage at the start of a trial, finite or `-inf`; fixed setting.
    - `weight_mean`, `weight_std`, `fan_in_scaling`: the initial weights are
      N(mean, std^2), divided by sqrt(n_sources) when `fan_in_scaling`.
    - `bias_init`: initial bias current $i_\mathrm{bias}$ (trainable). The default
      -1 makes a neuron excitable, resting at $V = -1$ with its spike threshold
      at $V = +1$.
    """

    unbounded_observables = (0,)  # V diverges at each spike and is -inf after a reset

    weight: Float[Array, "n_neurons n_sources"] = parameter(connection=True)
    bias: Float[Array, " n_neurons"] = parameter()
    tau_mem: Float[Array, " n_neurons"] = setting()
    tau_syn: Float[Array, " n_neurons"] = setting()
    phase_init: Float[Array, " n_neurons"] = setting()

    # Each input adds its weight to a current, so simultaneous inputs may arrive in parts.
    additive_inputs: ClassVar[bool] = True

    def __init__(
        self,
        n_neurons: int,
        n_sources: int,
        key: PRNGKeyArray,
        *,
        tau_mem: float | Array = 10.0,
        tau_syn: float | Array = 5.0,
        v_init: float | Array = -1.0,
        weight_mean: float = 0.0,
        weight_std: float = 1.0,
        fan_in_scaling: bool = True,
        bias_init: float | Array = -1.0,
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

        for name in ("tau_mem", "tau_syn"):
            value = getattr(self, name)
            check_setting(name, value, value > 0, "> 0")
        check_setting("bias_init", self.bias, jnp.isfinite(self.bias), "finite")

        v_init = as_per_neuron(v_init, n_neurons, "v_init")
        # -inf is allowed because it is phase 0, the reset value. +inf is the spike itself.
        check_setting(
            "v_init", v_init, ~jnp.isnan(v_init) & (v_init < np.inf),
            "a finite voltage or -inf (phase 0)",
        )
        self.phase_init = voltage_to_phase(v_init)

    @property
    def n_sources(self) -> int:
        return self.weight.shape[1]

    def init_state(self, n_neurons: int) -> Float[Array, "n 2"]:
        phase = jnp.broadcast_to(self.phase_init, (n_neurons,)).astype(self.weight.dtype)
        return jnp.stack([phase, jnp.zeros_like(phase)], axis=-1)

    def dynamics(self, t, y: Float[Array, "n 2"], args: Any) -> Float[Array, "n 2"]:
        phi, i = y[:, 0], y[:, 1]
        cos_2pi_phi = jnp.cos(2 * jnp.pi * phi)
        total_current = i + self.bias
        d_phi = ((1 + cos_2pi_phi) + (1 - cos_2pi_phi) * total_current) / (
            2 * jnp.pi * self.tau_mem
        )
        d_i = -i / self.tau_syn
        return jnp.stack([d_phi, d_i], axis=-1)

    def spike_condition(self, t, y: Float[Array, "n 2"]) -> Float[Array, " n"]:
        return y[:, 0] - 1.0

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
        phi = y[:, 0]
        return y.at[:, 0].set(jnp.where(spike_mask, 0.0, phi))

    def observe(self, y: Float[Array, "n 2"]) -> Float[Array, "n 3"]:
        """Return `[V, I, phase]` per neuron.

        NOTE: V is -inf right after a reset and unbounded near a spike, so its time
        integral diverges. Read a QIF layer out by its spikes, not through
        `NonSpiking` with voltage integrals.
        """
        phi, i = y[:, 0], y[:, 1]
        return jnp.stack([phase_to_voltage(phi), i, phi], axis=-1)
