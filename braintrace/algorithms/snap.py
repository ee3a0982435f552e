r"""SnAp-n: RTRL with the influence matrix kept on a sparsity pattern (Menick et al., 2021)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import NotSupportedError
from ..executor import InfluenceLayout, StepTraceData
from ..executor.sparsity import data_dependent_indices, jacobian_pattern, saturation_steps, snap_pattern
from .influence_traces import INFLUENCE, InfluenceVjpAlgorithm
from .keys import TraceKey

__all__ = ["SnAp"]



class _Segment(NamedTuple):
    """The kept entries of one parameter leaf's rows of ``P``."""

    key: TraceKey
    entries: np.ndarray  # (m,) indices into θ
    rows: np.ndarray | None  # (m, k) hidden indices (N pads), or None: all N kept
    width: int

    @property
    def size(self) -> int:
        return int(self.entries.size) * self.width


def _segments(flat: InfluenceLayout, pattern: np.ndarray) -> list[_Segment]:
    """One segment per leaf of ``θ``, as wide as its widest entry's pattern."""
    out, start = [], 0
    N = flat.num_hidden
    for name, n in zip(flat.theta_names, flat.theta_sizes):
        entries = np.arange(start, start + n)
        sub = pattern[:, entries]
        k = int(max(1, sub.sum(axis=0).max(initial=0)))
        key = TraceKey(f"{INFLUENCE}[{name}]", (), -1)
        if k == N:
            out.append(_Segment(key, entries, None, N))
        else:
            rows = np.full((n, k), N, np.int32)
            for i in range(n):
                idx = np.flatnonzero(sub[:, i])
                rows[i, : idx.size] = idx
            out.append(_Segment(key, entries, rows, k))
        start += n
    return out


class SnAp(InfluenceVjpAlgorithm):
    r"""SnAp-``n``: the RTRL influence matrix kept on the entries ``n`` steps can fill.

    Notation as in :class:`RTRL`: ``h`` every hidden value (``N``, batch
    included), ``θ`` every parameter entry reaching a hidden state (``|θ|``),
    ``P = dh/dθ``, ``J = ∂h^t/∂h^{t-1}`` (full), ``M = ∂h^t/∂θ``. The
    pattern ``S_n`` holds the entries ``(i, j)`` for which ``θ_j`` reaches
    ``h_i`` within ``n`` steps,

    .. math::

        S_1 = \mathrm{nz}(M), \qquad S_{k+1} = S_k \cup \mathrm{nz}(J)\, S_k,

    read at compile time from the *structure* of the step (every coefficient
    counted as non-zero, so a closed ReLU or a zero weight at the example
    point does not remove an entry; see :mod:`braintrace.executor.sparsity`).
    The traces are the entries of ``P`` on ``S_n``,

    .. math::

        P^t = \big(J^t P^{t-1} + M^t\big) \odot S_n, \qquad
        \nabla_θ L = \sum_t \Big[ λ^t \cdot P^{t-1}
            + \frac{\partial L^t}{\partial θ}\Big|_{h^{t-1}} \Big],

    with ``λ^t = ∂L^t/∂h^{t-1}`` as for RTRL. SnAp-1 keeps, for each weight
    entry, only the hidden values it drives directly: on element-wise models
    (leaky integrators, neurons whose states couple position by position) it
    equals D_RTRL and BPTT. With ``n`` at least :attr:`diameter` (the steps
    after which the pattern stops growing) ``S_n`` holds every entry RTRL can
    fill, and SnAp-``n`` equals RTRL (exact); for a dense recurrent layer
    that is ``n = 2``.

    Memory ``Σ_w |w|·k_w`` over the parameter leaves ``w``, ``k_w ≤ N`` the
    largest number of hidden values one entry of ``w`` reaches within ``n``
    steps (SnAp-1 on a dense layer's weight: ``k = B·S``, the batch copies of
    its unit's states; a weight behind another weight, like a GRU's reset
    gate, reaches every unit at once: ``k = N``). The update costs
    what RTRL's does (one forward-mode pass per parameter entry): this
    implementation saves the traces' memory, not their time.

    Parameters
    ----------
    model : brainstate.nn.Module
        The model; ``model(x)`` advances one step.
    n : int, default 1
        The number of steps of the pattern (``n >= 1``).
    name : str, optional
        The learner's name.
    vjp_method : {'single-step', 'multi-step'}, default 'single-step'
        ``'multi-step'``: BPTT inside a ``MultiStepData`` window plus ``λ · P``
        for the window's initial state.
    max_trace_size : int, optional
        Refuse, at compile time, a pattern of more than this many entries
        (default ``2**27``).

    Attributes
    ----------
    pattern : numpy.ndarray of bool
        ``S_n``, ``(N, |θ|)`` (after :meth:`compile_graph`).
    diameter : int
        The least ``n`` for which SnAp-``n`` equals RTRL on this model.

    Raises
    ------
    ValueError
        ``n`` is not an integer ``>= 1``.
    NotSupportedError
        The step selects elements with indices computed from its inputs or
        states (an embedding lookup of the input tokens, say): the pattern
        would depend on the data. Use RTRL or UORO.
    CompilationError
        The pattern exceeds ``max_trace_size``.

    See Also
    --------
    RTRL, UORO, D_RTRL

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> snap1 = braintrace.SnAp(cell, n=1).compile_graph(jnp.zeros(2))
    >>> snap1.diameter, snap1.trace_size(snap1.flat), snap1.flat.num_hidden * snap1.flat.num_params
    (2, 90, 162)
    >>> print(snap1.describe_pattern())
    Wz.weight.bias: up to 1 of 3 hidden values per entry
    Wz.weight.weight: up to 1 of 3 hidden values per entry
    Wr.weight.bias: up to 3 of 3 hidden values per entry
    Wr.weight.weight: up to 3 of 3 hidden values per entry
    Wh.weight.bias: up to 1 of 3 hidden values per entry
    Wh.weight.weight: up to 1 of 3 hidden values per entry
    >>> grads = brainstate.transform.grad(lambda x: snap1(x).sum(), cell.states(brainstate.ParamState))(jnp.ones(2))
    >>> sorted(grads)
    [('Wh', 'weight'), ('Wr', 'weight'), ('Wz', 'weight')]

    References
    ----------
    J. Menick, E. Elsen, U. Evci, S. Osindero, K. Simonyan and A. Graves,
    "Practical real time recurrent learning with a sparse approximation", ICLR 2021.
    """

    def __init__(
        self,
        model: Any,
        n: int = 1,
        name: str | None = None,
        vjp_method: str = "single-step",
        max_trace_size: int | None = None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 1:
            raise ValueError(f"SnAp: n must be an integer >= 1 (the steps of the sparsity pattern), got {n!r}.")
        super().__init__(model, name=name, vjp_method=vjp_method, max_trace_size=max_trace_size)
        self.n: int = int(n)
        self.pattern: np.ndarray | None = None
        self.diameter: int | None = None
        self.segments: tuple[_Segment, ...] = ()

    def prepare(self, flat: InfluenceLayout) -> None:
        assert self.graph is not None
        found = data_dependent_indices(self.graph.module_info)
        if found:
            raise NotSupportedError(
                f"SnAp: the step selects elements with indices computed from its inputs or states "
                f"({', '.join(sorted(set(found)))}; an embedding lookup of input tokens, say), so the sparsity "
                "pattern of its Jacobian changes with the data and no fixed pattern holds. Use RTRL (exact) "
                "or UORO."
            )
        J, M = jacobian_pattern(self.example_tangent())
        self.pattern = snap_pattern(J, M, self.n)
        self.diameter = saturation_steps(J, M)
        self.segments = tuple(_segments(flat, self.pattern))

    def trace_size(self, flat: InfluenceLayout) -> int:
        return sum(seg.size for seg in self.segments)

    def init_traces(self, data: StepTraceData) -> dict[TraceKey, Any]:
        dtype = self._flat().dtype
        return {seg.key: jnp.zeros((seg.entries.size, seg.width), dtype) for seg in self.segments}

    def update_traces(self, traces: Mapping[TraceKey, Any], data: StepTraceData, count: jax.Array) -> dict:
        out = dict(traces)
        for seg in self.segments:
            if seg.rows is None:
                out[seg.key] = data.tangent.propagate(traces[seg.key], seg.entries)
            else:
                out[seg.key] = data.tangent.propagate_on(traces[seg.key], seg.rows, seg.entries)
        return out

    def contract(self, traces: Mapping[TraceKey, Any], lam: jax.Array) -> jax.Array:
        flat = self._flat()
        lam = lam.astype(flat.dtype)
        padded = jnp.concatenate([lam, jnp.zeros((1,), lam.dtype)])
        parts = [traces[seg.key] @ lam if seg.rows is None
                 else jnp.sum(traces[seg.key] * padded[jnp.asarray(seg.rows)], axis=-1) for seg in self.segments]
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), flat.dtype)

    def dense_influence(self, traces: Mapping[TraceKey, Any]) -> jax.Array:
        N = self._flat().num_hidden
        parts = []
        for seg in self.segments:
            vals = traces[seg.key]
            if seg.rows is None:
                parts.append(vals)
                continue
            j = jnp.arange(vals.shape[0])[:, None]
            parts.append(jnp.zeros((vals.shape[0], N + 1), vals.dtype).at[j, jnp.asarray(seg.rows)].set(vals)[:, :N])
        return jnp.concatenate(parts) if parts else jnp.zeros((0, N), self._flat().dtype)

    def describe_pattern(self) -> str:
        """One line per parameter leaf: how many hidden values each of its entries keeps (at most)."""
        flat = self._flat()
        assert self.pattern is not None
        out, start = [], 0
        for name, n in zip(flat.theta_names, flat.theta_sizes):
            k = int(self.pattern[:, start: start + n].sum(axis=0).max(initial=0))
            out.append(f"{name}: up to {k} of {flat.num_hidden} hidden values per entry")
            start += n
        return "\n".join(out)
