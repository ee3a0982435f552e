"""Train a GRU online on the copying task: D_RTRL and ES_D_RTRL next to BPTT.

The network sees ``L`` random symbols, waits ``D`` blank steps, then, on a "go"
cue, must reproduce the symbols in order. The loss counts only the recall
steps. Online learners accumulate their gradient step by step with memory
independent of the sequence length; BPTT differentiates the unrolled sequence.

Run::

    python examples/copying_task.py            # about half a minute on a laptop CPU
    python examples/copying_task.py --steps 600 --hidden 64
    python examples/copying_task.py --plot curves.png   # the three loss curves
"""

from __future__ import annotations

import argparse
import time

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import optax

import braintrace
from braintrace import datasets


class CopyNet(brainstate.nn.Module):
    """GRU cell followed by a linear readout (the readout learns from its instantaneous gradient)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int):
        super().__init__()
        self.cell = braintrace.nn.GRUCell(n_in, n_hidden)
        self.readout = braintrace.nn.Linear(n_hidden, n_out)

    def update(self, x):
        return self.readout(self.cell(x))


def copying_batch(rng: np.random.RandomState, batch: int, n_symbols: int, length: int, delay: int):
    """Time-major inputs ``(T, B, n_symbols + 1)``, labels ``(T, B)`` and recall mask ``(T, B)``."""
    data = datasets.copying(batch, rng, n_symbols=n_symbols, length=length, delay=delay)
    return jnp.asarray(data.inputs), (jnp.asarray(data.targets), jnp.asarray(data.mask))


def step_loss(logits, target):
    labels, mask = target
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def accuracy(model, x, target, batch):
    labels, mask = target
    brainstate.nn.reset_all_states(model, batch_size=batch)
    logits = brainstate.transform.for_loop(model, x)
    hit = (jnp.argmax(logits, -1) == labels) * mask
    return float(jnp.sum(hit) / jnp.sum(mask))


def train(method: str, args) -> tuple[list[float], float, float]:
    brainstate.random.seed(args.seed)
    rng = np.random.RandomState(args.seed)
    n_in, n_out = args.symbols + 1, args.symbols
    model = CopyNet(n_in, args.hidden, n_out)
    brainstate.nn.init_all_states(model, batch_size=args.batch)
    params = model.states(brainstate.ParamState)
    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init({k: v.value for k, v in params.items()})

    if method == "bptt":
        grad_fn = lambda x, y: braintrace.bptt_gradients(model, x, y, step_loss, batch_size=args.batch)
    else:
        learner = (
            braintrace.D_RTRL(model) if method == "d_rtrl" else braintrace.ES_D_RTRL(model, decay_or_rank=0.9)
        )
        learner.compile_graph(jnp.zeros((args.batch, n_in)))
        grad_fn = lambda x, y: braintrace.online_gradients(learner, x, y, step_loss, batch_size=args.batch)

    @brainstate.transform.jit
    def train_step(x, y, opt_state):
        grads, loss = grad_fn(x, y)
        values = {k: v.value for k, v in params.items()}
        updates, opt_state = optimizer.update(grads, opt_state, values)
        for k, v in optax.apply_updates(values, updates).items():
            params[k].value = v
        return loss, opt_state

    losses = []
    start = time.time()
    for _ in range(args.steps):
        x, y = copying_batch(rng, args.batch, args.symbols, args.length, args.delay)
        loss, opt_state = train_step(x, y, opt_state)
        losses.append(float(loss) / (2 * args.length + args.delay))
    elapsed = time.time() - start
    x, y = copying_batch(np.random.RandomState(12345), 256, args.symbols, args.length, args.delay)
    return losses, accuracy(model, x, y, 256), elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="d_rtrl,es_d_rtrl,bptt")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--length", type=int, default=3)
    parser.add_argument("--delay", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="write the loss curves to this PNG")
    args = parser.parse_args(argv)

    chance = 1.0 / args.symbols
    print(f"copying task: {args.length} symbols of {args.symbols}, delay {args.delay}, "
          f"GRU({args.hidden}), batch {args.batch}, {args.steps} Adam steps (chance accuracy {chance:.2f})")
    print(f"{'method':<10} {'first loss':>10} {'last loss':>10} {'recall acc':>10} {'time (s)':>9}")
    results, curves = {}, {}
    for method in args.methods.split(","):
        losses, acc, elapsed = train(method, args)
        first, last = np.mean(losses[:10]), np.mean(losses[-10:])
        results[method], curves[method] = (first, last, acc), losses
        print(f"{method:<10} {first:>10.3f} {last:>10.3f} {acc:>10.2f} {elapsed:>9.1f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3))
        for method, losses in curves.items():
            k = max(1, len(losses) // 30)
            ax.plot(np.convolve(losses, np.ones(k) / k, mode="valid"), label=f"{method} (acc {results[method][2]:.2f})")
        ax.set(xlabel="Adam step", ylabel="loss per step", yscale="log", title="copying task, GRU")
        ax.legend(frameon=False)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=80)
        print(f"wrote {args.plot}")
    return results


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message=".*only through another trainable ETP primitive.*")
    main()
