"""The record of a network simulation, with static shapes so it jits and vmaps."""

import equinox as eqx
from jaxtyping import Array, Float, Int


class Recording(eqx.Module):
    """The result of simulating one sample; `vmap` adds a leading batch axis to each field.

    **Fields:**

    - `spike_times`: one `[n_l, max_spikes]` array per layer (a recurrent network
      has one), ascending and inf-padded.
    - `spike_counts`: one `[n_l]` array per layer.
    - `first_spike_times`: `[n_out]` first spike of each output neuron, inf if none.
    - `samples`: `[n_samples, n_out, observables]` output observables at the
      requested sample times.
    - `integral`, `exp_integral`: `[n_out, observables]` integrals over the window
      of the output observables, plain and weighted by exp(-lambda t); zeros unless
      requested.
    - `failures`: the bitwise OR of every population's failure code, 0 if the
      simulation succeeded (see `SimulationConfig.errors`). With
      `errors="record"` the other fields of a failed sample are not valid, so
      check this field, e.g. with `eventax_lab.simulate.raise_failures`.
    """

    spike_times: tuple[Float[Array, "n max_spikes"], ...]
    spike_counts: tuple[Int[Array, " n"], ...]
    first_spike_times: Float[Array, " n_out"]
    samples: Float[Array, "n_samples n_out observables"]
    integral: Float[Array, "n_out observables"]
    exp_integral: Float[Array, "n_out observables"]
    failures: Int[Array, ""]
