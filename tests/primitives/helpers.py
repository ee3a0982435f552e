"""Shared checks for the ETP primitive tests.

An :class:`OpCase` pairs a braintrace operator with the plain JAX computation it
must reproduce. The ``check_*`` functions compare the two in every way the
compiler and the learners rely on: values, ``grad``/``jvp``/``vjp``, the
registry's ``xy_to_dw``, ``vmap`` identity, and the compact D_RTRL trace rule
against :class:`FullJacobianRule`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from braintrace.primitives import REGISTRY, DiagonalRule, FullJacobianRule

RTOL = {jnp.dtype("float32"): 1e-5, jnp.dtype("float64"): 1e-10}


def assert_close(a, b, rtol=None, err_msg=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{err_msg}: shapes {a.shape} vs {b.shape}"
    rtol = rtol if rtol is not None else RTOL.get(jnp.dtype(a.dtype), 1e-5)
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1.0)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


@dataclasses.dataclass
class OpCase:
    """``op(x, **tr)`` must equal ``ref(x, **tr)``; ``x`` is ``None`` for x-free ops."""

    id: str
    op: Callable[..., Any]
    ref: Callable[..., Any]
    x: Any
    tr: dict[str, Any]

    def args(self):
        return (self.x, self.tr) if self.x is not None else (self.tr,)

    def call(self, fn, *args):
        if self.x is None:
            return fn(None, **args[0])
        return fn(args[0], **args[1])


def normal(rng, shape, dtype=jnp.float32):
    return jnp.asarray(rng.normal(size=shape), dtype)


# --------------------------------------------------------------------------
# values and derivatives
# --------------------------------------------------------------------------


def check_forward(case: OpCase):
    expected = case.call(case.ref, *case.args())
    assert_close(case.call(case.op, *case.args()), expected, err_msg="eager")
    jitted = jax.jit(lambda *a: case.call(case.op, *a))(*case.args())
    assert_close(jitted, expected, err_msg="jit")


def check_grad(case: OpCase, rng):
    ct = normal(rng, jnp.shape(case.call(case.ref, *case.args())), jnp.result_type(*case.tr.values()))

    def loss(fn):
        return lambda *a: jnp.sum(case.call(fn, *a) * ct)

    argnums = tuple(range(len(case.args())))
    got = jax.jit(jax.grad(loss(case.op), argnums=argnums))(*case.args())
    want = jax.grad(loss(case.ref), argnums=argnums)(*case.args())
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
        assert_close(g, w, err_msg=f"grad {jax.tree_util.keystr(path)}")


def check_jvp_vjp(case: OpCase, rng, jit: bool = False):
    """``jax.jvp`` and ``jax.vjp`` of the op equal the reference's; with ``jit``, the op's are
    compiled (one program each instead of op-by-op dispatch: cheaper for ops whose eager
    evaluation runs many small programs; eager values are :func:`check_forward`'s)."""
    args = case.args()
    tangents = jax.tree.map(lambda a: normal(rng, jnp.shape(a), jnp.result_type(a)), args)
    f_op = lambda *a: case.call(case.op, *a)  # noqa: E731
    f_ref = lambda *a: case.call(case.ref, *a)  # noqa: E731
    jvp_op = jax.jit(lambda a, t: jax.jvp(f_op, a, t)) if jit else lambda a, t: jax.jvp(f_op, a, t)
    y1, t1 = jvp_op(args, tangents)
    y2, t2 = jax.jvp(f_ref, args, tangents)
    assert_close(y1, y2, err_msg="jvp primal")
    assert_close(t1, t2, err_msg="jvp tangent")
    _, vjp2 = jax.vjp(f_ref, *args)
    ct = normal(rng, jnp.shape(y2), jnp.result_type(y2))
    if jit:
        got = jax.jit(lambda a, ct: jax.vjp(f_op, *a)[1](ct))(args, ct)
    else:
        got = jax.vjp(f_op, *args)[1](ct)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(vjp2(ct))):
        assert_close(a, b, err_msg="vjp")


# --------------------------------------------------------------------------
# the bound equation
# --------------------------------------------------------------------------


def bound_equation(fn: Callable, *args):
    """``(entry, operands, params)`` of the first ETP equation ``fn(*args)`` binds."""
    closed = jax.make_jaxpr(fn)(*args)
    jaxpr = closed.jaxpr
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    env.update(zip(jaxpr.constvars, closed.consts))
    env.update(zip(jaxpr.invars, jax.tree.leaves(args)))
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        entry = REGISTRY.get(eqn.primitive)
        if entry is not None:
            return entry, tuple(invals), dict(eqn.params)
        outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
        outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs))
    raise AssertionError(f"no ETP primitive in\n{jaxpr}")


def etp_entries(fn: Callable, *args):
    """The registry entries of every ETP equation of ``fn``'s jaxpr (top level)."""
    eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
    return [REGISTRY.get(e.primitive) for e in eqns if REGISTRY.get(e.primitive) is not None]


def check_xy_to_dw(case: OpCase, rng, jit: bool = False):
    """The registry's ``xy_to_dw`` equals the reference's VJP in the trainables (compiled with ``jit``)."""
    entry, operands, params = bound_equation(lambda *a: case.call(case.op, *a), *case.args())
    names = entry.trainable_invars(params, len(operands))
    assert set(names) == set(case.tr), (names, case.tr)
    y = jax.eval_shape(lambda: entry.call(operands, params)) if jit else entry.call(operands, params)
    dy = normal(rng, y.shape, y.dtype)
    if jit:
        got = jax.jit(lambda dy: entry.xy_to_dw(operands, params, dy))(dy)
    else:
        got = entry.xy_to_dw(operands, params, dy)
    x = case.x
    _, vjp = jax.vjp(lambda tr: case.ref(x, **tr), case.tr)
    (want,) = vjp(dy)
    for name in case.tr:
        assert_close(got[name], want[name], rtol=1e-5 if y.dtype == jnp.float32 else 1e-10,
                     err_msg=f"xy_to_dw[{name}]")
    return entry


def check_vmap_identity(case: OpCase, batch: int = 3, rng=None):
    """``vmap`` over ``x`` of the (unbatched) op binds the batched partner; values agree."""
    rng = rng or np.random.default_rng(0)
    xs = normal(rng, (batch,) + tuple(jnp.shape(case.x)), jnp.result_type(case.x))
    (unbatched,) = etp_entries(lambda x: case.op(x, **case.tr), case.x)
    f = jax.vmap(lambda x: case.op(x, **case.tr))
    entries = etp_entries(f, xs)
    assert len(entries) == 1, entries
    assert entries[0].batched, entries[0].name
    if not unbatched.batched:
        assert entries[0] is unbatched.batched_partner, (entries[0].name, unbatched.name)
    else:
        assert entries[0] is unbatched
    want = jax.vmap(lambda x: case.ref(x, **case.tr))(xs)
    assert_close(f(xs), want, err_msg="vmap")
    assert_close(jax.jit(f)(xs), want, err_msg="jit(vmap)")
    return entries[0]


# --------------------------------------------------------------------------
# trace rules
# --------------------------------------------------------------------------


def run_rules(case: OpCase, rule_names, varshape, S, rng, steps=3, x_sampler=None, per_element=None,
              rule=None):
    """Run ``entry.trace_rule`` (or ``rule``) and ``FullJacobianRule`` side by side.

    Each step draws a fresh ``x`` (``x_sampler``), ``D`` and ``df``; the traces are
    compared with ``per_element(entry, operands, params, full, compact)`` after every
    step, the contracted gradients at the end.
    """
    entry, operands, params = bound_equation(lambda *a: case.call(case.op, *a), *case.args())
    rule = rule if rule is not None else entry.trace_rule
    full = FullJacobianRule()
    index = entry.trainable_invars(params, len(operands))
    dtype = jnp.result_type(operands[index[rule_names[0]]])
    tf = full.init(entry, operands, params, rule_names, varshape, S, dtype)
    tc = rule.init(entry, operands, params, rule_names, varshape, S, dtype)
    upd_f = jax.jit(lambda t, o, D, df: full.update(entry, t, o, params, rule_names, D, df))
    upd_c = jax.jit(lambda t, o, D, df: rule.update(entry, t, o, params, rule_names, D, df))
    for _ in range(steps):
        if x_sampler is not None and entry.x_invar_index is not None:
            ops = list(operands)
            ops[entry.x_invar_index] = x_sampler()
            operands = tuple(ops)
        D = normal(rng, tuple(varshape) + (S, S), dtype)
        df = normal(rng, tuple(varshape) + (S,), dtype)
        tf = upd_f(tf, operands, D, df)
        tc = upd_c(tc, operands, D, df)
        if per_element is not None:
            per_element(entry, operands, params, tf, tc)
    delta = normal(rng, tuple(varshape) + (S,), dtype)
    gf = full.contract(entry, tf, operands, params, rule_names, delta)
    gc = rule.contract(entry, tc, operands, params, rule_names, delta)
    for n in rule_names:
        assert gc[n].shape == jnp.shape(operands[index[n]]), (n, gc[n].shape)
        assert_close(gc[n], gf[n], rtol=1e-5 if dtype == jnp.float32 else 1e-10, err_msg=f"contract[{n}]")
    return entry, gf, gc


def check_rules(case: OpCase, varshape, S, rng, x_sampler=None, per_element=None):
    """The entry's compact rule and DiagonalRule (for its diagonal inputs) equal FullJacobianRule."""
    entry, operands, params = bound_equation(lambda *a: case.call(case.op, *a), *case.args())
    names = entry.trainable_invars(params, len(operands))
    compact = tuple(n for n in names if n not in entry.diagonal_names)
    diagonal = tuple(n for n in names if n in entry.diagonal_names)
    if compact:
        run_rules(case, compact, varshape, S, rng, x_sampler=x_sampler, per_element=per_element)
    if diagonal:
        run_rules(case, diagonal, varshape, S, rng, x_sampler=x_sampler, rule=DiagonalRule(),
                  per_element=_diagonal_per_element if entry.x_invar_index is None else None)
    return entry


def _diagonal_per_element(entry, operands, params, full, compact):
    """Element-wise weight ``w``: ``y[v]`` depends only on ``w`` at the trailing axes of ``v``."""
    for n, f in full.items():
        k = f.shape[-1]
        lead = f.shape[: f.ndim - 2 - jnp.ndim(operands[0])]
        diag = jnp.einsum("...ksk->...ks", f.reshape(lead + (k, f.shape[-2], k)))
        assert_close(diag.reshape(compact[n].shape), compact[n], err_msg=f"per-element trace {n}")
