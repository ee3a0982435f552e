"""Trace keys: which relation(s), which hidden group and which kind of trace a state holds.

A learner keeps its eligibility traces in ``learner.etraces``, a dict from
:class:`TraceKey` to :class:`~braintrace.EligibilityTrace`. A key is a small
immutable record, never a string to parse: code that needs the traces of a
weight selects the keys whose relations belong to it
(:func:`keys_of_relations`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from ..compiler.module_info import path_str

__all__ = ["TraceKey", "keys_of_relations", "filtered_key", "EPS", "INPUT", "OUTPUT", "FILTERED", "PRESYNAPTIC"]

#: The exact (parameter-dimension) trace of one relation for one hidden group.
EPS = "eps"
#: The input (presynaptic) trace of one relation's data input.
INPUT = "x"
#: The output (postsynaptic) trace of a class of relations for one hidden group.
OUTPUT = "f"
#: A κ-filtered copy of an exact trace (``'kappa'``; of another kind ``k``: ``'kappa_k'``).
FILTERED = "kappa"
#: OTTT's presynaptic trace of a relation's diagonal (broadcast) inputs.
PRESYNAPTIC = "diag"


class TraceKey(NamedTuple):
    """The identity of one eligibility trace.

    Attributes
    ----------
    kind : str
        ``'eps'`` (exact trace), ``'x'`` (input trace), ``'f'`` (output
        trace), ``'diag'`` (presynaptic trace of broadcast inputs), or a
        κ-filtered copy of one of them (:func:`filtered_key`: ``'kappa'`` for
        an exact trace, ``'kappa_f'``, ``'kappa_x'``, ``'kappa_diag'``).
    relations : tuple of int
        The indices (``relation.index``) of the relations sharing the trace.
    group : int
        The hidden group's index, ``-1`` for traces that belong to no group
        (input traces).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.algorithms.keys import TraceKey
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> learner = braintrace.ES_D_RTRL(cell, decay_or_rank=0.9).compile_graph(jnp.zeros(2))
    >>> sorted(k.label(learner.graph) for k in learner.etraces)
    ['W.weight#0->g0', 'W.weight#0->g0:f', 'W.weight#0:x']
    """

    kind: str
    relations: tuple[int, ...]
    group: int = -1

    def label(self, graph: Any) -> str:
        """A readable name, e.g. ``'Wz.weight#0->g0'`` (weight path, relation index, group).

        Parameters
        ----------
        graph : ETraceGraph
            The compiled graph whose relation indices the key holds (``learner.graph``).
        """
        rels = graph.hidden_param_op_relations
        who = "&".join(f"{path_str(rels[i].weight_path)}#{i}" for i in self.relations)
        where = f"->g{self.group}" if self.group >= 0 else ""
        suffix = "" if self.kind == EPS else f":{self.kind}"
        return who + where + suffix


def keys_of_relations(keys: Iterable[TraceKey], relations: Iterable[int]) -> list[TraceKey]:
    """The keys whose traces belong (alone or shared) to any of ``relations``.

    Examples
    --------
    >>> from braintrace.algorithms.keys import TraceKey, keys_of_relations
    >>> keys = [TraceKey("eps", (0,), 0), TraceKey("f", (0, 1), 0), TraceKey("x", (1,))]
    >>> keys_of_relations(keys, [1])
    [TraceKey(kind='f', relations=(0, 1), group=0), TraceKey(kind='x', relations=(1,), group=-1)]
    """
    wanted = set(relations)
    return [k for k in keys if wanted.intersection(k.relations)]


def filtered_key(key: TraceKey) -> TraceKey:
    """The key of the κ-filtered copy of ``key`` (same relations and group; the kind says what is filtered).

    Examples
    --------
    >>> from braintrace.algorithms.keys import TraceKey, filtered_key
    >>> filtered_key(TraceKey("eps", (0,), 1)).kind, filtered_key(TraceKey("f", (0,), 1)).kind
    ('kappa', 'kappa_f')
    """
    kind = FILTERED if key.kind == EPS else f"{FILTERED}_{key.kind}"
    return TraceKey(kind, key.relations, key.group)
