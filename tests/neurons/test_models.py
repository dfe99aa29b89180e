"""Each model's equations, jumps, resets and setting checks, evaluated without the simulator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eventax_lab.neurons import ALIF, EGRU, EIF, LIF, MODELS, QIF, Izhikevich
from eventax_lab.neurons.qif import phase_to_voltage, voltage_to_phase

KEY = jax.random.PRNGKey(0)


def test_registry_lists_every_model():
    assert MODELS == {
        "lif": LIF,
        "alif": ALIF,
        "qif": QIF,
        "eif": EIF,
        "izhikevich": Izhikevich,
        "egru": EGRU,
    }


def test_qif_phase_map_round_trip():
    voltages = jnp.array([-1e3, -2.0, -0.3, 0.0, 0.7, 5.0])
    round_trip = phase_to_voltage(voltage_to_phase(voltages))
    np.testing.assert_allclose(round_trip, voltages, rtol=1e-12, atol=1e-15)
    assert float(phase_to_voltage(jnp.array(0.0))) == -np.inf
    assert float(voltage_to_phase(jnp.array(-np.inf))) == 0.0


def test_qif_phase_dynamics_follow_voltage_dynamics():
    # d(phi)/dt must equal dV/dt divided by dV/d(phi) at every phase.
    tau_mem, bias = 10.0, -0.4
    model = QIF(5, 1, KEY, tau_mem=tau_mem, bias_init=bias)
    phases = jnp.array([0.02, 0.25, 0.5, 0.8, 0.97])
    currents = jnp.array([1.5, -0.2, 0.0, 3.0, 0.1])
    d_phase = model.dynamics(0.0, jnp.stack([phases, currents], axis=-1), None)[:, 0]

    voltages = phase_to_voltage(phases)
    d_voltage = (voltages**2 + currents + bias) / tau_mem
    d_voltage_d_phase = jax.vmap(jax.grad(phase_to_voltage))(phases)
    np.testing.assert_allclose(d_phase, d_voltage / d_voltage_d_phase, rtol=1e-12)


def test_qif_phase_speed_at_spike_and_reset():
    # At phi = 0 and phi = 1 the phase moves at 1 / (pi tau_mem) whatever the current.
    model = QIF(2, 1, KEY, tau_mem=4.0, bias_init=-3.0)
    state = jnp.array([[0.0, -10.0], [1.0, 7.0]])
    np.testing.assert_allclose(model.dynamics(0.0, state, None)[:, 0], 1 / (np.pi * 4.0))


def test_qif_reset_sets_phase_zero():
    model = QIF(2, 1, KEY)
    state = jnp.array([[1.0, 0.3], [0.6, 0.2]])
    after = model.reset_spiked(state, jnp.array([True, False]))
    np.testing.assert_array_equal(after, jnp.array([[0.0, 0.3], [0.6, 0.2]]))
    assert float(model.spike_condition(0.0, after)[0]) == -1.0


def test_qif_starts_at_v_init():
    model = QIF(3, 1, KEY, v_init=jnp.array([-np.inf, -1.0, 2.0]))
    voltages = model.observe(model.init_state(3))[:, 0]
    np.testing.assert_allclose(voltages, [-np.inf, -1.0, 2.0], rtol=1e-12)


def test_egru_dynamics_match_equations():
    model = EGRU(2, 1, KEY, tau_mem=8.0, tau_syn=4.0, bias_init=0.3, gate_bias_init=-0.2)
    state = jnp.array([[0.1, 0.5, -1.0, 2.0], [-0.4, -2.0, 0.3, -0.5]])
    derivative = model.dynamics(0.0, state, None)

    c, a_u, a_r, a_z = state.T
    expected_c = jax.nn.sigmoid(a_u) * (jnp.tanh(a_z) - c) / 8.0
    expected_a = (jnp.array([-0.2, -0.2, 0.3]) - state[:, 1:]) / 4.0
    np.testing.assert_allclose(derivative[:, 0], expected_c, rtol=1e-12)
    np.testing.assert_allclose(derivative[:, 1:], expected_a, rtol=1e-12)


def test_egru_starts_at_rest():
    model = EGRU(2, 1, KEY, bias_init=0.7, gate_bias_init=-0.1)
    state = model.init_state(2)
    np.testing.assert_allclose(state, [[0.0, -0.1, -0.1, 0.7]] * 2)
    np.testing.assert_allclose(model.dynamics(0.0, state, None)[:, 1:], 0.0)


def test_egru_candidate_jump_uses_prior_reset_gate():
    model = EGRU(2, 3, KEY)
    state = jnp.array([[0.1, 0.2, 0.5, -0.3], [0.0, -1.0, -2.0, 0.4]])
    from_idx = jnp.array([0, 2, 1])
    valid = jnp.array([True, True, False])  # sources 0 and 2 fire together
    after = model.input_spike(state, from_idx, valid)

    fired = [0, 2]
    reset_gate = jax.nn.sigmoid(state[:, 2])
    np.testing.assert_allclose(after[:, 0], state[:, 0])
    np.testing.assert_allclose(
        after[:, 1], state[:, 1] + model.weight_u[:, fired].sum(axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(
        after[:, 2], state[:, 2] + model.weight_r[:, fired].sum(axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(
        after[:, 3], state[:, 3] + model.weight_z[:, fired].sum(axis=1) * reset_gate, rtol=1e-12
    )


def test_egru_reset_subtracts_threshold():
    model = EGRU(2, 1, KEY, threshold=0.4)
    state = jnp.array([[0.4, 1.0, 2.0, 3.0], [0.3, 1.0, 2.0, 3.0]])
    after = model.reset_spiked(state, jnp.array([True, False]))
    np.testing.assert_allclose(after, [[0.0, 1.0, 2.0, 3.0], [0.3, 1.0, 2.0, 3.0]], atol=1e-15)


def test_eif_dynamics_match_equations():
    model = EIF(3, 1, KEY, tau_mem=10.0, e_leak=-70.0, v_threshold=-52.0, delta_t=1.5,
                v_peak=-30.0, bias_init=2.0)
    state = jnp.array([[-70.0, 0.0], [-55.0, 4.0], [-35.0, -1.0]])
    v, i = state.T
    expected = (-70.0 - v + 1.5 * np.exp((v + 52.0) / 1.5) + i + 2.0) / 10.0
    np.testing.assert_allclose(model.dynamics(0.0, state, None)[:, 0], expected, rtol=1e-12)


def test_eif_exponential_continues_linearly_beyond_peak():
    # Above v_peak = -40 mV the term 2 exp((V + 50) / 2) follows its tangent at -40 mV.
    model = EIF(2, 1, KEY)
    above = jnp.array([[-36.0, 0.0], [1e6, 0.0]])
    derivative = model.dynamics(0.0, above, None)[:, 0]
    tangent = 2.0 * np.exp(5.0) * (1 + (above[:, 0] + 40.0) / 2.0)
    np.testing.assert_allclose(derivative, (-65.0 - above[:, 0] + tangent) / 20.0, rtol=1e-12)


def test_eif_spike_condition_in_time_units():
    # The condition is (V - v_peak) divided by the input-free upstroke speed at v_peak.
    model = EIF(1, 1, KEY)
    speed = (-65.0 + 40.0 + 2.0 * np.exp(5.0)) / 20.0
    condition = model.spike_condition(0.0, jnp.array([[-41.0, 0.0]]))
    np.testing.assert_allclose(condition, [-1.0 / speed], rtol=1e-12)


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("regular_spiking", (0.02, 0.2, -65.0, 8.0)),
        ("chattering", (0.02, 0.2, -50.0, 2.0)),
        ("fast_spiking", (0.1, 0.2, -65.0, 2.0)),
    ],
)
def test_izhikevich_presets(preset, expected):
    model = Izhikevich(2, 1, KEY, preset=preset)
    for name, value in zip("abcd", expected):
        np.testing.assert_allclose(getattr(model, name), [value, value])


def test_izhikevich_explicit_value_overrides_preset():
    model = Izhikevich(1, 1, KEY, preset="chattering", d=5.0)
    np.testing.assert_allclose([model.c[0], model.d[0]], [-50.0, 5.0])


def test_izhikevich_dynamics_and_reset():
    model = Izhikevich(1, 1, KEY, bias_init=3.0)
    state = jnp.array([[-60.0, -12.0, 2.0]])
    derivative = model.dynamics(0.0, state, None)
    expected_dv = 0.04 * 3600 - 300.0 + 140.0 + 12.0 + 2.0 + 3.0
    np.testing.assert_allclose(derivative, [[expected_dv, 0.02 * (0.2 * -60.0 + 12.0), -0.4]])

    after = model.reset_spiked(jnp.array([[30.0, -10.0, 1.0]]), jnp.array([True]))
    np.testing.assert_allclose(after, [[-65.0, -2.0, 1.0]])


def test_alif_threshold_adapts_at_spike():
    model = ALIF(2, 1, KEY, threshold=1.0, adaptation_increment=0.5, tau_adapt=50.0)
    state = jnp.array([[1.2, 0.4, 0.2], [0.5, 0.1, 0.2]])  # neuron 0 at threshold 1 + 0.2
    np.testing.assert_allclose(model.spike_condition(0.0, state), [0.0, -0.7], atol=1e-15)
    after = model.reset_spiked(state, jnp.array([True, False]))
    np.testing.assert_allclose(after, [[0.0, 0.4, 0.7], [0.5, 0.1, 0.2]], atol=1e-15)
    np.testing.assert_allclose(model.dynamics(0.0, after, None)[:, 2], [-0.7 / 50.0, -0.2 / 50.0])


def test_alif_value_reset():
    model = ALIF(1, 1, KEY, reset_mode="value", v_reset=-0.5)
    after = model.reset_spiked(jnp.array([[1.0, 0.0, 0.0]]), jnp.array([True]))
    np.testing.assert_allclose(after, [[-0.5, 0.0, 0.5]])


@pytest.mark.parametrize(
    ("model_class", "kwargs", "named"),
    [
        (QIF, {"tau_mem": 0.0}, "tau_mem"),
        (QIF, {"v_init": np.inf}, "v_init"),
        (QIF, {"v_init": np.nan}, "v_init"),
        (EGRU, {"threshold": 1.0}, "threshold"),
        (EGRU, {"tau_syn": -1.0}, "tau_syn"),
        (EIF, {"delta_t": 0.0}, "delta_t"),
        (EIF, {"v_reset": -30.0}, "v_reset"),
        (EIF, {"v_peak": -49.9}, "v_peak"),
        (Izhikevich, {"preset": "bursting"}, "preset"),
        (Izhikevich, {"c": 35.0}, "c"),
        (Izhikevich, {"v_peak": -50.0}, "v_peak"),
        (ALIF, {"tau_adapt": 0.0}, "tau_adapt"),
        (ALIF, {"adaptation_increment": -0.1}, "adaptation_increment"),
        (ALIF, {"reset_mode": "value", "v_reset": 1.5}, "v_reset"),
        (ALIF, {"reset_mode": "zero"}, "reset_mode"),
        (ALIF, {"threshold": jnp.ones(3)}, "threshold"),
    ],
)
def test_invalid_setting_raises(model_class, kwargs, named):
    with pytest.raises(ValueError, match=named):
        model_class(2, 1, KEY, **kwargs)
