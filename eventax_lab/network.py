"""Network connectivity: feed-forward layers, or one recurrent population with a mask."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._values import is_int
from .config import SimulationConfig
from .neurons.base import NeuronModel, NonSpiking, connection_fields
from .recording import Recording
from .simulate import run_independent_neurons, run_population


def _flatten_spike_train(
    spike_times: Float[Array, "n k"],
) -> tuple[Float[Array, " m"], Int[Array, " m"]]:
    """Flatten a `[n, K]` spike train into times sorted ascending and their sources."""
    n, k = spike_times.shape
    times = spike_times.reshape(-1)
    sources = jnp.repeat(jnp.arange(n), k)
    order = jnp.argsort(times)
    return times[order], sources[order]


def _as_spike_times(input_spikes) -> Float[Array, "..."]:
    """Return `input_spikes` as a float array, casting integer times to floats.

    Integer arrays cannot hold `inf` (no spike), and the event loop compares times
    in floating point.
    """
    array = jnp.asarray(input_spikes)
    if jnp.issubdtype(array.dtype, jnp.floating):
        return array
    if jnp.issubdtype(array.dtype, jnp.integer):
        return array.astype(jnp.result_type(float))
    raise ValueError(
        f"input_spikes has dtype {array.dtype}; pass spike times as floats, with inf "
        "for no spike."
    )


def _check_input(input_spikes: Array, n_inputs: int) -> None:
    if input_spikes.ndim != 2 or input_spikes.shape[0] != n_inputs:
        raise ValueError(
            f"input_spikes has shape {input_spikes.shape}; expected [n_inputs={n_inputs}, K] "
            "for one sample (vmap over a batch axis for batches)."
        )


class FeedForwardNetwork(eqx.Module):
    """Layers of neuron populations, each fed by the spikes of the layer before.

    Given its input spike times a layer's neurons are independent, so each layer
    is simulated on its own, with one event loop per neuron, and its spike trains
    are the inputs of the next layer.
    """

    layers: tuple[NeuronModel, ...]

    def __init__(self, layers: Sequence[NeuronModel]):
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers is empty; a network needs at least one layer.")
        for index in range(1, len(layers)):
            if layers[index].n_sources != layers[index - 1].n_neurons:
                raise ValueError(
                    f"layer {index} has n_sources={layers[index].n_sources} but layer "
                    f"{index - 1} has n_neurons={layers[index - 1].n_neurons}; they must match."
                )
        self.layers = layers

    @property
    def n_inputs(self) -> int:
        return self.layers[0].n_sources

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_neurons

    def simulate(
        self,
        input_spikes: Float[Array, "n_inputs k"],
        config: SimulationConfig,
        *,
        sample_ts: Float[Array, " p"] | None = None,
        integrals: bool | tuple[int, ...] = False,
        exp_lambda: float = 0.0,
        stop_after_first_spike: bool = False,
    ) -> Recording:
        """Simulate one sample; see [`simulate_batch`][] for the keyword arguments."""
        input_spikes = _as_spike_times(input_spikes)
        _check_input(input_spikes, self.n_inputs)
        recording = self.simulate_batch(
            input_spikes[None],
            config,
            sample_ts=sample_ts,
            integrals=integrals,
            exp_lambda=exp_lambda,
            stop_after_first_spike=stop_after_first_spike,
        )
        return jax.tree.map(lambda x: x[0], recording)

    def simulate_batch(
        self,
        input_spikes: Float[Array, "batch n_inputs k"],
        config: SimulationConfig,
        *,
        sample_ts: Float[Array, " p"] | None = None,
        integrals: bool | tuple[int, ...] = False,
        exp_lambda: float = 0.0,
        stop_after_first_spike: bool = False,
    ) -> Recording:
        """Simulate a batch of samples; see [`run_population`][] for the keyword arguments.

        `sample_ts`, `integrals` and `stop_after_first_spike` apply to the output
        layer. Each layer runs as one vmap over every (sample, neuron) pair.

        **Returns:** a [`Recording`][] whose fields have a leading batch axis.
        """
        input_spikes = _as_spike_times(input_spikes)
        if np.ndim(input_spikes) != 3 or np.shape(input_spikes)[1] != self.n_inputs:
            raise ValueError(
                f"input_spikes has shape {np.shape(input_spikes)}; expected "
                f"[batch, n_inputs={self.n_inputs}, K]."
            )
        times = input_spikes
        spike_times, spike_counts = [], []
        failures = jnp.zeros(np.shape(input_spikes)[:1], jnp.int32)
        for index, layer in enumerate(self.layers):
            is_output = index == len(self.layers) - 1
            sorted_times, sources = jax.vmap(_flatten_spike_train)(times)
            options = {}
            if is_output:
                options = dict(
                    sample_ts=sample_ts,
                    integrals=integrals,
                    exp_lambda=exp_lambda,
                    stop_after_first_spike=stop_after_first_spike,
                )
            result = run_independent_neurons(layer, sorted_times, sources, config, **options)
            spike_times.append(result.spike_times)
            spike_counts.append(result.spike_counts)
            failures = failures | result.failures
            times = result.spike_times
        return Recording(
            spike_times=tuple(spike_times),
            spike_counts=tuple(spike_counts),
            first_spike_times=result.spike_times[:, :, 0],
            samples=result.samples,
            integral=result.integral,
            exp_integral=result.exp_integral,
            failures=failures,
        )


class RecurrentNetwork(eqx.Module):
    """One population with connectivity from a mask, recurrent connections allowed.

    The population's sources are the `n_inputs` external inputs followed by its
    own `n_neurons` neurons, so each weight-matrix field of the model has shape
    `[n_neurons, n_inputs + n_neurons]`, and `mask` (same shape, boolean) zeroes
    the absent connections. The last `n_outputs` neurons are the outputs.
    """

    model: NeuronModel
    mask: Bool[Array, "n_neurons n_sources"]
    n_outputs: int = eqx.field(static=True)

    def __init__(self, model: NeuronModel, mask: Array, n_outputs: int):
        mask = jnp.asarray(mask, dtype=bool)
        expected = (model.n_neurons, model.n_sources)
        if mask.shape != expected:
            raise ValueError(f"mask has shape {mask.shape}; expected {expected} [neuron, source].")
        if not 1 <= n_outputs <= model.n_neurons:
            raise ValueError(f"n_outputs={n_outputs} must be in [1, n_neurons={model.n_neurons}].")
        if model.n_sources <= model.n_neurons:
            raise ValueError(
                f"model has n_sources={model.n_sources} for n_neurons={model.n_neurons}; a "
                "recurrent model needs n_sources = n_inputs + n_neurons with n_inputs >= 1."
            )
        self.model = model
        self.mask = mask
        self.n_outputs = n_outputs

    @property
    def n_inputs(self) -> int:
        return self.model.n_sources - self.model.n_neurons

    def masked_model(self) -> NeuronModel:
        """Return the model with every weight-matrix field multiplied by the mask."""
        model = self.model
        for path in connection_fields(model):

            def get(m, path=path):
                for name in path:
                    m = getattr(m, name)
                return m

            model = eqx.tree_at(get, model, jnp.where(self.mask, get(model), 0.0))
        return model

    def simulate(
        self,
        input_spikes: Float[Array, "n_inputs k"],
        config: SimulationConfig,
        *,
        sample_ts: Float[Array, " p"] | None = None,
        integrals: bool | tuple[int, ...] = False,
        exp_lambda: float = 0.0,
        stop_after_first_spike: bool = False,
    ) -> Recording:
        """Simulate one sample with one event loop for the whole population.

        NOTE: `stop_after_first_spike` is accepted for a uniform interface but
        ignored: the loop would have to watch only the output neurons, so a
        recurrent population always runs to `t_end`.
        """
        input_spikes = _as_spike_times(input_spikes)
        _check_input(input_spikes, self.n_inputs)
        sorted_times, sources = _flatten_spike_train(input_spikes)
        result = run_population(
            self.masked_model(),
            sorted_times,
            sources,
            config,
            recurrent=True,
            sample_ts=sample_ts,
            integrals=integrals,
            exp_lambda=exp_lambda,
        )
        out = slice(self.model.n_neurons - self.n_outputs, None)
        return Recording(
            spike_times=(result.spike_times,),
            spike_counts=(result.spike_counts,),
            first_spike_times=result.spike_times[out, 0],
            samples=result.samples[:, out],
            integral=result.integral[out],
            exp_integral=result.exp_integral[out],
            failures=result.failures,
        )


def make_feedforward(
    layer_factory: Callable[..., NeuronModel],
    sizes: Sequence[int],
    key: PRNGKeyArray,
    layer_kwargs: Sequence[dict] | None = None,
) -> FeedForwardNetwork:
    """Build a feed-forward network of `layer_factory(n_neurons, n_sources, key, **kwargs)` layers.

    `sizes` lists the input count then each layer's size, e.g. `[5, 120, 3]`.
    `layer_kwargs` gives each layer's keyword arguments (one dict per layer).
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes={sizes} must list >= 2 positive sizes: inputs, then each layer.")
    n_layers = len(sizes) - 1
    layer_kwargs = list(layer_kwargs) if layer_kwargs is not None else [{}] * n_layers
    if len(layer_kwargs) != n_layers:
        raise ValueError(f"layer_kwargs has {len(layer_kwargs)} entries; expected {n_layers}.")
    keys = jax.random.split(key, n_layers)
    layers = [
        layer_factory(sizes[i + 1], sizes[i], keys[i], **layer_kwargs[i]) for i in range(n_layers)
    ]
    return FeedForwardNetwork(layers)


def simulate_batch(network, input_spikes: Float[Array, "batch n_inputs k"], config, **kwargs):
    """Simulate a batch of samples; returns a batched [`Recording`][].

    **Arguments:**

    - `network`: a [`FeedForwardNetwork`][] or a [`RecurrentNetwork`][].
    - `input_spikes`: `[batch, n_inputs, K]` input spike times, `inf` for no spike.
    - `config`: a [`SimulationConfig`][]. With `errors="record"`, check
      `Recording.failures` afterwards (`eventax_lab.simulate.raise_failures`).
    - `**kwargs`: options of the output layer, described in [`run_population`][]:
      - `sample_ts`: times at which to record `observe`;
      - `integrals`: `True`, or a tuple of observable indices, to integrate
        over the window;
      - `exp_lambda`: the rate of the exponentially weighted integral;
      - `stop_after_first_spike`: end once every output neuron has spiked.

    A network with its own `simulate_batch` (the feed-forward network) runs it;
    any other is vmapped over its `simulate`.
    """
    input_spikes = _as_spike_times(input_spikes)
    if np.ndim(input_spikes) != 3:
        raise ValueError(
            f"input_spikes has shape {np.shape(input_spikes)}; expected [batch, n_inputs, K]."
        )
    if hasattr(network, "simulate_batch"):
        return network.simulate_batch(input_spikes, config, **kwargs)
    return jax.vmap(lambda spikes: network.simulate(spikes, config, **kwargs))(input_spikes)


def build_network(
    neuron: str,
    hidden_sizes: Sequence[int],
    n_inputs: int,
    n_outputs: int,
    key: PRNGKeyArray,
    neuron_kwargs: dict | None = None,
    output_kwargs: dict | None = None,
    output_spiking: bool = True,
) -> FeedForwardNetwork:
    """Build a feed-forward network of one neuron model from config values.

    **Arguments:**

    - `neuron`: a name in `eventax_lab.neurons.MODELS`, such as `"lif"`.
    - `hidden_sizes`: sizes of the hidden layers, e.g. `[120]`; may be empty.
    - `n_inputs`, `n_outputs`: input count and output-layer size (from the data).
    - `key`: PRNG key for the initial parameters.
    - `neuron_kwargs`: keyword arguments of every layer's model constructor.
    - `output_kwargs`: overrides of `neuron_kwargs` for the output layer.
    - `output_spiking`: if false, the output layer is wrapped in [`NonSpiking`][],
      a leaky integrator for state-based readouts.
    """
    from .neurons import MODELS

    if neuron not in MODELS:
        raise ValueError(f"model.neuron={neuron!r} is unknown; choose one of {sorted(MODELS)}.")
    is_list = isinstance(hidden_sizes, Sequence) and not isinstance(hidden_sizes, (str, bytes))
    if not is_list or not all(is_int(size) for size in hidden_sizes):
        raise ValueError(
            f"model.hidden_sizes={hidden_sizes!r} must be a list of ints, such as [120] for "
            "one hidden layer or [] for none."
        )
    hidden_sizes = [int(size) for size in hidden_sizes]
    if any(size < 1 for size in hidden_sizes):
        raise ValueError(f"model.hidden_sizes={hidden_sizes} must all be >= 1.")
    neuron_kwargs = dict(neuron_kwargs or {})
    output_kwargs = {**neuron_kwargs, **dict(output_kwargs or {})}
    layer_kwargs = [neuron_kwargs] * len(hidden_sizes) + [output_kwargs]
    network = make_feedforward(
        MODELS[neuron], [n_inputs, *hidden_sizes, n_outputs], key, layer_kwargs
    )
    if not output_spiking:
        network = FeedForwardNetwork([*network.layers[:-1], NonSpiking(network.layers[-1])])
    return network
