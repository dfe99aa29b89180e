"""The neuron-model interface that the simulator is written against."""

import abc
import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree


def parameter(*, per_neuron: bool = True, connection: bool = False) -> Any:
    """Declare a trainable field of a neuron model.

    **Arguments:**

    - `per_neuron`: the field's leading axis indexes the model's neurons, so the
      simulator can hand each neuron its own slice.
    - `connection`: the field is a weight matrix of shape `[n_neurons, n_sources]`,
      so connectivity masks apply to it.
    """
    return eqx.field(
        metadata={"per_neuron": per_neuron, "trainable": True, "connection": connection}
    )


def setting(*, per_neuron: bool = True) -> Any:
    """Declare a fixed (not trained) array field of a neuron model, such as a time constant."""
    return eqx.field(
        metadata={"per_neuron": per_neuron, "trainable": False, "connection": False}
    )


class NeuronModel(eqx.Module):
    """A population of neurons whose state follows an ODE between events.

    A model stores its own trainable parameters and fixed settings as fields declared
    with [`parameter`][] and [`setting`][]; fields marked `per_neuron` carry the
    neuron index on their leading axis. The state of `n` neurons is an array of
    shape `[n, channels]`. The simulator relies on nothing but the methods below,
    so a new neuron model is a subclass that implements them.

    Spikes are the upward zero crossings of `spike_condition`. Between events the
    state follows `dynamics`; at a presynaptic spike the simulator calls
    `input_spike`, and after a neuron's own spike `reset_spiked`, which must leave
    the spiked neurons strictly below threshold.
    """

    # Indices of `observe` channels that diverge (a QIF voltage at each spike), which
    # voltage readouts must not integrate or maximise.
    unbounded_observables: ClassVar[tuple[int, ...]] = ()
    # True when `input_spike` for a set of simultaneous inputs equals applying it
    # to any split of that set one part after the other, as when each input adds
    # its weight to a state variable. The simulator then reads at most
    # `eventax_lab.simulate.INPUT_WINDOW` inputs per loop iteration. Otherwise
    # each iteration reads every input slot, so that all inputs at one time
    # arrive in one call.
    additive_inputs: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A subclass that redefines `input_spike` must restate the claim: it does
        # not inherit a built-in model's `additive_inputs = True`.
        if "input_spike" in cls.__dict__ and "additive_inputs" not in cls.__dict__:
            cls.additive_inputs = False

    @property
    @abc.abstractmethod
    def n_sources(self) -> int:
        """Number of presynaptic sources (inputs, then own neurons if recurrent)."""

    @abc.abstractmethod
    def init_state(self, n_neurons: int) -> Float[Array, "n channels"]:
        """Return the state of `n_neurons` neurons at the start of a trial."""

    @abc.abstractmethod
    def dynamics(
        self, t: Float[Array, ""], y: Float[Array, "n channels"], args: Any
    ) -> Float[Array, "n channels"]:
        """Return dy/dt."""

    @abc.abstractmethod
    def spike_condition(
        self, t: Float[Array, ""], y: Float[Array, "n channels"]
    ) -> Float[Array, " n"]:
        """Return a value per neuron whose upward zero crossing is a spike."""

    @abc.abstractmethod
    def input_spike(
        self,
        y: Float[Array, "n channels"],
        from_idx: Int[Array, " m"],
        valid_mask: Bool[Array, " m"],
    ) -> Float[Array, "n channels"]:
        """Apply the jump caused by spikes of sources `from_idx[valid_mask]` arriving at once."""

    @abc.abstractmethod
    def reset_spiked(
        self, y: Float[Array, "n channels"], spike_mask: Bool[Array, " n"]
    ) -> Float[Array, "n channels"]:
        """Apply the post-spike reset to the neurons where `spike_mask` is true."""

    @abc.abstractmethod
    def observe(self, y: Float[Array, "n channels"]) -> Float[Array, "n observables"]:
        """Return observable quantities per neuron, voltage first."""

    @property
    def n_neurons(self) -> int:
        """Number of neurons, read from the leading axis of the per-neuron fields."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, NeuronModel):
                return value.n_neurons
            if field.metadata.get("per_neuron", False):
                return jnp.shape(value)[0]
        raise TypeError(
            f"{type(self).__name__} declares no per-neuron field; declare at least one "
            "field with `parameter()` or `setting()` so the neuron count is known."
        )


def _field_flags(model: NeuronModel, key: str) -> PyTree[bool]:
    """Return a pytree shaped like `model` with each leaf set to its field's `key` flag.

    Fields that are themselves neuron models (a wrapper around another model)
    contribute their own flags.
    """
    flags = jax.tree.map(lambda _: False, model)
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        if isinstance(value, NeuronModel):
            replacement = _field_flags(value, key)
        elif field.metadata.get(key, False):
            replacement = jax.tree.map(lambda _: True, value)
        else:
            continue
        flags = eqx.tree_at(lambda m, name=field.name: getattr(m, name), flags, replacement)
    return flags


def trainable_filter(model: PyTree) -> PyTree[bool]:
    """Return the filter spec of trainable leaves for `eqx.partition`, for a model or network."""

    def _leaf_filter(node):
        if isinstance(node, NeuronModel):
            return _field_flags(node, "trainable")
        return eqx.is_inexact_array(node)

    return jax.tree.map(_leaf_filter, model, is_leaf=lambda x: isinstance(x, NeuronModel))


def connection_fields(model: NeuronModel) -> list[tuple[str, ...]]:
    """Return the attribute paths of the model's weight matrices, shape `[n_neurons, n_sources]`."""
    paths = []
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        if isinstance(value, NeuronModel):
            paths.extend((field.name, *path) for path in connection_fields(value))
        elif field.metadata.get("connection", False):
            paths.append((field.name,))
    return paths


def split_neurons(model: NeuronModel) -> tuple[NeuronModel, PyTree]:
    """Reshape per-neuron fields from `[n, ...]` to `[n, 1, ...]` for a vmap over neurons.

    **Returns:** the reshaped model and its `in_axes`. Under `jax.vmap(..., in_axes)`
    each lane receives a one-neuron model whose per-neuron fields have shape `[1, ...]`,
    so model code written for `[n, channels]` states runs unchanged.
    """
    flags = _field_flags(model, "per_neuron")
    expanded = jax.tree.map(
        lambda x, is_per_neuron: x[:, None] if is_per_neuron else x, model, flags
    )
    in_axes = jax.tree.map(lambda is_per_neuron: 0 if is_per_neuron else None, flags)
    return expanded, in_axes


def summed_weights(
    weight: Float[Array, "n n_sources"], from_idx: Int[Array, " m"], valid_mask: Bool[Array, " m"]
) -> Float[Array, " n"]:
    """Sum, per receiving neuron, the weights of the sources `from_idx[valid_mask]`."""
    return jnp.sum(jnp.where(valid_mask, weight[:, from_idx], 0.0), axis=1)


def check_setting(name: str, value, condition, requirement: str) -> None:
    """Raise a ValueError naming `name` unless `condition` holds for every element.

    Skipped for traced values (a model built inside `jit`), which have no
    concrete value to check.
    """
    if isinstance(value, jax.core.Tracer) or isinstance(condition, jax.core.Tracer):
        return
    if not bool(np.all(np.asarray(condition))):
        values = np.asarray(value)
        # A scalar setting arrives broadcast to every neuron: show it once.
        if values.size > 1 and np.array_equal(
            values, np.full_like(values, values.flat[0]), equal_nan=True
        ):
            values = values.flat[0]
        printed = np.array2string(np.asarray(values), threshold=8, edgeitems=3)
        raise ValueError(f"{name}={printed} is invalid: it must be {requirement}.")


def as_per_neuron(value, n_neurons: int, name: str, dtype=None) -> Float[Array, " n"]:
    """Broadcast a scalar or a length-`n_neurons` setting to shape `[n_neurons]`."""
    if isinstance(value, (str, bytes, bool)):
        # jnp.asarray would read True as 1.0 and fail on "abc" without the name.
        raise ValueError(f"{name}={value!r} must be a number or an array of numbers.")
    try:
        array = jnp.asarray(value, dtype=dtype if dtype is not None else float)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name}={value!r} must be a number or an array of numbers ({error})."
        ) from None
    if array.ndim == 0:
        return jnp.full((n_neurons,), array)
    if array.shape != (n_neurons,):
        raise ValueError(
            f"{name} has shape {array.shape}; pass a scalar or an array of shape "
            f"({n_neurons},), one value per neuron."
        )
    return array


class NonSpiking(NeuronModel):
    """Wrap a neuron model so that it never spikes: a leaky integrator for state readouts.

    The wrapped model's dynamics, input jumps and observables are kept. Its spike
    condition is a constant -1, so the event loop stops only at input spikes.
    """

    model: NeuronModel

    @property
    def unbounded_observables(self) -> tuple[int, ...]:
        return self.model.unbounded_observables

    @property
    def additive_inputs(self) -> bool:
        return self.model.additive_inputs

    @property
    def n_sources(self) -> int:
        return self.model.n_sources

    def init_state(self, n_neurons):
        return self.model.init_state(n_neurons)

    def dynamics(self, t, y, args):
        return self.model.dynamics(t, y, args)

    def spike_condition(self, t, y):
        return -jnp.ones(y.shape[0], dtype=y.dtype)

    def input_spike(self, y, from_idx, valid_mask):
        return self.model.input_spike(y, from_idx, valid_mask)

    def reset_spiked(self, y, spike_mask):
        return y

    def observe(self, y):
        return self.model.observe(y)
