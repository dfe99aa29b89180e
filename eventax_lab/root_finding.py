"""A bracketed root finder for spike times, in optimistix's root-finder interface."""

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import Array, Bool, Float, PyTree, Scalar


class _State(eqx.Module):
    # The root lies between a and b: f(a) and f(b) differ in sign, or one is 0.
    # b is the latest iterate (the upper bound before the first step).
    a: Scalar
    b: Scalar
    f_a: Scalar  # f(a), scaled down while a stays in the bracket
    f_b: Scalar  # f(b)
    step: Scalar  # distance between the last two iterates
    bisect: Bool[Array, ""]  # the last step made no progress: take the midpoint next


class FalsePosition(optx.AbstractRootFinder):
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

    rtol: float
    atol: float
    norm: ClassVar[Callable[[PyTree], Scalar]] = optx.max_norm

    def init(self, fn, y, args, options, f_struct, aux_struct, tags) -> _State:
        del f_struct, aux_struct, tags
        try:
            lower, upper = options["lower"], options["upper"]
        except KeyError as missing:
            raise ValueError(
                f"{type(self).__name__} needs the bracket; pass options=dict(lower=..., "
                f"upper=...) to optimistix.root_find (missing {missing})."
            ) from None
        if jnp.shape(y) != ():
            raise ValueError(
                f"{type(self).__name__} finds scalar roots; y0 has shape {jnp.shape(y)}."
            )
        a = jnp.asarray(lower, jnp.result_type(y))
        b = jnp.asarray(upper, jnp.result_type(y))
        f_a, _ = fn(a, args)
        f_b, _ = fn(b, args)
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

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, state, tags, result
        return y, aux, {}

