"""The event loop against closed-form LIF solutions, finite differences and its own guards."""

import dataclasses
import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.neurons import LIF
from eventax_lab.network import make_feedforward, simulate_batch
from eventax_lab.simulate import (
    INVALID_INPUT,
    OUT_OF_EVENTS,
    SPIKE_OVERFLOW,
    SimulationError,
    raise_failures,
    run_independent_neurons,
    run_population,
)

TAU_MEM, TAU_SYN, THRESHOLD = 20.0, 5.0, 1.0
TIGHT = SimulationConfig(
    t_end=60.0, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12, max_steps=4096
)
NO_INPUT = (jnp.array([jnp.inf]), jnp.array([0]))


def lif(n=1, n_sources=1, **kwargs):
    kwargs = {"tau_mem": TAU_MEM, "tau_syn": TAU_SYN, "threshold": THRESHOLD, **kwargs}
    return LIF(n, n_sources, jax.random.PRNGKey(0), **kwargs)


def with_weight(model, weight):
    return eqx.tree_at(lambda m: m.weight, model, jnp.full_like(model.weight, weight))


def psp(s, weight):
    """Closed-form membrane potential a time s after one input spike of weight `weight`."""
    amplitude = weight * TAU_SYN / (TAU_SYN - TAU_MEM)
    return amplitude * (np.exp(-s / TAU_SYN) - np.exp(-s / TAU_MEM))


def psp_slope(s, weight):
    amplitude = weight * TAU_SYN / (TAU_SYN - TAU_MEM)
    return amplitude * (-np.exp(-s / TAU_SYN) / TAU_SYN + np.exp(-s / TAU_MEM) / TAU_MEM)


# Time of the PSP maximum, where dV/ds = 0.
S_PEAK = np.log(TAU_MEM / TAU_SYN) / (1.0 / TAU_SYN - 1.0 / TAU_MEM)


def bisect(f, lower, upper, iterations=200):
    for _ in range(iterations):
        middle = 0.5 * (lower + upper)
        if f(middle) < 0:
            lower = middle
        else:
            upper = middle
    return 0.5 * (lower + upper)


@pytest.fixture(scope="module")
def simulate_one_input():
    """Jitted simulation of one neuron receiving one input spike at `t_in` with weight `w`."""

    @jax.jit
    def run(weight, t_in, sample_ts):
        model = with_weight(lif(), weight)
        return run_population(model, jnp.array([t_in]), jnp.array([0]), TIGHT, sample_ts=sample_ts)

    return run


def test_lif_trace_matches_closed_form(simulate_one_input):
    t_in, weight = 3.0, 0.8  # sub-threshold: the peak of this PSP is about 0.38
    sample_ts = jnp.linspace(0.0, 59.0, 25)
    result = simulate_one_input(weight, t_in, sample_ts)
    s = np.clip(np.asarray(sample_ts) - t_in, 0.0, None)
    expected_v = np.where(np.asarray(sample_ts) >= t_in, psp(s, weight), 0.0)
    expected_i = np.where(np.asarray(sample_ts) >= t_in, weight * np.exp(-s / TAU_SYN), 0.0)
    np.testing.assert_allclose(result.samples[:, 0, 0], expected_v, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(result.samples[:, 0, 1], expected_i, rtol=1e-7, atol=1e-9)
    assert int(result.spike_counts[0]) == 0


def test_bias_first_spike_time_and_gradient():
    def first_spike(bias):
        model = lif(bias_init=bias)
        return run_population(model, *NO_INPUT, TIGHT).spike_times[0, 0]

    bias = 1.7
    t_spike, dt_dbias = jax.jit(jax.value_and_grad(first_spike))(bias)
    expected = TAU_MEM * np.log(bias / (bias - THRESHOLD))
    expected_grad = TAU_MEM * (1.0 / bias - 1.0 / (bias - THRESHOLD))
    assert t_spike == pytest.approx(expected, rel=1e-6)
    assert dt_dbias == pytest.approx(expected_grad, rel=1e-6)


def test_weighted_input_spike_time_and_gradient():
    t_in, weight = 2.0, 8.0  # the PSP of weight 1 peaks at about 0.158

    def spike_time(w):
        model = with_weight(lif(), w)
        return run_population(model, jnp.array([t_in]), jnp.array([0]), TIGHT).spike_times[0, 0]

    t_spike, dt_dw = jax.jit(jax.value_and_grad(spike_time))(weight)
    s_cross = bisect(lambda s: psp(s, weight) - THRESHOLD, 0.0, S_PEAK)
    # Implicit function theorem on V(t*, w) = threshold, with V linear in w.
    expected_grad = -(THRESHOLD / weight) / psp_slope(s_cross, weight)
    assert t_spike == pytest.approx(t_in + s_cross, rel=1e-8)
    assert dt_dw == pytest.approx(expected_grad, rel=1e-6)


@pytest.mark.parametrize("t_in", [3.0, TIGHT.dt], ids=["at a sample time", "at the first step's end"])
def test_tied_input_time_keeps_gradient(t_in):
    # One input and a resting start: the trajectory moves with the input, so the
    # spike time's derivative with respect to the input time is 1. An input at a
    # sample time, or where the first trial step ends, must keep all of it.
    def spike_time(t_in):
        model = with_weight(lif(), 8.0)
        result = run_population(
            model, jnp.array([t_in]), jnp.array([0]), TIGHT, sample_ts=jnp.array([3.0, 20.0])
        )
        return result.spike_times[0, 0]

    assert float(jax.grad(spike_time)(t_in)) == pytest.approx(1.0, rel=1e-8)


def test_crossing_inside_a_long_step_is_root_found():
    # Loose tolerances let the solver take steps several ms long, so the spike time
    # must come from the root find on the step's interpolant, not from the step end.
    weight = 1.5 * THRESHOLD / psp(S_PEAK, 1.0)
    loose = SimulationConfig(t_end=60.0, rtol=1e-3, atol=1e-3, root_rtol=1e-10, root_atol=1e-10)
    result = run_population(with_weight(lif(), weight), jnp.array([0.0]), jnp.array([0]), loose)
    s_cross = bisect(lambda s: psp(s, weight) - THRESHOLD, 0.0, S_PEAK)
    assert int(result.spike_counts[0]) == 1
    # The interpolant's error at rtol 1e-3 moves the root by about 1e-3 ms here,
    # far less than the step length.
    assert float(result.spike_times[0, 0]) == pytest.approx(s_cross, abs=1e-2)


def test_brief_excursion_inside_one_step_is_found():
    # The PSP peaks 0.05% above threshold, so V stays above it for about 0.6 ms,
    # while loose tolerances let the solver take steps several ms long, so both
    # ends of the step around the peak lie below threshold.
    weight = 1.0005 * THRESHOLD / psp(S_PEAK, 1.0)
    s_cross = bisect(lambda s: psp(s, weight) - THRESHOLD, 0.0, S_PEAK)
    s_leave = bisect(lambda s: THRESHOLD - psp(s, weight), S_PEAK, 3 * S_PEAK)
    assert 0.5 < s_leave - s_cross < 1.0
    loose = SimulationConfig(t_end=60.0, rtol=1e-3, atol=1e-3, root_rtol=1e-10, root_atol=1e-10)
    result = run_population(with_weight(lif(), weight), jnp.array([0.0]), jnp.array([0]), loose)
    assert int(result.spike_counts[0]) == 1
    assert float(result.spike_times[0, 0]) == pytest.approx(s_cross, abs=0.2)


def test_brief_excursion_gradient_matches_differences():
    # At rtol 1e-4 step ends alone still miss this excursion (check_peaks=False
    # finds no spike), so the spike comes from the re-solve up to the peak.
    weight = 1.0005 * THRESHOLD / psp(S_PEAK, 1.0)
    config = SimulationConfig(t_end=60.0, rtol=1e-4, atol=1e-4, root_rtol=1e-10, root_atol=1e-10)

    @jax.jit
    def spike_time(w):
        model = with_weight(lif(), w)
        return run_population(model, jnp.array([0.0]), jnp.array([0]), config).spike_times[0, 0]

    gradient = float(jax.grad(spike_time)(weight))
    step = 1e-7 * weight
    difference = float((spike_time(weight + step) - spike_time(weight - step)) / (2 * step))
    # Exact with respect to the forward simulation, up to the difference quotient.
    assert gradient == pytest.approx(difference, rel=1e-3)
    # Near the peak dt/dw is large, so the analytic value is met only to the
    # solver's accuracy: 1.6 % here.
    s_cross = bisect(lambda s: psp(s, weight) - THRESHOLD, 0.0, S_PEAK)
    analytic = -(THRESHOLD / weight) / psp_slope(s_cross, weight)
    assert gradient == pytest.approx(analytic, rel=0.05)


def test_brief_excursion_is_found_with_max_step():
    # Without the peak check, detection relies on step ends, and steps of at most
    # 0.5 ms put one inside the 0.6 ms excursion. The 60 ms window then needs 120
    # steps after the input, beyond the default max_steps.
    weight = 1.0005 * THRESHOLD / psp(S_PEAK, 1.0)
    s_cross = bisect(lambda s: psp(s, weight) - THRESHOLD, 0.0, S_PEAK)
    bounded = SimulationConfig(
        t_end=60.0, rtol=1e-3, atol=1e-3, max_step=0.5, max_steps=256, check_peaks=False,
        root_rtol=1e-10, root_atol=1e-10,
    )
    result = run_population(with_weight(lif(), weight), jnp.array([0.0]), jnp.array([0]), bounded)
    assert int(result.spike_counts[0]) == 1
    assert float(result.spike_times[0, 0]) == pytest.approx(s_cross, abs=0.05)


def test_simultaneous_crossings_all_spike():
    # Three identical neurons in one population cross threshold at the same time.
    model = lif(n=3, bias_init=1.5)
    result = run_population(model, *NO_INPUT, TIGHT)
    expected = TAU_MEM * np.log(1.5 / 0.5)
    np.testing.assert_allclose(result.spike_times[:, 0], expected, rtol=1e-8)
    np.testing.assert_array_equal(result.spike_counts, [2, 2, 2])


class DeltaLIF(LIF):
    """LIF whose input spikes jump the voltage directly, so one input can cross threshold."""

    def input_spike(self, y, from_idx, valid_mask):
        jump = jnp.sum(jnp.where(valid_mask, self.weight[:, from_idx], 0.0), axis=1)
        return y.at[:, 0].add(jump)


def test_input_jump_above_threshold_spikes_at_jump_time():
    model = DeltaLIF(2, 1, jax.random.PRNGKey(0), tau_mem=TAU_MEM, tau_syn=TAU_SYN)
    model = eqx.tree_at(lambda m: m.weight, model, jnp.array([[1.5], [0.5]]))
    result = run_population(model, jnp.array([7.25]), jnp.array([0]), TIGHT)
    assert float(result.spike_times[0, 0]) == 7.25
    assert int(result.spike_counts[0]) == 1
    assert int(result.spike_counts[1]) == 0


def test_spike_overflow_raises_naming_max_spikes():
    config = SimulationConfig(t_end=60.0, max_spikes=1)
    with pytest.raises(Exception, match="max_spikes"):
        jax.block_until_ready(run_population(lif(bias_init=1.5), *NO_INPUT, config).spike_times)


def test_step_budget_raises_naming_max_steps():
    config = SimulationConfig(t_end=60.0, rtol=1e-12, atol=1e-12, max_steps=2)
    with pytest.raises(Exception, match="max_steps"):
        jax.block_until_ready(run_population(lif(bias_init=1.5), *NO_INPUT, config).spike_times)


@pytest.mark.parametrize(
    "setting, value",
    [
        ("simultaneous_tol", -1e-6),  # would let no neuron spike at a crossing
        ("rtol", 5.0),
        ("rtol", float("inf")),
        ("t_end", float("inf")),
        ("t_end", "60"),
        ("max_steps", 2.5),
        ("steps_per_iteration", 4.0),
        ("max_spikes", "8"),
        ("max_events", 3.0),
        ("lanes_per_vmap", 0),
        ("check_peaks", 1),
    ],
)
def test_config_rejects_bad_values_by_name(setting, value):
    with pytest.raises(ValueError, match=f"^{setting}={value!r}"):
        SimulationConfig(**{setting: value})


def test_single_adaptive_step_rejected():
    # A paused solve passes its longest accepted step on, so one step per
    # iteration would keep the first trial step dt for the whole window.
    with pytest.raises(ValueError, match="steps_per_iteration=1"):
        SimulationConfig(steps_per_iteration=1)


def test_single_constant_step_finds_spike():
    # Constant steps never grow, so one per iteration is valid. The bias-driven
    # first spike lands within five Euler steps of tau_mem ln(i / (i - theta)).
    config = SimulationConfig(
        t_end=60.0, solver="euler", step_size="constant", dt=0.01, steps_per_iteration=1,
        max_steps=100_000, max_events=10_000,
    )
    result = run_population(lif(bias_init=1.5), *NO_INPUT, config)
    expected = TAU_MEM * np.log(1.5 / 0.5)
    assert abs(float(result.spike_times[0, 0]) - expected) < 0.05


def test_recorded_failure_raises_outside_jit():
    config = SimulationConfig(t_end=60.0, max_spikes=1, errors="record")
    result = jax.jit(lambda m: run_population(m, *NO_INPUT, config))(lif(bias_init=1.5))
    assert int(result.failures) == SPIKE_OVERFLOW
    with pytest.raises(SimulationError, match="max_spikes"):
        raise_failures(result.failures)


@pytest.mark.parametrize("bad_time", [-5.0, jnp.nan])
def test_invalid_input_time_is_reported(bad_time):
    times, sources = jnp.array([bad_time, 2.0]), jnp.array([0, 0])
    model = with_weight(lif(bias_init=1.5), 8.0)
    recorded = jax.jit(
        lambda t: run_population(model, t, sources, dataclasses.replace(TIGHT, errors="record"))
    )(times)
    assert int(recorded.failures) == INVALID_INPUT
    # The simulation runs without inputs: the bias alone sets the first spike time.
    expected = TAU_MEM * np.log(1.5 / (1.5 - THRESHOLD))
    assert float(recorded.spike_times[0, 0]) == pytest.approx(expected, rel=1e-8)
    with pytest.raises(Exception, match="negative or NaN"):
        jax.block_until_ready(run_population(model, times, sources, TIGHT).spike_times)


def test_recorded_failures_merge_per_sample():
    # Sample 0's input drives the hidden neurons over threshold again and again;
    # sample 1 has no input, so nothing spikes and its code stays 0.
    layer = dict(tau_mem=20.0, tau_syn=5.0, weight_mean=40.0, weight_std=0.0)
    network = make_feedforward(LIF, [1, 3, 1], jax.random.PRNGKey(0), [layer, layer])
    spikes = jnp.array([[[1.0]], [[jnp.inf]]])
    config = SimulationConfig(t_end=60.0, max_spikes=1, errors="record")
    recording = jax.jit(lambda n, x: simulate_batch(n, x, config))(network, spikes)
    assert recording.failures.tolist() == [SPIKE_OVERFLOW, 0]
    raise_failures(recording.failures[1:])  # a code of 0 raises nothing
    with pytest.raises(SimulationError, match="1 of 2 simulations failed"):
        raise_failures(recording.failures)


RECORDED_PROGRAM = """
import jax, jax.numpy as jnp
from eventax_lab.config import SimulationConfig
from eventax_lab.neurons import LIF
from eventax_lab.simulate import run_population
config = SimulationConfig(t_end=60.0, errors="record")
run = jax.jit(lambda m: run_population(m, jnp.array([jnp.inf]), jnp.array([0]), config).spike_times)
print(run.lower(LIF(1, 1, jax.random.PRNGKey(0))).as_text().count("callback"))
"""


def test_recorded_errors_compile_without_host_callbacks():
    # JAX's persistent compilation cache skips programs with host callbacks, which
    # is how eqx.error_if raises. Recording removes the simulator's own; diffrax's
    # check of dt0's sign remains unless EQX_ON_ERROR=nan, read at import.
    def callbacks(errors):
        config = SimulationConfig(t_end=60.0, errors=errors)
        run = jax.jit(lambda m: run_population(m, *NO_INPUT, config).spike_times)
        return run.lower(lif()).as_text().count("callback")

    assert callbacks("raise") > callbacks("record")
    env = {**os.environ, "EQX_ON_ERROR": "nan", "JAX_PLATFORMS": "cpu"}
    output = subprocess.run(
        [sys.executable, "-c", RECORDED_PROGRAM], env=env, capture_output=True, text=True,
        check=True,
    ).stdout
    assert int(output.strip().splitlines()[-1]) == 0


def test_event_budget_raises_naming_max_events():
    config = SimulationConfig(t_end=60.0, max_events=2)
    times = jnp.array([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(Exception, match="max_events"):
        result = run_population(with_weight(lif(), 0.1), times, jnp.zeros(4, int), config)
        jax.block_until_ready(result.spike_times)
    recorded = dataclasses.replace(config, errors="record")
    result = run_population(with_weight(lif(), 0.1), times, jnp.zeros(4, int), recorded)
    assert int(result.failures) == OUT_OF_EVENTS


def test_independent_neurons_match_population():
    model = lif(n=4, n_sources=2, weight_mean=2.0, weight_std=1.5, fan_in_scaling=False)
    times, sources = jnp.array([1.0, 4.0, 9.0, jnp.inf]), jnp.array([0, 1, 0, 1])
    together = run_population(model, times, sources, TIGHT)
    apart = run_independent_neurons(model, times, sources, TIGHT)
    np.testing.assert_allclose(apart.spike_times, together.spike_times, rtol=1e-9)
    np.testing.assert_array_equal(apart.spike_counts, together.spike_counts)


@pytest.mark.parametrize("adjoint", ["recursive_checkpoint", "event"])
def test_lanes_in_chunks_match_one_vmap(adjoint):
    # 3 samples x 7 neurons = 21 lanes in chunks of at most 4: six chunks of 4
    # with 3 padded lanes, whose outputs must be dropped.
    model = lif(n=7, n_sources=2, weight_mean=2.5, weight_std=1.5, fan_in_scaling=False)
    times = jnp.array([[1.0, 4.0, 9.0], [2.0, 3.0, jnp.inf], [0.5, 6.0, 7.0]])
    sources = jnp.array([[0, 1, 0], [1, 0, 1], [1, 1, 0]])
    sample_ts = jnp.array([5.0, 30.0])

    def simulate(model, times, lanes_per_vmap):
        config = dataclasses.replace(TIGHT, lanes_per_vmap=lanes_per_vmap, adjoint=adjoint)
        return run_independent_neurons(model, times, sources, config, sample_ts=sample_ts)

    def loss(model, times, lanes_per_vmap):
        result = simulate(model, times, lanes_per_vmap)
        spike_times = jnp.where(jnp.isfinite(result.spike_times), result.spike_times, 60.0)
        return jnp.sum(spike_times**2) + jnp.sum(result.samples[..., 0])

    simulate = jax.jit(simulate, static_argnums=2)
    whole, chunked = simulate(model, times, None), simulate(model, times, 4)
    assert int(jnp.sum(whole.spike_counts)) >= 10
    np.testing.assert_array_equal(chunked.spike_counts, whole.spike_counts)
    np.testing.assert_allclose(chunked.spike_times, whole.spike_times, rtol=1e-12)
    np.testing.assert_allclose(chunked.samples, whole.samples, rtol=1e-12)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    model_whole, times_whole = grad(model, times, None)
    model_chunked, times_chunked = grad(model, times, 4)
    np.testing.assert_allclose(model_chunked.weight, model_whole.weight, rtol=1e-10)
    np.testing.assert_allclose(model_chunked.bias, model_whole.bias, rtol=1e-10)
    np.testing.assert_allclose(times_chunked, times_whole, rtol=1e-10)
    assert float(jnp.max(jnp.abs(model_whole.weight))) > 0


def test_paused_solves_under_vmap_match_one_loop():
    # EIF upstrokes make the controller reject steps. With two steps per loop
    # iteration, solves often pause right after a rejected step while another
    # vmapped lane has an event. Each lane must continue from its last accepted
    # step, so the vmapped loops agree with one loop over the whole population.
    from eventax_lab.neurons import EIF

    model = EIF(4, 2, jax.random.PRNGKey(1), weight_mean=100.0, weight_std=30.0)
    times, sources = jnp.array([2.0, 8.0]), jnp.array([0, 1])
    config = SimulationConfig(
        t_end=30.0, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12,
        max_steps=4096, steps_per_iteration=2,
    )
    together = run_population(model, times, sources, config)
    apart = run_independent_neurons(model, times, sources, config)
    assert int(jnp.sum(together.spike_counts)) >= 3
    np.testing.assert_array_equal(apart.spike_counts, together.spike_counts)
    np.testing.assert_allclose(apart.spike_times, together.spike_times, rtol=1e-8)


# Three hidden QIF neurons of the default Yin-Yang job, with their float32
# weights, biases and input times written exactly in hex, at that job's solver
# settings. Prints, per root finder, the failure code, spike counts and first
# spike times as JSON.
PAUSED_START_PROGRAM = """
import dataclasses, json
import equinox as eqx, jax.numpy as jnp, jax, numpy as np
from eventax_lab.config import SimulationConfig
from eventax_lab.network import FeedForwardNetwork, simulate_batch
from eventax_lab.neurons import QIF

def from_hex(values):
    return jnp.asarray(np.vectorize(float.fromhex)(np.asarray(values)), jnp.float32)

weight = from_hex([
    ["0x1.116564p+1", "0x1.0f2764p+1", "0x1.2d853ap+1", "0x1.4663aep+1", "0x1.46196cp+0"],
    ["0x1.e3f7bep+1", "0x1.e5960ep-1", "0x1.48ed9cp+2", "0x1.621a66p-1", "0x1.91e60ap+1"],
    ["0x1.5dc95ap-2", "0x1.88cdd6p+1", "0x1.df7be8p+0", "0x1.99e4dap+0", "0x1.f85e0ap+1"],
])
bias = from_hex(["-0x1.d23feap-1", "-0x1.052ab8p+0", "-0x1.c8db52p-1"])
input_times = from_hex(["0x1.73a848p+4", "0x1.09e83ep+4", "0x1.b15ee0p+2", "0x1.ac2f86p+3", "0x0p+0"])
layer = QIF(3, 5, jax.random.PRNGKey(0), tau_mem=10.0, tau_syn=5.0, v_init=-1.0)
network = FeedForwardNetwork([eqx.tree_at(lambda m: (m.weight, m.bias), layer, (weight, bias))])
config = SimulationConfig(
    t_end=60.0, rtol=1e-4, atol=1e-4, steps_per_iteration=2, adjoint="event",
    errors="record", max_steps=64,
)
found = {}
for root_finder in ("chandrupatla", "bisection"):
    run = simulate_batch(
        network, input_times[None, :, None], dataclasses.replace(config, root_finder=root_finder)
    )
    found[root_finder] = {
        "failures": int(run.failures[0]),
        "counts": np.asarray(run.spike_counts[0][0]).tolist(),
        "first": np.asarray(run.spike_times[0][0, :, 0], np.float64).tolist(),
    }
print(json.dumps(found))
"""


def test_crossing_at_solve_start_keeps_stepping():
    # Neuron 0 pauses just below threshold at t = 27.85. Chandrupatla's method
    # puts its crossing on the next solve's start, which cuts that solve's only
    # accepted step to zero length. The solves after it ran with a zero trial
    # step, which the controller never grows, until they used up max_steps
    # (failure code 2). It runs in a subprocess because conftest.py enables x64.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    output = subprocess.run(
        [sys.executable, "-c", PAUSED_START_PROGRAM], env=env, capture_output=True, text=True,
        check=True,
    ).stdout
    found = json.loads(output.strip().splitlines()[-1])
    assert found["chandrupatla"]["failures"] == 0
    assert found["bisection"]["failures"] == 0
    assert found["chandrupatla"]["counts"] == found["bisection"]["counts"] == [1, 1, 1]
    # Both root finders stop on a bracket of root_atol (1e-5) plus root_rtol.
    np.testing.assert_allclose(
        found["chandrupatla"]["first"], found["bisection"]["first"], atol=1e-4
    )
    np.testing.assert_allclose(found["bisection"]["first"][0], 27.855, atol=1e-3)
