r"""Losses on functionals of the output neurons' state trajectory.

Each readout takes one observable channel of the output layer over the window
$[0, T]$. `NeuronModel.observe` puts the voltage (or the model's voltage-like
state) first, so the default `channel=0` reads $V$:

- max: $z_c = \max_{t \in [0, T]} V_c(t)$,
- integral: $z_c = \int_0^T V_c(t)\,dt$,
- exp_integral: $z_c = \int_0^T e^{-\lambda t} V_c(t)\,dt$.

They usually read a non-spiking output layer (`build_network(...,
output_spiking=False)`), whose state integrates its inputs without threshold or
reset. On a spiking output layer they read the voltage with its resets.
"""

import math
import numbers

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..recording import Recording
from .base import ClassificationLoss, select_channel, validate_channel, validate_positive


def parabolic_peak(
    values: Float[Array, "... n"], t_start: float, spacing: float
) -> tuple[Float[Array, "..."], Float[Array, "..."]]:
    r"""Locate the maximum of a trajectory sampled on a uniform grid, refined by a parabola.

    With $k$ the index of the largest sample $y_k$ on the grid
    $t_i = t_\mathrm{start} + i h$, the parabola through $y_{k-1}, y_k, y_{k+1}$
    has its vertex at

    $$t^* = t_k + \delta h, \quad \delta = \frac{y_{k-1} - y_{k+1}}
      {2 (y_{k-1} - 2 y_k + y_{k+1})}, \quad
      y^* = y_k - \tfrac{1}{4} (y_{k-1} - y_{k+1})\, \delta,$$

    with $|\delta| \le 1/2$ because $y_k$ is the largest of the three. Near a
    maximum where the trajectory is three times continuously differentiable, the
    interpolation error bounds give $|t^* - t_\mathrm{peak}| \le |V'''| h^2 /
    (6 |V''|)$ and $|y^* - V_\mathrm{peak}| \le |V'''| h^3 / 16$ to leading order.
    A kink inside the stencil (an input spike, which makes $dV/dt$ jump) lowers
    both to $O(h)$, and a maximum at an input spike between two grid points is
    missed by up to $h\,|dV/dt|$. A maximum at the first or last grid point, on
    a flat stretch, or next to a non-finite sample is returned unrefined.

    **Arguments:**

    - `values`: samples along the last axis, at least 3.
    - `t_start`, `spacing`: the grid $t_0$ and $h > 0$.

    **Returns:** `(peak_times, peak_values)`, each with the leading shape of `values`.
    """
    n = values.shape[-1]
    if n < 3:
        raise ValueError(f"values has {n} samples along its last axis; the parabola needs >= 3.")

    def at(index):
        return jnp.take_along_axis(values, index[..., None], axis=-1)[..., 0]

    k = jnp.argmax(values, axis=-1)
    centre = jnp.clip(k, 1, n - 2)
    left, middle, right = at(centre - 1), at(centre), at(centre + 1)
    # Replacing non-finite neighbours (a QIF voltage is -inf right after a reset)
    # and flat stencils before the arithmetic keeps NaN out of the values and
    # out of the gradient of the branch that `where` discards.
    refine = (k == centre) & jnp.isfinite(left) & jnp.isfinite(right)
    left = jnp.where(refine, left, middle - 1.0)
    right = jnp.where(refine, right, middle - 1.0)
    curvature = left - 2 * middle + right
    refine = refine & (curvature < 0)
    safe_curvature = jnp.where(refine, curvature, -1.0)
    delta = jnp.where(refine, 0.5 * (left - right) / safe_curvature, 0.0)
    peak_values = jnp.where(refine, middle - 0.25 * (left - right) * delta, at(k))
    peak_times = t_start + (k + delta) * spacing
    return peak_times, peak_values


class MaxLoss(ClassificationLoss):
    r"""Cross-entropy over the peak of each output's trajectory in $[0, T]$.

    The simulator has no event at a maximum, so the trajectory is sampled on the
    uniform grid $t_i = i h$ with $h = T/N \le$ `resolution` and
    $N = \lceil T / \text{resolution} \rceil$, and the largest sample is refined
    by [`parabolic_peak`][]. The peak height error is $O(h^3)$ and the peak time
    error $O(h^2)$ for a smooth peak, and $O(h)$ when an input spike falls within
    one grid step of the peak.

    NOTE: each of the N + 1 grid points costs one event-loop iteration of every
    output neuron, 61 for the defaults on a 60 ms window. The reverse pass stores
    the loop carry, which includes the `[N + 1, observables]` sample buffer, at
    every iteration, so its memory grows with (iterations x (N + 1)).

    **Arguments:**

    - `t_end`: the simulated window $T$ in ms.
    - `resolution`: the largest grid spacing in ms, at most `t_end / 2`.
    - `channel`: the output observable to read (0 is the voltage).
    """

    resolution: float = eqx.field(static=True)
    channel: int = eqx.field(static=True)

    def __init__(self, t_end: float, resolution: float = 1.0, channel: int = 0):
        self.t_end = validate_positive("t_end", t_end)
        self.resolution = validate_positive("resolution", resolution)
        if self.resolution > self.t_end / 2:
            raise ValueError(
                f"resolution={resolution} ms leaves fewer than 3 grid points in the "
                f"{t_end} ms window; use a resolution <= t_end / 2 = {self.t_end / 2} ms."
            )
        self.channel = validate_channel(channel)

    @property
    def n_intervals(self) -> int:
        """Number N of grid steps, so the grid has N + 1 points from 0 to `t_end`."""
        # The tolerance keeps an exact ratio such as 60 / 0.1 from rounding up.
        return math.ceil(self.t_end / self.resolution * (1 - 1e-12))

    def sample_times(self) -> np.ndarray:
        """Return the grid `[0, h, ..., t_end]` in ms at which the output is sampled."""
        return np.linspace(0.0, self.t_end, self.n_intervals + 1)

    def simulation_options(self) -> dict:
        """Return `sample_ts`, the grid of [`sample_times`][]."""
        return {"sample_ts": self.sample_times()}

    def peak(
        self, recording: Recording
    ) -> tuple[Float[Array, "batch n_out"], Float[Array, "batch n_out"]]:
        """Return the time in ms and the height of each output's maximum, shape `[batch, n_out]`.

        **Raises:** `ValueError` when the recording was not sampled on this loss's
        grid. At run time an error is raised when a sample is NaN, which happens
        when the simulation's `t_end` is shorter than this loss's.
        """
        samples = recording.samples
        n_points = self.n_intervals + 1
        if samples.ndim != 4 or samples.shape[1] != n_points:
            raise ValueError(
                f"recording.samples has shape {samples.shape}; MaxLoss expects "
                f"[batch, {n_points}, n_out, observables]. Simulate with "
                "**loss.simulation_options() so the output is sampled on the loss's grid."
            )
        trajectory = jnp.moveaxis(select_channel(samples, self.channel), 1, -1)
        trajectory = eqx.error_if(
            trajectory,
            jnp.any(jnp.isnan(trajectory)),
            "recording.samples contains NaN: a sample time was never reached. Build "
            "MaxLoss with the same t_end as SimulationConfig.t_end.",
        )
        return parabolic_peak(trajectory, 0.0, self.t_end / self.n_intervals)

    def scores(self, recording: Recording) -> Float[Array, "batch n_out"]:
        r"""Return $z_c = \max_t V_c(t)$, the refined peak height."""
        return self.peak(recording)[1]


class IntegralLoss(ClassificationLoss):
    r"""Cross-entropy over $z_c = \int_0^T V_c(t)\,dt$.

    The simulator integrates the observables alongside the ODE state, so the
    integral is exact to the solver tolerance.

    **Arguments:**

    - `t_end`: the simulated window $T$ in ms.
    - `channel`: the output observable to integrate (0 is the voltage).
    """

    channel: int = eqx.field(static=True)

    def __init__(self, t_end: float, channel: int = 0):
        self.t_end = validate_positive("t_end", t_end)
        self.channel = validate_channel(channel)

    def simulation_options(self) -> dict:
        """Return `integrals` restricted to this loss's channel."""
        return {"integrals": (self.channel,)}

    def scores(self, recording: Recording) -> Float[Array, "batch n_out"]:
        """Return the integral of the chosen observable of each output, in (unit x ms)."""
        return select_channel(recording.integral, self.channel)


class ExpIntegralLoss(ClassificationLoss):
    r"""Cross-entropy over $z_c = \int_0^T e^{-\lambda t} V_c(t)\,dt$.

    The weight $e^{-\lambda t}$ favours early evidence. The integral is
    computed alongside the ODE state, exact to the solver tolerance.

    **Arguments:**

    - `t_end`: the simulated window $T$ in ms.
    - `exp_lambda`: the decay rate $\lambda$ in 1/ms, >= 0. The default 0.05
      (a 20 ms time constant, equal to the default LIF `tau_mem`) weights the
      end of a 60 ms window by $e^{-3} \approx 0.05$; it is a heuristic choice.
    - `channel`: the output observable to integrate (0 is the voltage).
    """

    exp_lambda: float = eqx.field(static=True)
    channel: int = eqx.field(static=True)

    def __init__(self, t_end: float, exp_lambda: float = 0.05, channel: int = 0):
        self.t_end = validate_positive("t_end", t_end)
        if isinstance(exp_lambda, bool) or not isinstance(exp_lambda, numbers.Real):
            raise ValueError(f"exp_lambda={exp_lambda!r} must be a number >= 0 (in 1/ms).")
        if not (math.isfinite(exp_lambda) and exp_lambda >= 0):
            raise ValueError(f"exp_lambda={exp_lambda} must be finite and >= 0 (in 1/ms).")
        self.exp_lambda = float(exp_lambda)
        self.channel = validate_channel(channel)

    def simulation_options(self) -> dict:
        """Return `integrals` restricted to this loss's channel, and its `exp_lambda`."""
        return {"integrals": (self.channel,), "exp_lambda": self.exp_lambda}

    def scores(self, recording: Recording) -> Float[Array, "batch n_out"]:
        """Return the exponentially weighted integral of the chosen observable of each output."""
        return select_channel(recording.exp_integral, self.channel)
