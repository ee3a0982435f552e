"""The models of ``braintrace train``: recurrent LIF and ALIF networks, and a GRU.

Each model maps one time step of input, shape ``(B, n_in)``, to logits of
shape ``(B, n_out)``; every weight goes through an ETP primitive, so the
compiler decides which learn online (see ``braintrace graph``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import jax.numpy as jnp
import numpy as np

import braintrace

__all__ = ["SpikingRNN", "GRUNet", "MODELS", "build_model"]

init = brainstate.nn.init


class SpikingRNN(brainstate.nn.Module):
    r"""A recurrent layer of spiking neurons with a leaky read-out.

    .. math::

        v^t = \alpha \tilde v^{t-1} + x^t W_{in} + b + s^{t-1} W_{rec}, \qquad
        s^t = H(v^t - v_{th}), \qquad
        r^t = \kappa r^{t-1} + s^t W_{out}

    :math:`W_{in}` is a :class:`braintrace.nn.Linear`, :math:`W_{rec}` a
    ``ParamState`` used through :func:`braintrace.matmul` (zero diagonal: no
    self-connections), the neurons :class:`braintrace.nn.LIF` or
    :class:`braintrace.nn.ALIF`, the read-out a
    :class:`braintrace.nn.LeakyRateReadout` whose :math:`r^t` are the logits.

    Parameters
    ----------
    n_in, n_hidden, n_out : int
        Input size, number of neurons, number of classes.
    neuron : {'lif', 'alif'}
    tau : float
        Membrane time constant in steps (``dt = 1``).
    tau_a : float
        Adaptation time constant in steps (ALIF only).
    readout_decay : float
        :math:`\kappa` of the read-out.
    """

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_out: int,
        neuron: str = "lif",
        tau: float = 10.0,
        tau_a: float = 50.0,
        readout_decay: float = 0.8,
        in_scale: float = 2.0,
        rec_scale: float = 0.5,
    ) -> None:
        super().__init__()
        self.inp = braintrace.nn.Linear(n_in, n_hidden, w_init=init.KaimingNormal(in_scale))
        w = init.param(init.KaimingNormal(rec_scale), (n_hidden, n_hidden))
        self.w_rec = brainstate.ParamState(w * (1.0 - jnp.eye(n_hidden)))
        if neuron == "lif":
            self.neu = braintrace.nn.LIF(n_hidden, tau=tau, dt=1.0)
        else:
            self.neu = braintrace.nn.ALIF(n_hidden, tau=tau, tau_a=tau_a, beta=0.5, dt=1.0)
        self.out = braintrace.nn.LeakyRateReadout(n_hidden, n_out, decay=readout_decay)

    def update(self, x: Any) -> Any:
        rec = braintrace.matmul(self.neu.get_spike(), self.w_rec.value)
        spikes = self.neu(self.inp(x) + rec)
        return self.out(spikes)


class GRUNet(brainstate.nn.Module):
    """A :class:`braintrace.nn.GRUCell` and a :class:`braintrace.nn.Linear` read-out (the seeds' network)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int) -> None:
        super().__init__()
        self.rnn = braintrace.nn.GRUCell(n_in, n_hidden)
        self.readout = braintrace.nn.Linear(n_hidden, n_out)

    def update(self, x: Any) -> Any:
        return self.readout(self.rnn(x))


MODELS: dict[str, Callable[[int, int, int], brainstate.nn.Module]] = {
    "lif": lambda n_in, n_hidden, n_out: SpikingRNN(n_in, n_hidden, n_out, neuron="lif"),
    "alif": lambda n_in, n_hidden, n_out: SpikingRNN(n_in, n_hidden, n_out, neuron="alif"),
    "gru": GRUNet,
}


def build_model(name: str, n_in: int, n_hidden: int, n_out: int, seed: int) -> brainstate.nn.Module:
    """The model ``name`` (a key of :data:`MODELS`), its weights drawn from ``seed``."""
    brainstate.random.seed(int(np.uint32(seed)))
    return MODELS[name](n_in, n_hidden, n_out)
