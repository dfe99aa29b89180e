"""Numerical settings of a simulation."""

import dataclasses
import math
from typing import Literal

import diffrax
import optimistix as optx

from .root_finding import Chandrupatla, FalsePosition

from ._values import is_int, is_real_number

_ROOT_FINDERS = ("bisection", "chandrupatla", "false_position", "newton")

_SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "euler": diffrax.Euler,
}


def _check_real(name: str, value, alternative: str = "") -> None:
    """Raise a ValueError naming `name` unless `value` is a finite real number."""
    if not (is_real_number(value) and math.isfinite(value)):
        extra = f", {alternative}" if alternative else ""
        raise ValueError(f"{name}={value!r} must be a finite number{extra}.")


def _check_int(name: str, value, alternative: str = "") -> None:
    """Raise a ValueError naming `name` unless `value` is an int (not a bool)."""
    if not is_int(value):
        extra = f", {alternative}" if alternative else ""
        raise ValueError(f"{name}={value!r} must be an int{extra}.")


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Numerical settings of the event-driven simulator; hashable, so jit treats it as static.

    **Arguments:**

    - `t_end`: end of the simulated window, in the time unit of the model (ms in
      the shipped configs). The simulation always starts at 0.
    - `solver`: diffrax solver between events: `"tsit5"` (default), `"dopri5"`,
      `"dopri8"`, `"bosh3"`, `"heun"`, `"midpoint"` or `"euler"`.
    - `step_size`: `"adaptive"` (a PID controller with `rtol`, `atol`) or
      `"constant"` (fixed steps of `dt`, as a plain Euler simulator would take).
    - `rtol`, `atol`: tolerances of the adaptive controller.
    - `dt`: the fixed step for `step_size="constant"`. For `"adaptive"`, the first
      trial step of the simulation; later solves start with the longest step
      the solve before them accepted.
    - `max_step`: the longest step the adaptive controller may take, or `None`
      for no bound. diffrax detects a crossing by the sign of the spike condition
      at step ends, so an excursion above threshold that begins and ends inside
      one step is missed. An excursion longer than `max_step` contains a step
      end, so it is found unless the solver's error there exceeds its height.
    - `check_peaks`: also find crossings inside a step whose ends both lie below
      threshold. Where the spike condition rises at a step's start and falls at
      its end, its peak is estimated from the step's end values and slopes, and
      the condition is read there on the dense output. If the peak reaches
      threshold, the loop solves again up to it, so that diffrax's event finds
      the crossing. `False` leaves detection to the step ends. On the
      benchmark network of `experiments/bench`, through the steps at rtol
      1e-6, the check added about 12 % to the time per batch and 6 s to the
      first call.
    - `root_finder`: `"bisection"` (default), `"chandrupatla"`,
      `"false_position"` or `"newton"`, with tolerances `root_rtol`,
      `root_atol` on the spike time. All work on the solver step in which the
      condition crossed zero. Bisection and Chandrupatla's method
      (`eventax_lab.root_finding.Chandrupatla`) both end once their bracket of
      the crossing is shorter than `root_atol + root_rtol t`, so the time is
      that close to the root of the dense output. Bisection also needs the
      condition below `root_atol`. Chandrupatla interpolates and took 7.6
      iterations per vmapped root find on the benchmark network of
      `experiments/bench`, where bisection took 18, but the time per batch
      did not drop (see the NOTE in its class). False position
      with Anderson and Bjorck's rule (`eventax_lab.root_finding.FalsePosition`)
      took 8.0 iterations there, but it ends once the condition is below
      `root_atol` and its last step is short, so where the condition rises
      slowly (a crossing that grazes threshold) the time can be off by about
      `root_atol` divided by the condition's slope, and on some functions it
      needs more steps than bisection. Newton starts at the end of the step
      and fails when the voltage peaks inside it just above threshold, a
      common case.
    - `max_spikes`: capacity of each neuron's spike-time buffer. A neuron that
      spikes more often raises an error naming this setting.
    - `max_steps`: solver steps allowed between two consecutive events.
    - `steps_per_iteration`: solver steps one iteration of the event loop may take
      before it hands back to the loop, which then continues the same segment.
      Small values keep vmapped loops (neurons, samples) in step, so no lane
      waits long for another's long segment. Each iteration adds the solver's
      start-up evaluation and, under vmap, a root find in every lane once any
      lane has an event. An adaptive solve needs at least 2: the step grows
      only inside one solve.
    - `max_events`: loop iterations allowed per population, pauses included.
      `None` derives the bound from the input count, `max_spikes`, `max_steps`
      and `steps_per_iteration`, so `max_steps` or `max_spikes` is reached first.
    - `lanes_per_vmap`: the maximum number of (sample, neuron) lanes of a layer
      without recurrence that one vmapped event loop runs (`run_independent_neurons`).
      A vmapped loop runs until its slowest lane is done, and a smaller one
      keeps its working set in the CPU's caches. Through the steps, more lanes
      run as several equal chunks, one after another. With the event adjoint,
      `lanes_per_vmap` loops share the lanes: a loop whose lane has finished
      takes the next one, and the backward pass sorts the lanes by the events
      it has to go back through before chunking them. `None` runs every lane in
      one vmap. On the benchmark network of `experiments/bench` (3840 hidden
      lanes), chunks cut the time of a batch through the steps by 18 to 28 %.
      With the event adjoint at rtol 3e-3, shared loops and the sorted
      backward pass took 0.063 s per batch, against 0.074 s with chunks before
      them and 0.082 s for one vmap. Which lanes share a vmap moves spike times
      within the solver's tolerance.
    - `adjoint`: how gradients are computed. `"recursive_checkpoint"`
      backpropagates through the solver steps, storing every step, and gives
      gradients exact with respect to the forward simulation; `"direct"` does
      the same with diffrax's `DirectAdjoint`. `"event"` keeps only the state at
      each event (memory grows with events, not steps) and solves the adjoint
      equations backwards between events, with the root's implicit derivative
      and the jump conditions at each event. Its gradients match the forward
      simulation's to solver tolerance, not exactly. No kind supports forward
      mode (`jax.jvp`); `jax.hessian` works with `"direct"` only.
    - `simultaneous_tol`: two neurons whose spike conditions lie within this of
      each other at an event time both spike at that time.
    - `errors`: how a failed simulation (a budget above exceeded, or the solver
      failed) is reported. `"raise"` raises inside the compiled program,
      through `eqx.error_if`. `"record"` only sets bits in the result's
      `failures` code, and the caller raises with
      [`eventax_lab.simulate.raise_failures`][], as the trainer does after every
      step. JAX's persistent compilation cache stores only programs without
      host callbacks. With `"record"`, the one callback left is diffrax's
      check of the first step's sign, which the event loop never fails (its
      solves run forward from a positive step). Running with
      `EQX_ON_ERROR=nan` in the environment removes that one too.
    """

    t_end: float = 60.0
    solver: str = "tsit5"
    step_size: Literal["adaptive", "constant"] = "adaptive"
    rtol: float = 1e-6
    atol: float = 1e-6
    dt: float = 1.0
    max_step: float | None = None
    check_peaks: bool = True
    root_finder: Literal["bisection", "chandrupatla", "false_position", "newton"] = "bisection"
    root_rtol: float = 1e-6
    root_atol: float = 1e-5
    max_spikes: int = 8
    max_steps: int = 64
    steps_per_iteration: int = 4
    max_events: int | None = None
    lanes_per_vmap: int | None = 512
    adjoint: Literal["recursive_checkpoint", "direct", "event"] = "recursive_checkpoint"
    simultaneous_tol: float = 1e-6
    errors: Literal["raise", "record"] = "raise"

    def __post_init__(self):
        _check_real("t_end", self.t_end)
        if not self.t_end > 0:
            raise ValueError(f"t_end={self.t_end} must be > 0.")
        if self.solver not in _SOLVERS:
            raise ValueError(f"solver={self.solver!r} is unknown; choose one of {sorted(_SOLVERS)}.")
        if self.step_size not in ("adaptive", "constant"):
            raise ValueError(f"step_size={self.step_size!r}; use 'adaptive' or 'constant'.")
        if self.step_size == "adaptive" and self.solver in ("euler", "midpoint"):
            raise ValueError(
                f"solver={self.solver!r} has no error estimate; use step_size='constant' "
                "with it, or an adaptive solver such as 'tsit5'."
            )
        for name in ("rtol", "atol", "dt", "root_rtol", "root_atol", "simultaneous_tol"):
            _check_real(name, getattr(self, name))
        if self.max_step is not None:
            _check_real("max_step", self.max_step, "or None for no bound")
        for name in ("rtol", "atol", "dt", "root_rtol", "root_atol"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0.")
        for name in ("rtol", "root_rtol"):
            if not getattr(self, name) < 1:
                raise ValueError(
                    f"{name}={getattr(self, name)} must be < 1: a relative error of 100 % "
                    "or more accepts any step. Typical values lie in [1e-8, 1e-2]."
                )
        if not self.simultaneous_tol >= 0:
            raise ValueError(
                f"simultaneous_tol={self.simultaneous_tol} must be >= 0: below 0 not even the "
                "neuron whose crossing ended the solve would spike."
            )
        if self.max_step is not None and not self.max_step > 0:
            raise ValueError(f"max_step={self.max_step} must be > 0, or None for no bound.")
        if not isinstance(self.check_peaks, bool):
            raise ValueError(f"check_peaks={self.check_peaks!r} must be True or False.")
        for name in ("max_spikes", "max_steps", "steps_per_iteration"):
            _check_int(name, getattr(self, name))
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1.")
        for name, none_means in (
            ("max_events", "a bound derived from the inputs"),
            ("lanes_per_vmap", "one vmap over all lanes"),
        ):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, f"or None for {none_means}")
                if value < 1:
                    raise ValueError(f"{name}={value} must be >= 1, or None for {none_means}.")
        if self.step_size == "adaptive" and self.steps_per_iteration < 2:
            # A solve that pauses passes its longest accepted step on as the next
            # solve's first trial step, so the step grows only inside one solve.
            raise ValueError(
                f"steps_per_iteration={self.steps_per_iteration} with step_size='adaptive' "
                "never lets the step size grow past dt; use 2 or more."
            )
        if self.root_finder not in _ROOT_FINDERS:
            raise ValueError(
                f"root_finder={self.root_finder!r}; use one of {sorted(_ROOT_FINDERS)}."
            )
        if self.errors not in ("raise", "record"):
            raise ValueError(f"errors={self.errors!r} is invalid; use 'raise' or 'record'.")
        if self.adjoint not in ("recursive_checkpoint", "direct", "event"):
            raise ValueError(
                f"adjoint={self.adjoint!r}; use 'recursive_checkpoint', 'direct' or 'event'."
            )

    def make_solver(self) -> diffrax.AbstractSolver:
        return _SOLVERS[self.solver]()

    def make_controller(self) -> diffrax.AbstractStepSizeController:
        if self.step_size == "constant":
            return diffrax.ConstantStepSize()
        return diffrax.PIDController(rtol=self.rtol, atol=self.atol, dtmax=self.max_step)

    def make_root_finder(self) -> optx.AbstractRootFinder:
        if self.root_finder == "chandrupatla":
            return Chandrupatla(rtol=self.root_rtol, atol=self.root_atol)
        if self.root_finder == "false_position":
            return FalsePosition(rtol=self.root_rtol, atol=self.root_atol)
        if self.root_finder == "bisection":
            # The event condition decreases through its root (see `run_population`).
            return optx.Bisection(rtol=self.root_rtol, atol=self.root_atol, flip=True)
        return optx.Newton(rtol=self.root_rtol, atol=self.root_atol)

    def make_adjoint(self) -> diffrax.AbstractAdjoint:
        if self.adjoint == "direct":
            return diffrax.DirectAdjoint()
        # Storing every step of one loop iteration avoids recomputation in the
        # backward pass, and `steps_per_iteration` checkpoints cost little memory.
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=self.steps_per_iteration)
