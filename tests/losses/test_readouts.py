"""State readouts of a non-spiking LIF output layer against the closed-form PSP."""

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.losses import ExpIntegralLoss, IntegralLoss, MaxLoss, parabolic_peak
from eventax_lab.network import FeedForwardNetwork, simulate_batch
from eventax_lab.neurons import LIF, NonSpiking

T_END = 60.0
TAU_MEM = 20.0
TAU_SYN = 5.0
EXP_LAMBDA = 0.05
RESOLUTION = 0.5
# Input 0 spikes at 1.0 ms and input 1 at 7.9 ms. Output 0 receives input 0 only,
# output 1 both, so output 0's voltage is one PSP and output 1's a sum of two.
INPUT_TIMES = np.array([1.0, 7.9])
WEIGHTS = np.array([[0.8, 0.0], [0.5, 0.6]])
CONFIG = SimulationConfig(
    t_end=T_END, rtol=1e-10, atol=1e-10, root_rtol=1e-12, root_atol=1e-12, max_steps=4096
)


def psp_amplitude(weight):
    """Return A in V(u) = A (exp(-u / tau_mem) - exp(-u / tau_syn)) for a spike of weight w.

    From tau_mem dV/dt = -V + I with I(u) = w exp(-u / tau_syn) and V(0) = 0,
    A = w tau_syn / (tau_mem - tau_syn).
    """
    return weight * TAU_SYN / (TAU_MEM - TAU_SYN)


def voltage_derivatives(t, weights, order):
    """Return the `order`-th time derivative of the summed PSPs at times `t`."""
    total = np.zeros_like(np.asarray(t, dtype=float))
    for weight, t_spike in zip(weights, INPUT_TIMES):
        u = np.asarray(t) - t_spike
        term = psp_amplitude(weight) * (
            (-1 / TAU_MEM) ** order * np.exp(-u / TAU_MEM)
            - (-1 / TAU_SYN) ** order * np.exp(-u / TAU_SYN)
        )
        total = total + np.where(u >= 0, term, 0.0)
    return total


def exact_integral(weights, decay):
    """Return the integral over [0, T] of exp(-decay t) V(t) for the summed PSPs."""
    total = 0.0
    for weight, t_spike in zip(weights, INPUT_TIMES):
        duration = T_END - t_spike
        rate_mem, rate_syn = decay + 1 / TAU_MEM, decay + 1 / TAU_SYN
        total += (
            psp_amplitude(weight)
            * np.exp(-decay * t_spike)
            * (
                (1 - np.exp(-rate_mem * duration)) / rate_mem
                - (1 - np.exp(-rate_syn * duration)) / rate_syn
            )
        )
    return total


def exact_peak(weights):
    """Return (time, height) of the maximum of the summed PSPs, by bisection on dV/dt."""
    low, high = INPUT_TIMES.max() + 1e-9, T_END
    for _ in range(200):
        middle = 0.5 * (low + high)
        if voltage_derivatives(middle, weights, 1) > 0:
            low = middle
        else:
            high = middle
    return low, float(voltage_derivatives(low, weights, 0))


@pytest.fixture(scope="module")
def recording():
    lif = LIF(2, 2, jax.random.key(0), tau_mem=TAU_MEM, tau_syn=TAU_SYN)
    lif = eqx.tree_at(lambda model: model.weight, lif, jnp.asarray(WEIGHTS))
    network = FeedForwardNetwork([NonSpiking(lif)])
    options = {
        **MaxLoss(T_END, resolution=RESOLUTION).simulation_options(),
        **ExpIntegralLoss(T_END, exp_lambda=EXP_LAMBDA).simulation_options(),
        "integrals": True,  # every channel, so one recording serves channel 0 and 1
    }
    spikes = jnp.asarray(INPUT_TIMES)[None, :, None]
    return simulate_batch(network, spikes, CONFIG, **options)


def test_single_psp_peak_matches_closed_form():
    # dV/dt = 0 gives u* = tau_mem tau_syn / (tau_mem - tau_syn) ln(tau_mem / tau_syn).
    u_peak = TAU_MEM * TAU_SYN / (TAU_MEM - TAU_SYN) * np.log(TAU_MEM / TAU_SYN)
    height = psp_amplitude(0.8) * (np.exp(-u_peak / TAU_MEM) - np.exp(-u_peak / TAU_SYN))
    t_peak, v_peak = exact_peak([0.8, 0.0])
    assert abs(t_peak - (INPUT_TIMES[0] + u_peak)) < 1e-9
    assert abs(v_peak - height) < 1e-12


@pytest.mark.parametrize("neuron", [0, 1])
def test_integral_matches_closed_form(recording, neuron):
    scores = IntegralLoss(T_END).scores(recording)
    assert abs(float(scores[0, neuron]) - exact_integral(WEIGHTS[neuron], 0.0)) < 1e-6


@pytest.mark.parametrize("neuron", [0, 1])
def test_exp_integral_matches_closed_form(recording, neuron):
    scores = ExpIntegralLoss(T_END, exp_lambda=EXP_LAMBDA).scores(recording)
    expected = exact_integral(WEIGHTS[neuron], EXP_LAMBDA)
    assert abs(float(scores[0, neuron]) - expected) < 1e-6


def test_integral_options_select_the_loss_channel():
    assert IntegralLoss(T_END, channel=1).simulation_options() == {"integrals": (1,)}
    assert ExpIntegralLoss(T_END, exp_lambda=0.1).simulation_options() == {
        "integrals": (0,),
        "exp_lambda": 0.1,
    }


def test_integral_of_current_channel(recording):
    # I(t) = w exp(-(t - t_s) / tau_syn), whose integral over [t_s, T] is
    # w tau_syn (1 - exp(-(T - t_s) / tau_syn)).
    expected = sum(
        weight * TAU_SYN * (1 - np.exp(-(T_END - t_spike) / TAU_SYN))
        for weight, t_spike in zip(WEIGHTS[1], INPUT_TIMES)
    )
    scores = IntegralLoss(T_END, channel=1).scores(recording)
    assert abs(float(scores[0, 1]) - expected) < 1e-6


@pytest.mark.parametrize("neuron", [0, 1])
def test_max_matches_analytic_peak(recording, neuron):
    loss = MaxLoss(T_END, resolution=RESOLUTION)
    spacing = T_END / loss.n_intervals
    t_peak, v_peak = exact_peak(WEIGHTS[neuron])
    second = abs(voltage_derivatives(t_peak, WEIGHTS[neuron], 2))
    third = abs(voltage_derivatives(t_peak, WEIGHTS[neuron], 3))
    # Leading-order error bounds of the parabola (see parabolic_peak), doubled
    # for the higher-order terms.
    time_bound = 2 * third * spacing**2 / (6 * second)
    height_bound = 2 * third * spacing**3 / 16

    times, heights = loss.peak(recording)
    grid_time = np.round(t_peak / spacing) * spacing
    assert abs(t_peak - grid_time) > 5 * time_bound, "the peak must fall between grid points"
    assert abs(float(times[0, neuron]) - t_peak) < time_bound
    assert abs(float(heights[0, neuron]) - v_peak) < height_bound
    np.testing.assert_array_equal(loss.scores(recording), heights)


def test_parabolic_peak_error_order():
    # For V(t) = cos(t - c) the bounds give |dt| <= h^2 / 6 and |dV| <= h^3 / 16
    # (|V'''| / |V''| = tan(0) = 0 at the peak, so the time error is higher order).
    errors = []
    for spacing in (0.2, 0.1):
        grid = np.arange(0.0, 3.0, spacing)
        centre = 1.234
        times, heights = parabolic_peak(jnp.cos(jnp.asarray(grid) - centre), 0.0, spacing)
        errors.append(1.0 - float(heights))
        assert abs(float(times) - centre) < spacing**2 / 6
        assert 0 <= 1.0 - float(heights) < spacing**3 / 16
    # Halving h divides an O(h^3) height error by about 8, or more where the
    # vertex lands closer to the peak.
    assert errors[1] < errors[0] / 4


def test_parabolic_peak_unrefined_cases():
    # Maximum at the first sample, at the last, and next to a -inf sample.
    values = jnp.asarray(
        [[3.0, 2.0, 1.0, 0.5], [0.0, 1.0, 2.0, 5.0], [0.0, 1.0, 3.0, -jnp.inf]]
    )
    times, heights = parabolic_peak(values, 10.0, 0.5)
    np.testing.assert_array_equal(times, [10.0, 11.5, 11.0])
    np.testing.assert_array_equal(heights, [3.0, 5.0, 3.0])

    gradient = jax.grad(lambda v: jnp.sum(parabolic_peak(v, 10.0, 0.5)[1]))(values)
    np.testing.assert_array_equal(gradient, [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]])
