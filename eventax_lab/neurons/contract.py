"""Check a neuron model against what the event-driven simulator relies on.

`check_neuron_model` runs a model, built-in or a user's own, through four groups
of checks and raises `ContractError` listing the violations it found. Violations
of groups 1 and 2 end the check early, because the later groups would only
report their consequences.

1. Structure: per-neuron fields carry the neuron index on their leading axis,
   weight matrices have shape `[n_neurons, n_sources]`, and no field contains a
   non-array value (such as a string) that is not `eqx.field(static=True)`.
2. Shapes and dtypes: `init_state`, `dynamics`, `input_spike` and `reset_spiked`
   return states of the shape and dtype they were given, `spike_condition`
   returns one value per neuron, and `input_spike` and `reset_spiked` leave the
   state unchanged when no source fired and no neuron spiked.
3. Transformations: the methods give the same values when vmapped over neurons
   the way `run_independent_neurons` does, and the trainable parameters have a
   finite gradient through one step of dynamics, input, spike and reset. A
   model that declares `additive_inputs` must give the same state when all
   sources arrive in one `input_spike` call as when they arrive in two.
4. A probe trajectory: random input spikes drive the population for
   `t_end / dt` RK4 steps of at most `dt`. A step that ends above threshold is
   shortened by bisection to the threshold crossing, as the simulator's root
   finder does, and the neurons there are reset. Along the way `dynamics` and
   `spike_condition` must stay finite, and every reset must leave the spiked
   neurons strictly below threshold and the other neurons untouched.
"""

import dataclasses
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .base import NeuronModel, connection_fields, split_neurons, trainable_filter

# Bisection halvings that locate a threshold crossing inside one probe step. The
# remaining bracket, 2**-40 of the step, is far below any solver tolerance.
_BISECTION_ITERATIONS = 40


class ContractError(ValueError):
    """Error for a neuron model that breaks what the simulator relies on, listing each violation."""


@dataclasses.dataclass(frozen=True)
class ContractReport:
    """Summary of a passed check.

    **Fields:**

    - `n_neurons`, `n_sources`, `n_channels`: sizes read from the model.
    - `n_steps`: RK4 steps of the probe trajectory.
    - `n_spikes`: spikes in the probe trajectory whose reset was checked.
    - `weight_gain`, `absolute_weights`: factor applied to the weight matrices,
      and whether to their absolute values, in the probe that produced those
      spikes. They are 1 and false unless the model's own weights were too weak.
    """

    n_neurons: int
    n_sources: int
    n_channels: int
    n_steps: int
    n_spikes: int
    weight_gain: float
    absolute_weights: bool


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _check_structure(model: NeuronModel) -> tuple[list[str], int, int]:
    problems = []
    try:
        n = int(model.n_neurons)
    except Exception as exc:  # noqa: BLE001 - any failure here is the model's violation
        return [f"n_neurons could not be read ({_describe(exc)})."], 0, 0
    try:
        n_sources = int(model.n_sources)
    except Exception as exc:  # noqa: BLE001
        return [f"n_sources could not be read ({_describe(exc)})."], n, 0
    if n < 1 or n_sources < 1:
        problems.append(f"n_neurons={n} and n_sources={n_sources} must both be >= 1.")

    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        if isinstance(value, NeuronModel) or field.metadata.get("static", False):
            continue
        for leaf in jax.tree.leaves(value):
            if not isinstance(leaf, (jax.Array, np.ndarray, bool, int, float, complex)):
                problems.append(
                    f"field {field.name!r} contains a {type(leaf).__name__}, which jit and vmap "
                    "cannot trace; declare it with eqx.field(static=True)."
                )
            elif field.metadata.get("per_neuron", False) and (
                np.ndim(leaf) == 0 or np.shape(leaf)[0] != n
            ):
                problems.append(
                    f"field {field.name!r} is declared per-neuron but has shape "
                    f"{np.shape(leaf)}; its leading axis must have length n_neurons={n}, "
                    "or declare it with per_neuron=False."
                )
    for path in connection_fields(model):
        value = model
        for name in path:
            value = getattr(value, name)
        if np.shape(value) != (n, n_sources):
            problems.append(
                f"weight field {'.'.join(path)!r} has shape {np.shape(value)}; a connection "
                f"field must have shape (n_neurons, n_sources) = ({n}, {n_sources})."
            )
    return problems, n, n_sources


def _check_state_shape(name: str, result, expected: Array) -> list[str]:
    shape, dtype = getattr(result, "shape", None), getattr(result, "dtype", None)
    if shape != expected.shape or dtype != expected.dtype:
        return [
            f"{name} returned shape {shape} and dtype {dtype}; the state it was given has "
            f"shape {expected.shape} and dtype {expected.dtype}, and the simulator needs "
            "them unchanged."
        ]
    return []


def _call(problems: list[str], name: str, function: Callable, *args):
    """Call a model method, recording an exception as a violation and returning None."""
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - a failing method is the model's violation
        problems.append(f"{name} raised {_describe(exc)}.")
        return None


def _check_signatures(
    model: NeuronModel, y: Float[Array, "n c"], n: int, n_sources: int
) -> list[str]:
    """Check shapes, dtypes and the no-event identities of every method at the state `y`."""
    problems: list[str] = []
    t = jnp.zeros((), y.dtype)
    sources = jnp.arange(n_sources)
    all_sources = jnp.ones((n_sources,), bool)
    no_sources = jnp.zeros((n_sources,), bool)
    all_neurons = jnp.ones((n,), bool)
    no_neurons = jnp.zeros((n,), bool)

    derivative = _call(problems, "dynamics", model.dynamics, t, y, None)
    if derivative is not None:
        problems += _check_state_shape("dynamics", derivative, y)
    condition = _call(problems, "spike_condition", model.spike_condition, t, y)
    if condition is not None and (
        getattr(condition, "shape", None) != (n,)
        or not jnp.issubdtype(condition.dtype, jnp.floating)
    ):
        problems.append(
            f"spike_condition returned shape {getattr(condition, 'shape', None)} and dtype "
            f"{getattr(condition, 'dtype', None)}; it must return one float per neuron, "
            f"shape ({n},)."
        )
    after_input = _call(problems, "input_spike", model.input_spike, y, sources, all_sources)
    if after_input is not None:
        problems += _check_state_shape("input_spike", after_input, y)
    no_input = _call(problems, "input_spike", model.input_spike, y, sources, no_sources)
    if no_input is not None and not _check_state_shape("input_spike", no_input, y):
        if not bool(jnp.array_equal(no_input, y, equal_nan=True)):
            problems.append(
                "input_spike changed the state although valid_mask was all false; sources "
                "with valid_mask false must have no effect, because the simulator calls "
                "input_spike at every event with most sources masked out."
            )
    after_reset = _call(problems, "reset_spiked", model.reset_spiked, y, all_neurons)
    if after_reset is not None:
        problems += _check_state_shape("reset_spiked", after_reset, y)
    no_reset = _call(problems, "reset_spiked", model.reset_spiked, y, no_neurons)
    if no_reset is not None and not _check_state_shape("reset_spiked", no_reset, y):
        if not bool(jnp.array_equal(no_reset, y, equal_nan=True)):
            problems.append(
                "reset_spiked changed the state although spike_mask was all false; only "
                "neurons whose spike_mask is true may be reset."
            )
    observed = _call(problems, "observe", model.observe, y)
    if observed is not None and (getattr(observed, "ndim", None) != 2 or observed.shape[0] != n):
        problems.append(
            f"observe returned shape {getattr(observed, 'shape', None)}; it must return "
            f"[n_neurons={n}, observables]."
        )
    return problems


def _method_outputs(model: NeuronModel, y: Float[Array, "n c"]):
    """Evaluate every method once at `y`, with all sources firing and all neurons reset."""
    n_sources = model.n_sources
    t = jnp.zeros((), y.dtype)
    all_sources = jnp.ones((n_sources,), bool)
    all_neurons = jnp.ones((y.shape[0],), bool)
    return (
        model.dynamics(t, y, None),
        model.spike_condition(t, y),
        model.input_spike(y, jnp.arange(n_sources), all_sources),
        model.reset_spiked(y, all_neurons),
    )


def _check_vmap(model: NeuronModel, y: Float[Array, "n c"]) -> list[str]:
    """Compare each method on the population with the same method vmapped over single neurons."""
    names = ("dynamics", "spike_condition", "input_spike", "reset_spiked")
    try:
        population = jax.jit(_method_outputs)(model, y)
        expanded, in_axes = split_neurons(model)
        per_neuron = eqx.filter_vmap(_method_outputs, in_axes=(in_axes, 0))(expanded, y[:, None])
    except Exception as exc:  # noqa: BLE001 - a failing transformation is the violation
        return [
            f"jit or vmap over neurons failed ({_describe(exc)}). Declare every field "
            "with a neuron axis through parameter() or setting() so split_neurons slices "
            "it, and mark strings and other options eqx.field(static=True)."
        ]
    problems = []
    for name, full, lanes in zip(names, population, per_neuron):
        # Each lane contains one neuron, so lanes must be [n, 1, ...] for a [n, ...] result.
        if lanes.shape != (full.shape[0], 1, *full.shape[1:]):
            problems.append(
                f"{name} returned shape {lanes.shape[1:]} for a single neuron vmapped alone, "
                f"expected {(1, *full.shape[1:])}; a field that varies per neuron is probably "
                "declared per_neuron=False, so split_neurons does not slice it."
            )
            continue
        lanes = lanes.reshape(full.shape)
        # Batched and unbatched code may round differently, by up to a few ulps of
        # the largest term before cancellation, so the tolerance scales with the
        # largest value instead of each element.
        scale = jnp.maximum(1.0, jnp.max(jnp.abs(jnp.where(jnp.isfinite(full), full, 0.0))))
        tolerance = 1e4 * jnp.finfo(full.dtype).eps * scale
        if not bool(jnp.allclose(full, lanes, rtol=0, atol=tolerance, equal_nan=True)):
            problems.append(
                f"{name} gives different values when vmapped over single neurons (as the "
                "simulator runs a layer); a field that varies per neuron is probably not "
                "declared per_neuron, or the method mixes neurons."
            )
    return problems


def _check_additive_inputs(
    model: NeuronModel, y: Float[Array, "n c"], weight_gains: tuple[float, ...]
) -> list[str]:
    """Compare all sources arriving in one `input_spike` call with them arriving in two.

    The comparison runs at every weight gain of the probe, on the weights and on
    their absolute values, because a jump that saturates looks additive for
    small weights.
    """
    n_sources = model.n_sources
    sources = jnp.arange(n_sources)
    first_half = sources < (n_sources + 1) // 2
    for gain in (1.0, *weight_gains):
        for absolute in (False, True):
            scaled = _scale_weights(model, gain, absolute)
            together = scaled.input_spike(y, sources, jnp.ones((n_sources,), bool))
            in_parts = scaled.input_spike(
                scaled.input_spike(y, sources, first_half), sources, ~first_half
            )
            scale = jnp.maximum(jnp.max(jnp.abs(together)), 1.0)
            if not bool(jnp.all(jnp.abs(in_parts - together) <= 1e-5 * scale)):
                weights = "|weights|" if absolute else "weights"
                return [
                    f"additive_inputs is True, but with {weights} x{gain:g}, input_spike "
                    f"with every source at once gives {together}, and with the sources in "
                    f"two halves {in_parts}. Set additive_inputs = False, so that the "
                    "simulator delivers simultaneous inputs in one call."
                ]
    return []


def _check_grad(model: NeuronModel, y: Float[Array, "n c"], dt: float) -> list[str]:
    """Check that one step of dynamics, input, spike condition and reset has a finite gradient."""
    trainable, fixed = eqx.partition(model, trainable_filter(model))
    if not jax.tree.leaves(trainable):
        return []

    def step_value(trainable_part):
        m = eqx.combine(trainable_part, fixed)
        t = jnp.zeros((), y.dtype)
        y_in = m.input_spike(y, jnp.arange(m.n_sources), jnp.ones((m.n_sources,), bool))
        derivative = m.dynamics(t, y_in, None)
        y_next = y_in + dt * derivative
        condition = m.spike_condition(t, y_next)
        y_reset = m.reset_spiked(y_next, condition >= jnp.max(condition))
        return jnp.sum(derivative) + jnp.sum(condition) + jnp.sum(m.spike_condition(t, y_reset))

    try:
        gradient = jax.jit(jax.grad(step_value))(trainable)
    except Exception as exc:  # noqa: BLE001 - a failing transformation is the violation
        return [f"jax.grad through one step failed ({_describe(exc)})."]
    if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(gradient)):
        return [
            "the gradient of one step (input_spike, dynamics, spike_condition, "
            "reset_spiked) with respect to the trainable parameters is not finite."
        ]
    return []


def _changed(after: Array, before: Array) -> Bool[Array, " n"]:
    """Return per neuron whether any channel differs, counting NaN as equal to NaN."""
    same = (after == before) | (jnp.isnan(after) & jnp.isnan(before))
    return ~jnp.all(same, axis=1)


def _rk4(model: NeuronModel, t, y, h):
    k1 = model.dynamics(t, y, None)
    k2 = model.dynamics(t + h / 2, y + h / 2 * k1, None)
    k3 = model.dynamics(t + h / 2, y + h / 2 * k2, None)
    k4 = model.dynamics(t + h, y + h * k3, None)
    y_next = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    finite = jnp.all(jnp.isfinite(jnp.stack([k1, k2, k3, k4])), axis=(0, 2))
    return y_next, finite


@eqx.filter_jit
def _probe(
    model: NeuronModel, fire: Bool[Array, "steps n_sources"], dt: float
) -> dict[str, Array]:
    """Drive the population with the input pattern `fire` and record what each step did."""
    y0 = model.init_state(model.n_neurons)
    sources = jnp.arange(model.n_sources)
    dt = jnp.asarray(dt, y0.dtype)

    def max_condition(t, y, h):
        y_h, _ = _rk4(model, t, y, h)
        return jnp.max(model.spike_condition(t + h, y_h))

    def step(carry, fire_now):
        t, y = carry
        y = model.input_spike(y, sources, fire_now)
        # Neurons that an input jump lifted to threshold spike at once, as in the simulator.
        jumped = model.spike_condition(t, y) >= 0
        y_jumped = model.reset_spiked(y, jumped)
        condition_after_jump = model.spike_condition(t, y_jumped)

        y_full, _ = _rk4(model, t, y_jumped, dt)
        crossed = jnp.max(model.spike_condition(t + dt, y_full)) >= 0

        def bisect(_, bracket):
            lower, upper = bracket
            middle = (lower + upper) / 2
            above = max_condition(t, y_jumped, middle) >= 0
            return jnp.where(above, lower, middle), jnp.where(above, middle, upper)

        _, upper = jax.lax.fori_loop(
            0, _BISECTION_ITERATIONS, bisect, (jnp.zeros_like(dt), dt)
        )
        h = jnp.where(crossed, upper, dt)
        y_new, finite = _rk4(model, t, y_jumped, h)
        condition_new = model.spike_condition(t + h, y_new)
        spiked = crossed & (condition_new >= 0)
        y_after = model.reset_spiked(y_new, spiked)
        condition_after = model.spike_condition(t + h, y_after)

        record = {
            "t": t,
            "state": y_jumped,
            "finite": finite & jnp.isfinite(condition_new),
            "jumped": jumped,
            "condition_after_jump": condition_after_jump,
            "spiked": spiked,
            "condition_after_reset": condition_after,
            "others_changed": (_changed(y_after, y_new) & ~spiked)
            | (_changed(y_jumped, y) & ~jumped),
        }
        return (t + h, y_after), record

    _, records = jax.lax.scan(step, (jnp.zeros((), y0.dtype), y0), fire)
    return records


def _scale_weights(model: NeuronModel, gain: float, absolute: bool) -> NeuronModel:
    """Return `model` with every weight matrix times `gain`, after taking `abs` if `absolute`."""
    for path in connection_fields(model):

        def get(m, path=path):
            for name in path:
                m = getattr(m, name)
            return m

        weight = jnp.abs(get(model)) if absolute else get(model)
        model = eqx.tree_at(get, model, gain * weight)
    return model


def _probe_problems(records: dict[str, np.ndarray]) -> list[str]:
    problems = []
    finite = records["finite"]
    if not finite.all():
        step, neuron = np.argwhere(~finite)[0]
        problems.append(
            f"dynamics or spike_condition returned NaN or inf at t={records['t'][step]:.4g} "
            f"for neuron {neuron}, whose state before that step was "
            f"{records['state'][step, neuron]}; keep them finite over every state the "
            "neuron can reach (clip exponentials, use a phase variable for blow-ups)."
        )
    for kind, spiked_key, condition_key in (
        ("a threshold crossing", "spiked", "condition_after_reset"),
        ("an input jump that lifted it above threshold", "jumped", "condition_after_jump"),
    ):
        still_above = records[spiked_key] & ~(records[condition_key] < 0)
        if still_above.any():
            step, neuron = np.argwhere(still_above)[0]
            problems.append(
                f"reset_spiked left neuron {neuron} at spike_condition="
                f"{records[condition_key][step, neuron]:.4g} >= 0 after {kind} at "
                f"t={records['t'][step]:.4g}; a reset must move spiked neurons strictly "
                "below threshold, or the simulator would record the spike again at once."
            )
            # A neuron left above threshold also fails every later check of this kind.
            break
    if records["others_changed"].any():
        step, neuron = np.argwhere(records["others_changed"])[0]
        problems.append(
            f"reset_spiked changed neuron {neuron} at t={records['t'][step]:.4g} although "
            "its spike_mask was false; only neurons whose spike_mask is true may be reset."
        )
    return problems


def _probe_with_gains(
    model: NeuronModel,
    fire: Bool[Array, "steps n_sources"],
    dt: float,
    weight_gains: tuple[float, ...],
    problems: list[str],
) -> tuple[dict[str, np.ndarray] | None, int, float, bool]:
    """Run the probe at each weight gain in turn until it spikes or finds a violation.

    The gains apply first to the model's weights, then to their absolute values,
    since random signs can keep every neuron below threshold. Appends violations
    to `problems`. **Returns:** the records of the last probe run (None if it
    raised), its spike count, its gain and whether it used absolute weights.
    """
    records, n_spikes = None, 0
    trials = [(gain, False) for gain in weight_gains] + [(gain, True) for gain in weight_gains]
    for gain, absolute in trials:
        label = f"probe with {'|weights|' if absolute else 'weights'} x{gain:g}"
        try:
            probed = _scale_weights(model, gain, absolute)
            records = jax.tree.map(np.asarray, _probe(probed, fire, dt))
        except Exception as exc:  # noqa: BLE001 - a failing probe is the model's violation
            problems.append(f"{label}: the jitted probe trajectory failed ({_describe(exc)}).")
            return None, 0, gain, absolute
        n_spikes = int(records["spiked"].sum() + records["jumped"].sum())
        probe_problems = _probe_problems(records)
        if probe_problems:
            problems += [f"{label}: {problem}" for problem in probe_problems]
            break
        if n_spikes > 0:
            break
    if n_spikes == 0 and not problems:
        problems.append(
            f"no neuron reached threshold in the probe with weights or their absolute values "
            f"scaled by {weight_gains}, so reset_spiked could not be checked; raise "
            "input_probability or t_end, or pass larger weight_gains."
        )
    return records, n_spikes, gain, absolute


def check_neuron_model(
    model: NeuronModel,
    *,
    t_end: float = 60.0,
    dt: float = 0.1,
    input_probability: float = 0.02,
    weight_gains: tuple[float, ...] = (1.0, 10.0, 100.0),
    key: PRNGKeyArray | None = None,
) -> ContractReport:
    """Check that `model` meets the neuron-model contract listed in the module docstring.

    **Arguments:**

    - `model`: the population to check, as it would be passed to `run_population`.
    - `t_end`, `dt`: length and fixed RK4 step of the probe trajectory, in the
      model's time unit. Pick `dt` well below the model's fastest time constant.
    - `input_probability`: chance that each source fires in each probe step.
    - `weight_gains`: factors tried on the weight matrices, in order, until the
      probe produces spikes whose reset can be checked, then tried on their
      absolute values. Scaling the weights only changes how hard the probe
      drives the neurons.
    - `key`: PRNG key of the probe's input spikes, `PRNGKey(0)` if omitted.

    **Returns:** a `ContractReport`.

    **Raises:** `ContractError` listing the violations found, including a probe
    that never reaches threshold at any gain, since the reset then stays unchecked.
    """
    if not isinstance(model, NeuronModel):
        raise TypeError(
            f"model is a {type(model).__name__}; pass an instance of a NeuronModel subclass."
        )
    if not (t_end > 0 and dt > 0 and dt <= t_end):
        raise ValueError(f"t_end={t_end} and dt={dt} must satisfy 0 < dt <= t_end.")
    if not 0 < input_probability <= 1:
        raise ValueError(f"input_probability={input_probability} must lie in (0, 1].")
    if not weight_gains:
        raise ValueError("weight_gains is empty; pass at least one factor, such as (1.0,).")
    name = type(model).__name__

    def fail(problems: list[str]):
        listed = "\n".join(f"- {problem}" for problem in problems)
        raise ContractError(f"{name} violates the neuron-model contract:\n{listed}")

    problems, n, n_sources = _check_structure(model)
    if problems:
        fail(problems)
    y0 = _call(problems, "init_state", model.init_state, n)
    if y0 is not None and (
        getattr(y0, "ndim", None) != 2
        or y0.shape[0] != n
        or not jnp.issubdtype(y0.dtype, jnp.floating)
    ):
        problems.append(
            f"init_state({n}) returned shape {getattr(y0, 'shape', None)} and dtype "
            f"{getattr(y0, 'dtype', None)}; it must return a float array [n_neurons, channels]."
        )
    if problems:
        fail(problems)
    if not bool(jnp.all(jnp.isfinite(y0))):
        problems.append(f"init_state returned non-finite values {y0}.")
    problems += _check_signatures(model, y0, n, n_sources)
    if problems:
        fail(problems)
    condition0 = model.spike_condition(jnp.zeros((), y0.dtype), y0)
    if not bool(jnp.all(condition0 < 0)):
        problems.append(
            f"init_state puts neurons at spike_condition={condition0}; every neuron must "
            "start below threshold (negative condition), or it spikes at t=0."
        )

    key = jax.random.PRNGKey(0) if key is None else key
    n_steps = max(1, int(round(t_end / dt)))
    fire = jax.random.bernoulli(key, input_probability, (n_steps, n_sources))
    records, n_spikes, gain, absolute = _probe_with_gains(
        model, fire, dt, weight_gains, problems
    )
    if records is None:
        fail(problems)

    # A state from the middle of the probe exercises the methods away from rest,
    # unless the probe went non-finite, which is reported already.
    y_mid = jnp.asarray(records["state"][n_steps // 2])
    if not bool(jnp.all(jnp.isfinite(y_mid))):
        y_mid = y0
    problems += _check_signatures(model, y_mid, n, n_sources)
    problems += _check_vmap(model, y_mid)
    problems += _check_grad(model, y_mid, dt)
    if model.additive_inputs:
        problems += _check_additive_inputs(model, y_mid, weight_gains)
    if problems:
        fail(problems)
    return ContractReport(
        n_neurons=n,
        n_sources=n_sources,
        n_channels=int(y0.shape[1]),
        n_steps=n_steps,
        n_spikes=n_spikes,
        weight_gain=float(gain),
        absolute_weights=absolute,
    )
