"""Simulated QIF and Izhikevich spike times against closed forms and a reference solver."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.neurons import QIF, Izhikevich
from eventax_lab.simulate import run_population

NO_INPUT_TIMES = jnp.zeros((0,))
NO_INPUT_SOURCES = jnp.zeros((0,), dtype=int)
QIF_TAU_MEM = 10.0  # ms
QIF_CONFIG = SimulationConfig(
    t_end=60.0, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12, max_steps=4096
)


def qif_first_spike_time(current, v0):
    """Return tau_mem / sqrt(I) (pi/2 - arctan(V0 / sqrt(I))), the time V needs to reach +inf."""
    root = np.sqrt(current)
    return QIF_TAU_MEM / root * (np.pi / 2 - np.arctan(v0 / root))


def qif_first_spike_time_derivative(current, v0):
    """Return the derivative of `qif_first_spike_time` with respect to the current I."""
    root = np.sqrt(current)
    # The second term, from the arctan, tends to 0 as V0 -> -inf.
    from_arctan = 0.0 if np.isinf(v0) else QIF_TAU_MEM * v0 / (2 * current * (current + v0**2))
    return -QIF_TAU_MEM / (2 * current * root) * (np.pi / 2 - np.arctan(v0 / root)) + from_arctan


@pytest.fixture(scope="module")
def qif_spike_times_and_bias_gradient():
    """Jitted map from a one-neuron QIF model to its first two spike times and d(first)/d(bias)."""

    def spike_times(model):
        return run_population(model, NO_INPUT_TIMES, NO_INPUT_SOURCES, QIF_CONFIG).spike_times[0]

    @jax.jit
    def run(model):
        def first(bias):
            return spike_times(eqx.tree_at(lambda m: m.bias, model, bias))[0]

        return spike_times(model)[:2], jax.grad(first)(model.bias)[0]

    return run


@pytest.mark.parametrize(("current", "v0"), [(0.5, -0.5), (2.0, 1.5), (0.3, -np.inf)])
def test_qif_spike_time_and_gradient_closed_form(
    qif_spike_times_and_bias_gradient, current, v0
):
    model = QIF(1, 1, jax.random.PRNGKey(0), tau_mem=QIF_TAU_MEM, v_init=v0, bias_init=current)
    (first, second), d_first_d_bias = qif_spike_times_and_bias_gradient(model)

    np.testing.assert_allclose(first, qif_first_spike_time(current, v0), rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        d_first_d_bias, qif_first_spike_time_derivative(current, v0), rtol=1e-6
    )
    # After the reset to V = -inf the next interval is the full period pi tau / sqrt(I).
    period = np.pi * QIF_TAU_MEM / np.sqrt(current)
    if second < QIF_CONFIG.t_end:
        np.testing.assert_allclose(second - first, period, rtol=0, atol=1e-6)
    else:
        assert first + period > QIF_CONFIG.t_end


def izhikevich_reference_spikes(a, b, c, d, current, t_end, step, v_init=-65.0, v_peak=30.0):
    """Return the spike times of one Izhikevich neuron under a constant current, by fixed-step RK4.

    A step that would end at or above `v_peak` is shortened by bisection to the
    crossing, where v is reset to c and u incremented by d.
    """

    def derivative(v, u):
        return 0.04 * v * v + 5.0 * v + 140.0 - u + current, a * (b * v - u)

    def rk4(v, u, h):
        k1v, k1u = derivative(v, u)
        k2v, k2u = derivative(v + h / 2 * k1v, u + h / 2 * k1u)
        k3v, k3u = derivative(v + h / 2 * k2v, u + h / 2 * k2u)
        k4v, k4u = derivative(v + h * k3v, u + h * k3u)
        return (
            v + h / 6 * (k1v + 2 * k2v + 2 * k3v + k4v),
            u + h / 6 * (k1u + 2 * k2u + 2 * k3u + k4u),
        )

    t, v, u = 0.0, v_init, b * v_init
    spikes = []
    while t < t_end:
        v_next, u_next = rk4(v, u, step)
        if v_next < v_peak:
            t, v, u = t + step, v_next, u_next
            continue
        lower, upper = 0.0, step
        for _ in range(60):
            middle = (lower + upper) / 2
            if rk4(v, u, middle)[0] >= v_peak:
                upper = middle
            else:
                lower = middle
        _, u_next = rk4(v, u, upper)
        t += upper
        spikes.append(t)
        v, u = c, u_next + d
    return np.array([s for s in spikes if s <= t_end])


def test_izhikevich_regular_spiking_intervals():
    current, t_end = 10.0, 300.0  # mV/ms, ms
    config = SimulationConfig(
        t_end=t_end, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12,
        max_steps=4096, max_spikes=16,
    )
    model = Izhikevich(1, 1, jax.random.PRNGKey(0), preset="regular_spiking", bias_init=current)
    result = jax.jit(run_population, static_argnums=3)(
        model, NO_INPUT_TIMES, NO_INPUT_SOURCES, config
    )
    spikes = np.asarray(result.spike_times[0])
    spikes = spikes[np.isfinite(spikes)]
    reference = izhikevich_reference_spikes(0.02, 0.2, -65.0, 8.0, current, t_end, step=0.002)

    assert len(spikes) == len(reference) >= 5
    intervals, reference_intervals = np.diff(spikes), np.diff(reference)
    np.testing.assert_allclose(intervals, reference_intervals, rtol=1e-4)
    # Adaptation lengthens the first intervals, and the last three agree to 1e-6.
    assert intervals[0] < 0.9 * intervals[-1]
    np.testing.assert_allclose(intervals[-3:], intervals[-1], rtol=1e-6)
