r"""Data parallelism: the batch axis split over devices with JAX's own sharding.

A learner's state is per batch element except for the weights: the hidden
states ``(B, ...)`` and the eligibility traces ``(B, ...)`` of element ``b``
depend only on element ``b``'s inputs. Splitting the batch over the devices
of a ``jax.sharding.Mesh`` therefore splits every step's work, and JAX's
sharding propagation does the rest inside ``jax.jit``: given inputs sharded
along the batch axis, :func:`~braintrace.online_gradients`,
:func:`~braintrace.online_fit` and a jitted learner step keep the hidden
states and traces sharded the same way (never replicated) and sum the
parameter gradients over the devices (an all-reduce; the gradients come back
replicated). :func:`shard_batch` places a learner's states on the mesh
before the first step (needed only for steps run outside ``jit``, and to
start a run with the states where they will stay).

Examples
--------
>>> import jax, numpy as np
>>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
>>> import brainstate, jax.numpy as jnp
>>> import braintrace
>>> mesh = Mesh(np.array(jax.devices()), ("batch",))
>>> cell = braintrace.nn.GRUCell(2, 3)
>>> _ = brainstate.nn.init_all_states(cell, 4)
>>> learner = braintrace.D_RTRL(cell).compile_graph(jnp.zeros((4, 2)))
>>> braintrace.shard_batch(learner, mesh)
>>> cell.h.value.sharding.spec == P("batch")
True
>>> xs = jax.device_put(jnp.ones((5, 4, 2)), NamedSharding(mesh, P(None, "batch")))
>>> grads, loss = brainstate.transform.jit(lambda x: braintrace.online_gradients(
...     learner, x, jnp.zeros((5, 4, 3)), lambda o, y: jnp.sum((o - y) ** 2), batch_size=4))(xs)
>>> sorted(grads)
[('Wh', 'weight'), ('Wr', 'weight'), ('Wz', 'weight')]
"""

from __future__ import annotations

from typing import Any

import brainstate
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..algorithms.base import ETraceAlgorithm

__all__ = ["shard_batch"]


def _batch_size(model: brainstate.nn.Module) -> int:
    sizes = {
        int(jax.numpy.shape(leaf)[0])
        for st in model.states(brainstate.HiddenState).values()
        for leaf in jax.tree.leaves(st.value)
        if jax.numpy.ndim(leaf) > 0
    }
    if len(sizes) != 1:
        raise ValueError(
            "shard_batch: the model's hidden states do not share one leading batch axis (leading sizes "
            f"{sorted(sizes) or 'none'}); initialise them with brainstate.nn.init_all_states(model, batch_size) first."
        )
    return sizes.pop()


def shard_batch(learner: ETraceAlgorithm | brainstate.nn.Module, mesh: Mesh, axis: str = "batch") -> None:
    """Place a learner's hidden states and traces batch-sharded over ``mesh``, its parameters replicated.

    Parameters
    ----------
    learner : ETraceAlgorithm or brainstate.nn.Module
        A compiled learner (or a model) whose states carry a leading batch
        axis ``B`` (``brainstate.nn.init_all_states(model, B)``).
    mesh : jax.sharding.Mesh
        The devices; ``B`` must be a multiple of the size of ``axis``.
    axis : str, default 'batch'
        The mesh axis the batch is split over.

    Notes
    -----
    Leaves of the hidden states and of the traces whose leading axis has
    length ``B`` get ``NamedSharding(mesh, P(axis))``; the parameters and
    every other leaf are replicated, ``NamedSharding(mesh, P())``. Give the
    inputs the matching sharding, ``NamedSharding(mesh, P(None, axis))`` for
    time-major ``(T, B, ...)`` sequences. On several hosts, call
    ``jax.distributed.initialize()`` first and build the mesh over
    ``jax.devices()`` (all hosts' devices); see the docs page "Training on
    streams".

    Raises
    ------
    ValueError
        ``axis`` is not an axis of ``mesh``, the hidden states have no common
        batch axis, or ``B`` is not a multiple of the axis size.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from jax.sharding import Mesh
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell, 4)
    >>> learner = braintrace.D_RTRL(cell).compile_graph(jnp.zeros((4, 2)))
    >>> braintrace.shard_batch(learner, Mesh(np.array(jax.devices()), ("batch",)))
    >>> [str(leaf.sharding.spec) for st in learner.etraces.values() for leaf in jax.tree.leaves(st.value)][:1]
    ["P('batch',)"]
    """
    if axis not in mesh.axis_names:
        raise ValueError(f"shard_batch: {axis!r} is not an axis of the mesh (axes {mesh.axis_names}).")
    model = learner.model if isinstance(learner, ETraceAlgorithm) else learner
    B = _batch_size(model)
    n = mesh.shape[axis]
    if B % n:
        raise ValueError(
            f"shard_batch: the batch size {B} is not a multiple of the {n} devices of mesh axis {axis!r}; "
            "pick a batch size divisible by the device count."
        )
    split, whole = NamedSharding(mesh, PartitionSpec(axis)), NamedSharding(mesh, PartitionSpec())

    def place(leaf: Any, batched: bool) -> Any:
        on = split if batched and jax.numpy.ndim(leaf) > 0 and jax.numpy.shape(leaf)[0] == B else whole
        return jax.device_put(leaf, on)

    batched = list(model.states(brainstate.HiddenState).values())
    if isinstance(learner, ETraceAlgorithm):
        batched += list(learner.etraces.values())
    ids = {id(st) for st in batched}
    for st in batched:
        st.value = jax.tree.map(lambda leaf: place(leaf, True), st.value)
    for st in model.states().values():
        if id(st) not in ids:
            st.value = jax.tree.map(lambda leaf: place(leaf, False), st.value)
