r"""The structural sparsity of a step's Jacobians, and SnAp's influence pattern.

SnAp-``n`` (Menick et al., 2021) keeps the influence matrix ``P = dh/dθ`` on
the entries that ``n`` steps of the recurrence ``P^t = J^t P^{t-1} + M^t`` can
fill from ``P^0 = 0``:

.. math::

    S_1 = \mathrm{nz}(M), \qquad S_{k+1} = S_k \cup \mathrm{nz}(J)\, S_k
    \quad (\text{boolean product}),

i.e. entry ``(i, j)`` is kept when parameter entry ``θ_j`` reaches hidden unit
``h_i`` within ``n`` steps. Once ``S_{n+1} = S_n`` the pattern holds every
entry RTRL can fill, and SnAp-``n`` is RTRL (:func:`saturation_steps`).

:func:`jacobian_pattern` reads ``nz(J)`` and ``nz(M)`` from the *structure*
of the step's linearisation, not from the values at one point: it evaluates
the linear map on 0/1 indicators with every floating coefficient taken as
non-zero and every sum as a union, so a derivative that happens to vanish at
the example point (a closed ReLU, a mask, a zero weight) still counts; integer
operands (indices of a gather, of a sparse matrix) are used as they are.
:func:`data_dependent_indices` finds the operations that take integer operands
computed from the step's inputs or states, whose pattern would depend on the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import primitives as P

from ..compiler.jaxpr_tools import ELEMENTWISE_PRIMITIVES, UseDef, eval_eqn, is_literal
from ..compiler.module_info import ModuleInfo
from ..primitives import StructureState
from ..primitives.event_sparse import etp_event_sparse_dw_p
from .influence import StepTangent, chunk_size

__all__ = ["jacobian_pattern", "snap_pattern", "saturation_steps", "data_dependent_indices"]

#: Products: an operand that is not a tangent is a coefficient, taken as non-zero everywhere.
_PRODUCTS = frozenset({lax.dot_general_p, lax.conv_general_dilated_p, etp_event_sparse_dw_p})
#: Calls whose body is evaluated by the same rules.
_CALLS = frozenset(getattr(P, n) for n in ("jit_p", "closed_call_p", "call_p", "remat_p") if hasattr(P, n))


class _Unsupported(Exception):
    """A primitive the pattern rules do not know how to read (loops)."""


def _is_float(x: Any) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _indicator(x: jax.Array) -> jax.Array:
    return (x != 0).astype(x.dtype)


def _eval(jaxpr: jcore.Jaxpr, consts: Sequence[Any], args: Sequence[tuple[bool, Any]]) -> list[tuple[bool, Any]]:
    """Evaluate ``jaxpr`` on ``(is pattern, value)`` pairs; patterns are 0/1 arrays of the variable's shape."""
    env: dict[Any, tuple[bool, Any]] = {}

    def read(v):
        return (False, v.val) if is_literal(v) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = (False, c)
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if not any(dep for dep, _ in ins):
            env.update((o, (False, x)) for o, x in zip(eqn.outvars, eval_eqn(eqn, [x for _, x in ins])))
            continue
        env.update(zip(eqn.outvars, _rule(eqn, ins)))
    return [read(v) for v in jaxpr.outvars]


def _rule(eqn: Any, ins: list[tuple[bool, Any]]) -> list[tuple[bool, Any]]:
    prim = eqn.primitive
    if prim in _CALLS:
        sub = eqn.params.get("jaxpr") or eqn.params.get("call_jaxpr")
        closed = sub if isinstance(sub, jcore.ClosedJaxpr) else jcore.ClosedJaxpr(sub, ())
        return _eval(closed.jaxpr, closed.consts, ins)
    if prim is lax.cond_p:
        branches = [_eval(b.jaxpr, b.consts, ins[1:]) for b in eqn.params["branches"]]
        return [(True, _union([_as_pattern(o[k], v) for o in branches])) for k, v in enumerate(eqn.outvars)]
    if prim in ELEMENTWISE_PRIMITIVES:
        shape = tuple(eqn.outvars[0].aval.shape)
        dtype = eqn.outvars[0].aval.dtype
        return [(True, _union([jnp.broadcast_to(x, shape).astype(dtype) for dep, x in ins if dep]))]
    if prim in (lax.scan_p, lax.while_p):
        raise _Unsupported(prim.name)
    fill = (lambda x: jnp.ones_like(x)) if prim in _PRODUCTS else jnp.zeros_like
    ops = [x if dep or not _is_float(x) else fill(x) for dep, x in ins]
    outs = eval_eqn(eqn, ops)
    return [(True, _indicator(o)) if _is_float(o) else (False, o) for o in outs]


def _union(patterns: list[jax.Array]) -> jax.Array:
    out = patterns[0]
    for p in patterns[1:]:
        out = out + p
    return _indicator(out)


def _as_pattern(pair: tuple[bool, Any], var: Any) -> jax.Array:
    dep, x = pair
    return x if dep else jnp.zeros(var.aval.shape, var.aval.dtype)


def jacobian_pattern(tangent: StepTangent) -> tuple[np.ndarray, np.ndarray]:
    """The structural non-zero patterns of ``J`` (``(N, N)``) and ``M`` (``(N, |θ|)``).

    Parameters
    ----------
    tangent : StepTangent
        A step linearised at any point (the pattern does not depend on the values).

    Returns
    -------
    J, M : numpy.ndarray of bool

    Notes
    -----
    A step whose linearisation contains a loop (``scan``, ``while``) has no
    pattern read here; every entry is then taken as non-zero.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.executor import InfluenceLayout
    >>> from braintrace.executor.sparsity import jacobian_pattern
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros(2))
    >>> tangent = InfluenceLayout(graph).linearize(braintrace.ETraceGraphExecutor(graph).current_invals(jnp.zeros(2)))
    >>> J, M = jacobian_pattern(tangent)
    >>> bool(J.all()), M.sum(axis=0).tolist()[:5]    # dense recurrence; W[k, i] reaches h_i alone
    (True, [1, 1, 1, 1, 1])
    """
    L = tangent.layout
    N, n = L.num_hidden, L.num_params
    closed = jax.make_jaxpr(tangent.jvp)(jnp.zeros((N,), L.dtype), jnp.zeros((n,), L.dtype))

    def run(d):
        (dep, out), = _eval(closed.jaxpr, closed.consts, [(True, d[:N]), (True, d[N:])])
        return out if dep else jnp.zeros((N,), L.dtype)

    try:
        fn = jax.jit(jax.vmap(run))
        bs = chunk_size(N + n, N + n)
        # one chunk of the identity at a time (the whole (N+|θ|)² identity took 16 GB at GRU-128, batch 16)
        cols = [np.asarray(fn(jnp.eye(min(bs, N + n - s), N + n, k=s, dtype=L.dtype)) != 0)
                for s in range(0, N + n, bs)]
    except _Unsupported:
        return np.ones((N, N), bool), np.ones((N, n), bool)
    full = np.concatenate(cols, axis=0).T if cols else np.zeros((N, 0), bool)
    return full[:, :N], full[:, N:]


def snap_pattern(J: np.ndarray, M: np.ndarray, n: int) -> np.ndarray:
    """``S_n``: the entries of ``P`` (``(N, |θ|)``, bool) that ``n`` steps of ``P = J P + M`` fill.

    Examples
    --------
    >>> import numpy as np
    >>> from braintrace.executor.sparsity import snap_pattern
    >>> J = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], bool)     # a chain h0 -> h1 -> h2
    >>> M = np.array([[1], [0], [0]], bool)                       # θ reaches h0
    >>> [snap_pattern(J, M, n)[:, 0].tolist() for n in (1, 2, 3)]
    [[True, False, False], [True, True, False], [True, True, True]]
    """
    S = np.asarray(M, bool)
    Jf = np.asarray(J, np.float32)
    for _ in range(int(n) - 1):
        nxt = S | ((Jf @ S.astype(np.float32)) > 0)
        if (nxt == S).all():
            break
        S = nxt
    return S


def saturation_steps(J: np.ndarray, M: np.ndarray) -> int:
    """The least ``n`` with ``S_n = S_{n+1}``: SnAp-``n`` keeps every entry RTRL fills (its diameter).

    Examples
    --------
    >>> import numpy as np
    >>> from braintrace.executor.sparsity import saturation_steps
    >>> J = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1]], bool)
    >>> saturation_steps(J, np.array([[1], [0], [0]], bool)), saturation_steps(np.eye(3, dtype=bool), np.eye(3, dtype=bool))
    (3, 1)
    """
    S, n = np.asarray(M, bool), 1
    Jf = np.asarray(J, np.float32)
    while True:
        nxt = S | ((Jf @ S.astype(np.float32)) > 0)
        if (nxt == S).all():
            return n
        S, n = nxt, n + 1


def data_dependent_indices(minfo: ModuleInfo) -> list[str]:
    """Names of the operations of the step that take integer (or boolean) operands computed from its inputs or states.

    Element-wise operations (a ``where`` on a spike mask) are not among them:
    the pattern rules take the union of their branches. Any other (a
    ``gather`` of the rows of a table at input tokens, an ETP primitive whose
    data input is an index) selects elements by the data, so no pattern read
    at one point holds. The indices of a
    :class:`~braintrace.primitives.StructureState` (a sparse layer's pattern,
    fixed) are not data.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> from braintrace.executor.sparsity import data_dependent_indices
    >>> cell = braintrace.nn.VanillaRNNCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> data_dependent_indices(braintrace.extract_module_info(cell, jnp.zeros(2)))
    []
    """
    jaxpr = minfo.jaxpr
    fixed = {jaxpr.invars[i] for s in minfo.slots if s.role == "param" or isinstance(s.state, StructureState)
             for i in s.invars}
    varying = UseDef(jaxpr).forward([v for v in jaxpr.invars if v not in fixed])
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive in ELEMENTWISE_PRIMITIVES:
            continue
        if any(not is_literal(v) and v in varying and not _is_float(jnp.zeros((), v.aval.dtype)) for v in eqn.invars):
            found.append(eqn.primitive.name)
    return found
