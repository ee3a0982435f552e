"""Structured, leveled records of the compiler's decisions.

Every decision that changes how a weight learns (online, instantaneous only,
or not at all) is a :class:`CompilationRecord`. Records are immutable, ordered
by :class:`DiagnosticLevel`, and keyed by state paths. Warnings are also
surfaced as one ``UserWarning`` per record when a graph is compiled.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["DiagnosticKind", "DiagnosticLevel", "CompilationRecord", "emit_warnings"]


@functools.total_ordering
class DiagnosticLevel(enum.Enum):
    """Severity of a :class:`CompilationRecord`: ``INFO < WARNING < ERROR``.

    ``ERROR`` records describe what stopped a compile: the
    :class:`~braintrace.NotSupportedError` raised carries one as its ``record``.

    Examples
    --------
    >>> from braintrace import DiagnosticLevel
    >>> DiagnosticLevel.INFO < DiagnosticLevel.WARNING < DiagnosticLevel.ERROR
    True
    >>> max([DiagnosticLevel.WARNING, DiagnosticLevel.INFO])
    <DiagnosticLevel.WARNING: 1>
    """

    INFO = 0
    WARNING = 1
    ERROR = 2

    def __lt__(self, other: Any) -> bool:
        if not isinstance(other, DiagnosticLevel):
            return NotImplemented
        return self.value < other.value


class DiagnosticKind(enum.Enum):
    """Machine-readable reason of a :class:`CompilationRecord`.

    Members
    -------
    RELATION_INCLUDED
        An ETP weight reaches a hidden state through a non-parametric tail; it
        learns online.
    RELATION_EXCLUDED_NON_TEMPORAL
        An ETP weight reaches no hidden state (e.g. a readout); it receives its
        instantaneous gradient.
    RELATION_EXCLUDED_NO_PARAMSTATE
        None of an ETP primitive's trainable inputs comes from a ``ParamState``.
    RELATION_EXCLUDED_SHAPE_MISMATCH
        The primitive's output cannot be aligned with the hidden state it reaches.
    RELATION_EXCLUDED_WEIGHT_TO_WEIGHT
        The output reaches hidden states only through another trainable ETP
        primitive; instantaneous gradient only.
    RELATION_EXCLUDED_NON_ELEMENTWISE_TAIL
        The path from the output to the hidden state mixes positions (a
        reduction, a matrix product, ...); instantaneous gradient only.
    RELATION_PARTIAL_PATH
        Some, not all, paths to hidden states pass through another trainable ETP
        primitive; those paths contribute only instantaneously.
    TRAINABLE_INVAR_NOT_PARAMSTATE
        A trainable input of an ETP primitive (e.g. a constant bias) does not
        come from a ``ParamState``; it is treated as a constant.
    PRIMITIVE_INSIDE_CONTROL_FLOW
        An ETP primitive sits inside a ``cond``/``scan``/``while``/custom
        derivative rule the compiler cannot enter.
    WEIGHT_IN_CONTROL_FLOW
        A weight or hidden state is used inside ``cond``/``scan``/``while``:
        compiling stops (level ``ERROR``; the record is the exception's ``record``).
    HIDDEN_GROUP_MERGED
        Hidden states coupled by element-wise dynamics were merged into one group.
    HIDDEN_GROUP_NON_ELEMENTWISE
        A group's cut transition mixes positions; its per-position Jacobian
        blocks are computed exactly by probing every position (slower).
    STATE_MISMATCH
        A state's declared type does not match how the step uses it.
    HIDDEN_READ_BEFORE_WRITE
        The step's output depends on a hidden state's old value other than
        through its new value (a spike or readout computed before the write);
        online learners add the bypass term for it.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> graph = braintrace.compile_etrace_graph(braintrace.nn.Linear(3, 2), jnp.zeros(3))
    >>> braintrace.DiagnosticKind.RELATION_EXCLUDED_NON_TEMPORAL in {d.kind for d in graph.diagnostics}
    True
    >>> braintrace.DiagnosticKind.RELATION_INCLUDED.value
    'relation_included'
    """

    RELATION_INCLUDED = "relation_included"
    RELATION_EXCLUDED_NON_TEMPORAL = "relation_excluded_non_temporal"
    RELATION_EXCLUDED_NO_PARAMSTATE = "relation_excluded_no_paramstate"
    RELATION_EXCLUDED_SHAPE_MISMATCH = "relation_excluded_shape_mismatch"
    RELATION_EXCLUDED_WEIGHT_TO_WEIGHT = "relation_excluded_weight_to_weight"
    RELATION_EXCLUDED_NON_ELEMENTWISE_TAIL = "relation_excluded_non_elementwise_tail"
    RELATION_PARTIAL_PATH = "relation_partial_path"
    TRAINABLE_INVAR_NOT_PARAMSTATE = "trainable_invar_not_paramstate"
    PRIMITIVE_INSIDE_CONTROL_FLOW = "primitive_inside_control_flow"
    WEIGHT_IN_CONTROL_FLOW = "weight_in_control_flow"
    HIDDEN_GROUP_MERGED = "hidden_group_merged"
    HIDDEN_GROUP_NON_ELEMENTWISE = "hidden_group_non_elementwise"
    STATE_MISMATCH = "state_mismatch"
    HIDDEN_READ_BEFORE_WRITE = "hidden_read_before_write"


Path = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class CompilationRecord:
    """A single compiler decision, captured with structured context.

    Attributes
    ----------
    kind : DiagnosticKind
        What was decided.
    level : DiagnosticLevel
        How much the user should care.
    message : str
        A sentence saying what happened, its gradient consequence, and the fix.
    primitive : str or None
        Name of the ETP primitive concerned.
    weight_path : tuple or None
        Path of the ``ParamState`` concerned, e.g. ``('Wr', 'weight')``.
    hidden_paths : tuple of tuple
        Paths of the hidden states concerned.
    context : mapping
        Extra structured detail (shapes, primitive names, ...).

    Examples
    --------
    >>> from braintrace import CompilationRecord, DiagnosticKind, DiagnosticLevel
    >>> r = CompilationRecord(DiagnosticKind.RELATION_INCLUDED, DiagnosticLevel.INFO,
    ...                       'w learns online', weight_path=('w',))
    >>> r.weight_path
    ('w',)
    """

    kind: DiagnosticKind
    level: DiagnosticLevel
    message: str
    primitive: str | None = None
    weight_path: Path | None = None
    hidden_paths: tuple[Path, ...] = ()
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.level.name}] {self.kind.name}: {self.message}"


def emit_warnings(records: Iterable[CompilationRecord]) -> None:
    """Raise one ``UserWarning`` per record of level WARNING or higher."""
    for rec in records:
        if rec.level >= DiagnosticLevel.WARNING:
            warnings.warn(rec.message, UserWarning, stacklevel=4)
