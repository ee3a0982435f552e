"""The benchmarked models, their data and their loss.

- ``gru``: :class:`braintrace.nn.GRUCell` (input ``n_in``, hidden ``size``)
  followed by a :class:`braintrace.nn.Linear` read-out to ``n_out``.
- ``lif``: a recurrent spiking network of ``size`` LIF neurons. Input and
  recurrent weights go through :func:`braintrace.matmul` (the recurrent one on
  the previous step's spikes); a :class:`braintrace.nn.LeakyRateReadout` reads
  the spikes out.

Both are trained against random targets with a mean-squared error per step.
"""

from __future__ import annotations

import dataclasses

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

import braintrace

__all__ = ["ModelSpec", "GRUNet", "RecurrentLIFNet", "build_model", "make_data", "mse_loss"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One benchmark configuration: model family, size, batch and sequence length."""

    kind: str  # 'gru' or 'lif'
    size: int  # GRU hidden units or LIF neurons
    T: int
    batch: int = 16
    n_in: int = 32
    n_out: int = 10

    def __post_init__(self):
        if self.kind not in ("gru", "lif"):
            raise ValueError(f"ModelSpec.kind must be 'gru' or 'lif', got {self.kind!r}.")

    @property
    def model_name(self) -> str:
        return f"{self.kind.upper()}-{self.size}"

    @property
    def name(self) -> str:
        return f"{self.model_name} B={self.batch} T={self.T}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _normal(rng: np.random.RandomState, shape: tuple[int, int], std: float) -> np.ndarray:
    # weights drawn with numpy: the layers' default jax initialisers compile op by op (seconds per process)
    return (rng.standard_normal(shape) * std).astype(np.float32)


class GRUNet(brainstate.nn.Module):
    """GRU cell and a linear read-out (the read-out learns from its instantaneous gradient)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, seed: int = 0):
        super().__init__()
        rng = np.random.RandomState(seed)
        n = n_in + n_hidden
        self.cell = braintrace.nn.GRUCell(n_in, n_hidden, w_init=_normal(rng, (n, n_hidden), 1.0 / np.sqrt(n)))
        self.readout = braintrace.nn.Linear(n_hidden, n_out, w_init=_normal(rng, (n_hidden, n_out), 1 / np.sqrt(n_hidden)))

    def update(self, x):
        return self.readout(self.cell(x))


class RecurrentLIFNet(brainstate.nn.Module):
    """Recurrent LIF layer with online input and recurrent weights and a leaky read-out.

    .. math:: v^t = α \\tilde v^{t-1} + x^t W_{in} + s^{t-1} W_{rec} + b, \\qquad r^t = κ r^{t-1} + s^t W_{out}
    """

    def __init__(self, n_in: int, n_rec: int, n_out: int, seed: int = 0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w_in = braintrace.nn.Linear(n_in, n_rec, w_init=_normal(rng, (n_in, n_rec), 2.0 / np.sqrt(n_in)))
        self.w_rec = braintrace.nn.Linear(n_rec, n_rec, w_init=_normal(rng, (n_rec, n_rec), 0.5 / np.sqrt(n_rec)),
                                          b_init=None)
        self.lif = braintrace.nn.LIF(n_rec, tau=20.0, dt=1.0)
        self.readout = braintrace.nn.LeakyRateReadout(n_rec, n_out, decay=0.9,
                                                      w_init=_normal(rng, (n_rec, n_out), 1.0 / np.sqrt(n_rec)))

    def update(self, x):
        current = self.w_in(x) + self.w_rec(self.lif.get_spike())
        return self.readout(self.lif(current))


def build_model(spec: ModelSpec, seed: int = 0) -> brainstate.nn.Module:
    """The model of ``spec`` with its states initialised for ``spec.batch``."""
    if spec.kind == "gru":
        model = GRUNet(spec.n_in, spec.size, spec.n_out, seed)
    else:
        model = RecurrentLIFNet(spec.n_in, spec.size, spec.n_out, seed)
    brainstate.nn.init_all_states(model, batch_size=spec.batch)
    return model


def make_data(spec: ModelSpec, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """Time-major inputs ``(T, B, n_in)`` and random targets ``(T, B, n_out)``.

    GRU inputs are standard normal; LIF inputs are Bernoulli spike trains (rate 0.2).
    """
    kx, ky = jax.random.split(jax.random.PRNGKey(seed))
    shape = (spec.T, spec.batch, spec.n_in)
    if spec.kind == "gru":
        xs = jax.random.normal(kx, shape, jnp.float32)
    else:
        xs = jax.random.bernoulli(kx, 0.2, shape).astype(jnp.float32)
    ys = jax.random.normal(ky, (spec.T, spec.batch, spec.n_out), jnp.float32)
    return xs, ys


def mse_loss(output, target):
    """Mean-squared error of one step, averaged over batch and outputs."""
    return jnp.mean((output - target) ** 2)
