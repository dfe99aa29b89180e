"""Neuron models and the interface they implement."""

from .base import (
    NeuronModel,
    NonSpiking,
    as_per_neuron,
    check_setting,
    connection_fields,
    parameter,
    setting,
    split_neurons,
    summed_weights,
    trainable_filter,
)
from .init import normal_weights
from .alif import ALIF
from .contract import ContractError, ContractReport, check_neuron_model
from .egru import EGRU
from .eif import EIF
from .izhikevich import Izhikevich
from .lif import LIF
from .qif import QIF

# Names under which Hydra configs (`model.neuron`) refer to each model.
MODELS: dict[str, type[NeuronModel]] = {
    "lif": LIF,
    "alif": ALIF,
    "qif": QIF,
    "eif": EIF,
    "izhikevich": Izhikevich,
    "egru": EGRU,
}

__all__ = [
    "ALIF",
    "ContractError",
    "ContractReport",
    "EGRU",
    "EIF",
    "Izhikevich",
    "LIF",
    "MODELS",
    "NeuronModel",
    "NonSpiking",
    "QIF",
    "as_per_neuron",
    "check_neuron_model",
    "check_setting",
    "connection_fields",
    "normal_weights",
    "parameter",
    "setting",
    "split_neurons",
    "summed_weights",
    "trainable_filter",
]
