"""Layers, recurrent cells and spiking neurons built on the ETP primitives.

Drop-in replacements for ``brainstate.nn`` modules whose trainable operations
go through :func:`braintrace.matmul`, :func:`braintrace.element_wise`,
:func:`braintrace.conv`, :func:`braintrace.sparse_matmul`,
:func:`braintrace.lora_matmul`, :func:`braintrace.embedding` and
:func:`braintrace.grouped_matmul`, so their weights learn online.

Examples
--------
>>> import brainstate, jax.numpy as jnp
>>> import braintrace
>>> cell = braintrace.nn.GRUCell(3, 8)
>>> brainstate.nn.init_all_states(cell, batch_size=2)  # doctest: +ELLIPSIS
GRUCell(...)
>>> cell(jnp.ones((2, 3))).shape
(2, 8)
>>> braintrace.nn.ValinaRNNCell is braintrace.nn.VanillaRNNCell   # the seeds' spelling, kept as an alias
True

Names that braintrace 0.2.0 forwarded from ``brainstate.nn`` (activations,
dropout, pooling, other normalisations) and from ``brainpy.state`` (synapse
models) still resolve, with a ``DeprecationWarning``; the table is
:data:`braintrace.nn.forwarded.FORWARDED`.
"""

from typing import Any

from . import forwarded as forwarded
from . import surrogate as surrogate
from .conv import Conv1d as Conv1d, Conv2d as Conv2d, Conv3d as Conv3d
from .embedding import Embedding as Embedding
from .grouped import GroupedLinear as GroupedLinear
from .event_linear import EventSparseLinear as EventSparseLinear
from .linear import (
    LoRA as LoRA,
    Linear as Linear,
    ScaledWSLinear as ScaledWSLinear,
    SignedWLinear as SignedWLinear,
    SparseLinear as SparseLinear,
)
from .linear_rnn import LRUCell as LRUCell
from .minimal_rnn import MiniGRU as MiniGRU, MiniLSTM as MiniLSTM, MinimalRNNCell as MinimalRNNCell
from .neurons import ALIF as ALIF, IF as IF, LIF as LIF
from .norm import BatchNorm1d as BatchNorm1d, LayerNorm as LayerNorm
from .readout import LeakyRateReadout as LeakyRateReadout
from .rnn import (
    GRUCell as GRUCell,
    LSTMCell as LSTMCell,
    MGUCell as MGUCell,
    URLSTMCell as URLSTMCell,
    ValinaRNNCell as ValinaRNNCell,
    VanillaRNNCell as VanillaRNNCell,
)

__all__ = [
    "surrogate",
    "forwarded",
    # linear layers
    "Linear",
    "SignedWLinear",
    "ScaledWSLinear",
    "SparseLinear",
    "EventSparseLinear",
    "LoRA",
    "GroupedLinear",
    "Embedding",
    # convolutions
    "Conv1d",
    "Conv2d",
    "Conv3d",
    # recurrent cells
    "VanillaRNNCell",
    "ValinaRNNCell",
    "GRUCell",
    "LSTMCell",
    "MGUCell",
    "MinimalRNNCell",
    "URLSTMCell",
    "MiniGRU",
    "MiniLSTM",
    "LRUCell",
    # spiking neurons and read-out
    "IF",
    "LIF",
    "ALIF",
    "LeakyRateReadout",
    # normalisation
    "BatchNorm1d",
    "LayerNorm",
]


def __getattr__(name: str) -> Any:
    """Serve the names 0.2.0 forwarded to ``brainstate.nn`` / ``brainpy.state``, with a warning."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return forwarded.resolve(name)
