"""Run by tests/training/test_sharding.py in a subprocess with 4 host devices; prints one JSON line.

Every check compares a run on batch-sharded inputs with the same run on one
device and records the shardings of the hidden states and traces.
"""

import json
import os
import sys
import tempfile
import warnings

import numpy as np
import optax

import brainstate
import braintrace
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

warnings.simplefilter("ignore")
B, T, N_IN, N_H = 8, 6, 3, 5
MESH = Mesh(np.array(jax.devices()), ("batch",))
SEQ = NamedSharding(MESH, P(None, "batch"))


def build(learner="es_d_rtrl"):
    brainstate.random.seed(0)
    cell = braintrace.nn.GRUCell(N_IN, N_H)
    brainstate.nn.init_all_states(cell, B)
    return braintrace.compile(cell, learner, jnp.zeros((B, N_IN)), **({"decay_or_rank": 0.8} if learner == "es_d_rtrl" else {}))


def rel(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    num = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(la, lb))
    return num / max(max(float(jnp.max(jnp.abs(y))) for y in lb), 1e-30)


def specs(learner):
    """The partition specs of the hidden states' and traces' leaves, as strings."""
    states = list(learner.model.states(brainstate.HiddenState).values()) + list(learner.etraces.values())
    return sorted({str(leaf.sharding.spec) for st in states for leaf in jax.tree.leaves(st.value)})


def per_example(o, y):
    return jnp.mean((o - y) ** 2, axis=-1)


def main():
    rng = np.random.RandomState(0)
    xs = jnp.asarray(rng.randn(T, B, N_IN), jnp.float32)
    ys = jnp.asarray(rng.randn(T, B, N_H), jnp.float32)
    mask = jnp.asarray(np.arange(T)[:, None] < rng.randint(2, T + 1, size=B)[None, :])
    sx, sy, sm = (jax.device_put(a, SEQ) for a in (xs, ys, mask))
    out = {"devices": len(jax.devices())}

    # online_gradients under jit: only the inputs are sharded
    for name, learner in (("es_d_rtrl", "es_d_rtrl"), ("d_rtrl", "d_rtrl")):
        def grads(lrn, x, y, m):
            return brainstate.transform.jit(lambda x, y, m: braintrace.online_gradients(
                lrn, x, y, per_example, mask=m, batch_size=B))(x, y, m)

        one = build(learner)
        g1, l1 = grads(one, xs, ys, mask)
        many = build(learner)
        g4, l4 = grads(many, sx, sy, sm)
        out[f"gradients_{name}"] = {
            "rel": rel(g4, g1), "loss_rel": abs(float(l4 - l1)) / abs(float(l1)), "state_specs": specs(many),
            "grad_specs": sorted({str(x.sharding.spec) for x in jax.tree.leaves(g4)}),
        }

    # online_fit: an update every 2 steps, the traces carried across updates
    one, many = build(), build()
    r1 = braintrace.online_fit(one, optax.adam(1e-2), xs, ys, per_example, update_every=2, batch_size=B,
                               mask=mask, window=None)
    r4 = braintrace.online_fit(many, optax.adam(1e-2), sx, sy, per_example, update_every=2, batch_size=B,
                               mask=sm, window=None)
    out["online_fit"] = {"rel": rel(r4.params, r1.params), "loss_rel": rel(r4.losses, r1.losses),
                         "state_specs": specs(many)}

    # the learner itself, one jitted step at a time, after shard_batch
    one, many = build(), build()
    braintrace.shard_batch(many, MESH)
    placed = specs(many)
    params = {lrn: lrn.model.states(brainstate.ParamState) for lrn in (one, many)}

    def step(lrn, x, y):
        return brainstate.transform.jit(brainstate.transform.grad(
            lambda x, y: jnp.sum(per_example(lrn(x), y)), params[lrn], return_value=True))(x, y)

    for t in range(3):
        g1, _ = step(one, xs[t], ys[t])
        g4, _ = step(many, jax.device_put(xs[t], NamedSharding(MESH, P("batch"))),
                     jax.device_put(ys[t], NamedSharding(MESH, P("batch"))))
    out["learner_step"] = {"rel": rel(g4, g1), "placed_specs": placed, "state_specs": specs(many)}

    # a checkpoint restored into a sharded learner comes back sharded
    if "--checkpoint" in sys.argv:
        path = os.path.join(tempfile.mkdtemp(), "ckpt")
        braintrace.checkpoint.save(path, one)
        fresh = build()
        braintrace.shard_batch(fresh, MESH)
        braintrace.checkpoint.restore(path, fresh)
        out["checkpoint"] = {"rel": rel([st.value for st in fresh.etraces.values()],
                                        [st.value for st in one.etraces.values()]), "state_specs": specs(fresh)}
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
