"""Datasets as input spike times for event-based spiking networks (NumPy only).

Each `make_*` function returns `{"train": ..., "val": ..., "test": ...}` of
`SpikeDataset`s, and `iterate_batches` turns a dataset into fixed-shape batches.
All times are in ms.
"""

from eventax_lab.data.base import (
    Batch,
    SpikeDataset,
    count_batches,
    iterate_batches,
    validate_spike_array,
)
from eventax_lab.data.encoding import (
    intensity_to_latency,
    latency_decode,
    latency_encode,
)
from eventax_lab.data.mnist import (
    MnistArrays,
    load_mnist_idx,
    load_mnist_tfds,
    make_mnist,
    read_idx,
)
from eventax_lab.data.regression import make_regression, regression_target
from eventax_lab.data.xor import make_xor
from eventax_lab.data.yinyang import (
    classify_yinyang,
    encode_yinyang,
    make_yinyang,
    sample_yinyang,
    yinyang_features,
)

__all__ = [
    "Batch",
    "MnistArrays",
    "SpikeDataset",
    "classify_yinyang",
    "count_batches",
    "encode_yinyang",
    "intensity_to_latency",
    "iterate_batches",
    "latency_decode",
    "latency_encode",
    "load_mnist_idx",
    "load_mnist_tfds",
    "make_mnist",
    "make_regression",
    "make_xor",
    "make_yinyang",
    "read_idx",
    "regression_target",
    "sample_yinyang",
    "validate_spike_array",
    "yinyang_features",
]
