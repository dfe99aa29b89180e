"""The event-driven simulator: diffrax between events, root-found spike times, jumps at events."""

from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jaxtyping import Array, Bool, Float, Int

from .config import SimulationConfig
from .neurons.base import NeuronModel


# Bits of a simulation's failure code, each with the error it raises.
SPIKE_OVERFLOW, OUT_OF_STEPS, SOLVER_FAILED, OUT_OF_EVENTS, INVALID_INPUT = 1, 2, 4, 8, 16
FAILURE_MESSAGES = {
    SPIKE_OVERFLOW: (
        "A neuron spiked more than SimulationConfig.max_spikes times; increase "
        "max_spikes (solver.max_spikes in the Hydra config) or lower the firing rate."
    ),
    OUT_OF_STEPS: (
        "The ODE solve between two events needed more than SimulationConfig.max_steps "
        "solver steps; increase max_steps (solver.max_steps in the Hydra config) or "
        "loosen rtol/atol."
    ),
    SOLVER_FAILED: (
        "The ODE solve between two events failed: the spike-time root find did not "
        "converge or the state became non-finite. Loosen root_rtol/root_atol (float32 "
        "resolves spike conditions to about 1e-6 only), or check the model's dynamics."
    ),
    OUT_OF_EVENTS: (
        "The event loop did not reach t_end within SimulationConfig.max_events "
        "iterations; increase max_events or set it to None."
    ),
    INVALID_INPUT: (
        "An input spike time was negative or NaN (failure code 16, INVALID_INPUT), "
        "and the simulation ran without inputs. Input spike times must lie in "
        "[0, inf], with inf for no spike; check the data's spike encoding. "
        "eventax_lab.data.validate_spike_array(spikes[None], 'spikes') names the "
        "first bad entry of an [n_inputs, K] array."
    ),
}


class SimulationError(RuntimeError):
    """A simulation exceeded a budget or its solver failed; the message names the setting.

    `raise_failures` raises it. With `SimulationConfig(errors="raise")` the same
    messages come from inside the program, as equinox's `EquinoxRuntimeError`.
    """


def raise_failures(failures) -> None:
    """Raise a `SimulationError` if any failure code in `failures` is nonzero.

    `failures` is a failure code or an array of them, as `Recording.failures`
    contains with `SimulationConfig(errors="record")`. Call it outside `jit`.
    """
    codes = np.asarray(failures).astype(np.int64).ravel()
    combined = int(np.bitwise_or.reduce(codes)) if codes.size else 0
    messages = [message for bit, message in FAILURE_MESSAGES.items() if combined & bit]
    if messages:
        failed = int(np.count_nonzero(codes))
        raise SimulationError(
            f"{failed} of {codes.size} simulations failed. " + " ".join(messages)
        )


def merge_failures(failures: Int[Array, "..."], axis) -> Int[Array, "..."]:
    """Combine failure codes along `axis` by bitwise OR."""
    return jax.lax.reduce(failures, jnp.zeros((), failures.dtype), jax.lax.bitwise_or, axis)


class PopulationResult(NamedTuple):
    """Result of one population's event loop; shapes for `n` neurons."""

    spike_times: Float[Array, "n max_spikes"]  # inf-padded, ascending
    spike_counts: Int[Array, " n"]
    samples: Float[Array, "n_samples n observables"]  # observe(y) at `sample_ts`
    integral: Float[Array, "n observables"]  # int_0^T observe(y) dt
    exp_integral: Float[Array, "n observables"]  # int_0^T exp(-lambda t) observe(y) dt
    failures: Int[Array, ""]  # bits of FAILURE_MESSAGES, or 0 on success


class _Carry(NamedTuple):
    t: Float[Array, ""]
    y: Any  # (state, integral accumulator, exp-integral accumulator)
    next_input: Int[Array, ""]
    next_sample: Int[Array, ""]
    segment_steps: Int[Array, ""]  # solver steps since the last event
    dt_next: Float[Array, ""]  # first trial step of the next adaptive solve
    t_cap: Float[Array, ""]  # a solve must end here: the peak of a crossing missed inside a step
    spike_times: Float[Array, "n s"]
    spike_counts: Int[Array, " n"]
    samples: Float[Array, "p n k"]
    done: Bool[Array, ""]
    spike_overflow: Bool[Array, ""]
    out_of_steps: Bool[Array, ""]
    solver_failed: Bool[Array, ""]
    records: Any  # _Records for the event adjoint, else None


# The maximum number of inputs one event-loop iteration delivers to a model with
# `additive_inputs`. The jumps read only these, so an iteration costs the same
# for 5 input slots as for 5000. More inputs at one time arrive over several
# iterations.
INPUT_WINDOW = 32


def _window_size(model: NeuronModel, n_inputs: int) -> int:
    """Return how many inputs one loop iteration reads for `model`."""
    return min(n_inputs, INPUT_WINDOW) if model.additive_inputs else n_inputs


def _input_window(input_sources: Int[Array, " m"], first: Int[Array, ""], window: int):
    """Return the indices `first .. first + window - 1` (clamped), their sources and validity."""
    n_inputs = input_sources.shape[0]
    index = first + jnp.arange(window)
    valid = index < n_inputs
    index = jnp.minimum(index, max(n_inputs - 1, 0))
    return index, input_sources[index], valid


def _earlier(a: Float[Array, ""], b: Float[Array, ""]) -> Float[Array, ""]:
    """Return the earlier time, and `a` at a tie.

    Unlike `jnp.minimum`, which splits the gradient of a tie in halves, this
    gives it all to `a`: an input spike at a sample time keeps its whole gradient.
    """
    return jnp.where(a <= b, a, b)


def _next_time(times: Float[Array, " m"], index: Int[Array, ""]) -> Float[Array, ""]:
    """Return `times[index]`, or inf once `index` has run past the end."""
    if times.shape[0] == 0:
        return jnp.asarray(jnp.inf, dtype=times.dtype)
    safe_index = jnp.minimum(index, times.shape[0] - 1)
    return jnp.where(index < times.shape[0], times[safe_index], jnp.inf)


class _Options(NamedTuple):
    """Static settings of one population's event loop."""

    config: SimulationConfig
    recurrent: bool
    integrals: bool
    integral_channels: tuple[int, ...] | None  # None: every observable
    exp_lambda: float
    stop_after_first_spike: bool


class _Records(NamedTuple):
    """The events of one simulation, as the event adjoint needs them; `r` slots.

    An event is a loop iteration that applied a jump, took a sample or ended the
    simulation. Pauses and redone solves are not events: the state they leave
    is a point on the same solution.
    """

    count: Int[Array, ""]
    dt: Float[Array, ""]  # the forward loop's last trial step, the adjoint's first
    t: Float[Array, " r"]
    pre: Float[Array, "r n c"]  # state before the jumps at `t`
    post: Float[Array, "r n c"]  # state after them
    spiked: Bool[Array, "r n"]
    slot: Int[Array, "r n"]  # spike-time slot each neuron would write at this event
    crossed: Bool[Array, " r"]  # the event time is a root of the spike condition
    tied: Bool[Array, " r"]  # a spike at the previous event's time, whose jump lifted the state
    first_input: Int[Array, " r"]  # inputs first_input .. end_input - 1 arrived at `t`
    end_input: Int[Array, " r"]
    sample: Int[Array, " r"]  # sample slot taken at `t`, or -1


def _vector_field(model: NeuronModel, options: _Options, t, state):
    """Return the derivatives of (state, integral, exp-integral); None for absent integrals."""
    d_state = model.dynamics(t, state, None)
    if not options.integrals:
        return d_state, None, None
    observed = model.observe(state)
    if options.integral_channels is not None:
        channels = list(options.integral_channels)
        observed = jnp.zeros_like(observed).at[:, channels].set(observed[:, channels])
    return d_state, observed, jnp.exp(-options.exp_lambda * t) * observed


def run_population(
    model: NeuronModel,
    input_times: Float[Array, " m"],
    input_sources: Int[Array, " m"],
    config: SimulationConfig,
    *,
    recurrent: bool = False,
    sample_ts: Float[Array, " p"] | None = None,
    integrals: bool | tuple[int, ...] = False,
    exp_lambda: float = 0.0,
    stop_after_first_spike: bool = False,
) -> PopulationResult:
    r"""Simulate one population of neurons over `[0, config.t_end]`.

    The loop alternates between two kinds of iteration. In the first, the
    population has neurons at or above threshold at the current time (an input
    jump lifted them), and those neurons spike now. In the second, diffrax
    integrates `model.dynamics` from the current time towards the next input spike
    or sample time, for at most `config.steps_per_iteration` solver steps, and
    stops early at the first upward zero crossing of `max_i spike_condition_i`,
    located on the solver's dense interpolant by the configured optimistix root
    finder. Every neuron whose condition lies within `config.simultaneous_tol` of
    the largest at that time spikes with it. A solve that runs out of its steps
    ends the iteration without an event, and the next iteration continues it.
    Bounding the steps per iteration keeps vmapped loops in step: without it,
    every iteration would wait for the lane with the longest segment.

    Gradients follow `config.adjoint`. With a diffrax adjoint they are exact
    with respect to the forward simulation, spike times included, since diffrax
    differentiates the root through the implicit function theorem. With
    `"event"`, the forward pass keeps the state at each event, and the backward
    pass solves the adjoint equations between events (see `_event_adjoint`).

    **Arguments:**

    - `model`: the population; its state has shape `[n, channels]`.
    - `input_times`: presynaptic spike times sorted ascending, inf-padded.
    - `input_sources`: source index of each input spike, in `[0, model.n_sources)`.
    - `config`: numerical settings.
    - `recurrent`: own spikes are delivered at once as sources
      `n_sources - n + i` (inputs first, then own neurons).
    - `sample_ts`: times, sorted ascending, at which to record `model.observe`
      (after any jumps at that time).
    - `integrals`: integrate `observe(y)` and `exp(-exp_lambda t) observe(y)` over
      the window alongside the state: `True` for every observable, or a tuple of
      observable indices (the others stay 0). Selecting channels keeps an
      unbounded observable, such as a QIF voltage, out of the integration.
    - `stop_after_first_spike`: end once every neuron has spiked once.

    **Returns:** a [`PopulationResult`][].
    """
    options, sample_ts = _make_options(
        model, input_times.dtype, config, recurrent, sample_ts, integrals, exp_lambda,
        stop_after_first_spike,
    )
    input_times, invalid_input = _clean_inputs(input_times)
    if config.adjoint == "event":
        result = _event_adjoint((model, input_times), input_sources, sample_ts, options)
    else:
        result = _result(_event_loop(model, input_times, input_sources, sample_ts, options)[0])
    return _finish(result, invalid_input, config)


def _make_options(
    model: NeuronModel, dtype, config: SimulationConfig, recurrent, sample_ts, integrals,
    exp_lambda, stop_after_first_spike,
) -> tuple[_Options, Float[Array, " p"]]:
    """Check `run_population`'s keyword arguments; return the loop's options and the sample times."""
    sample_ts = jnp.zeros((0,), dtype) if sample_ts is None else jnp.asarray(sample_ts, dtype)
    n_observables = model.observe(model.init_state(model.n_neurons)).shape[-1]
    if integrals is True or not integrals:
        integral_channels = None
    else:
        integral_channels = tuple(int(c) for c in integrals)
        if any(not 0 <= c < n_observables for c in integral_channels):
            raise ValueError(
                f"integrals={integrals} names observables outside [0, {n_observables}); "
                "pass indices of model.observe's channels."
            )
    options = _Options(
        config, bool(recurrent), bool(integrals), integral_channels, float(exp_lambda),
        bool(stop_after_first_spike),
    )
    return options, sample_ts


def _clean_inputs(input_times: Float[Array, "... m"]) -> tuple[Float[Array, "... m"], Bool[Array, "..."]]:
    """Return the input times with every spike of an invalid train removed, and the flags.

    A negative or NaN time would send a solve backwards or nowhere, with an error
    that names neither. Such a simulation runs without inputs instead, and its
    failure code has the INVALID_INPUT bit.
    """
    invalid = jnp.any(jnp.isnan(input_times) | (input_times < 0), axis=-1)
    return jnp.where(invalid[..., None], jnp.inf, input_times), invalid


def _finish(result: PopulationResult, invalid_input, config: SimulationConfig) -> PopulationResult:
    """Add the invalid-input bit to the failure codes, and raise them with `errors="raise"`."""
    failures = result.failures | (INVALID_INPUT * invalid_input).astype(result.failures.dtype)
    result = result._replace(failures=failures)
    if config.errors == "raise":
        spike_times = result.spike_times
        for bit, message in FAILURE_MESSAGES.items():
            spike_times = eqx.error_if(spike_times, (result.failures & bit) != 0, message)
        result = result._replace(spike_times=spike_times)
    return result


def _result(final: "_Carry") -> PopulationResult:
    """Collect a population's outputs from the loop's final carry."""
    out_of_events = ~final.done & ~final.spike_overflow & ~final.out_of_steps
    failures = (
        SPIKE_OVERFLOW * final.spike_overflow
        | OUT_OF_STEPS * final.out_of_steps
        | SOLVER_FAILED * final.solver_failed
        | OUT_OF_EVENTS * out_of_events
    ).astype(jnp.int32)
    state, integral, exp_integral = final.y
    if integral is None:
        n, n_observables = final.samples.shape[1:]
        integral = exp_integral = jnp.zeros((n, n_observables), state.dtype)
    return PopulationResult(
        final.spike_times, final.spike_counts, final.samples, integral, exp_integral, failures
    )


def _solve_end(sol: diffrax.Solution, t0, y0, direction: float = 1.0):
    """Return where a solve of at most `max_steps` steps stopped.

    `sol` saved `SubSaveAt(t1=True)` and `SubSaveAt(steps=True)`. A paused solve
    (out of steps) continues from its last accepted step, or from `(t0, y0)` if it
    accepted none. Its `t1` entry may be a rejected step: under vmap, diffrax
    root-finds every lane once any lane has an event.

    **Returns:** `(paused, t, y, longest, is_accepted)`. `longest` is the length
    of the longest accepted step, positive because `direction` is -1.0 for a
    solve backwards in time. `is_accepted` is a mask over the saved steps.
    """
    paused = sol.result == diffrax.RESULTS.max_steps_reached
    (ts_end, ts_steps), (ys_end, ys_steps) = sol.ts, sol.ys
    accepted = sol.stats["num_accepted_steps"]
    last = jnp.maximum(accepted - 1, 0)

    def reached(end, steps, start):
        after_pause = jnp.where(accepted > 0, steps[last], start)
        return jnp.where(paused, after_pause, end[0])

    t = reached(ts_end, ts_steps, t0)
    y = jax.tree.map(reached, ys_end, ys_steps, y0)
    step_starts = jnp.concatenate([jnp.reshape(t0, (1,)), ts_steps[:-1]])
    is_accepted = jnp.arange(ts_steps.shape[0]) < accepted
    # Not `abs`: its derivative at the NaN of unused slots would turn zero cotangents into NaN.
    longest = jnp.max(jnp.where(is_accepted, direction * (ts_steps - step_starts), 0.0))
    return paused, t, y, longest, is_accepted


def _event_loop(
    model: NeuronModel,
    input_times: Float[Array, " m"],
    input_sources: Int[Array, " m"],
    sample_ts: Float[Array, " p"],
    options: _Options,
    record: bool = False,
) -> tuple["_Carry", _Records | None]:
    """Run the event loop of `run_population`; with `record`, also keep its events."""
    init, running, step, max_events, n_segments = _loop_parts(
        model, input_times, input_sources, sample_ts, options, record
    )
    final = eqxi.while_loop(
        lambda c: eqxi.unvmap_any(running(c)),
        step,
        init,
        max_steps=max_events,
        # The event adjoint does not differentiate this loop. Otherwise, one
        # checkpoint per event and per typical pause; a loop that runs longer
        # recomputes some iterations in the backward pass instead of storing them.
        **(
            {"kind": "lax"}
            if record
            else {"kind": "checkpointed", "checkpoints": min(max_events, 2 * n_segments + 64)}
        ),
    )
    return final, _final_records(final)


def _final_records(final: "_Carry") -> _Records | None:
    """Return the records of a finished loop, with the trial step the adjoint starts from."""
    if final.records is None:
        return None
    return final.records._replace(dt=final.dt_next)


def _loop_parts(
    model: NeuronModel,
    input_times: Float[Array, " m"],
    input_sources: Int[Array, " m"],
    sample_ts: Float[Array, " p"],
    options: _Options,
    record: bool,
):
    """Build the event loop of one population.

    **Returns:** `(init, running, step, max_events, n_segments)`: the initial
    carry, the test whether a carry still runs, one loop iteration, the bound on
    iterations, and the number of segments that bound derives from.
    """
    config = options.config
    n = model.n_neurons
    dtype = input_times.dtype
    t_end = jnp.asarray(config.t_end, dtype=dtype)
    n_inputs, n_samples, capacity = input_times.shape[0], sample_ts.shape[0], config.max_spikes
    window = _window_size(model, n_inputs)

    y0_state = model.init_state(n).astype(dtype)
    n_observables = model.observe(y0_state).shape[-1]
    zero_acc = jnp.zeros((n, n_observables), dtype) if options.integrals else None

    def vector_field(t, y, args):
        return _vector_field(model, options, t, y[0])

    # Negated so that both lanes with a crossing and, under vmap, lanes without one
    # (where diffrax root-finds `t_next - t`) see a decreasing function, which lets
    # the bracketing bisection use a fixed sign convention.
    def event_condition(t, y, args, **kwargs):
        return -jnp.max(model.spike_condition(t, y[0]))

    solver = config.make_solver()
    controller = config.make_controller()
    # The event adjoint differentiates none of the forward pass.
    adjoint = diffrax.RecursiveCheckpointAdjoint() if record else config.make_adjoint()
    event = diffrax.Event(event_condition, config.make_root_finder(), direction=False)
    term = diffrax.ODETerm(vector_field)
    def solve(t0, t1, y, dt_first):
        if config.step_size == "constant":
            dt0 = jnp.asarray(config.dt, dtype)
        else:
            # Step sizes are not differentiated, as in diffrax's own controllers.
            dt0 = jax.lax.stop_gradient(dt_first)
            # A first step ending exactly at t1 ties diffrax's clip of the step to
            # t1, which would split t1's gradient (an input time's) with the step.
            dt0 = jnp.where(t0 + dt0 == t1, 2.0 * dt0, dt0)
        sol = diffrax.diffeqsolve(
            term, solver, t0, t1, dt0, y,
            # The steps' ends give the last accepted state of a paused solve.
            saveat=diffrax.SaveAt(
                subs=[diffrax.SubSaveAt(t1=True), diffrax.SubSaveAt(steps=True)],
                dense=config.check_peaks,
            ),
            stepsize_controller=controller,
            event=event,
            max_steps=config.steps_per_iteration,
            adjoint=adjoint,
            throw=False,
        )
        paused, t_reached, y_reached, longest, is_accepted = _solve_end(sol, t0, y)
        ts_steps, ys_steps = sol.ts[1], sol.ys[1]
        # The next solve starts with this one's longest accepted step (the last step
        # of a solve is cut short at t1), or with a tenth of this solve's first
        # step if every step was rejected. A crossing right at t0 leaves a zero-length
        # step, which the controller (it scales steps by a factor) never grows, so dt0 stays.
        dt_next = jnp.where(is_accepted[0], jnp.where(longest > 0, longest, dt0), 0.1 * dt0)
        failed = (sol.result != diffrax.RESULTS.successful) & (
            sol.result != diffrax.RESULTS.event_occurred
        )
        steps = sol.stats["num_steps"]
        t_peak = jnp.asarray(jnp.inf, dtype)
        if config.check_peaks:
            t_peak = missed_peak(sol, is_accepted, ts_steps, t0, y[0], ys_steps[0])
        return (
            t_reached, y_reached, sol.event_mask, paused, failed & ~paused, steps, dt_next, t_peak
        )

    def missed_peak(sol, is_step, step_ends, t0, y_start, y_steps):
        """Return the peak time of an excursion above threshold inside one step, or inf.

        diffrax compares the spike condition at step ends only. A step whose ends
        are both below threshold, with the condition rising at its start and
        falling at its end, contains a local maximum. Its time is estimated from
        the step's end values and slopes, and the condition is read there on the
        dense output. Nothing here is differentiated: the caller re-solves up to
        the peak, and diffrax's event then finds the crossing with its gradient.
        """
        dense, frozen = jax.lax.stop_gradient((sol.interpolation, model))
        # Step boundaries: t0, then the ends of the accepted steps (t0 past them).
        bounds = jnp.concatenate([jnp.reshape(t0, (1,)), jnp.where(is_step, step_ends, t0)])
        bounds = jax.lax.stop_gradient(bounds)
        starts, ends = bounds[:-1], bounds[1:]
        # A solve without an accepted step has no dense output to read.
        empty = ~is_step[0]

        def condition_at(t, step):
            # The step's own interpolant: `dense.evaluate` would search the step
            # ends for it, a loop of its own in every iteration.
            t = jnp.where(empty, dense.ts[0], t)
            local = dense.interpolation_cls(
                t0=dense.ts[step], t1=dense.ts[step + 1],
                **jax.tree.map(lambda info: info[step], dense.infos),
            )
            value = jnp.max(frozen.spike_condition(t, local.evaluate(t)[0]))
            return jnp.where(empty, -1.0, value)

        # Values and slopes at the boundaries come from the states the solver
        # accepted there (the start state, then each step's end), slopes through the
        # chain rule dg/dt = dg/dy f(t, y) + dg/dt.
        states = jax.tree.map(
            lambda start, ends: jnp.concatenate([start[None], ends]), y_start, y_steps
        )
        states = jax.lax.stop_gradient(states)

        def value_and_slope(t, y):
            d_state = frozen.dynamics(t, y, None)
            condition = lambda t, y: jnp.max(frozen.spike_condition(t, y))
            return jax.jvp(condition, (t, y), (jnp.ones_like(t), d_state))

        g_bounds, slope_bounds = jax.vmap(value_and_slope)(bounds, states)
        g_start, g_end = g_bounds[:-1], g_bounds[1:]
        slope_start, slope_end = slope_bounds[:-1], slope_bounds[1:]
        # Each step's condition is estimated by the cubic Hermite interpolant of its
        # end values and slopes, H(u) = a u^3 + b u^2 + c u + d for u in [0, 1]. With
        # the slope rising at the start and falling at the end, H' = 3a u^2 + 2b u + c
        # has exactly one root in (0, 1): the estimated peak.
        h = ends - starts
        a = 2 * g_start + h * slope_start - 2 * g_end + h * slope_end
        b = -3 * g_start - 2 * h * slope_start + 3 * g_end - h * slope_end
        c = h * slope_start
        has_peak = is_step & (h > 0) & (slope_start > 0) & (slope_end < 0) & (g_end < 0)
        # The root of the quadratic in its cancellation-free form: q = -(B + sign(B)
        # sqrt(B^2 - 4AC)) / 2 with A = 3a, B = 2b, C = c gives the roots q/A and C/q.
        big_a, big_b = 3 * a, 2 * b
        disc = jnp.sqrt(jnp.maximum(big_b**2 - 4 * big_a * c, 0.0))
        q = -0.5 * (big_b + jnp.where(big_b >= 0, disc, -disc))
        # C/q also covers A = 0, where H' is linear, and lies in (0, 1) unless the
        # root there is q/A.
        root_small = c / jnp.where(q == 0, 1.0, q)
        root_large = q / jnp.where(big_a == 0, 1.0, big_a)
        in_step = (root_small > 0) & (root_small < 1)
        u_peak = jnp.clip(jnp.where(in_step, root_small, root_large), 0.0, 1.0)
        estimate = ((a * u_peak + b) * u_peak + c) * u_peak + g_start
        estimate = jnp.where(has_peak, estimate, -jnp.inf)
        step = jnp.argmax(estimate)
        t_peak = starts[step] + u_peak[step] * h[step]
        # The dense output at the estimated peak decides: the Hermite estimate alone
        # is only as accurate as a cubic through the step's ends.
        reaches = has_peak[step] & (condition_at(t_peak, step) >= 0)
        return jax.lax.stop_gradient(jnp.where(reaches, t_peak, jnp.inf))


    def running(carry: _Carry) -> Bool[Array, ""]:
        return ~carry.done & ~carry.spike_overflow & ~carry.out_of_steps

    def body(carry: _Carry, active: Bool[Array, ""]) -> _Carry:
        # Under vmap the loop runs while any lane runs (see `guarded_body`), and a
        # lane that has stopped (`active` false) writes no sample and no record.
        state = carry.y[0]
        t_input = _next_time(input_times, carry.next_input)
        t_sample = _next_time(sample_ts, carry.next_sample)
        t_target = _earlier(_earlier(_earlier(t_input, t_sample), t_end), carry.t_cap)

        # An input jump may have left neurons at or above threshold: they spike now,
        # once every input due at this time has arrived.
        condition_now = model.spike_condition(carry.t, state)
        above_now = condition_now >= 0
        spike_now = jnp.any(above_now) & (t_input > carry.t)

        t_solve_end = jnp.where(spike_now, carry.t, t_target)
        t_new, y_new, event_happened, paused, failed, steps, dt_next, t_peak = solve(
            carry.t, t_solve_end, carry.y, carry.dt_next
        )
        # A crossing missed inside a step, before any event this solve found: drop
        # the solve, and re-solve next iteration up to the peak, whose step end
        # lies above threshold, so that diffrax's event finds the crossing.
        redo = ~spike_now & (t_peak < t_new) & (t_peak > carry.t)
        t_new = jnp.where(redo, carry.t, t_new)
        y_new = jax.tree.map(lambda a, b: jnp.where(redo, a, b), carry.y, y_new)
        crossed = event_happened & ~spike_now & ~redo
        # The solve used up its steps before reaching t_target or a crossing.
        paused = paused & ~spike_now & ~redo
        # A zero-length solve takes no step, so it keeps the carried trial step.
        dt_next = jnp.where(spike_now, carry.dt_next, dt_next)

        condition_new = model.spike_condition(t_new, y_new[0])
        crossed_mask = crossed & (
            condition_new >= jnp.max(condition_new) - config.simultaneous_tol
        )
        spiked = jnp.where(spike_now, above_now, crossed_mask)
        any_spike = jnp.any(spiked)
        t_new = jnp.where(spike_now, carry.t, t_new)
        y_new = jax.tree.map(lambda a, b: jnp.where(spike_now, a, b), carry.y, y_new)

        # Record and reset the neurons that spiked.
        slot = jnp.minimum(carry.spike_counts, capacity - 1)
        overflow = jnp.any(spiked & (carry.spike_counts >= capacity))
        old_in_slot = carry.spike_times[jnp.arange(n), slot]
        spike_times = carry.spike_times.at[jnp.arange(n), slot].set(
            jnp.where(spiked, t_new, old_in_slot)
        )
        spike_counts = carry.spike_counts + spiked.astype(carry.spike_counts.dtype)
        state_new = model.reset_spiked(y_new[0], spiked)
        if options.recurrent:
            own_sources = model.n_sources - n + jnp.arange(n)
            state_new = model.input_spike(state_new, own_sources, spiked)

        # Without a spike, pause or redo, the solve reached t_target: deliver the
        # inputs due then, at most `window` of them. More inputs at the same time
        # arrive in the next iterations, before any spike, sample or end at that time.
        arrived = ~any_spike & ~paused & ~redo
        window_index, window_sources, in_window = _input_window(
            input_sources, carry.next_input, window
        )
        delivered = (
            arrived & (t_target == t_input) & in_window
            & (input_times[window_index] == t_input)
        )
        state_new = model.input_spike(state_new, window_sources, delivered)
        next_input = carry.next_input + jnp.sum(delivered)
        all_arrived = arrived & (_next_time(input_times, next_input) > t_target)

        take_sample = (
            active & all_arrived & (t_target == t_sample) & (carry.next_sample < n_samples)
        )
        samples = carry.samples
        if n_samples > 0:
            sample_slot = jnp.minimum(carry.next_sample, n_samples - 1)
            samples = samples.at[sample_slot].set(
                jnp.where(take_sample, model.observe(state_new), samples[sample_slot])
            )
        next_sample = carry.next_sample + take_sample.astype(carry.next_sample.dtype)

        done = all_arrived & (t_target >= t_end)
        if options.stop_after_first_spike:
            done = done | (jnp.all(spike_counts >= 1) & (next_sample >= n_samples))

        segment_steps = jnp.where(paused, carry.segment_steps + steps, 0)
        out_of_steps = paused & (segment_steps >= config.max_steps)
        records = carry.records
        if record:
            keep = active & (any_spike | (arrived & (jnp.any(delivered) | take_sample | done)))
            records = _record_event(
                records, keep, t_new, y_new[0], state_new, spiked, slot,
                crossed & ~spike_now, spike_now, carry.next_input, next_input,
                jnp.where(take_sample, carry.next_sample, -1),
            )
        return _Carry(
            t=t_new,
            y=(state_new, y_new[1], y_new[2]),
            next_input=next_input,
            next_sample=next_sample,
            segment_steps=segment_steps,
            dt_next=dt_next,
            t_cap=jnp.where(redo, t_peak, jnp.where(arrived | any_spike, jnp.inf, carry.t_cap)),
            spike_times=spike_times,
            spike_counts=spike_counts,
            samples=samples,
            done=done,
            spike_overflow=carry.spike_overflow | overflow,
            out_of_steps=carry.out_of_steps | out_of_steps,
            solver_failed=carry.solver_failed | (failed & ~spike_now),
            records=records,
        )


    spikes_possible = n * capacity if options.recurrent else capacity
    # Every segment between two events may pause up to ceil(max_steps / steps) times.
    n_segments = n_inputs + n_samples + spikes_possible + 2
    pauses_per_segment = -(-config.max_steps // config.steps_per_iteration)
    max_events = config.max_events or n_segments * (pauses_per_segment + 1)
    records = None
    if record:
        # Each event delivers an input, takes a sample, ends the loop or spikes;
        # every neuron spikes at most `capacity` times plus the one that overflows.
        n_records = n_inputs + n_samples + n * capacity + 2
        records = _Records(
            count=jnp.asarray(0),
            dt=jnp.asarray(config.dt, dtype),
            t=jnp.zeros((n_records,), dtype),
            pre=jnp.zeros((n_records, *y0_state.shape), dtype),
            post=jnp.zeros((n_records, *y0_state.shape), dtype),
            spiked=jnp.zeros((n_records, n), bool),
            slot=jnp.zeros((n_records, n), jnp.int32),
            crossed=jnp.zeros((n_records,), bool),
            tied=jnp.zeros((n_records,), bool),
            first_input=jnp.zeros((n_records,), jnp.int32),
            end_input=jnp.zeros((n_records,), jnp.int32),
            sample=jnp.full((n_records,), -1, jnp.int32),
        )
    init = _Carry(
        t=jnp.asarray(0.0, dtype),
        y=(y0_state, zero_acc, zero_acc),
        next_input=jnp.asarray(0),
        next_sample=jnp.asarray(0),
        segment_steps=jnp.asarray(0),
        dt_next=jnp.asarray(config.dt, dtype),
        t_cap=jnp.asarray(jnp.inf, dtype),
        spike_times=jnp.full((n, capacity), jnp.inf, dtype),
        spike_counts=jnp.zeros((n,), jnp.int32),
        samples=jnp.full((n_samples, n, n_observables), jnp.nan, dtype),
        done=jnp.asarray(False),
        spike_overflow=jnp.asarray(False),
        out_of_steps=jnp.asarray(False),
        solver_failed=jnp.asarray(False),
        records=records,
    )
    init = _batched_like(init, model, input_times, sample_ts)

    def guarded_body(carry: _Carry) -> _Carry:
        # Under vmap, a loop whose condition differs between lanes selects between
        # the old and new value of every carried array after each iteration. The
        # records and samples are the largest arrays, because an output neuron
        # keeps a record slot per input spike. So the loop runs while any lane
        # runs, `body` masks the writes of stopped lanes, and only the small
        # fields are selected here.
        active = running(carry)
        new = body(carry, active)
        selected = _select_running(
            active,
            new._replace(samples=None, records=None),
            carry._replace(samples=None, records=None),
        )
        return selected._replace(samples=new.samples, records=new.records)

    return init, running, guarded_body, max_events, n_segments


def _record_event(records: _Records, keep, t, pre, post, spiked, slot, crossed, tied,
                  first_input, end_input, sample) -> _Records:
    """Write one event into the next free slot of `records` where `keep` is true."""
    index = jnp.minimum(records.count, records.t.shape[0] - 1)
    new = (t, pre, post, spiked, slot, crossed, tied, first_input, end_input, sample)
    fields = [
        field.at[index].set(jnp.where(keep, value, field[index]).astype(field.dtype))
        for field, value in zip(records[2:], new)
    ]
    return _Records(records.count + keep.astype(records.count.dtype), records.dt, *fields)


def _select_running(running: Bool[Array, ""], new, old):
    """Return `new` where `running` is true and `old` elsewhere, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(running, a, b), new, old)


def _batched_like(tree, *sources):
    """Return `tree` with every leaf batched under vmap wherever a leaf of `sources` is.

    Under vmap, JAX batches a while loop by tracing its body until the batched
    entries of the carry stop changing. A carry that starts from constants (a
    zero time, a False flag) becomes batched after one iteration, so the body,
    with the solver loops inside it, is traced a second time. Adding a batched
    zero to each leaf up front saves that second trace. The values do not
    change, and the zero carries no gradient.
    """
    floats = [jnp.ravel(x)[:0] for x in jax.tree.leaves(sources) if eqx.is_inexact_array(x)]
    zero = jax.lax.stop_gradient(sum((jnp.sum(x) for x in floats), jnp.zeros(())))

    def batched(leaf):
        leaf = jnp.asarray(leaf)
        if leaf.dtype == bool:
            return leaf | (zero != 0)
        return leaf + zero.astype(leaf.dtype)

    return jax.tree.map(batched, tree)


def _backward_start(records: _Records, ct_spikes, ct_samples, ct_acc) -> Int[Array, ""]:
    """Return the last recorded event whose outputs have a nonzero cotangent, or -1.

    After that event the adjoint and every time cotangent are zero, and so is all
    that the segments there add to the gradients. The backward loop therefore
    starts at it: a neuron whose later spikes do not reach the loss (those after
    the outputs' first spikes, say) skips their segments. `ct_spikes` has shape
    `[n, capacity]`, `ct_samples` `[p, n, observables]`, and `ct_acc` contains
    the integrals' cotangents, or `(None, None)` without integrals.
    """
    n, capacity = ct_spikes.shape
    events = jnp.arange(records.t.shape[0])
    ct_at_slot = ct_spikes[jnp.arange(n)[None, :], jnp.minimum(records.slot, capacity - 1)]
    has_ct = jnp.any(records.spiked & (records.slot < capacity) & (ct_at_slot != 0), axis=1)
    if ct_samples.shape[0] > 0:
        sample_has_ct = jnp.any(ct_samples != 0, axis=(1, 2))
        has_ct = has_ct | ((records.sample >= 0) & sample_has_ct[jnp.maximum(records.sample, 0)])
    start = jnp.max(jnp.where(has_ct & (events < records.count), events, -1))
    if ct_acc[0] is not None:
        # An integral's cotangent reaches the adjoint in every segment.
        integral_has_ct = jnp.any(ct_acc[0] != 0) | jnp.any(ct_acc[1] != 0)
        start = jnp.where(integral_has_ct, records.count - 1, start)
    return start


def _cotangents(ct, model: NeuronModel, sample_ts, options: _Options):
    """Return the cotangents of spike times, samples and integrals, zeros where `ct` has None.

    **Returns:** `(ct_spikes, ct_samples, ct_acc)`, shaped as `_backward_start`
    takes them.
    """
    n, capacity, dtype = model.n_neurons, options.config.max_spikes, sample_ts.dtype
    n_observables = model.observe(model.init_state(n)).shape[-1]

    def cotangent(value, shape):
        return jnp.zeros(shape, dtype) if value is None else value

    ct_spikes = cotangent(ct.spike_times, (n, capacity))
    ct_samples = cotangent(ct.samples, (sample_ts.shape[0], n, n_observables))
    # The accumulators feed nothing back, so their adjoints stay at the cotangents
    # of the final integrals throughout.
    if options.integrals:
        ct_acc = (
            cotangent(ct.integral, (n, n_observables)),
            cotangent(ct.exp_integral, (n, n_observables)),
        )
    else:
        ct_acc = (None, None)
    return ct_spikes, ct_samples, ct_acc


@eqx.filter_custom_vjp
def _event_adjoint(diff, input_sources, sample_ts, options: _Options) -> PopulationResult:
    """Run the event loop; its gradient solves the adjoint equations between events.

    `diff` is `(model, input_times)`, the arguments that receive gradients.
    """
    model, input_times = diff
    return _result(_event_loop(model, input_times, input_sources, sample_ts, options)[0])


@_event_adjoint.def_fwd
def _event_adjoint_fwd(perturbed, diff, input_sources, sample_ts, options: _Options):
    model, input_times = diff
    final, records = _event_loop(
        model, input_times, input_sources, sample_ts, options, record=True
    )
    return _result(final), records


def _leaves_read(fn, leaves) -> list[bool]:
    """Return, per array in `leaves`, whether `fn(leaves)` reads it (from its jaxpr)."""
    jaxpr = jax.make_jaxpr(fn)(leaves).jaxpr
    used = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    return [id(v) in used for v in jaxpr.invars]


def _dot(a, b) -> Float[Array, ""]:
    """Sum the elementwise products of two pytrees of the same structure."""
    return sum(jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@_event_adjoint.def_bwd
def _event_adjoint_bwd(records: _Records, ct, perturbed, diff, input_sources, sample_ts, options):
    model, input_times = diff
    return _backward(
        records, ct, perturbed[0], model, input_times, input_sources, sample_ts, options
    )


def _backward(
    records: _Records, ct, perturbed_model, model: NeuronModel, input_times, input_sources,
    sample_ts, options: _Options,
):
    r"""Propagate the cotangents of a population's outputs back through its events.

    Between events the state follows $\dot y = f(t, y, \theta)$, and the adjoint
    $\lambda$ (the gradient of the loss with respect to the state at time $t$)
    follows $\dot\lambda = -(\partial f / \partial y)^\top \lambda$, while the
    parameter gradient gathers $\int (\partial f / \partial \theta)^\top \lambda
    \, dt$. Both are solved backwards from each event to the one before it with
    the forward pass's solver and tolerances, the state alongside, starting from
    the state kept at the later event. The error controller weighs the state and
    the adjoint.

    At an event at time $\tau$ with jump $y^+ = J(y^-)$ (reset, recurrent and
    input spikes), the adjoint before it is $J_y^\top \lambda^+$, plus, where
    $\tau$ depends on the state, the time cotangent
    $c = \lambda^+ \cdot (J_y f^- - f^+) + \partial L / \partial \tau$ carried
    onto the state. A spike time is a root of the spike condition $g$, so
    $d\tau / dy^- = -g_y / \dot g$ with $\dot g = g_y f^- + g_t$. An input
    arrival takes its time from the input spike, which receives $c$. A spike
    at an input's arrival time, because the input's jump lifted the state above
    threshold, passes its $c$ on to that input.
    """
    config = options.config
    # Only the perturbed leaves get gradients. The rest of the model is constant.
    params, static = eqx.partition(model, perturbed_model)
    n, dtype = model.n_neurons, input_times.dtype
    n_inputs, capacity = input_times.shape[0], config.max_spikes

    def as_model(p) -> NeuronModel:
        return eqx.combine(p, static)

    state0 = model.init_state(n).astype(dtype)
    ct_spikes, ct_samples, ct_acc = _cotangents(ct, model, sample_ts, options)

    def field(p, t, state):
        return _vector_field(as_model(p), options, t, state)

    def jump(p, state, spiked, sources, delivered):
        m = as_model(p)
        state = m.reset_spiked(state, spiked)
        if options.recurrent:
            state = m.input_spike(state, m.n_sources - n + jnp.arange(n), spiked)
        return m.input_spike(state, sources, delivered)

    def condition(t, state, p):
        return jnp.max(as_model(p).spike_condition(t, state))

    # The backward solve integrates one flat vector (state, adjoint, gradient of
    # the parameters that `dynamics` reads): fewer and smaller leaves make fewer
    # operations per solver stage. The other parameters get nothing from between events.
    leaves, treedef = jax.tree.flatten(params)
    read = _leaves_read(lambda ls: field(jax.tree.unflatten(treedef, ls), 0.0, state0), leaves)
    flat_read, unravel_read = jax.flatten_util.ravel_pytree(
        [leaf for leaf, is_read in zip(leaves, read) if is_read]
    )
    state_size = state0.size

    def merge(flat, others):
        """Return the parameter tree with the read leaves from `flat`, the rest from `others`."""
        values = iter(unravel_read(flat))
        merged = [next(values) if is_read else other for other, is_read in zip(others, read)]
        return jax.tree.unflatten(treedef, merged)

    def with_read(flat):
        return merge(flat, leaves)

    def read_gradients(flat):
        return merge(flat, [jnp.zeros_like(leaf) for leaf in leaves])

    def augmented(t, z, args):
        state = z[:state_size].reshape(state0.shape)
        adjoint = z[state_size : 2 * state_size].reshape(state0.shape)
        f, f_vjp = jax.vjp(lambda p, s: field(with_read(p), t, s), flat_read, state)
        g_params, g_state = f_vjp((adjoint, *ct_acc))
        return jnp.concatenate([f[0].ravel(), -g_state.ravel(), -g_params])

    solver = config.make_solver()
    if config.step_size == "constant":
        controller = diffrax.ConstantStepSize()
    else:
        # The parameter-gradient integrals are quadratures that feed nothing back,
        # so the error norm leaves them out.
        controller = diffrax.PIDController(
            rtol=config.rtol, atol=config.atol, dtmax=config.max_step,
            norm=lambda z: optx.rms_norm(z[: 2 * state_size]),
        )
    steps_per_iteration = config.steps_per_iteration

    def backsolve(t_later, t_earlier, state, adjoint, dt_first):
        """Solve from `t_later` back towards `t_earlier` for at most `steps_per_iteration` steps."""
        if config.step_size == "constant":
            dt0 = -jnp.asarray(config.dt, dtype)
        else:
            dt0 = -dt_first
        z0 = jnp.concatenate([state.ravel(), adjoint.ravel(), jnp.zeros_like(flat_read)])
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(augmented), solver, t_later, t_earlier, dt0, z0,
            stepsize_controller=controller,
            max_steps=steps_per_iteration,
            saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(t1=True), diffrax.SubSaveAt(steps=True)]),
            throw=False,
        )
        paused, t_reached, z, longest, is_accepted = _solve_end(sol, t_later, z0, direction=-1.0)
        state = z[:state_size].reshape(state0.shape)
        adjoint = z[state_size : 2 * state_size].reshape(state0.shape)
        g_read = z[2 * state_size :]
        # A zero-length solve takes no step, so it keeps the trial step.
        dt_next = jnp.where(
            is_accepted[0], longest, jnp.where(t_later == t_earlier, dt_first, 0.1 * dt_first)
        )
        failed = ~paused & (sol.result != diffrax.RESULTS.successful)
        steps = sol.stats["num_steps"]
        return t_reached, state, adjoint, g_read, paused, failed, steps, dt_next

    window = _window_size(model, n_inputs)

    def apply_event(r, at_event, adjoint, g_params, pending):
        """Carry the adjoint back across the jumps of event `r`, to just before them.

        Where `at_event` is false, the lane is between events. It then returns
        its arguments and adds nothing to `g_params`, because its cotangents are
        masked to zero.

        **Returns:** `(adjoint, g_params, pending, c_input)`: the adjoint before the
        jumps, the parameter gradient, the time cotangent passed to the event
        before (a tied spike), and the one passed to input `first_input[r]`.
        """
        adjoint_after, pending_after = adjoint, pending
        adjoint = jnp.where(at_event, adjoint, 0.0)
        t, pre, post = records.t[r], records.pre[r], records.post[r]
        spiked, slot, crossed = records.spiked[r], records.slot[r], records.crossed[r]
        first, end = records.first_input[r], records.end_input[r]
        # The forward loop delivered the inputs first .. end - 1, at most `window` of them.
        _, window_sources, _ = _input_window(input_sources, first, window)
        delivered = first + jnp.arange(window) < end

        # A sample taken at this event reads the state after its jumps.
        sample = records.sample[r]
        if ct_samples.shape[0] > 0:
            ct_sample = jnp.where(
                at_event & (sample >= 0), ct_samples[jnp.maximum(sample, 0)], 0.0
            )
            _, observe_vjp = jax.vjp(lambda p, s: as_model(p).observe(s), params, post)
            g_observe, a_observe = observe_vjp(ct_sample)
            adjoint = adjoint + a_observe
            g_params = jax.tree.map(jnp.add, g_params, g_observe)

        one_jump = lambda p, s: jump(p, s, spiked, window_sources, delivered)
        _, jump_vjp = jax.vjp(one_jump, params, pre)
        g_jump, a_pre = jump_vjp(adjoint)
        f_pre, f_post = field(params, t, pre), field(params, t, post)
        _, jumped_f_pre = jax.jvp(lambda s: one_jump(params, s), (pre,), (f_pre[0],))
        # The time cotangent c. After the last event nothing is integrated, so the
        # last event has no f+ term.
        c = _dot((adjoint, *ct_acc), (jumped_f_pre, *f_pre[1:]))
        c = c - jnp.where(r == records.count - 1, 0.0, _dot((adjoint, *ct_acc), f_post))
        neurons = jnp.arange(n)
        ct_spike = ct_spikes[neurons, jnp.minimum(slot, capacity - 1)]
        c = c + pending + jnp.sum(jnp.where(spiked & (slot < capacity), ct_spike, 0.0))
        c = jnp.where(at_event, c, 0.0)

        g_t, g_state, g_condition = jax.grad(condition, argnums=(0, 1, 2))(t, pre, params)
        slope = _dot(g_state, f_pre[0]) + g_t
        factor = jnp.where(crossed, -c / jnp.where(crossed, slope, 1.0), 0.0)
        a_pre = a_pre + factor * g_state
        g_params = jax.tree.map(
            lambda g, j, k: g + j + factor * k, g_params, g_jump, g_condition
        )
        # NOTE: inputs that arrive at the same time share one jump, so the time
        # cotangent of the group goes to its first input, as the step gradient does.
        to_input = ~crossed & ~records.tied[r] & (end > first)
        a_pre = jnp.where(at_event, a_pre, adjoint_after)
        pending = jnp.where(at_event, jnp.where(records.tied[r], c, 0.0), pending_after)
        return a_pre, g_params, pending, jnp.where(to_input, c, 0.0)

    # One iteration applies the jumps of event `r` if the solve is at that event.
    # It then solves towards the event before for at most `steps_per_iteration`
    # steps, which keeps vmapped lanes in step as in the forward loop.
    def body(carry):
        (r, at_event, t, state, adjoint, g_params, g_read, g_inputs, pending, dt_next,
         segment_steps, failed) = carry
        adjoint, g_params, pending, c_input = apply_event(
            r, at_event, adjoint, g_params, pending
        )
        if n_inputs > 0:
            # One element, not a select over all inputs: an iteration's cost stays
            # independent of the input count. A lane that has finished adds nothing.
            first = jnp.minimum(records.first_input[r], n_inputs - 1)
            g_inputs = g_inputs.at[first].add(jnp.where(r >= 0, c_input, 0.0))
        t = jnp.where(at_event, records.t[r], t)
        state = jnp.where(at_event, records.pre[r], state)
        segment_steps = jnp.where(at_event, 0, segment_steps)

        t_before = jnp.where(r > 0, records.t[jnp.maximum(r - 1, 0)], 0.0)
        t, state, adjoint, g_segment, paused, solve_failed, steps, dt_next = backsolve(
            t, t_before, state, adjoint, dt_next
        )
        g_read = g_read + g_segment
        segment_steps = segment_steps + steps
        # A segment took at most max_steps steps forwards; the adjoint gets slack.
        too_long = paused & (segment_steps > 4 * config.max_steps)
        return (
            jnp.where(paused & ~too_long, r, r - 1), ~paused, t, state, adjoint, g_params,
            g_read, g_inputs, pending, dt_next, segment_steps, failed | solve_failed | too_long,
        )

    start = _backward_start(records, ct_spikes, ct_samples, ct_acc)
    last = jnp.maximum(start, 0)
    init = (
        start,
        jnp.asarray(True),
        records.t[last],
        records.pre[last],
        jnp.zeros_like(state0),
        jax.tree.map(jnp.zeros_like, params),
        jnp.zeros(flat_read.shape, dtype),
        jnp.zeros_like(input_times),
        jnp.asarray(0.0, dtype),
        jnp.asarray(records.dt, dtype),
        jnp.asarray(0),
        jnp.asarray(False),
    )
    init = _batched_like(init, model, input_times, records)

    def guarded_body(carry):
        # As in the forward loop, the loop runs while any lane runs, so that the
        # input gradients (entry 7), the largest carried array, are not selected
        # each iteration. `body` adds nothing to them in a finished lane.
        new = body(carry)

        def without_inputs(values):
            return (*values[:7], None, *values[8:])

        selected = _select_running(carry[0] >= 0, without_inputs(new), without_inputs(carry))
        return (*selected[:7], new[7], *selected[8:])

    final = jax.lax.while_loop(lambda carry: eqxi.unvmap_any(carry[0] >= 0), guarded_body, init)
    adjoint, g_params, g_read, g_inputs, failed = final[4], final[5], final[6], final[7], final[11]
    g_params = jax.tree.map(jnp.add, g_params, read_gradients(g_read))
    _, init_vjp = jax.vjp(lambda p: as_model(p).init_state(n).astype(dtype), params)
    (g_init,) = init_vjp(adjoint)
    g_params = jax.tree.map(jnp.add, g_params, g_init)

    message = (
        "An adjoint solve between two events of adjoint='event' needed more than "
        "4 * SimulationConfig.max_steps steps or failed; increase max_steps or "
        "loosen rtol/atol."
    )
    if config.errors == "raise":
        g_inputs = eqx.error_if(g_inputs, failed, message)
    else:
        # A failed adjoint solve cannot report through the recorded failure code,
        # which the forward pass has returned already: its gradients become NaN.
        g_params, g_inputs = jax.tree.map(
            lambda g: jnp.where(failed, jnp.nan, g), (g_params, g_inputs)
        )
    return g_params, g_inputs


def _vmap_in_chunks(fn, args, chunk: int | None):
    """Return `jax.vmap(fn)(args)`, computed at most `chunk` lanes at a time.

    The chunks run one after another under `jax.lax.map`. The lanes are padded
    with copies of the last one to a whole number of equal chunks, and the
    copies' outputs are dropped. Equal chunks share one trace, whereas a
    remainder chunk would trace and compile `fn` a second time.
    """
    n_lanes = jax.tree.leaves(args)[0].shape[0]
    if chunk is None or n_lanes <= chunk:
        return jax.vmap(fn)(args)
    n_chunks = -(-n_lanes // chunk)
    size = -(-n_lanes // n_chunks)
    padded = n_chunks * size

    def split(x):
        if padded > n_lanes:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], padded - n_lanes, axis=0)])
        return x.reshape(n_chunks, size, *x.shape[1:])

    out = jax.lax.map(jax.vmap(fn), jax.tree.map(split, args))
    # Explicit shapes: a -1 cannot be inferred for outputs without elements.
    return jax.tree.map(lambda y: y.reshape(padded, *y.shape[2:])[:n_lanes], out)


def _run_lanes(
    mapped, shared, input_times, input_sources, config: SimulationConfig, *,
    recurrent: bool = False, sample_ts=None, integrals: bool | tuple[int, ...] = False,
    exp_lambda: float = 0.0, stop_after_first_spike: bool = False,
) -> PopulationResult:
    """Run `run_population` with the event adjoint in every lane, through `_lanes_event_adjoint`.

    Lane `i` simulates the model `eqx.combine(mapped[i], shared)` (leaves of
    `mapped` carry the lane axis) on `input_times[i]`. The keyword arguments are
    those of `run_population`.
    """
    one_lane = eqx.combine(jax.tree.map(lambda x: jnp.zeros(x.shape[1:], x.dtype), mapped), shared)
    options, sample_ts = _make_options(
        one_lane, input_times.dtype, config, recurrent, sample_ts, integrals, exp_lambda,
        stop_after_first_spike,
    )
    input_times, invalid_input = _clean_inputs(input_times)
    result = _lanes_event_adjoint((mapped, shared, input_times), input_sources, sample_ts, options)
    return _finish(result, invalid_input, config)


def _worker_loop(
    mapped, shared, input_times, input_sources, sample_ts, options: _Options, record: bool,
    workers: int,
) -> tuple[PopulationResult, _Records | None]:
    """Run one event loop per lane on `workers` vmapped loops that take lanes in turn.

    A vmapped loop runs until its slowest lane is done. When the lanes run as
    chunks one after another, every chunk waits for its slowest lane. Here a
    loop whose lane has finished writes that lane's outputs and starts the next
    lane not yet taken. The iterations then add up to about the lanes' total
    work divided by `workers`, plus the last lanes' tail.

    **Returns:** each lane's result and, with `record`, its records, with the
    lane axis first, as `jax.vmap` of `_event_loop` would return them.
    """
    n_lanes = input_times.shape[0]

    def parts(lane_index):
        lane = jax.tree.map(lambda x: x[lane_index], mapped)
        model = eqx.combine(lane, shared)
        return _loop_parts(
            model, input_times[lane_index], input_sources[lane_index], sample_ts, options, record
        )

    def outputs(carry: _Carry):
        return _result(carry), _final_records(carry)

    def initial(lane_index):
        return parts(lane_index)[0]

    def iterate(carry: _Carry, lane_index):
        _, _, step, _, _ = parts(lane_index)
        return step(carry)

    def still_running(carry: _Carry, lane_index):
        _, running, _, _, _ = parts(lane_index)
        return running(carry)

    # The bound depends on shapes and settings only, so any lane gives it.
    max_events = parts(0)[3]
    lanes = jnp.arange(workers)
    carry = jax.vmap(initial)(lanes)
    shapes = jax.eval_shape(jax.vmap(outputs), carry)
    buffers = jax.tree.map(lambda x: jnp.zeros((n_lanes, *x.shape[1:]), x.dtype), shapes)
    # `lane` is -1 for a loop with no lane left to take. Its carry still steps,
    # with the data of the lane it last ran (`data_lane`): another lane's inputs
    # could lie before the carry's time and send the solve backwards.
    state = (carry, lanes, lanes, jnp.zeros((workers,), jnp.int32), jnp.asarray(workers), buffers)

    def body(state):
        carry, lane, data_lane, iterations, next_lane, buffers = state
        carry = jax.vmap(iterate)(carry, data_lane)
        iterations = iterations + 1
        # A lane ends when its loop stops, or after max_events iterations, which
        # `_result` reports as OUT_OF_EVENTS because its carry is not done.
        running = jax.vmap(still_running)(carry, data_lane) & (iterations < max_events)
        finished = (lane >= 0) & ~running
        # Out-of-range indices (lanes still running) are dropped by the scatter.
        index = jnp.where(finished, lane, n_lanes)
        buffers = jax.tree.map(
            lambda buffer, value: buffer.at[index].set(value, mode="drop"),
            buffers, jax.vmap(outputs)(carry),
        )
        # The finished loops take the next lanes in order; the rest go idle.
        new_lane = next_lane + jnp.cumsum(finished) - 1
        take = finished & (new_lane < n_lanes)
        lane = jnp.where(finished, jnp.where(take, new_lane, -1), lane)
        data_lane = jnp.where(take, new_lane, data_lane)

        def refill(carry):
            fresh = jax.vmap(initial)(jnp.where(take, new_lane, 0))
            return jax.tree.map(
                lambda new, old: jnp.where(
                    jnp.reshape(take, take.shape + (1,) * (new.ndim - 1)), new, old
                ),
                fresh, carry,
            )

        carry = jax.lax.cond(jnp.any(take), refill, lambda c: c, carry)
        iterations = jnp.where(take, 0, iterations)
        next_lane = next_lane + jnp.sum(finished)
        return carry, lane, data_lane, iterations, next_lane, buffers

    final = jax.lax.while_loop(lambda state: jnp.any(state[1] >= 0), body, state)
    return final[5]


@eqx.filter_custom_vjp
def _lanes_event_adjoint(diff, input_sources, sample_ts, options: _Options) -> PopulationResult:
    """Run one event loop per lane; the gradient runs the lanes' adjoints in order of their work.

    `diff` is `(mapped, shared, input_times)` as `_run_lanes` takes them. The
    forward pass runs the lanes on `lanes_per_vmap` shared loops
    (`_lanes_forward`). The backward pass runs them in chunks of
    `lanes_per_vmap`, and each chunk runs until its slowest lane is done. Most
    lanes have little to do there: with a first-spike loss, a hidden neuron's
    spikes after the outputs' first spikes get no cotangent. So the lanes are
    sorted by the number of events to go back through before chunking. On the
    network of `experiments/bench` that cut the hidden layer's backward loop
    iterations from 54 to 18, since chunks of idle lanes end at once.
    """
    mapped, shared, input_times = diff
    return _lanes_forward(mapped, shared, input_times, input_sources, sample_ts, options, False)[0]


@_lanes_event_adjoint.def_fwd
def _lanes_event_adjoint_fwd(perturbed, diff, input_sources, sample_ts, options: _Options):
    mapped, shared, input_times = diff
    return _lanes_forward(mapped, shared, input_times, input_sources, sample_ts, options, True)


def _lanes_forward(mapped, shared, input_times, input_sources, sample_ts, options, record: bool):
    """Run each lane's event loop; return the results and, with `record`, the records.

    Up to `lanes_per_vmap` lanes run as one vmap, and more share that many
    loops (`_worker_loop`).
    """
    n_lanes, workers = input_times.shape[0], options.config.lanes_per_vmap
    if workers is not None and n_lanes > workers:
        return _worker_loop(
            mapped, shared, input_times, input_sources, sample_ts, options, record, workers
        )

    def one(args):
        lane, times, sources = args
        model = eqx.combine(lane, shared)
        final, records = _event_loop(model, times, sources, sample_ts, options, record=record)
        return _result(final), records

    return jax.vmap(one)((mapped, input_times, input_sources))


@_lanes_event_adjoint.def_bwd
def _lanes_event_adjoint_bwd(
    records: _Records, ct, perturbed, diff, input_sources, sample_ts, options: _Options
):
    mapped, shared, input_times = diff
    perturbed_model = eqx.combine(perturbed[0], perturbed[1])

    def start(args) -> Int[Array, ""]:
        lane, lane_records, lane_ct = args
        model = eqx.combine(lane, shared)
        return _backward_start(lane_records, *_cotangents(lane_ct, model, sample_ts, options))

    # The lanes with the most events to go back through first.
    order = jnp.argsort(-jax.vmap(start)((mapped, records, ct)))

    def one(args):
        lane, times, sources, lane_records, lane_ct = args
        model = eqx.combine(lane, shared)
        return _backward(
            lane_records, lane_ct, perturbed_model, model, times, sources, sample_ts, options
        )

    sorted_lanes = jax.tree.map(
        lambda x: x[order], (mapped, input_times, input_sources, records, ct)
    )
    g_model, g_times = _vmap_in_chunks(one, sorted_lanes, options.config.lanes_per_vmap)
    inverse = jnp.argsort(order)
    g_model, g_times = jax.tree.map(lambda x: x[inverse], (g_model, g_times))
    # Each lane's gradient covers its whole model: the mapped leaves keep the lane
    # axis, and the shared ones sum over it.
    is_mapped = eqx.combine(
        jax.tree.map(lambda _: True, mapped), jax.tree.map(lambda _: False, shared)
    )
    g_mapped, g_shared = eqx.partition(g_model, is_mapped)
    g_shared = jax.tree.map(lambda g: jnp.sum(g, axis=0), g_shared)
    return g_mapped, g_shared, g_times


def run_independent_neurons(
    model: NeuronModel,
    input_times: Float[Array, "*batch m"],
    input_sources: Int[Array, "*batch m"],
    config: SimulationConfig,
    **kwargs,
) -> PopulationResult:
    """Simulate a population without recurrent connections, one event loop per neuron.

    Without recurrence the neurons only share their input spikes, so each neuron's
    loop runs over the inputs and its own spikes alone. The loops are vmapped, which
    needs `m + max_spikes` iterations instead of `m + (spikes of all neurons)`.

    `input_times` and `input_sources` may carry a leading batch axis, one input
    train per sample; every field of the result then gains that axis. A batch
    runs as one vmap over (sample, neuron) pairs rather than two nested vmaps.
    On the benchmark network of `experiments/bench` that cut the value and
    gradient from 0.60 s to 0.41 s per batch, and the first call by 5 s. More
    than `config.lanes_per_vmap` pairs run as chunks, one after another, or,
    with the event adjoint, on that many loops that share them (`_worker_loop`).
    """
    from .neurons.base import split_neurons

    batched = input_times.ndim == 2
    if not batched:
        input_times, input_sources = input_times[None], input_sources[None]
    n_samples, n = input_times.shape[0], model.n_neurons
    expanded, in_axes = split_neurons(model)
    # Lane `i` simulates neuron `i % n` of sample `i // n`.
    lane_neuron = jnp.tile(jnp.arange(n), n_samples)
    lane_sample = jnp.repeat(jnp.arange(n_samples), n)
    lanes = jax.tree.map(
        lambda x, axis: x if axis is None else x[lane_neuron],
        expanded,
        in_axes,
        is_leaf=lambda x: x is None,
    )

    is_mapped = jax.tree.map(lambda axis: axis is not None, in_axes, is_leaf=lambda x: x is None)
    mapped, shared = eqx.partition(lanes, is_mapped)

    def run_one(args) -> PopulationResult:
        one_neuron, times, sources = args
        return run_population(eqx.combine(one_neuron, shared), times, sources, config, **kwargs)

    lane_times, lane_sources = input_times[lane_sample], input_sources[lane_sample]
    if config.adjoint == "event":
        result = _run_lanes(mapped, shared, lane_times, lane_sources, config, **kwargs)
    else:
        result = _vmap_in_chunks(run_one, (mapped, lane_times, lane_sources), config.lanes_per_vmap)

    # Each lane had one neuron: drop that axis, and split the lanes into samples
    # and neurons. The recorded samples put the neuron axis behind the time axis.
    def per_sample(x):
        return x[:, 0].reshape(n_samples, n, *x.shape[2:])

    _, n_times, _, n_observables = result.samples.shape
    samples = result.samples[:, :, 0].reshape(n_samples, n, n_times, n_observables)
    result = PopulationResult(
        spike_times=per_sample(result.spike_times),
        spike_counts=per_sample(result.spike_counts),
        samples=jnp.moveaxis(samples, 1, 2),
        integral=per_sample(result.integral),
        exp_integral=per_sample(result.exp_integral),
        failures=merge_failures(result.failures.reshape(n_samples, n), (1,)),
    )
    return result if batched else jax.tree.map(lambda x: x[0], result)
