"""Evidence accumulation (e-prop's cue task) with a recurrent ALIF network trained by EProp.

A scaled-down version of the task of Bellec et al. (2020), Fig. 3: cues appear
one after another on a *left* or a *right* input population; after a delay a
*recall* population fires, and the network must answer which side had more
cues. A fourth population fires background noise throughout. The answer must
be held across the delay, which adaptive (ALIF) neurons make possible: their
threshold remembers recent spikes for ``tau_a`` steps.

EProp keeps an eligibility trace per synapse and multiplies it by a learning
signal per neuron (``feedback='symmetric'``: the true one; ``'random'``: the
output error through fixed random matrices); ``kappa_filter_decay`` filters the
traces with the read-out's leak. The loss counts the recall steps only.

Run::

    python examples/evidence_accumulation.py            # about a minute on 2 CPU cores
    python examples/evidence_accumulation.py --quick    # a few seconds, for CI
    python examples/evidence_accumulation.py --feedback random --plot curves.png
"""

from __future__ import annotations

import argparse
import sys
import time

import brainstate
import jax.numpy as jnp
import numpy as np
import optax

import braintrace


class ALIFNet(brainstate.nn.Module):
    """Input layer -> recurrent ALIF neurons -> leaky read-out (logits for left/right)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int = 2, readout_decay: float = 0.8):
        super().__init__()
        init = brainstate.nn.init
        self.inp = braintrace.nn.Linear(n_in, n_hidden, w_init=init.KaimingNormal(2.0))
        w_rec = init.param(init.KaimingNormal(0.5), (n_hidden, n_hidden))
        self.w_rec = brainstate.ParamState(w_rec * (1.0 - jnp.eye(n_hidden)))
        self.neu = braintrace.nn.ALIF(n_hidden, tau=10.0, tau_a=50.0, beta=0.5, dt=1.0)
        self.out = braintrace.nn.LeakyRateReadout(n_hidden, n_out, decay=readout_decay)

    def update(self, x):
        rec = braintrace.matmul(self.neu.get_spike(), self.w_rec.value)
        return self.out(self.neu(self.inp(x) + rec))


def cue_trials(rng, n, n_cues=7, n_per=10, cue=4, gap=3, delay=15, recall=5, p_major=0.7):
    """Time-major spikes ``(T, n, 4 * n_per)``, labels ``(n,)`` (0 left, 1 right) and ``T``.

    Populations: left cues, right cues, recall cue, background noise.
    """
    T = n_cues * (cue + gap) + delay + recall
    left = rng.rand(n) < 0.5
    on_left = np.where(rng.rand(n, n_cues) < p_major, left[:, None], ~left[:, None])
    labels = (2 * on_left.sum(1) < n_cues).astype(np.int32)
    rates = np.zeros((T, n, 4), np.float32)
    rates[:, :, 3] = 0.05
    for k in range(n_cues):
        t0 = k * (cue + gap)
        rates[t0 : t0 + cue, :, 0] = 0.4 * on_left[:, k]
        rates[t0 : t0 + cue, :, 1] = 0.4 * ~on_left[:, k]
    rates[T - recall :, :, 2] = 0.4
    rates = np.repeat(rates, n_per, axis=2)
    return (rng.random_sample(rates.shape) < rates).astype(np.float32), labels, T


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cues", type=int, default=7)
    parser.add_argument("--delay", type=int, default=15)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--feedback", choices=("symmetric", "random"), default="symmetric")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20 steps, 3 cues, 32 neurons")
    parser.add_argument("--plot", help="write the learning curves to this PNG")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.cues, args.delay, args.hidden = 20, 3, 5, 32
    if not hasattr(braintrace, "EProp"):
        sys.exit("this example needs braintrace.EProp, which this version of braintrace does not have")

    rng = np.random.RandomState(args.seed)
    B, recall = args.batch, 5
    trials = dict(n_cues=args.cues, delay=args.delay, recall=recall)
    x_test, y_test, T = cue_trials(np.random.RandomState(args.seed + 1), 8 * B, **trials)
    n_in = x_test.shape[-1]

    brainstate.random.seed(args.seed)
    model = ALIFNet(n_in, args.hidden)
    brainstate.nn.init_all_states(model, batch_size=B)
    learner = braintrace.EProp(
        model, feedback=args.feedback, kappa_filter_decay=0.8, random_feedback_key=args.seed
    )
    learner.compile_graph(jnp.zeros((B, n_in)))
    params = model.states(brainstate.ParamState)
    optimizer = optax.adam(args.lr)
    opt_state = optimizer.init({k: v.value for k, v in params.items()})
    weight = np.zeros((T, 1), np.float32)
    weight[T - recall :] = 1.0 / (B * recall)  # mean cross-entropy over the recall steps

    def step_loss(logits, target):
        label, w = target
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, label) * w)

    @brainstate.transform.jit
    def train_step(x, y, opt_state):
        target = (jnp.broadcast_to(y, (T, B)), jnp.broadcast_to(jnp.asarray(weight), (T, B)))
        grads, loss = braintrace.online_gradients(learner, x, target, step_loss, batch_size=B)
        values = {k: v.value for k, v in params.items()}
        updates, opt_state = optimizer.update(grads, opt_state, values)
        for k, v in optax.apply_updates(values, updates).items():
            params[k].value = v
        return loss, opt_state

    @brainstate.transform.jit
    def predict(x):
        brainstate.nn.reset_all_states(model, batch_size=B)
        logits = brainstate.transform.for_loop(model, x)
        return jnp.argmax(jnp.sum(logits[T - recall :], axis=0), axis=-1)

    def accuracy():
        hits = [np.asarray(predict(jnp.asarray(x_test[:, i : i + B]))) == y_test[i : i + B]
                for i in range(0, len(y_test), B)]
        return float(np.mean(np.concatenate(hits)))

    print(f"evidence accumulation: {args.cues} cues, delay {args.delay}, T={T}; ALIF({args.hidden}) + "
          f"EProp({args.feedback}), batch {B}, {args.steps} Adam steps (chance accuracy 0.50)")
    losses, curve, start = [], [], time.time()
    every = max(args.steps // 10, 1)
    for step in range(1, args.steps + 1):
        x, y, _ = cue_trials(rng, B, **trials)
        loss, opt_state = train_step(jnp.asarray(x), jnp.asarray(y), opt_state)
        losses.append(float(loss))
        if step % every == 0 or step == args.steps:
            curve.append((step, accuracy()))
            print(f"step {step:4d}: loss {np.mean(losses[-every:]):.3f}, test accuracy {curve[-1][1]:.3f}")
    print(f"test accuracy {curve[-1][1]:.3f} after {time.time() - start:.0f} s")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
        a1.plot(losses, lw=0.8)
        a1.set(xlabel="Adam step", ylabel="cross-entropy", title="training loss")
        a2.plot(*zip(*curve), "o-")
        a2.axhline(0.5, color="0.5", ls="--", lw=0.8)
        a2.set(xlabel="Adam step", ylabel="test accuracy", ylim=(0, 1), title="ALIF + EProp, cue task")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=80)
        print(f"wrote {args.plot}")
    return {"losses": losses, "test_accuracy": [a for _, a in curve]}


if __name__ == "__main__":
    main()
