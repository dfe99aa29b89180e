"""Time one training step of a network with a wide first layer (784 inputs).

A layer's event loop runs once per (sample, neuron) pair and takes one
iteration per group of simultaneous input spikes. With MNIST-sized inputs a
neuron receives about 150 input spikes, so the cost of one iteration decides
the speed. This script times the value and gradient of a first-spike
loss for both kinds of gradient, each in its own subprocess.

    python experiments/bench/bench_fan_in.py
"""

import argparse
import json
import subprocess
import sys
import time

BATCH, N_INPUTS, N_HIDDEN, N_OUTPUTS = 8, 784, 100, 10
# About one input in five spikes, at a time uniform in [0, 1.5]. Those of the first
# 40 inputs spike together at 0.2, like saturated pixels under latency coding.
SPIKE_FRACTION, TIED_INPUTS, TIED_TIME = 0.2, 40, 0.2
REPEATS = 3


def worker(adjoint: str) -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from eventax_lab.config import SimulationConfig
    from eventax_lab.network import make_feedforward, simulate_batch
    from eventax_lab.neurons import LIF, trainable_filter

    rng = np.random.default_rng(0)
    times = rng.uniform(0.0, 1.5, (BATCH, N_INPUTS, 1))
    times[rng.uniform(size=times.shape) > SPIKE_FRACTION] = np.inf
    tied = times[:, :TIED_INPUTS, 0]
    times[:, :TIED_INPUTS, 0] = np.where(np.isfinite(tied), TIED_TIME, np.inf)
    spikes = jnp.asarray(times, jnp.float32)

    hidden = dict(tau_mem=20 / 30, tau_syn=5 / 30, weight_mean=5.0, weight_std=4.0)
    network = make_feedforward(
        LIF, [N_INPUTS, N_HIDDEN, N_OUTPUTS], jax.random.PRNGKey(0),
        [hidden, {**hidden, "weight_mean": 8.0}],
    )
    config = SimulationConfig(t_end=2.0, rtol=1e-4, atol=1e-4, adjoint=adjoint, errors="record")
    params, static = eqx.partition(network, trainable_filter(network))

    @eqx.filter_jit
    def value_and_grad(params):
        def loss(params):
            recording = simulate_batch(
                eqx.combine(params, static), spikes, config, stop_after_first_spike=True
            )
            first = recording.first_spike_times
            first = jnp.where(jnp.isfinite(first), first, config.t_end)
            return jnp.sum(first * jnp.arange(N_OUTPUTS)), recording.spike_counts[0].sum()

        return eqx.filter_value_and_grad(loss, has_aux=True)(params)

    start = time.perf_counter()
    jax.block_until_ready(value_and_grad(params))
    first_call_s = time.perf_counter() - start
    call_s = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        (loss, hidden_spikes), grads = jax.block_until_ready(value_and_grad(params))
        call_s.append(time.perf_counter() - start)
    grad_norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))))
    return {
        "adjoint": adjoint,
        "first_call_s": first_call_s,
        "s_per_batch": min(call_s),
        "loss": float(loss),
        "hidden_spikes": int(hidden_spikes),
        "input_spikes_per_sample": float(np.isfinite(times).sum() / BATCH),
        "grad_norm": grad_norm,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=["event", "recursive_checkpoint"])
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    for adjoint in ("recursive_checkpoint", "event"):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", adjoint],
            check=True, capture_output=True, text=True,
        ).stdout
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
