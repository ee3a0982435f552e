"""A whole-brain-scale spiking network learning online: a connectome-like graph trained with ES_D_RTRL.

The network has the size of a fly brain's connectome at ``--scale 1``
(139,255 neurons and about 50 million synapses) and is built like one:

* neurons are grouped into spatial *modules* (brain regions) of lognormal
  sizes, placed at random in a unit cube;
* out-degrees and in-propensities are lognormal (heavy-tailed: a few hub
  neurons have tens of times the mean degree);
* a synapse's target module is drawn with a probability that decays with the
  distance between the modules (``exp(-d / length)``, with extra weight on the
  own module); within the module, targets are drawn in proportion to their
  in-propensity;
* 80% of the neurons are excitatory, 20% inhibitory (Dale's law: every
  outgoing weight of a neuron has its sign, kept during learning through
  :class:`braintrace.nn.EventSparseLinear`'s sign constraint); weight
  magnitudes are lognormal, scaled by ``1 / sqrt(in-degree)``.

The task: reproduce recorded-like activity. A random 1% of the neurons is
"recorded"; their target activity is smooth calcium-like traces driven by a
few latent signals that also modulate the input (Poisson spike trains on
``--inputs`` channels). Every neuron's spikes pass through a calcium-like
leaky filter ``c = κ c + s``; the loss is the mean squared error between the
filtered activity of the recorded neurons and the targets, at every step.

Learning is online with batch 1: ES_D_RTRL runs windows of ``--window`` steps
(:class:`braintrace.MultiStepData`) and Adam updates the weights after every
window, inside one jitted loop. The recurrent product is event-driven (its
cost follows the spikes); ES_D_RTRL's memory does not depend on the length of
the stream.

Run::

    python examples/whole_brain_scale.py                  # 2,000 neurons, about a minute on 2 CPU cores
    python examples/whole_brain_scale.py --quick          # a few seconds, for CI
    python examples/whole_brain_scale.py --scale 1        # 139,255 neurons, 50M synapses (a GPU)
    python examples/whole_brain_scale.py --plot loss.png

``benchmarks/whole_brain.py`` times the same network (compile time, time per
step, memory, BPTT for comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import optax
import saiunit as u

import braintrace

#: The fly connectome's size (FlyWire): neurons and synapses (connections) at ``--scale 1``.
FULL_NEURONS = 139_255
FULL_SYNAPSES = 50_000_000


@dataclasses.dataclass(frozen=True)
class Connectome:
    """A connectome-like graph in CSR form (rows: presynaptic, columns: postsynaptic neurons)."""

    indptr: np.ndarray  # (n + 1,) int64
    indices: np.ndarray  # (nnz,) int32, postsynaptic neuron of every synapse
    module: np.ndarray  # (n,) module of every neuron
    excitatory: np.ndarray  # (n,) bool
    seconds: float  # generation time

    @property
    def n(self) -> int:
        return int(self.module.shape[0])

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def out_degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def in_degree(self) -> np.ndarray:
        return np.bincount(self.indices, minlength=self.n)


def generate_connectome(
    n: int,
    synapses: int,
    *,
    n_modules: int | None = None,
    length: float = 0.25,
    own_module: float = 4.0,
    degree_sigma: float = 1.0,
    frac_exc: float = 0.8,
    seed: int = 0,
) -> Connectome:
    """A connectome-like random graph of ``n`` neurons and about ``synapses`` synapses (NumPy only).

    ``n_modules`` (default ``~sqrt(n) / 6``) spatial modules; target modules drawn with
    probability ``∝ size · exp(-distance / length)`` (the own module weighted ``own_module``
    times more); lognormal out-degrees and in-propensities of log-standard-deviation
    ``degree_sigma``. Self-connections are removed (so slightly fewer synapses); repeated pairs are
    kept as separate contacts.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    M = n_modules or max(2, round(math.sqrt(n) / 6))
    sizes = rng.lognormal(0.0, 0.5, M)
    counts = np.maximum(1, np.floor(sizes / sizes.sum() * n).astype(np.int64))
    counts[np.argmax(counts)] += n - counts.sum()
    first = np.concatenate([[0], np.cumsum(counts)])
    module = np.repeat(np.arange(M, dtype=np.int32), counts)
    centers = rng.random((M, 3))
    dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
    pm = counts[None, :] * np.exp(-dist / length) * np.where(np.eye(M, dtype=bool), own_module, 1.0)
    cum_pm = np.cumsum(pm / pm.sum(1, keepdims=True), axis=1)

    mean_deg = min(synapses / n, (n - 1) / 4)
    out_w = rng.lognormal(0.0, degree_sigma, n)
    deg = np.clip(np.round(out_w / out_w.mean() * mean_deg), 1, n - 1).astype(np.int64)
    in_w = rng.lognormal(0.0, degree_sigma, n)
    cum_in = np.cumsum(in_w)
    lo = np.concatenate([[0.0], cum_in])[first[:-1]]  # cumulative in-propensity before each module
    hi = cum_in[first[1:] - 1]

    src = np.repeat(np.arange(n, dtype=np.int32), deg)
    syn_first = np.concatenate([[0], np.cumsum(deg)])
    tgt_module = np.empty(src.shape[0], np.int32)
    for m in range(M):  # the sources of module m are one contiguous slice
        a, b = syn_first[first[m]], syn_first[first[m + 1]]
        tgt_module[a:b] = np.searchsorted(cum_pm[m], rng.random(b - a, dtype=np.float32), side="right")
    np.minimum(tgt_module, M - 1, out=tgt_module)
    r = lo[tgt_module] + rng.random(src.shape[0]) * (hi[tgt_module] - lo[tgt_module])
    tgt = np.searchsorted(cum_in, r, side="right").astype(np.int32)
    del r
    tgt = np.clip(tgt, first[tgt_module], first[tgt_module + 1] - 1).astype(np.int32)
    del tgt_module
    # sources are sorted: CSR order already. Repeated (source, target) pairs stay, as several
    # contacts of one pair (a connectome counts them too); self-connections go.
    keep = src != tgt
    src, tgt = src[keep], tgt[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]).astype(np.int64)
    excitatory = rng.random(n) < frac_exc
    return Connectome(indptr, tgt, module, excitatory, time.perf_counter() - start)


def synaptic_weights(c: Connectome, *, gain: float = 0.3, inhibition: float = 5.0, seed: int = 1) -> np.ndarray:
    """Lognormal magnitudes ``gain · w / sqrt(in-degree)``, inhibitory ones ``inhibition`` times stronger."""
    rng = np.random.default_rng(seed)
    w = rng.lognormal(0.0, 0.5, c.nnz).astype(np.float32)
    w *= (gain / np.sqrt(np.maximum(c.in_degree(), 1)))[c.indices].astype(np.float32)
    rows = np.repeat(np.arange(c.n), c.out_degree())
    w[~c.excitatory[rows]] *= inhibition
    return w


class WholeBrainNet(brainstate.nn.Module):
    """Poisson inputs -> LIF network with a sparse, sign-constrained, event-driven recurrence.

    Returns the calcium-like filtered spikes ``c = κ c + s`` of the recorded neurons.
    """

    def __init__(
        self, c: Connectome, w: np.ndarray, n_in: int, recorded: np.ndarray, *,
        max_active: float = 0.1, events: bool | str = "auto", tau: float = 20.0, kappa: float = 0.98,
        in_gain: float = 2.0, seed: int = 2,
    ):
        super().__init__()
        rng = np.random.default_rng(seed)
        n = c.n
        csr = u.sparse.CSR((jnp.asarray(w), c.indices, c.indptr.astype(np.int32)), shape=(n, n))
        sign = np.where(c.excitatory, 1.0, -1.0).astype(np.float32)
        w_in = (rng.standard_normal((n_in, n)) * in_gain / math.sqrt(n_in)).astype(np.float32)
        self.inp = braintrace.nn.Linear(n_in, n, w_init=w_in, b_init=None)
        self.rec = braintrace.nn.EventSparseLinear(csr, w_sign=sign, events=events, max_active=max_active)
        self.lif = braintrace.nn.LIF(n, tau=tau, dt=1.0)
        self.kappa = kappa
        self.recorded = jnp.asarray(recorded)
        self.n = n

    def init_state(self, batch_size=None, **kwargs):
        self.ca = brainstate.HiddenState(jnp.zeros((self.n,) if batch_size is None else (batch_size, self.n)))

    def reset_state(self, batch_size=None, **kwargs):
        self.ca.value = jnp.zeros((self.n,) if batch_size is None else (batch_size, self.n))

    def update(self, x):
        s = self.lif(self.inp(x) + self.rec(self.lif.get_spike()))
        self.ca.value = self.kappa * self.ca.value + (1.0 - self.kappa) * s
        return self.ca.value[..., self.recorded]


@dataclasses.dataclass
class Task:
    """Input spikes ``(T, n_in)`` and target activity ``(T, n_rec)`` from shared latent signals."""

    inputs: np.ndarray
    targets: np.ndarray


def make_task(T: int, n_in: int, n_rec: int, *, n_latent: int = 4, rate: float = 0.05, level: float = 0.05,
              seed: int = 3) -> Task:
    """Latent sums of slow sines drive both the Poisson inputs (``rate`` at most) and the targets
    (calcium-like traces around levels between 0.4 and 1.6 times ``level``, the spike probability
    per step they correspond to)."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    periods = rng.uniform(150, 600, (1, n_latent))
    z = np.sin(2 * np.pi * t / periods + rng.uniform(0, 2 * np.pi, (1, n_latent)))  # (T, L)
    tuning = rng.standard_normal((n_latent, n_in))
    p_in = rate / (1.0 + np.exp(-2.0 * z @ tuning))
    inputs = (rng.random((T, n_in)) < p_in).astype(np.float32)
    mix = rng.standard_normal((n_latent, n_rec)) / math.sqrt(n_latent)
    levels = level * rng.uniform(0.4, 1.6, (1, n_rec))  # recorded neurons fire at different rates
    targets = levels * (1.0 + 0.6 * np.tanh(z @ mix))
    return Task(inputs, targets.astype(np.float32))


def build(n: int, synapses: int, *, n_in: int, rec_frac: float = 0.01, max_active: float = 0.1,
          events: bool | str = "auto", seed: int = 0, connectome: Connectome | None = None):
    """``(connectome, model, recorded indices)`` with the model's states initialised (batch 1, unbatched).

    ``connectome``: reuse a generated graph (``n`` and ``synapses`` are then ignored)."""
    c = connectome if connectome is not None else generate_connectome(n, synapses, seed=seed)
    n = c.n
    w = synaptic_weights(c, seed=seed + 1)
    rng = np.random.default_rng(seed + 4)
    recorded = np.sort(rng.choice(n, max(1, round(rec_frac * n)), replace=False))
    model = WholeBrainNet(c, w, n_in, recorded, max_active=max_active, events=events, seed=seed + 2)
    brainstate.nn.init_all_states(model)
    return c, model, recorded


def mse(out, target):
    return jnp.mean((out - target) ** 2)


def make_trainer(model, learner, window: int, lr: float):
    """``run(xs, ys, opt_state) -> (losses per window, opt_state)``: online ES_D_RTRL, Adam after every window."""
    params = model.states(brainstate.ParamState)
    # Adam steps relative to each weight array's size (the input and recurrent weights differ by 10x)
    optimizer = optax.chain(optax.scale_by_adam(), optax.scale_by_param_block_rms(), optax.scale(-lr))

    def window_loss(x, y):
        outs = learner(braintrace.MultiStepData(x))
        return jnp.sum(jax.vmap(mse)(outs, y)) / window

    def one_window(opt_state, xy):
        grads, loss = brainstate.transform.grad(window_loss, params, return_value=True)(*xy)
        values = {k: v.value for k, v in params.items()}
        updates, opt_state = optimizer.update(grads, opt_state, values)
        for k, v in optax.apply_updates(values, updates).items():
            params[k].value = v
        return opt_state, loss

    @brainstate.transform.jit
    def run(xs, ys, opt_state):
        nw = xs.shape[0] // window
        xs, ys = xs.reshape((nw, window) + xs.shape[1:]), ys.reshape((nw, window) + ys.shape[1:])
        opt_state, losses = brainstate.transform.scan(one_window, opt_state, (xs, ys))
        return losses, opt_state

    opt_state = optimizer.init({k: v.value for k, v in params.items()})
    return run, opt_state


def neurons_from(args) -> int:
    return max(50, round(FULL_NEURONS * args.scale)) if args.scale is not None else args.neurons


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=None,
                        help=f"fraction of the fly connectome's size (1: {FULL_NEURONS:,} neurons, 50M synapses)")
    parser.add_argument("--neurons", type=int, default=2000, help="number of neurons (when --scale is not given)")
    parser.add_argument("--degree", type=float, default=FULL_SYNAPSES / FULL_NEURONS, help="mean synapses per neuron")
    parser.add_argument("--inputs", type=int, default=64, help="Poisson input channels")
    parser.add_argument("--chunks", type=int, default=12, help="training chunks of --T steps")
    parser.add_argument("--T", type=int, default=400, help="steps per jitted chunk")
    parser.add_argument("--window", type=int, default=20, help="ES_D_RTRL window (steps per Adam update)")
    parser.add_argument("--lr", type=float, default=1e-2, help="relative step size (Adam scaled by each weight array's RMS)")
    parser.add_argument("--max-active", type=float, default=0.1,
                        help="fraction of the synapse blocks the event path handles per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="300 neurons, 3 chunks of 100 steps (for CI)")
    parser.add_argument("--plot", help="write the loss curve to this PNG")
    args = parser.parse_args(argv)
    if args.quick:
        args.neurons, args.scale, args.degree, args.chunks, args.T, args.window = 300, None, 40, 3, 100, 10
    n = neurons_from(args)
    synapses = round(args.degree * n)

    c, model, recorded = build(n, synapses, n_in=args.inputs, max_active=args.max_active, seed=args.seed)
    print(f"connectome: {c.n:,} neurons, {c.nnz:,} synapses in {len(np.unique(c.module))} modules "
          f"(out-degree mean {c.out_degree().mean():.0f}, max {c.out_degree().max()}; "
          f"{c.excitatory.mean():.0%} excitatory), generated in {c.seconds:.1f} s; "
          f"{len(recorded)} recorded neurons; event-driven recurrence: {model.rec.events}")
    task = make_task(args.T * args.chunks, args.inputs, len(recorded), seed=args.seed + 3)
    learner = braintrace.ES_D_RTRL(model, decay_or_rank=0.95)
    learner.compile_graph(jnp.zeros(args.inputs))
    run, opt_state = make_trainer(model, learner, args.window, args.lr)

    losses, start = [], time.perf_counter()
    for i in range(args.chunks):
        sl = slice(i * args.T, (i + 1) * args.T)
        chunk_losses, opt_state = run(jnp.asarray(task.inputs[sl]), jnp.asarray(task.targets[sl]), opt_state)
        losses.extend(np.asarray(chunk_losses).tolist())
        per = args.T // args.window
        print(f"chunk {i + 1:3d}: loss {np.mean(losses[-per:]):.3e} ({time.perf_counter() - start:.1f} s)")
    per = args.T // args.window
    first, last = float(np.mean(losses[:per])), float(np.mean(losses[-per:]))
    print(f"loss {first:.3e} -> {last:.3e} over {args.chunks * args.T} steps, {time.perf_counter() - start:.1f} s")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(np.arange(len(losses)) * args.window, losses, lw=0.8)
        ax.set(xlabel="time step", ylabel="MSE (per window)", yscale="log",
               title=f"{c.n:,} neurons, {c.nnz:,} synapses, ES_D_RTRL online")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=80)
        print(f"wrote {args.plot}")
    return {"losses": losses, "first": first, "last": last, "neurons": c.n, "synapses": c.nnz,
            "events": bool(model.rec.events)}


if __name__ == "__main__":
    main()
