"""Bracketed root finders for spike times, in optimistix's root-finder interface."""

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Bool, Float, PyTree, Scalar


def _bracket(solver, fn, y, args, options):
    """Return `(lower, upper, f(lower), f(upper))` from the options of `optimistix.root_find`."""
    try:
        lower, upper = options["lower"], options["upper"]
    except KeyError as missing:
        raise ValueError(
            f"{type(solver).__name__} needs the bracket; pass options=dict(lower=..., "
            f"upper=...) to optimistix.root_find (missing {missing})."
        ) from None
    if jnp.shape(y) != ():
        raise ValueError(
            f"{type(solver).__name__} finds scalar roots; y0 has shape {jnp.shape(y)}."
        )
    lower = jnp.asarray(lower, jnp.result_type(y))
    upper = jnp.asarray(upper, jnp.result_type(y))
    f_lower, _ = fn(lower, args)
    f_upper, _ = fn(upper, args)
    return lower, upper, f_lower, f_upper


class _BracketedRootFinder(optx.AbstractRootFinder):
    """Base of the root finders here: tolerances on `y`, and `y` returned as the last iterate."""

    rtol: float
    atol: float
    norm: ClassVar[Callable[[PyTree], Scalar]] = optx.max_norm

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, state, tags, result
        return y, aux, {}


class _State(eqx.Module):
    # The root lies between a and b: f(a) and f(b) differ in sign, or one is 0.
    # b is the latest iterate (the upper bound before the first step).
    a: Scalar
    b: Scalar
    f_a: Scalar  # f(a), scaled down while a stays in the bracket
    f_b: Scalar  # f(b)
    step: Scalar  # distance between the last two iterates
    bisect: Bool[Array, ""]  # the last step made no progress: take the midpoint next


class FalsePosition(_BracketedRootFinder):
    """Find a scalar root inside a bracket by false position with Anderson and Bjorck's rule.

    Each step places the next iterate where the chord through the bracket's ends
    crosses zero, and the iterate replaces the end whose function value has its
    sign. Plain false position converges linearly when one end never moves.
    Anderson and Bjorck (1973) scale the stored value of the end that stays by
    1 - f(c)/f(b), with c the new and b the previous iterate. The Illinois rule
    (Dowell and Jarratt, 1971) uses 1/2 instead. Either makes convergence
    superlinear, while the root stays bracketed as in bisection. Here a step
    whose |f| did not shrink uses 1/2 and makes the next step bisect.

    A spike time lies inside one solver step, where the spike condition follows
    the solver's dense output, a polynomial in time. In the hidden layer of the
    network in `experiments/bench`, where each vmapped root find runs until its
    slowest lane is done, a root find took 8.0 steps on average against 17.6
    with bisection, at the default tolerances. optimistix 0.1.0 offers bisection and
    Newton's method, which starts at the step's end and can leave the bracket
    when the condition peaks inside the step.

    Call it through `optimistix.root_find(fn, solver, y0, options=dict(lower=...,
    upper=...))`, as `diffrax.Event` does: the bracket is `[lower, upper]`, and
    `y0` is returned only if it is `upper` and a root. The solve stops once
    `|f(y)| < atol` and either the last step or the bracket is shorter than
    `atol + rtol |y|`, or once `f(y) == 0`. Gradients come from optimistix's
    implicit function theorem, as for any root finder.

    NOTE: the stop test bounds `|f|`, not the distance to the root. Where `f`
    is flat near its root, the returned `y` can be off by about `atol / |f'|`:
    for `1e-6 - (x - 1)^2` on `[0, 1]` at the simulator's default tolerances
    it stopped after one step, 1e-3 from the root, where bisection came within
    3.3e-6. On functions such as `(x - 0.3)^9` or `exp(x) / 1e6 - 1` it took
    several times as many steps as bisection. The simulator therefore uses
    bisection unless `root_finder="false_position"` is set.
    """


    def init(self, fn, y, args, options, f_struct, aux_struct, tags) -> _State:
        del f_struct, aux_struct, tags
        a, b, f_a, f_b = _bracket(self, fn, y, args, options)
        return _State(a, b, f_a, f_b, jnp.asarray(jnp.inf, a.dtype), jnp.asarray(False))

    def step(self, fn, y, args, options, state: _State, tags):
        del y, options, tags  # the new iterate is the chord's root
        a, b, f_a, f_b = state.a, state.b, state.f_a, state.f_b
        chord = f_b - f_a
        c = b - f_b * (b - a) / jnp.where(chord == 0, 1.0, chord)
        # A degenerate chord (equal values, or rounding that leaves the bracket)
        # falls back to the midpoint.
        inside = (chord != 0) & (c >= jnp.minimum(a, b)) & (c <= jnp.maximum(a, b))
        c = jnp.where(inside & ~state.bisect, c, a + 0.5 * (b - a))
        f_c, aux = fn(c, args)
        # The root lies between b and c if their values differ in sign: b becomes
        # the other end. Otherwise a stays, and its value is scaled down so that
        # the next chord moves towards it, by Anderson and Bjorck's factor
        # 1 - f(c)/f(b). Where that is not positive, |f| did not shrink: the
        # factor is 1/2 (the Illinois rule), and the next step bisects.
        crossed = f_c * f_b < 0
        ratio = 1.0 - f_c / jnp.where(f_b == 0, 1.0, f_b)
        stalled = ~crossed & (ratio <= 0)
        new_state = _State(
            a=jnp.where(crossed, b, a),
            b=c,
            f_a=jnp.where(crossed, f_b, jnp.where(stalled, 0.5, ratio) * f_a),
            f_b=f_c,
            step=jnp.abs(c - b),
            bisect=stalled,
        )
        return c, new_state, aux

    def terminate(self, fn, y, args, options, state: _State, tags):
        del fn, args, options, tags
        scale = self.atol + self.rtol * jnp.abs(y)
        short = (state.step < scale) | (jnp.abs(state.b - state.a) < scale)
        # Before the first step, y is the caller's y0, which need not be b.
        done: Bool[Array, ""] = ((state.f_b == 0) & (y == state.b)) | ((jnp.abs(state.f_b) < self.atol) & short)
        return done, optx.RESULTS.successful


class _ChandrupatlaState(eqx.Module):
    # x1 is the latest iterate (the upper bound before the first step) and x2 the
    # other end of the bracket: f(x1) and f(x2) differ in sign, or one is 0. x3 is
    # the end that the latest iterate replaced.
    x1: Scalar
    x2: Scalar
    x3: Scalar
    f1: Scalar
    f2: Scalar
    f3: Scalar
    t: Scalar  # the next iterate is x1 + t (x2 - x1), with t in (0, 1)
    best: Scalar  # the end of the bracket with the smaller |f|
    done: Bool[Array, ""]
    stepped: Bool[Array, ""]  # a step has run, so the iterate is `best`
    bracketed: Bool[Array, ""]  # f(lower) and f(upper) differ in sign, or one is 0


class Chandrupatla(_BracketedRootFinder):
    """Find a scalar root inside a bracket by Chandrupatla's method.

    The method (T. R. Chandrupatla, "A new hybrid quadratic/bisection algorithm
    for finding the zero of a nonlinear function without using derivatives",
    Advances in Engineering Software, 1997; also in TensorFlow Probability as
    `tfp.math.find_root_chandrupatla`) keeps a bracket, as bisection does. Each step
    interpolates the last three points by an inverse quadratic, and takes the
    midpoint instead where the quadratic may not be monotone on the bracket. The
    first step, with two points only, takes the chord's root. A step lands at
    least half the tolerance inside the bracket, so that near the root it steps
    past it and the bracket closes in from both sides. The solve stops when the
    bracket is shorter than `atol + rtol |y|`, the bracket test of
    `optimistix.Bisection`, or when `f(y) == 0`. So the returned `y` lies
    within that distance of a sign change of `f`, however flat `f` is there,
    unlike [`FalsePosition`][], which stops on a small `|f|`. If `f(lower)`
    and `f(upper)` have the same sign, the solve stops before any step with
    `optimistix.RESULTS.nonlinear_divergence`.

    Call it through `optimistix.root_find(fn, solver, y0, options=dict(lower=...,
    upper=...))`, as `diffrax.Event` does: the bracket is `[lower, upper]`, and
    `y0` is returned only if it is `upper` and a root. Gradients come from
    optimistix's implicit function theorem, as for any root finder.

    Unlike bisection, it may return the lower end of the bracket. In the
    simulator that can be a solve's start, when the previous solve paused just
    below threshold, and the solve's only accepted step then has zero length.
    The simulator starts the next solve with the trial step of this one in that
    case, because the step-size controller never grows a zero step. Bisection
    stays the simulator's default: in the benchmark of `experiments/bench`
    this method was no faster per batch.
    """


    def init(self, fn, y, args, options, f_struct, aux_struct, tags) -> _ChandrupatlaState:
        del f_struct, aux_struct, tags
        lower, upper, f_lower, f_upper = _bracket(self, fn, y, args, options)
        # The first step's chord root; x3 is unused until the second step.
        state = self._next(upper, lower, lower, f_upper, f_lower, f_lower, first=True)
        bracketed = ((f_lower < 0) != (f_upper < 0)) | (f_lower == 0) | (f_upper == 0)
        # A bracket that meets the tolerance already (a solver step shorter than
        # it) needs a step only if its best end is the lower one: land on it.
        t = jnp.where(state.done, 1.0, state.t)
        return eqx.tree_at(lambda s: (s.t, s.bracketed), state, (t, bracketed))

    def _next(self, x1, x2, x3, f1, f2, f3, first: bool) -> _ChandrupatlaState:
        best_is_x1 = jnp.abs(f1) <= jnp.abs(f2)
        best = jnp.where(best_is_x1, x1, x2)
        f_best = jnp.where(best_is_x1, f1, f2)
        width = jnp.abs(x2 - x1)
        tol = self.atol + self.rtol * jnp.abs(best)
        done = (width < tol) | (f_best == 0)
        # The smallest fraction that keeps the next iterate tol/2 from both ends. It
        # is below 1/2 whenever a step follows, because then the bracket exceeds tol.
        t_min = 0.5 * tol / jnp.where(width > 0, width, 1.0)
        if first:
            chord = f1 - f2
            t = f1 / jnp.where(chord == 0, 1.0, chord)
            use = chord != 0
        else:
            # Inverse quadratic interpolation through (f3, x3), (f2, x2), (f1, x1),
            # written as a fraction of the bracket. With xi and phi as below, the
            # inverse quadratic is monotone on the bracket if phi^2 < xi and
            # (1 - phi)^2 < 1 - xi, Chandrupatla's test.
            def safe(x):
                return jnp.where(x == 0, 1.0, x)

            xi = (x1 - x2) / safe(x3 - x2)
            phi = (f1 - f2) / safe(f3 - f2)
            t = f1 / safe(f2 - f1) * f3 / safe(f2 - f3) + (x3 - x1) / safe(x2 - x1) * f1 / safe(
                f3 - f1
            ) * f2 / safe(f3 - f2)
            use = (phi**2 < xi) & ((1 - phi) ** 2 < 1 - xi)
        t = jnp.where(use & jnp.isfinite(t), t, 0.5)
        t = jnp.clip(t, t_min, 1.0 - t_min)
        return _ChandrupatlaState(
            x1, x2, x3, f1, f2, f3, t, best, done, jnp.asarray(not first), jnp.asarray(True)
        )

    def step(self, fn, y, args, options, state: _ChandrupatlaState, tags):
        del y, options, tags  # the next iterate comes from the state
        x1, x2, f1, f2 = state.x1, state.x2, state.f1, state.f2
        xt = x1 + state.t * (x2 - x1)
        ft, aux = fn(xt, args)
        # The iterate replaces the end whose value has its sign.
        same = (ft < 0) == (f1 < 0)
        new = self._next(
            xt, jnp.where(same, x2, x1), jnp.where(same, x1, x2),
            ft, jnp.where(same, f2, f1), jnp.where(same, f1, f2), first=False,
        )
        return new.best, new, aux

    def terminate(self, fn, y, args, options, state: _ChandrupatlaState, tags):
        del fn, args, options, tags
        # optimistix passes the iterate from before the step that made `state`.
        # That step returned `best`, so only before the first step, where y is the
        # caller's y0, does y have to be the best end already.
        done = state.done & (state.stepped | (y == state.best))
        # Without a sign change between the ends there is no root to close in
        # on: stop at once and report it, as a failed root find.
        result = optx.RESULTS.where(
            state.bracketed, optx.RESULTS.successful, optx.RESULTS.nonlinear_divergence
        )
        return done | ~state.bracketed, result
