"""Train a recurrent spiking network online (ES_D_RTRL) on spike-encoded handwritten digits.

scikit-learn's bundled 8x8 digits (1,797 images, no download) become Bernoulli
spike trains: at every one of ``T`` steps, pixel ``i`` spikes with probability
``0.5 * intensity_i``. A recurrent layer of LIF neurons (input weights through
``braintrace.nn.Linear``, recurrent weights through ``braintrace.matmul``)
feeds a leaky read-out whose potentials are the class logits. ES_D_RTRL keeps
factored eligibility traces, so memory does not grow with ``T``;
``braintrace.online_gradients`` runs each batch of sequences in one ``scan``
and optax's Adam applies the summed gradient.

Run::

    python examples/digits_snn.py                 # ~20 s on 2 CPU cores, ~0.95 test accuracy
    python examples/digits_snn.py --quick         # a few seconds, for CI
    python examples/digits_snn.py --plot curves.png

``braintrace train`` runs the same model with a progress bar and more options.
"""

from __future__ import annotations

import argparse
import time

import brainstate
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import braintrace


class SpikingNet(brainstate.nn.Module):
    """Input layer -> recurrent LIF neurons -> leaky read-out (logits)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, tau: float = 10.0):
        super().__init__()
        init = brainstate.nn.init
        self.inp = braintrace.nn.Linear(n_in, n_hidden, w_init=init.KaimingNormal(2.0))
        w_rec = init.param(init.KaimingNormal(0.5), (n_hidden, n_hidden))
        self.w_rec = brainstate.ParamState(w_rec * (1.0 - jnp.eye(n_hidden)))  # no self-connections
        self.neu = braintrace.nn.LIF(n_hidden, tau=tau, dt=1.0)
        self.out = braintrace.nn.LeakyRateReadout(n_hidden, n_out, decay=0.8)

    def update(self, x):
        rec = braintrace.matmul(self.neu.get_spike(), self.w_rec.value)  # learned online
        return self.out(self.neu(self.inp(x) + rec))


def spike_trains(images: np.ndarray, T: int, rng: np.random.RandomState) -> np.ndarray:
    """Intensities in [0, 1], shape (N, 64) -> time-major spikes (T, N, 64)."""
    p = 0.5 * images[None]
    return (rng.random_sample((T,) + images.shape) < p).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps-per-image", dest="T", type=int, default=25)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 epochs, 32 neurons, 12 steps, 256 images")
    parser.add_argument("--plot", help="write the learning curves to this PNG")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.hidden, args.T = 2, 32, 12

    digits = load_digits()
    images, labels = (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)
    rng = np.random.RandomState(args.seed)
    order = rng.permutation(len(images))
    test, train = order[: len(order) // 5], order[len(order) // 5 :]
    if args.quick:
        train, test = train[:256], test[:128]
    B, T = args.batch, args.T
    first = T // 3  # the loss and the prediction use steps T//3 .. T-1

    brainstate.random.seed(args.seed)
    model = SpikingNet(64, args.hidden, 10)
    brainstate.nn.init_all_states(model, batch_size=B)
    learner = braintrace.ES_D_RTRL(model, decay_or_rank=0.9)
    learner.compile_graph(jnp.zeros((B, 64)))  # one time step of a batch
    params = model.states(brainstate.ParamState)
    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init({k: v.value for k, v in params.items()})

    def step_loss(logits, target):
        label, weight = target  # weight: 1/(B * counted steps) on counted steps, else 0
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, label) * weight)

    @brainstate.transform.jit
    def train_step(x, y, opt_state):
        weight = jnp.where(jnp.arange(T) >= first, 1.0 / (B * (T - first)), 0.0)
        target = (jnp.broadcast_to(y, (T, B)), jnp.broadcast_to(weight[:, None], (T, B)))
        grads, loss = braintrace.online_gradients(learner, x, target, step_loss, batch_size=B)
        # the optax step: gradients and parameters are {path: array} dicts of the same structure
        values = {k: v.value for k, v in params.items()}
        updates, opt_state = optimizer.update(grads, opt_state, values)
        for k, v in optax.apply_updates(values, updates).items():
            params[k].value = v
        return loss, opt_state

    @brainstate.transform.jit
    def predict(x):
        brainstate.nn.reset_all_states(model, batch_size=B)
        logits = brainstate.transform.for_loop(model, x)  # (T, B, 10)
        return jnp.argmax(jnp.sum(logits[first:], axis=0), axis=-1)

    def accuracy(idx):
        hits = 0
        for i in range(0, len(idx), B):
            chunk = idx[i : i + B]
            padded = np.concatenate([chunk, np.repeat(chunk[:1], B - len(chunk))])  # fixed batch size
            x = spike_trains(images[padded], T, np.random.RandomState(args.seed + 1 + i))
            hits += int(np.sum(np.asarray(predict(jnp.asarray(x)))[: len(chunk)] == labels[chunk]))
        return hits / len(idx)

    print(f"digits: {len(train)} train / {len(test)} test images, {T} steps each; "
          f"LIF({args.hidden}) + ES_D_RTRL, batch {B}, {args.epochs} epochs (chance accuracy 0.10)")
    losses, test_acc, start = [], [], time.time()
    for epoch in range(args.epochs):
        perm = rng.permutation(train)
        for i in range(len(perm) // B):
            idx = perm[i * B : (i + 1) * B]
            x = jnp.asarray(spike_trains(images[idx], T, rng))
            loss, opt_state = train_step(x, jnp.asarray(labels[idx]), opt_state)
            losses.append(float(loss))
        test_acc.append(accuracy(test))
        print(f"epoch {epoch + 1:2d}: loss {np.mean(losses[-(len(perm) // B):]):.3f}, test accuracy {test_acc[-1]:.3f}")
    print(f"test accuracy {test_acc[-1]:.3f} after {time.time() - start:.0f} s")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
        a1.plot(losses, lw=0.8)
        a1.set(xlabel="Adam step", ylabel="cross-entropy", title="training loss")
        a2.plot(np.arange(1, args.epochs + 1), test_acc, "o-")
        a2.axhline(0.1, color="0.5", ls="--", lw=0.8)
        a2.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1), title="LIF + ES_D_RTRL on digits")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=80)
        print(f"wrote {args.plot}")
    return {"losses": losses, "test_accuracy": test_acc}


if __name__ == "__main__":
    main()
