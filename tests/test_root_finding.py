import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest

from eventax_lab.config import SimulationConfig
from eventax_lab.root_finding import Chandrupatla, FalsePosition

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


@pytest.mark.parametrize("solver, max_steps", [(FalsePosition, 8), (Chandrupatla, 7)])
def test_float32_psp_crossing(solver, max_steps):
    fn, (lower, upper), _ = CASES["psp crossing"]
    found = solve(fn, lower, upper, solver(rtol=1e-6, atol=1e-5), jnp.float32)
    assert found.result == optx.RESULTS.successful
    assert found.value.dtype == jnp.float32
    assert float(found.value) == pytest.approx(psp_root(), abs=1e-5)
    assert int(found.stats["num_steps"]) <= max_steps


# Functions on which false position stops early or needs many steps, with their
# roots: a parabola that barely crosses zero, a steep exponential, and a root of
# multiplicity 9. Each decreases through its root.
HARD_CASES = {
    "grazing": (lambda t, _: (t - 1.0) ** 2 - 1e-6, (0.0, 1.0), 0.999),
    "exponential": (lambda t, _: 1.0 - jnp.exp(t) / 1e6, (0.0, 20.0), np.log(1e6)),
    "ninth power": (lambda t, _: -((t - 0.3) ** 9), (0.0, 1.0), 0.3),
}


@pytest.mark.parametrize("tol", [1e-10, 1e-5])
@pytest.mark.parametrize("name", sorted(CASES) + sorted(HARD_CASES))
def test_chandrupatla_root_within_tolerance(name, tol):
    fn, (lower, upper), root = {**CASES, **HARD_CASES}[name]
    root = psp_root() if root is None else root

    def inside_only(t, args):
        # NaN outside the bracket: an iterate that left it would spoil the result.
        return jnp.where((t < lower) | (t > upper), jnp.nan, fn(t, args))

    found = solve(inside_only, lower, upper, Chandrupatla(rtol=tol, atol=tol))
    halved = solve(fn, lower, upper, optx.Bisection(flip=True, rtol=tol, atol=tol))
    assert found.result == optx.RESULTS.successful
    # The bracket's stop test bounds the distance to the root, however flat f is.
    assert abs(float(found.value) - root) <= tol * (1.0 + abs(root))
    steps, bisection_steps = int(found.stats["num_steps"]), int(halved.stats["num_steps"])
    if name in CASES and tol == 1e-10:
        # Superlinear convergence on smooth simple roots.
        assert steps <= bisection_steps // 2, (steps, bisection_steps)
    else:
        # Where interpolation does not help, the midpoint fallback keeps the count near bisection's.
        assert steps <= bisection_steps + 4, (steps, bisection_steps)


def test_chandrupatla_bracket_shorter_than_tolerance():
    # A solver step shorter than the root tolerance: the bracket meets it at once,
    # and the end with the smaller |f| (here the lower one) is the root.
    lower, upper = 0.5, 0.5 + 1e-7

    def fn(t, _):
        inside = (t >= lower) & (t <= upper)
        return jnp.where(inside, 0.5 + 2e-8 - t, jnp.nan)

    found = solve(fn, lower, upper, Chandrupatla(rtol=1e-6, atol=1e-5))
    assert found.result == optx.RESULTS.successful
    assert float(found.value) == lower
    assert int(found.stats["num_steps"]) == 1


@pytest.mark.parametrize("lower, upper", [(-1.0, 2.0), (-1.0, 1.0)])
def test_chandrupatla_no_sign_change_fails(lower, upper):
    found = solve(lambda t, _: t**2 + 1.0, lower, upper, Chandrupatla(rtol=1e-6, atol=1e-6))
    assert found.result == optx.RESULTS.nonlinear_divergence
    assert int(found.stats["num_steps"]) == 0


@pytest.mark.parametrize("solver", [FalsePosition, Chandrupatla])
def test_root_at_lower_end(solver):
    found = solve(lambda t, _: 0.2 - t, 0.2, 0.7, solver(rtol=1e-6, atol=1e-6))
    assert found.result == optx.RESULTS.successful
    assert float(found.value) == pytest.approx(0.2, abs=1e-6)


def test_root_at_upper_end_no_step():
    # Under vmap, diffrax root-finds `t_next - t` in lanes without an event.
    for solver in (FalsePosition, Chandrupatla):
        found = solve(lambda t, _: 0.7 - t, 0.2, 0.7, solver(rtol=1e-6, atol=1e-6))
        assert float(found.value) == 0.7
        assert int(found.stats["num_steps"]) == 0


@pytest.mark.parametrize("solver", [FalsePosition, Chandrupatla])
def test_root_gradient_is_implicit(solver):
    # The root of t^2 - p is sqrt(p), with d root / dp = 1 / (2 sqrt(p)).
    def root(p):
        return optx.root_find(
            lambda t, p: t**2 - p, solver(rtol=1e-12, atol=1e-12), jnp.asarray(2.0),
            args=p, options=dict(lower=jnp.asarray(0.0), upper=jnp.asarray(2.0)),
        ).value

    p = jnp.asarray(1.7)
    assert float(root(p)) == pytest.approx(np.sqrt(1.7), rel=1e-10)
    assert float(jax.grad(root)(p)) == pytest.approx(0.5 / np.sqrt(1.7), rel=1e-8)


@pytest.mark.parametrize("solver", [FalsePosition, Chandrupatla])
def test_missing_bracket_names_option(solver):
    with pytest.raises(ValueError, match=r"options=dict\(lower=..., upper=...\)"):
        optx.root_find(lambda t, _: t - 1.0, solver(rtol=1e-6, atol=1e-6), jnp.asarray(0.0))


def test_config_root_finder_names():
    assert isinstance(SimulationConfig().make_root_finder(), optx.Bisection)
    assert isinstance(SimulationConfig(root_finder="chandrupatla").make_root_finder(), Chandrupatla)
    chosen = SimulationConfig(root_finder="false_position").make_root_finder()
    assert isinstance(chosen, FalsePosition)
    with pytest.raises(ValueError, match="root_finder='brent'.*'false_position'"):
        SimulationConfig(root_finder="brent")
