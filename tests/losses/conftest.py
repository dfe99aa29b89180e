"""A factory for hand-written batched recordings, so loss tests need no simulation."""

import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.recording import Recording


def _recording(first_spike_times, hidden_counts=None, output_counts=None, n_observables=2):
    first = np.asarray(first_spike_times, dtype=np.float64)
    batch, n_out = first.shape
    if output_counts is None:
        output_counts = np.isfinite(first).astype(np.int32)
    layers_counts = [] if hidden_counts is None else [np.asarray(hidden_counts, np.int32)]
    layers_counts.append(np.asarray(output_counts, np.int32))
    spike_times = []
    for counts in layers_counts:
        times = np.full((*counts.shape, 2), np.inf)
        spike_times.append(jnp.asarray(times))
    spike_times[-1] = spike_times[-1].at[:, :, 0].set(first)
    return Recording(
        spike_times=tuple(spike_times),
        spike_counts=tuple(jnp.asarray(counts) for counts in layers_counts),
        first_spike_times=jnp.asarray(first),
        samples=jnp.zeros((batch, 0, n_out, n_observables)),
        integral=jnp.zeros((batch, n_out, n_observables)),
        exp_integral=jnp.zeros((batch, n_out, n_observables)),
        failures=jnp.zeros((batch,), jnp.int32),
    )


@pytest.fixture
def make_recording():
    """Return a function that builds a batched `Recording` from first spike times.

    Arguments: `first_spike_times [B, n_out]` (inf for silent outputs), optional
    `hidden_counts [B, n_hidden]` for one hidden layer, optional `output_counts`
    (default: 1 where the output spiked), and `n_observables`.
    """
    return _recording
