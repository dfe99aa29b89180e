"""Neuron models and the interface they implement."""

from .base import (
    NeuronModel,
    NonSpiking,
    as_per_neuron,
    connection_fields,
    parameter,
    setting,
    split_neurons,
    trainable_filter,
)
from .init import normal_weights
from .lif import LIF

# Names under which Hydra configs (`model.neuron`) refer to each model.
MODELS: dict[str, type[NeuronModel]] = {"lif": LIF}

__all__ = [
    "LIF",
    "MODELS",
    "NeuronModel",
    "NonSpiking",
    "as_per_neuron",
    "connection_fields",
    "normal_weights",
    "parameter",
    "setting",
    "split_neurons",
    "trainable_filter",
]
