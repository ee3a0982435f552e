r"""Save a learner mid-stream and continue it later, bit for bit: :func:`save` and :func:`restore`.

A checkpoint holds everything a learner needs to continue: the model's
states (parameters, hidden states, every other state), the eligibility traces,
the step counter (ES_D_RTRL's bias correction counts from it), the global
random key of ``brainstate.random``, and any extra pytrees you pass (the
optimizer state, your own counters). Restored into a freshly built model and
learner, a run continues exactly as the uninterrupted one would have.

Storage is `orbax-checkpoint <https://orbax.readthedocs.io>`_ (``pip install
braintrace[checkpoint]``): arrays in its tensorstore format, the description
as JSON. Loading never executes code (no pickle). Before anything is
changed, :func:`restore` compares the checkpoint's description with the
learner's states and traces (paths, pytree structure, shapes, dtypes) and
refuses a checkpoint of another model, naming the first mismatch; the
learner is then left as it was. Arrays are restored with the shardings of the
learner's current values, so a batch-sharded learner is restored sharded.

Examples
--------
>>> import tempfile, os
>>> import brainstate, jax.numpy as jnp
>>> import braintrace
>>> def build():
...     cell = braintrace.nn.GRUCell(2, 3)
...     _ = brainstate.nn.init_all_states(cell)
...     return braintrace.ES_D_RTRL(cell, decay_or_rank=0.9).compile_graph(jnp.zeros(2))
>>> learner = build()
>>> _ = braintrace.online_evolve(learner, jnp.ones((4, 2)))
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt")
>>> braintrace.checkpoint.save(path, learner, epoch=3)
>>> fresh = build()
>>> braintrace.checkpoint.restore(path, fresh)
{'epoch': 3}
>>> int(fresh.step_count.value), bool(jnp.all(fresh.model.h.value == learner.model.h.value))
(4, True)
"""

from __future__ import annotations

import os
from typing import Any

import brainstate
import jax
import jax.numpy as jnp

from . import __version__
from .algorithms.base import ETraceAlgorithm
from .compiler.module_info import path_str
from .errors import CheckpointError

__all__ = ["save", "restore"]

FORMAT = "braintrace-checkpoint"
VERSION = 1
_INSTALL = "braintrace.checkpoint needs orbax-checkpoint: pip install 'braintrace[checkpoint]' (or orbax-checkpoint)."


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as err:  # pragma: no cover - the extra is installed in CI
        raise ImportError(_INSTALL) from err
    return ocp


def _entries(target: Any) -> list[tuple[str, brainstate.State]]:
    """``[(name, state)]``: the model's states by path, the traces by label, the step counter, the random key."""
    if isinstance(target, ETraceAlgorithm):
        target.check_compiled()
        model, learner = target.model, target
    elif isinstance(target, brainstate.nn.Module):
        model, learner = target, None
    else:
        raise TypeError(f"expected a learner or a brainstate.nn.Module, got {type(target).__name__}.")
    out = [(f"state:{path_str(tuple(p))}", st) for p, st in model.states().items()]
    if learner is not None:
        out += [(f"trace:{key.label(learner.graph)}", st) for key, st in learner.etraces.items()]
        out.append(("counter:step_count", learner.step_count))
    out.append(("rng:brainstate.random.DEFAULT", brainstate.random.DEFAULT))
    return out


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _describe(value: Any) -> dict:
    """The pytree structure and, per leaf, ``[key path, shape, dtype]`` (JSON)."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(value)
    return {
        "structure": str(treedef),
        "leaves": [
            [jax.tree_util.keystr(kp), list(jnp.shape(x)), str(x.dtype) if _is_key(x) else str(jnp.result_type(x))]
            for kp, x in pairs
        ],
    }


def _encode(x: Any) -> Any:
    return jax.random.key_data(x) if _is_key(x) else x


def _abstract(x: Any) -> Any:
    """What orbax restores a leaf as: its (encoded) shape and dtype, on the leaf's current sharding."""
    enc = _encode(x)
    sharding = getattr(enc, "sharding", None)
    return jax.ShapeDtypeStruct(jnp.shape(enc), jnp.result_type(enc), sharding=sharding)


def _decode(data: Any, like: Any) -> Any:
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(like)) if _is_key(like) else data


def _owner_name(target: Any) -> str | None:
    return type(target).__name__ if isinstance(target, ETraceAlgorithm) else None


def save(path: str | os.PathLike, learner: Any, *, overwrite: bool = False, **extra: Any) -> None:
    """Write a checkpoint of ``learner`` (and of any ``extra`` pytrees) into the folder ``path``.

    Parameters
    ----------
    path : str or path-like
        A folder (created; must not exist unless ``overwrite``).
    learner : ETraceAlgorithm or brainstate.nn.Module
        A compiled learner (model states, traces, step counter), or a plain
        model (its states only). The global ``brainstate.random`` key is saved
        with either.
    overwrite : bool, default False
        Replace an existing checkpoint at ``path``.
    **extra
        Pytrees of arrays and Python numbers to save beside it (an optax
        state, a step number, ...); :func:`restore` returns them.

    Raises
    ------
    CheckpointError
        ``path`` exists and ``overwrite`` is False.
    NotCompiledError
        The learner was not compiled.

    Examples
    --------
    >>> import tempfile, os
    >>> import brainstate, jax.numpy as jnp, optax
    >>> import braintrace
    >>> cell = braintrace.nn.MGUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.D_RTRL(cell).compile_graph(jnp.zeros(2))
    >>> opt = optax.adam(1e-3)
    >>> opt_state = opt.init({k: v.value for k, v in cell.states(brainstate.ParamState).items()})
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt")
    >>> braintrace.checkpoint.save(path, learner, opt_state=opt_state, step=0)
    >>> sorted(name for name in os.listdir(path) if name.startswith(("extra", "meta", "state")))
    ['extra_opt_state', 'extra_step', 'meta', 'state']
    """
    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not overwrite:
        raise CheckpointError(f"save: {path} exists; pass overwrite=True to replace the checkpoint there.")
    entries = _entries(learner)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "braintrace": __version__,
        "learner": _owner_name(learner),
        "entries": [{"name": name, **_describe(st.value)} for name, st in entries],
        "extra": sorted(extra),
    }
    arrays = [[_encode(x) for x in jax.tree.leaves(st.value)] for _, st in entries]
    items = {"meta": ocp.args.JsonSave(meta), "state": ocp.args.StandardSave(arrays)}
    for name, value in extra.items():
        items[f"extra_{name}"] = ocp.args.StandardSave([value])  # orbax saves no bare scalar item
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        ckptr.save(path, ocp.args.Composite(**items), force=overwrite)


def _read_meta(ocp: Any, ckptr: Any, path: str) -> dict:
    if not os.path.isdir(os.path.join(path, "meta")):
        raise CheckpointError(f"restore: {path} holds no braintrace checkpoint (no `meta` item).")
    meta = ckptr.restore(path, ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"restore: {path} is not a braintrace checkpoint.")
    if meta.get("version") != VERSION:
        raise CheckpointError(
            f"restore: {path} has checkpoint format version {meta.get('version')}; this braintrace reads version "
            f"{VERSION}."
        )
    return meta


def _first_mismatch(meta: dict, target: Any, entries: list) -> str | None:
    """A sentence naming the first difference between the checkpoint and the learner, or ``None``."""
    if meta.get("learner") != _owner_name(target):
        return f"it was saved from a {meta.get('learner') or 'plain model'}, this is a {_owner_name(target) or 'plain model'}"
    saved = {e["name"]: e for e in meta["entries"]}
    here = {name: _describe(st.value) for name, st in entries}
    for name in list(saved) + [n for n in here if n not in saved]:
        kind, _, label = name.partition(":")
        if name not in here:
            return f"the checkpoint has the {kind} `{label}`, which this learner does not have"
        if name not in saved:
            return f"this learner has the {kind} `{label}`, which the checkpoint does not have"
        if saved[name]["structure"] != here[name]["structure"]:
            return (f"the {kind} `{label}` has the pytree structure {saved[name]['structure']} there and "
                    f"{here[name]['structure']} here")
        for (kp, shape, dtype), (_, shape_here, dtype_here) in zip(saved[name]["leaves"], here[name]["leaves"]):
            if (shape, dtype) != (shape_here, dtype_here):
                return (f"the {kind} `{label}{kp}` has shape {tuple(shape)} and dtype {dtype} there, "
                        f"{tuple(shape_here)} and {dtype_here} here")
    return None


def restore(path: str | os.PathLike, learner: Any, **like: Any) -> dict:
    """Restore a checkpoint written by :func:`save` into ``learner``, and return its extras.

    Parameters
    ----------
    path : str or path-like
        The checkpoint's folder.
    learner : ETraceAlgorithm or brainstate.nn.Module
        A learner built and compiled like the saved one (or the plain model,
        if a model was saved). Its states, traces, step counter and the
        global ``brainstate.random`` key are overwritten.
    **like
        Templates of extras (e.g. ``opt_state=optimizer.init(params)``): such
        an extra is restored with the template's pytree structure (optax's
        named tuples), dtypes and shardings. Extras without a template come
        back as nested dicts and lists of arrays.

    Returns
    -------
    dict
        ``{name: value}`` of every extra in the checkpoint.

    Raises
    ------
    CheckpointError
        The checkpoint does not fit the learner (other learner class, state
        paths, trace keys, pytree structures, shapes or dtypes: the message
        names the first mismatch), a template names an extra the checkpoint
        lacks, or ``path`` holds no braintrace checkpoint. The learner is then
        left unchanged.

    Examples
    --------
    >>> import tempfile, os
    >>> import brainstate, jax.numpy as jnp, optax
    >>> import braintrace
    >>> def build(hidden=3):
    ...     cell = braintrace.nn.MGUCell(2, hidden)
    ...     _ = brainstate.nn.init_all_states(cell)
    ...     return braintrace.D_RTRL(cell).compile_graph(jnp.zeros(2))
    >>> learner, opt = build(), optax.adam(1e-3)
    >>> params = {k: v.value for k, v in learner.model.states(brainstate.ParamState).items()}
    >>> path = os.path.join(tempfile.mkdtemp(), "ckpt")
    >>> braintrace.checkpoint.save(path, learner, opt_state=opt.init(params))
    >>> extra = braintrace.checkpoint.restore(path, build(), opt_state=opt.init(params))
    >>> type(extra["opt_state"][0]).__name__
    'ScaleByAdamState'
    >>> braintrace.checkpoint.restore(path, build(hidden=4))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    braintrace.errors.CheckpointError: restore: the checkpoint at ... does not fit this learner: the state `Wf.weight['bias']` has shape (3,) and dtype float32 there, (4,) and float32 here (first mismatch). ...
    """
    ocp = _orbax()
    path = os.path.abspath(os.fspath(path))
    entries = _entries(learner)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
        meta = _read_meta(ocp, ckptr, path)
        problem = _first_mismatch(meta, learner, entries)
        if problem is not None:
            raise CheckpointError(
                f"restore: the checkpoint at {path} does not fit this learner: {problem} (first mismatch). The learner "
                "was left unchanged. Build the model and learner as they were when the checkpoint was saved (the same "
                "layers, sizes, batch size and learner), compile it, then restore."
            )
        unknown = sorted(set(like) - set(meta["extra"]))
        if unknown:
            raise CheckpointError(
                f"restore: the checkpoint at {path} has no extra {', '.join(map(repr, unknown))}; it has "
                f"{', '.join(map(repr, meta['extra'])) or 'none'}. The learner was left unchanged."
            )
        abstract = [[_abstract(x) for x in jax.tree.leaves(st.value)] for _, st in entries]
        items = {"state": ocp.args.StandardRestore(abstract)}
        for name in meta["extra"]:
            target = [jax.tree.map(_abstract, like[name])] if name in like else None
            items[f"extra_{name}"] = ocp.args.StandardRestore(target)
        loaded = ckptr.restore(path, ocp.args.Composite(**items))
    new_values = []
    for (_, st), data in zip(entries, loaded["state"]):
        leaves, treedef = jax.tree.flatten(st.value)
        new_values.append(jax.tree.unflatten(treedef, [_decode(d, x) for d, x in zip(data, leaves)]))
    for (_, st), value in zip(entries, new_values):
        st.value = value
    return {name: loaded[f"extra_{name}"][0] for name in meta["extra"]}
