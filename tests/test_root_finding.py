import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.root_finding import FalsePosition

jax.config.update("jax_enable_x64", True)

TAU_MEM, TAU_SYN = 20.0, 5.0


def psp(t, amplitude):
    """Return `amplitude` (e^(-t/tau_mem) - e^(-t/tau_syn)), the shape of a LIF PSP, at `t` in ms."""
    return amplitude * (jnp.exp(-t / TAU_MEM) - jnp.exp(-t / TAU_SYN))


def solve(fn, lower, upper, solver, dtype=jnp.float64):
    return optx.root_find(
        fn, solver, jnp.asarray(upper, dtype),
        options=dict(lower=jnp.asarray(lower, dtype), upper=jnp.asarray(upper, dtype)),
        throw=False,
    )


# (function, bracket, root): each decreases through its root, as the simulator's
# negated spike condition does.
CASES = {
    "cosine": (lambda t, _: jnp.cos(t) - t, (0.0, 1.0), 0.7390851332151607),
    # A parabola that peaks inside the bracket, with its upper end past the peak:
    # the chord from the upper end first moves away from the root.
    "peak inside": (
        lambda t, _: 50.0 * (t - 0.9) ** 2 - 0.05, (0.5, 0.93), 0.9 - np.sqrt(1e-3)
    ),
    "steep": (lambda t, _: -jnp.tanh(200.0 * (t - 0.3)), (0.0, 1.0), 0.3),
    # The first time 4 (e^(-t/20) - e^(-t/5)) reaches 1; the root is found by
    # NumPy bisection in `psp_root`.
    "psp crossing": (lambda t, _: 1.0 - psp(t, 4.0), (0.0, 6.0), None),
}


def psp_root() -> float:
    """Return the first time 4 (e^(-t/20) - e^(-t/5)) reaches 1, by NumPy bisection."""
    lo, hi = 0.0, 6.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        value = 4.0 * (np.exp(-mid / TAU_MEM) - np.exp(-mid / TAU_SYN))
        lo, hi = (mid, hi) if value < 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("name", sorted(CASES))
def test_false_position_beats_bisection(name):
    fn, (lower, upper), root = CASES[name]
    root = psp_root() if root is None else root
    tol = dict(rtol=1e-10, atol=1e-10)
    found = solve(fn, lower, upper, FalsePosition(**tol))
    halved = solve(fn, lower, upper, optx.Bisection(flip=True, **tol))
    assert found.result == optx.RESULTS.successful
    assert float(found.value) == pytest.approx(root, abs=1e-9)

    # Superlinear against linear convergence: bisection needs about 33 halvings
    # of a bracket of length 1 to reach 1e-10.
    steps, bisection_steps = int(found.stats["num_steps"]), int(halved.stats["num_steps"])
    assert steps <= bisection_steps // 2, (steps, bisection_steps)


def test_false_position_float32_tolerances():
    fn, (lower, upper), _ = CASES["psp crossing"]
    found = solve(fn, lower, upper, FalsePosition(rtol=1e-6, atol=1e-5), jnp.float32)
    assert found.result == optx.RESULTS.successful
    assert found.value.dtype == jnp.float32
    assert float(found.value) == pytest.approx(psp_root(), abs=1e-5)
    assert int(found.stats["num_steps"]) <= 8


def test_root_at_upper_end_no_step():
    # Under vmap, diffrax root-finds `t_next - t` in lanes without an event.
    found = solve(lambda t, _: 0.7 - t, 0.2, 0.7, FalsePosition(rtol=1e-6, atol=1e-6))
    assert float(found.value) == 0.7
    assert int(found.stats["num_steps"]) == 0


def test_root_gradient_is_implicit():
    # The root of t^2 - p is sqrt(p), with d root / dp = 1 / (2 sqrt(p)).
    def root(p):
        return optx.root_find(
            lambda t, p: t**2 - p, FalsePosition(rtol=1e-12, atol=1e-12), jnp.asarray(2.0),
            args=p, options=dict(lower=jnp.asarray(0.0), upper=jnp.asarray(2.0)),
        ).value

    p = jnp.asarray(1.7)
    assert float(root(p)) == pytest.approx(np.sqrt(1.7), rel=1e-10)
    assert float(jax.grad(root)(p)) == pytest.approx(0.5 / np.sqrt(1.7), rel=1e-8)


def test_missing_bracket_names_option():
    with pytest.raises(ValueError, match=r"options=dict\(lower=..., upper=...\)"):
        optx.root_find(lambda t, _: t - 1.0, FalsePosition(rtol=1e-6, atol=1e-6), jnp.asarray(0.0))


def test_config_root_finder_names():
    assert isinstance(SimulationConfig().make_root_finder(), optx.Bisection)
    chosen = SimulationConfig(root_finder="false_position").make_root_finder()
    assert isinstance(chosen, FalsePosition)
    with pytest.raises(ValueError, match="root_finder='brent'.*'false_position'"):
        SimulationConfig(root_finder="brent")
