"""The optimizer of a training run: Adam or AdamW with a learning-rate schedule and gradient clipping."""

from __future__ import annotations

import math

import optax

SCHEDULES = ("constant", "cosine", "exponential")


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} must be a finite number > 0.")


def _check_fraction(name: str, value: float, *, closed: bool) -> None:
    upper_ok = value <= 1 if closed else value < 1
    if not (isinstance(value, (int, float)) and value >= 0 and upper_ok):
        interval = "[0, 1]" if closed else "[0, 1)"
        raise ValueError(f"{name}={value!r} must lie in {interval}.")


def make_schedule(
    learning_rate: float,
    schedule: str,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    decay_per_epoch: float = 1.0,
    final_lr_fraction: float = 0.0,
) -> optax.Schedule:
    """Return the learning rate as a function of the optimizer step.

    - `"constant"`: `learning_rate` throughout.
    - `"cosine"`: cosine decay from `learning_rate` to
      `final_lr_fraction * learning_rate` over the whole run.
    - `"exponential"`: multiply by `decay_per_epoch` once per epoch.

    A linear warm-up from 0 over `warmup_epochs` epochs precedes each schedule when
    `warmup_epochs > 0`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is unknown. Choose one of {list(SCHEDULES)}.")
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    decay_steps = max(total_steps - warmup_steps, 1)

    if schedule == "constant":
        main = optax.constant_schedule(learning_rate)
    elif schedule == "cosine":
        main = optax.cosine_decay_schedule(learning_rate, decay_steps, alpha=final_lr_fraction)
    else:
        main = optax.exponential_decay(
            learning_rate, transition_steps=steps_per_epoch, decay_rate=decay_per_epoch, staircase=True
        )

    if warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warmup, main], boundaries=[warmup_steps])


def make_optimizer(
    steps_per_epoch: int,
    epochs: int,
    learning_rate: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    clip_norm: float | None = None,
    schedule: str = "constant",
    warmup_epochs: float = 0.0,
    decay_per_epoch: float = 1.0,
    final_lr_fraction: float = 0.0,
) -> optax.GradientTransformation:
    """Build Adam (AdamW when `weight_decay > 0`) with a schedule and optional gradient clipping.

    The learning rate is injected as a hyperparameter, so the optimizer state contains
    the rate of the latest update under the name `learning_rate`, for logging.

    **Arguments:**

    - `steps_per_epoch`, `epochs`: the run's length, filled in by the trainer. The
      schedules span `steps_per_epoch * epochs` steps.
    - `learning_rate`: peak learning rate, > 0.
    - `b1`, `b2`, `eps`: Adam's moment decay rates and denominator offset.
    - `weight_decay`: decoupled weight decay of AdamW, >= 0. Zero gives Adam.
    - `clip_norm`: clip the global gradient norm to this value before the update;
      `None` disables clipping.
    - `schedule`, `warmup_epochs`, `decay_per_epoch`, `final_lr_fraction`: see
      [`make_schedule`][].
    """
    _check_positive("learning_rate", learning_rate)
    _check_positive("eps", eps)
    _check_fraction("b1", b1, closed=False)
    _check_fraction("b2", b2, closed=False)
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay={weight_decay!r} must be >= 0.")
    if clip_norm is not None:
        _check_positive("clip_norm", clip_norm)
    if not warmup_epochs >= 0:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} must be >= 0.")
    if warmup_epochs > epochs:
        raise ValueError(f"warmup_epochs={warmup_epochs!r} must not exceed the run's epochs={epochs}.")
    _check_fraction("decay_per_epoch", decay_per_epoch, closed=True)
    if decay_per_epoch == 0:
        raise ValueError("decay_per_epoch=0 must be > 0. Use 1.0 for no decay.")
    _check_fraction("final_lr_fraction", final_lr_fraction, closed=True)

    total_steps = steps_per_epoch * epochs
    learning_rates = make_schedule(
        learning_rate, schedule, total_steps, steps_per_epoch,
        warmup_epochs=warmup_epochs,
        decay_per_epoch=decay_per_epoch,
        final_lr_fraction=final_lr_fraction,
    )
    if weight_decay > 0:
        adam = optax.inject_hyperparams(optax.adamw)(
            learning_rate=learning_rates, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay
        )
    else:
        adam = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rates, b1=b1, b2=b2, eps=eps)

    if clip_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(clip_norm), adam)


def current_learning_rate(opt_state) -> float | None:
    """Return the learning rate of the latest update from a `make_optimizer` state, or None."""
    # make_optimizer returns the injected Adam alone, or chained after the clipping.
    states = (opt_state,) if hasattr(opt_state, "hyperparams") else tuple(opt_state)
    for state in states:
        hyperparams = getattr(state, "hyperparams", None)
        if isinstance(hyperparams, dict) and "learning_rate" in hyperparams:
            return float(hyperparams["learning_rate"])
    return None
