"""Layers, recurrent cells and spiking neurons built on the ETP primitives.

Drop-in replacements for ``brainstate.nn`` modules whose trainable operations
go through :func:`braintrace.matmul`, :func:`braintrace.element_wise`,
:func:`braintrace.conv`, :func:`braintrace.sparse_matmul` and
:func:`braintrace.lora_matmul`, so their weights learn online.

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
"""

from . import surrogate as surrogate
from .conv import Conv1d as Conv1d, Conv2d as Conv2d, Conv3d as Conv3d
from .event_linear import EventSparseLinear as EventSparseLinear
from .linear import (
    LoRA as LoRA,
    Linear as Linear,
    ScaledWSLinear as ScaledWSLinear,
    SignedWLinear as SignedWLinear,
    SparseLinear as SparseLinear,
)
from .linear_rnn import LRUCell as LRUCell, MiniGRU as MiniGRU, MiniLSTM as MiniLSTM
from .neurons import ALIF as ALIF, IF as IF, LIF as LIF
from .norm import BatchNorm1d as BatchNorm1d, LayerNorm as LayerNorm
from .readout import LeakyRateReadout as LeakyRateReadout
from .rnn import (
    GRUCell as GRUCell,
    LSTMCell as LSTMCell,
    MGUCell as MGUCell,
    MinimalRNNCell as MinimalRNNCell,
    URLSTMCell as URLSTMCell,
    ValinaRNNCell as ValinaRNNCell,
    VanillaRNNCell as VanillaRNNCell,
)

__all__ = [
    "surrogate",
    # linear layers
    "Linear",
    "SignedWLinear",
    "ScaledWSLinear",
    "SparseLinear",
    "EventSparseLinear",
    "LoRA",
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
