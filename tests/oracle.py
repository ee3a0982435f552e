r"""Brute-force reference gradients for tiny models (DESIGN.md §3-§4).

Test code, not shipped in the package. Everything here is deliberately naive and
independent of braintrace's compiler, executor and learners: it only uses the
primitive registry (to know which operand of an ETP primitive is its data input)
and plain JAX.

Model contract
--------------
A model is a ``brainstate.nn.Module`` whose ``update(x)`` advances one step. It
reads ``ParamState`` values (arrays or dicts of arrays), reads and writes
``HiddenState`` values (``HiddenGroupState``: S states stacked on the last
axis) and returns an output. States are keyed by their path tuples, as returned
by ``model.states(...)``. A hidden state should be written once per step.

Conventions
-----------
- ``params`` / ``hidden``: dicts ``path -> value`` (``path`` as in
  ``model.states()``; a param value may be a pytree, e.g. ``{'weight', 'bias'}``).
- ``xs``: inputs with time on the first axis (an array or a pytree of arrays).
- ``loss(out, t) -> scalar``: the loss of step ``t`` (a Python int); the
  sequence loss is ``Σ_t loss(out_t, t)``.
- Every gradient function returns ``(grads, total_loss)`` where ``grads`` is a
  dict ``path -> gradient`` with exactly the structure of that ParamState's value.
- Functions start from the model's current hidden values, or from ``h0`` (a
  dict ``path -> value``; missing paths keep the current value). The model's
  state values are never changed by anything in this module.

The flattened vectors: ``θ`` is ``ravel_pytree(params)`` and ``h`` is
``ravel_pytree(hidden)`` (all hidden states concatenated, in JAX's dict-key
order). :func:`hidden_layout` tells where each state sits in ``h``.

RTRL (``rtrl_reference``)
-------------------------
.. math::

    P^t = J^t P^{t-1} + M^t, \qquad
    \nabla_θ = \sum_t \Big[ δ^t P^t + \partial L^t/\partial θ\big|_{h^t\ \mathrm{fixed}} \Big]

with ``M^t = ∂h^t/∂θ`` (``h^{t-1}`` fixed), ``δ^t = ∂L^t/∂h^t`` obtained with the
perturbation trick (a zero ``p`` is added to every hidden state when it is
written; ``δ^t`` is the cotangent of ``p``), and ``J^t``:

- ``mode='full'``: ``∂h^t/∂h^{t-1}``;
- ``mode='diagonal'``: the D_RTRL ground truth: the *cut* Jacobian (the data input
  of every registered ETP primitive treated as a constant, see
  :func:`eval_jaxpr_cut`) restricted to per-position blocks
  (:func:`position_mask`); ``M^t`` is cut the same way, so a weight is traced
  only along its primitive's own tail (a path through another primitive's data
  input contributes its instantaneous gradient through the direct term).

Outputs read before the write (the bypass term, DESIGN.md §3). If ``update``
computes its output from a hidden state's old value (a spike from ``v^{t-1}``,
a readout of ``h`` before it is overwritten), the loss at step ``t`` depends on
``h^{t-1}`` other than through ``h^t``. The single-step rule then adds

.. math:: δ_{\rm prev}^t P^{t-1}, \qquad
          δ_{\rm prev}^t = \partial L^t/\partial h^{t-1}\big|_{h^t\ \mathrm{fixed}},

obtained by differentiating the output with the new hidden values *set*
(:meth:`_Flat.readout`) with respect to the old ones. With it ``mode='full'``
equals BPTT for every model, and ``mode='diagonal'`` equals BPTT for
element-wise ones, whichever value the output reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

import jax
import jax.numpy as jnp
from jax.extend import core as jcore
from jax.flatten_util import ravel_pytree

import brainstate
import braintrace
from braintrace.primitives import REGISTRY

__all__ = [
    # state access
    "param_states",
    "hidden_states",
    "get_params",
    "get_hidden",
    "make_step",
    "hidden_layout",
    "position_mask",
    "hidden_groups",
    # jaxpr
    "eval_jaxpr_cut",
    "make_cut_step",
    # jacobians
    "full_jacobian",
    "cut_jacobian",
    # gradients
    "sequence_loss",
    "bptt_grads",
    "finite_difference_grads",
    "instantaneous_grads",
    "rtrl_reference",
    "es_d_rtrl_reference",
    # comparison helpers
    "tree_allclose",
    "tree_max_rel_err",
    "tree_cosine",
    # zoo
    "Leaky",
    "VanillaRNN",
    "Adaptive",
    "GRU",
    "make_leaky",
    "make_rnn",
    "make_adaptive",
    "make_gru",
]

Path = tuple
Loss = Callable[[Any, int], Any]


# ---------------------------------------------------------------------------
# State access and the pure step
# ---------------------------------------------------------------------------


def param_states(model) -> dict[Path, brainstate.ParamState]:
    """``path -> ParamState`` of ``model``."""
    return dict(model.states(brainstate.ParamState))


def hidden_states(model) -> dict[Path, brainstate.HiddenState]:
    """``path -> HiddenState`` (HiddenGroupState included) of ``model``."""
    return dict(model.states(brainstate.HiddenState))


def get_params(model) -> dict[Path, Any]:
    """Current ParamState values, ``path -> value``."""
    return {k: s.value for k, s in param_states(model).items()}


def get_hidden(model) -> dict[Path, Any]:
    """Current HiddenState values, ``path -> value``."""
    return {k: s.value for k, s in hidden_states(model).items()}


def set_hidden(model, values: Mapping[Path, Any]) -> None:
    """Set the HiddenState values of ``model`` (the inverse of :func:`get_hidden`)."""
    for k, st in hidden_states(model).items():
        st.value = values[k]


def _check_keys(given: Mapping, known: Mapping, what: str) -> None:
    unknown = [k for k in given if k not in known]
    if unknown:
        raise KeyError(f"unknown {what} path(s) {unknown}; known: {list(known)}")


def make_step(model) -> Callable:
    """Turn ``model.update`` into a pure function.

    Returns
    -------
    step(params, hidden, x, perturb=None) -> (out, new_hidden)
        ``params`` and ``hidden`` are dicts ``path -> value`` (missing paths keep
        the model's current value); ``new_hidden`` is the dict of all hidden
        states after the step. ``perturb`` (dict ``path -> array`` shaped like the
        hidden state, optional) is added to a hidden state whenever ``update``
        writes it, so reads after the write see ``h^t + p`` (the perturbation
        trick of DESIGN.md §3). The model's state values are restored on exit,
        so ``step`` works under ``jax.jit`` / ``jax.grad`` / ``jax.jacfwd``.
    """
    pstates = param_states(model)
    hstates = hidden_states(model)
    all_states = list(model.states().values())

    def step(params, hidden, x, perturb=None):
        _check_keys(params, pstates, "ParamState")
        _check_keys(hidden, hstates, "HiddenState")
        if perturb is not None:
            _check_keys(perturb, hstates, "HiddenState")
        old = [(s, s.value) for s in all_states]
        patched = []
        # A brainstate trace context lets update() write tracers into states.
        with brainstate.StateTraceStack(name="oracle"):
            try:
                for k, v in params.items():
                    pstates[k].restore_value(v)
                for k, v in hidden.items():
                    hstates[k].restore_value(v)
                if perturb is not None:
                    for k, p in perturb.items():
                        st = hstates[k]
                        cls_write = type(st)._write_value

                        def _write(v, st=st, p=p, cls_write=cls_write):
                            cls_write(st, jax.tree.map(jnp.add, v, p))

                        vars(st)["_write_value"] = _write
                        patched.append(st)
                out = model.update(x)
                new_hidden = {k: s.value for k, s in hstates.items()}
            finally:
                for st in patched:
                    vars(st).pop("_write_value", None)
                for s, v in old:
                    s.restore_value(v)
        return out, new_hidden

    return step


def _time_slice(xs, t):
    return jax.tree.map(lambda a: a[t], xs)


def _num_steps(xs) -> int:
    lens = {int(jnp.shape(a)[0]) for a in jax.tree.leaves(xs)}
    if len(lens) != 1:
        raise ValueError(f"xs leaves disagree on the time axis length: {sorted(lens)}")
    return lens.pop()


def _initial_hidden(model, h0) -> dict:
    hidden = get_hidden(model)
    if h0 is not None:
        _check_keys(h0, hidden, "HiddenState")
        hidden.update(h0)
    return hidden


# ---------------------------------------------------------------------------
# Flattening and positions
# ---------------------------------------------------------------------------


def hidden_layout(model) -> list[tuple[Path, slice, tuple, tuple]]:
    """Where each hidden state sits in the flat ``h``.

    Returns a list of ``(path, slice, shape, varshape)`` in flat order;
    ``varshape`` is the per-position shape V (the last axis stripped for a
    ``HiddenGroupState``).
    """
    hstates = hidden_states(model)
    sizes = {k: int(np.prod(np.shape(s.value))) for k, s in hstates.items()}
    # Discover the flat order ravel_pytree uses by raveling the sizes' markers.
    marker = {k: jnp.full((sizes[k],), i, jnp.int32) for i, k in enumerate(hstates)}
    flat, _ = ravel_pytree(marker)
    flat = np.asarray(flat)
    keys = list(hstates)
    out, start = [], 0
    while start < flat.size:
        k = keys[int(flat[start])]
        n = sizes[k]
        shape = tuple(np.shape(hstates[k].value))
        varshape = shape[:-1] if isinstance(hstates[k], brainstate.HiddenGroupState) else shape
        out.append((k, slice(start, start + n), shape, varshape))
        start += n
    return out


def _position_ids(model) -> np.ndarray:
    """One integer per element of the flat ``h``; equal ids = same position."""
    ids = []
    base: dict[tuple, int] = {}
    next_base = 0
    for path, _, shape, varshape in hidden_layout(model):
        if varshape not in base:
            base[varshape] = next_base
            next_base += int(np.prod(varshape))
        pos = np.arange(int(np.prod(varshape))).reshape(varshape)
        if len(varshape) != len(shape):  # group: stripped last axis
            pos = np.broadcast_to(pos[..., None], shape)
        ids.append(base[varshape] + pos.reshape(-1))
    return np.concatenate(ids) if ids else np.zeros((0,), np.int64)


def hidden_groups(model, x, *, params=None, hidden=None) -> list[tuple]:
    """Hidden states coupled position by position, found by brute force.

    Two states with the same per-position shape V belong to one group when the
    cut Jacobian (:func:`cut_jacobian`, ``block=False``) has a non-zero entry
    between them (either direction), transitively. Returns tuples of paths in
    flat order.
    """
    J = np.asarray(cut_jacobian(model, x, params=params, hidden=hidden, block=False))
    layout = hidden_layout(model)
    parent = {p: p for p, *_ in layout}

    def find(p):
        while parent[p] != p:
            p = parent[p]
        return p

    for pa, sa, _, va in layout:
        for pb, sb, _, vb in layout:
            if pa != pb and va == vb and (np.any(J[sa, sb] != 0) or np.any(J[sb, sa] != 0)):
                parent[find(pa)] = find(pb)
    groups: dict = {}
    for p, *_ in layout:
        groups.setdefault(find(p), []).append(p)
    return [tuple(g) for g in groups.values()]


def position_mask(model) -> np.ndarray:
    """Boolean ``(n_h, n_h)``: entry ``(i, j)`` is True iff elements i, j of the
    flat ``h`` sit at the same position (same varshape V and multi-index in V)."""
    ids = _position_ids(model)
    return ids[:, None] == ids[None, :]


class _Flat:
    """The step as a function of flat ``θ`` and flat ``h``."""

    def __init__(self, model, params: Mapping, hidden: Mapping):
        self.model = model
        self.step = make_step(model)
        self.theta, self.unravel_theta = ravel_pytree(dict(params))
        self.h, self.unravel_h = ravel_pytree(dict(hidden))
        self.n_theta = self.theta.size
        self.n_h = self.h.size

    def __call__(self, theta, h, x, p=None):
        perturb = None if p is None else self.unravel_h(p)
        out, new = self.step(self.unravel_theta(theta), self.unravel_h(h), x, perturb)
        return out, ravel_pytree(new)[0]

    def hnew(self, theta, h, x):
        return self(theta, h, x)[1]

    def _step_jaxpr(self, theta, h, x):
        def traced(th, hh, xx):
            out, new = self.step(self.unravel_theta(th), self.unravel_h(hh), xx)
            return out, new

        closed = jax.make_jaxpr(traced)(theta, h, x)
        shapes = jax.eval_shape(traced, theta, h, x)
        n_out = len(jax.tree.leaves(shapes[0]))
        paths = list(jax.tree_util.tree_flatten_with_path(shapes[1])[0])
        new_vars = {kp[0].key: v for (kp, _), v in zip(paths, closed.jaxpr.outvars[n_out:])}
        return closed, shapes, new_vars

    def run(self, theta, h, x, *, cut=False, stop=(), override=None):
        """``(out, h^t flat)`` with the ETP data inputs cut (``cut``), the new values of
        the hidden states in ``stop`` held constant, and those in ``override``
        (``{path: value}``) replaced where they are computed."""
        closed, shapes, new_vars = self._step_jaxpr(theta, h, x)
        stop_vars = {new_vars[p] for p in stop if not isinstance(new_vars[p], jcore.Literal)}
        ov = {new_vars[p]: v for p, v in (override or {}).items() if not isinstance(new_vars[p], jcore.Literal)}
        leaves = eval_jaxpr_cut(
            closed, [], *jax.tree.leaves((theta, h, x)), cut=cut, stop_vars=stop_vars, override=ov
        )
        out, new = jax.tree.unflatten(jax.tree.structure(shapes), leaves)
        return out, ravel_pytree(new)[0]

    def readout(self, theta, h, x, hnew):
        """The step's output with the new hidden values *set* to ``hnew`` (flat).

        The step is traced to a jaxpr; wherever a variable that ``update``
        writes to a hidden state is defined, its value is replaced by the
        matching slice of ``hnew``, and every use downstream (however the model
        reads it: the state, or a local variable) sees the replacement. Its
        gradient in ``hnew`` is ``δ^t = ∂L^t/∂h^t``, the partial derivative with
        the other hidden states of the step held fixed.
        """
        def traced(th, hh, xx):
            return self.step(self.unravel_theta(th), self.unravel_h(hh), xx)

        closed = jax.make_jaxpr(traced)(theta, h, x)
        out_tree = jax.tree.structure(jax.eval_shape(traced, theta, h, x))
        n_out = len(jax.tree.leaves(jax.eval_shape(lambda *a: traced(*a)[0], theta, h, x)))
        new_vars = closed.jaxpr.outvars[n_out:]
        replace = self.unravel_h(hnew)
        replace_leaves = jax.tree.leaves(replace)
        override = {}
        for v, val in zip(new_vars, replace_leaves):
            if not isinstance(v, jcore.Literal):
                override[v] = val
        env = {}
        for v, c in zip(closed.jaxpr.constvars, closed.consts):
            env[v] = c
        for v, a in zip(closed.jaxpr.invars, jax.tree.leaves((theta, h, x))):
            env[v] = override.get(v, a)
        for eqn in closed.jaxpr.eqns:
            vals = [v.val if isinstance(v, jcore.Literal) else env[v] for v in eqn.invars]
            params = eqn.primitive.get_bind_params(eqn.params)
            outs = eqn.primitive.bind(*vals, **params)
            outs = outs if eqn.primitive.multiple_results else [outs]
            for v, o in zip(eqn.outvars, outs):
                env[v] = override.get(v, o)
        leaves = [v.val if isinstance(v, jcore.Literal) else env[v] for v in closed.jaxpr.outvars]
        out, _ = jax.tree.unflatten(out_tree, leaves)
        return out


# ---------------------------------------------------------------------------
# The cut: a jaxpr interpreter that stops gradients at ETP data inputs
# ---------------------------------------------------------------------------

# Higher-order primitives whose single sub-jaxpr takes exactly the equation's
# operands and may be evaluated inline.
_INLINE = {
    "jit", "pjit", "closed_call", "core_call", "custom_jvp_call",
    "custom_vjp_call", "custom_vjp_call_jaxpr", "remat", "remat2", "checkpoint",
}


def _sub_jaxprs(params: Mapping) -> list:
    subs = []
    for v in params.values():
        vals = v if isinstance(v, (tuple, list)) else (v,)
        for item in vals:
            if isinstance(item, (jcore.Jaxpr, jcore.ClosedJaxpr)):
                subs.append(item)
    return subs


def _contains_etp(jaxpr) -> bool:
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    for eqn in jaxpr.eqns:
        if REGISTRY.get(eqn.primitive) is not None:
            return True
        if any(_contains_etp(s) for s in _sub_jaxprs(eqn.params)):
            return True
    return False


def eval_jaxpr_cut(jaxpr, consts: Sequence, *args, cut: bool = True, stop_vars=(), override=None) -> list:
    """Evaluate ``jaxpr`` with ``stop_gradient`` on every ETP data input.

    Equations whose primitive is registered (``REGISTRY.get(p) is not None``) get
    their operand ``entry.x_invar_index`` wrapped in ``jax.lax.stop_gradient``.
    Call-like higher-order equations (jit, custom_jvp/vjp, remat) that contain
    an ETP primitive are evaluated inline with the same hook; those without one
    are bound unchanged (keeping custom derivative rules). An ETP primitive
    inside any other higher-order primitive (scan, while, cond...) raises
    ``NotImplementedError``.

    ``cut=False`` evaluates without the hook. ``stop_vars`` (top-level jaxpr
    variables) are wrapped in ``stop_gradient`` where they are defined;
    ``override`` (``{var: value}``) replaces a top-level variable's value where
    it is defined.
    """
    override = override or {}
    stop_vars = set(stop_vars)
    if isinstance(jaxpr, jcore.ClosedJaxpr):
        # jax < 0.11: a wrapper of an open jaxpr and its constants; jax >= 0.11: one
        # class whose ``.jaxpr`` is itself, the constants attached to its first inputs.
        # Either way the constants are counted once: pass a closed jaxpr with ``consts=[]``.
        jaxpr, consts = jaxpr.jaxpr, [*jaxpr.consts, *consts]
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = c
    for v, a in zip(jaxpr.invars, args, strict=True):
        env[v] = a

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        prim = eqn.primitive
        entry = REGISTRY.get(prim)
        subs = _sub_jaxprs(eqn.params)
        if entry is not None:
            if cut and entry.x_invar_index is not None:
                xi = entry.x_invar_index
                invals[xi] = jax.lax.stop_gradient(invals[xi])
            ans = prim.bind(*invals, **prim.get_bind_params(eqn.params))
        elif subs and any(_contains_etp(s) for s in subs):
            if prim.name not in _INLINE or len(subs) != 1:
                raise NotImplementedError(
                    f"oracle: an ETP primitive sits inside a {prim.name!r} equation; the cut "
                    "interpreter only inlines call-like primitives (jit, custom_jvp/vjp, remat)."
                )
            sub = subs[0]
            ans = eval_jaxpr_cut(sub, [], *invals)
            if not prim.multiple_results:
                (ans,) = ans
        else:
            ans = prim.bind(*invals, **prim.get_bind_params(eqn.params))
        outs = list(ans) if prim.multiple_results else [ans]
        for v, a in zip(eqn.outvars, outs, strict=True):
            if v in override:
                a = override[v]
            env[v] = jax.lax.stop_gradient(a) if v in stop_vars else a
    for v in jaxpr.invars:
        if v in override:
            env[v] = override[v]
    return [read(v) for v in jaxpr.outvars]


def make_cut_step(flat: _Flat, x_example) -> Callable:
    """``cut_hnew(theta, h, x) -> h^t`` (flat) with ETP data inputs stopped."""
    closed = jax.make_jaxpr(flat.hnew)(flat.theta, flat.h, x_example)

    def cut_hnew(theta, h, x):
        args = jax.tree.leaves((theta, h, x))
        (out,) = eval_jaxpr_cut(closed, [], *args)
        return out

    return cut_hnew


# ---------------------------------------------------------------------------
# One-step Jacobians (public helpers)
# ---------------------------------------------------------------------------


def _flat_at(model, params, hidden) -> _Flat:
    p = get_params(model)
    if params is not None:
        _check_keys(params, p, "ParamState")
        p.update(params)
    return _Flat(model, p, _initial_hidden(model, hidden))


def full_jacobian(model, x, *, params=None, hidden=None) -> jax.Array:
    """``∂h^t/∂h^{t-1}`` of the flat hidden vector, shape ``(n_h, n_h)``."""
    flat = _flat_at(model, params, hidden)
    return jax.jacfwd(lambda h: flat.hnew(flat.theta, h, x))(flat.h)


def cut_jacobian(model, x, *, params=None, hidden=None, block=True) -> jax.Array:
    """The cut Jacobian of DESIGN.md §3, shape ``(n_h, n_h)`` (flat ``h``).

    ``block=False``: ``∂h^t/∂h^{t-1}`` with every ETP data input constant.
    ``block=True`` (default): additionally keep only same-position entries
    (:func:`position_mask`) — the matrix ``mode='diagonal'`` propagates with.
    """
    flat = _flat_at(model, params, hidden)
    cut = make_cut_step(flat, x)
    J = jax.jacfwd(lambda h: cut(flat.theta, h, x))(flat.h)
    if block:
        J = J * jnp.asarray(position_mask(model), J.dtype)
    return J


# ---------------------------------------------------------------------------
# BPTT and finite differences
# ---------------------------------------------------------------------------


def sequence_loss(model, xs, loss: Loss, *, params=None, h0=None):
    """``Σ_t loss(out_t, t)`` with the given params (default: current)."""
    step = make_step(model)
    p = get_params(model) if params is None else params
    h = _initial_hidden(model, h0)
    total = 0.0
    for t in range(_num_steps(xs)):
        out, h = step(p, h, _time_slice(xs, t))
        total = total + loss(out, t)
    return total


def bptt_grads(model, xs, loss: Loss, *, h0=None):
    """``jax.grad`` of the summed loss through an unrolled Python loop.

    Returns ``(grads, total_loss)``; ``grads`` maps every ParamState path to a
    gradient with the structure of its value.
    """
    h = _initial_hidden(model, h0)
    value, grads = jax.value_and_grad(lambda p: sequence_loss(model, xs, loss, params=p, h0=h))(
        get_params(model)
    )
    return grads, value


def finite_difference_grads(model, xs, loss: Loss, eps: float = 1e-6, *, h0=None):
    """Central differences of the summed loss, one parameter element at a time.

    Requires float64 parameters (enable ``jax_enable_x64`` after all imports);
    raises ``TypeError`` otherwise. Same return structure as :func:`bptt_grads`.
    """
    params = get_params(model)
    for leaf in jax.tree.leaves(params):
        if jnp.result_type(leaf) != jnp.float64:
            raise TypeError(
                f"finite_difference_grads needs float64 parameters, got {jnp.result_type(leaf)}; "
                "enable jax_enable_x64 after all imports and build the model afterwards."
            )
    h = _initial_hidden(model, h0)
    theta, unravel = ravel_pytree(params)
    f = jax.jit(lambda th: sequence_loss(model, xs, loss, params=unravel(th), h0=h))
    theta = np.asarray(theta)
    g = np.zeros_like(theta)
    for i in range(theta.size):
        tp, tm = theta.copy(), theta.copy()
        tp[i] += eps
        tm[i] -= eps
        g[i] = (float(f(jnp.asarray(tp))) - float(f(jnp.asarray(tm)))) / (2 * eps)
    return unravel(jnp.asarray(g)), f(jnp.asarray(theta))


def instantaneous_grads(model, xs, loss: Loss, *, h0=None):
    """``Σ_t ∂L^t/∂θ`` with ``h^{t-1}`` held constant (no temporal credit).

    Independent re-statement of what an offline parameter receives.
    """
    step = make_step(model)
    params = get_params(model)
    h = _initial_hidden(model, h0)
    grads = jax.tree.map(jnp.zeros_like, params)
    total = 0.0
    for t in range(_num_steps(xs)):
        x = _time_slice(xs, t)

        def step_loss(p, h=h, x=x, t=t):
            out, h_next = step(p, h, x)
            return loss(out, t), h_next

        (value, h_next), g = jax.value_and_grad(step_loss, has_aux=True)(params)
        grads = jax.tree.map(jnp.add, grads, g)
        total = total + value
        h = h_next
    return grads, total


# ---------------------------------------------------------------------------
# Brute-force RTRL
# ---------------------------------------------------------------------------


def _online_mask(params: Mapping, online) -> jax.Array:
    """Flat 0/1 vector over θ: 1 where the parameter keeps a trace.

    ``online``: ``None`` (all), or an iterable whose items are either a
    ParamState path (tuple of names: the whole state) or a pair
    ``(path, key)`` selecting one entry of a dict-valued ParamState (e.g.
    ``(('cell', 'w'), 'weight')``). A pair is told from a path by its first
    item being a tuple.
    """
    if online is None:
        return jnp.ones_like(ravel_pytree(dict(params))[0])
    if isinstance(online, (str, bytes)) or not isinstance(online, Iterable):
        raise TypeError(f"online must be None or an iterable of paths / (path, key) pairs, got {online!r}")
    whole, leaves = set(), set()
    for item in online:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], tuple):
            path, key = item
            if path not in params:
                raise KeyError(f"online: unknown ParamState path {path!r}")
            if not isinstance(params[path], Mapping) or key not in params[path]:
                raise KeyError(f"online: ParamState {path!r} has no entry {key!r}")
            leaves.add((path, key))
        elif isinstance(item, tuple):
            if item not in params:
                raise KeyError(f"online: unknown ParamState path {item!r}; known: {list(params)}")
            whole.add(item)
        else:
            raise TypeError(f"online: items must be path tuples or (path, key) pairs, got {item!r}")

    def flag(kp, leaf):
        path = kp[0].key
        on = path in whole or (len(kp) > 1 and (path, getattr(kp[1], "key", None)) in leaves)
        return jnp.full(jnp.shape(leaf), 1.0 if on else 0.0, jnp.result_type(leaf))

    return ravel_pytree(jax.tree_util.tree_map_with_path(flag, dict(params)))[0]


def _window_lengths(T: int, windows) -> list[int]:
    if isinstance(windows, (int, np.integer)):
        if windows < 1:
            raise ValueError(f"windows must be >= 1, got {windows}")
        K = int(windows)
        return [min(K, T - s) for s in range(0, T, K)]
    lens = [int(k) for k in windows]
    if any(k < 1 for k in lens) or sum(lens) != T:
        raise ValueError(f"window lengths {lens} must be >= 1 and sum to T={T}")
    return lens


def rtrl_reference(
    model, xs, loss: Loss, mode: str = "full", *, online=None, windows=None, h0=None, groups=None
):
    r"""Brute-force RTRL with dense Jacobians (see the module docstring).

    Parameters
    ----------
    mode : {'full', 'diagonal'}
        ``'full'``: exact RTRL. ``'diagonal'``: D_RTRL ground truth (cut,
        per-position block Jacobian).
    online : None or iterable
        Parameters that keep a trace (``None``: all). Items are ParamState paths
        or ``(path, key)`` pairs for one entry of a dict-valued ParamState.
        The others have ``P ≡ 0`` and receive the instantaneous gradient.
    windows : None, int K, or sequence of window lengths summing to T
        Multi-step hybrid: per window ``[t0, t1)``, exact BPTT of the window's
        summed loss (the state before the window constant) plus
        ``λ · P^{t0-1}`` with ``λ = ∂L_window/∂h^{t0-1}``. Traces advance
        through every step. ``None``: single-step rule.
    h0 : dict, optional
        Initial hidden values (default: the model's current ones).
    groups : list of tuples of paths, optional
        ``mode='diagonal'`` only: the hidden groups (default:
        :func:`hidden_groups`). A group's rows of ``J`` and ``M`` are taken
        with the other groups' new values held constant, ``J`` keeps only
        same-group, same-position entries, and a group's learning signal
        ``δ_g = ∂L^t/∂h_g^t`` lets the other groups respond within the step
        while holding the group's own other members fixed.

    Returns
    -------
    (grads, total_loss) as :func:`bptt_grads`.
    """
    if mode not in ("full", "diagonal"):
        raise ValueError(f"mode must be 'full' or 'diagonal', got {mode!r}")
    T = _num_steps(xs)
    flat = _Flat(model, get_params(model), _initial_hidden(model, h0))
    theta = flat.theta
    keep = _online_mask(flat.unravel_theta(theta), online)  # (n_theta,)
    layout = hidden_layout(model)
    if mode == "diagonal":
        if groups is None:
            groups = hidden_groups(model, _time_slice(xs, 0), hidden=_initial_hidden(model, h0))
        rows = {}
        gid = np.zeros(flat.n_h, np.int64)
        for gi, g in enumerate(groups):
            idx = np.concatenate([np.arange(sl.start, sl.stop) for p, sl, *_ in layout if p in g])
            rows[gi] = idx
            gid[idx] = gi
        block = jnp.asarray(position_mask(model) & (gid[:, None] == gid[None, :]), flat.h.dtype)
        all_paths = [p for p, *_ in layout]

    @jax.jit
    def transition(h, x):
        """(J used by the trace, M, h^t)."""
        hnew = flat.hnew(theta, h, x)
        if mode == "full":
            M = jax.jacfwd(lambda th: flat.hnew(th, h, x))(theta)
            J = jax.jacfwd(lambda hh: flat.hnew(theta, hh, x))(h)
        else:
            # the cut applies to M too: a weight reaches a hidden state through its
            # primitive's tail only, never through another primitive's data input;
            # a group's rows are taken with the other groups' new values constant
            J = jnp.zeros((flat.n_h, flat.n_h), theta.dtype)
            M = jnp.zeros((flat.n_h, flat.n_theta), theta.dtype)
            for gi, g in enumerate(groups):
                others = [p for p in all_paths if p not in g]
                Jg = jax.jacfwd(lambda hh: flat.run(theta, hh, x, cut=True, stop=others)[1])(h)
                Mg = jax.jacfwd(lambda th: flat.run(th, h, x, cut=True, stop=others)[1])(theta)
                J = J.at[rows[gi]].set(Jg[rows[gi]])
                M = M.at[rows[gi]].set(Mg[rows[gi]])
            J = J * block
        return J, M, hnew

    def learning_signal(h, x, hnew, t):
        """δ^t: full mode holds every hidden state fixed; diagonal mode per group."""
        if mode == "full":
            return jax.grad(lambda hn: loss(flat.readout(theta, h, x, hn), t))(hnew)
        new = flat.unravel_h(hnew)
        delta = jnp.zeros_like(hnew)
        for gi, g in enumerate(groups):

            def lg(vals, g=g):
                return loss(flat.run(theta, h, x, override=dict(zip(g, vals)))[0], t)

            dg = jax.grad(lg)([new[p] for p in g])
            upd = dict(zip(g, dg))
            zeros = {p: (upd[p] if p in upd else jnp.zeros_like(v)) for p, v in new.items()}
            delta = delta + ravel_pytree(zeros)[0]
        return delta

    P = jnp.zeros((flat.n_h, flat.n_theta), theta.dtype)  # trace before step 0: h0 is constant
    grad = jnp.zeros_like(theta)
    total = 0.0
    h = flat.h

    if windows is None:
        zero_p = jnp.zeros_like(flat.h)
        for t in range(T):
            x = _time_slice(xs, t)
            J, M, hnew = transition(h, x)
            P_prev = P
            P = J @ P + M

            def lt(th, h=h, x=x, t=t):
                return loss(flat(th, h, x)[0], t)

            value, g_theta = jax.value_and_grad(lt)(theta)
            # δ^t = ∂L^t/∂h^t: the output as a function of the new hidden values
            delta = learning_signal(h, x, hnew, t)
            # δ_prev^t = ∂L^t/∂h^{t-1} with h^t fixed (the bypass term; zero when the
            # output reads only the new values)
            delta_prev = jax.grad(lambda hh, hn=hnew, x=x, t=t: loss(flat.readout(theta, hh, x, hn), t))(h)
            # ∂L^t/∂θ|_{h^t fixed} = (∂L^t/∂θ with h^{t-1} fixed) - δ^t M^t
            direct = g_theta - delta @ M
            grad = grad + delta @ P + delta_prev @ P_prev + direct
            total = total + value
            P = P * keep[None, :]
            h = hnew
        return flat.unravel_theta(grad), total

    t0 = 0
    for K in _window_lengths(T, windows):
        ts = range(t0, t0 + K)

        def window_loss(th, h_start, ts=ts):
            hh, acc = h_start, 0.0
            for t in ts:
                out, hh = flat(th, hh, _time_slice(xs, t))
                acc = acc + loss(out, t)
            return acc

        value, (g_theta, lam) = jax.value_and_grad(window_loss, argnums=(0, 1))(theta, h)
        grad = grad + g_theta + lam @ P  # P is the (masked) trace at t0 - 1
        total = total + value
        for t in ts:
            J, M, h = transition(h, _time_slice(xs, t))
            P = (J @ P + M) * keep[None, :]
        t0 += K
    return flat.unravel_theta(grad), total


def es_d_rtrl_reference(*args, **kwargs):
    r"""Not provided: the ES_D_RTRL reference (DESIGN.md §3).

    The recurrence ``ε_x^t = α ε_x^{t-1} + x^t``, ``ε_f^t = α D^t ε_f^{t-1} +
    (1-α) df^t``, contribution ``xy_to_dw(ε_x^t, (ε_f^t / c_t) ∘ δ^t)`` with
    ``c_t = 1 - α^{k+1}`` (k in time steps) is defined per relation (one ETP
    primitive's ``x``, its tail ``df`` and the group's ``D``). A model-agnostic
    brute-force restatement would have to re-derive the relations, i.e.
    re-implement the compiler; tests should instead hand-derive ``x``, ``df``
    and ``D`` for specific models (``cut_jacobian`` gives ``D``).
    """
    raise NotImplementedError(es_d_rtrl_reference.__doc__)


# ---------------------------------------------------------------------------
# Comparison helpers
# ---------------------------------------------------------------------------


def tree_max_rel_err(a, b) -> float:
    """``max |a - b| / max(max |b|, tiny)`` over all leaves of matching trees."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b), (jax.tree.structure(a), jax.tree.structure(b))
    num = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(la, lb))
    den = max(float(jnp.max(jnp.abs(y))) for y in lb)
    return num / max(den, 1e-300)


def tree_allclose(a, b, rtol: float) -> bool:
    return tree_max_rel_err(a, b) <= rtol


def tree_cosine(a, b) -> float:
    va, vb = ravel_pytree(a)[0], ravel_pytree(b)[0]
    return float(va @ vb / (jnp.linalg.norm(va) * jnp.linalg.norm(vb)))


# ---------------------------------------------------------------------------
# Model zoo (tiny; build after enabling x64 to get float64 parameters)
# ---------------------------------------------------------------------------


def _arr(rng: np.random.RandomState, *shape, scale=1.0):
    return jnp.asarray(rng.randn(*shape) * scale)


def _hshape(n, batch):
    return (n,) if batch is None else (batch, n)


class Leaky(brainstate.nn.Module):
    """Leaky tanh integrator ``h = a h + (1-a) tanh(matmul(x, W_in, b))``, ``out = h @ W_out``.

    ``w_in`` is dict-valued ``{'weight', 'bias'}``. With ``learn_decay`` the decay
    is ``a = element_wise(decay, sigmoid)`` (a learnable ParamState), else a
    constant. The cut transition is element-wise and no state feeds another
    through a trainable op: D_RTRL is exact.
    """

    def __init__(self, n_in, n_h, n_out, seed=0, *, batch=None, learn_decay=False):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w_in = brainstate.ParamState(
            {"weight": _arr(rng, n_in, n_h, scale=1.0 / np.sqrt(n_in)), "bias": _arr(rng, n_h, scale=0.1)}
        )
        self.w_out = brainstate.ParamState(_arr(rng, n_h, n_out, scale=1.0 / np.sqrt(n_h)))
        decay_logit = _arr(rng, n_h, scale=0.5) + 1.0
        self.learn_decay = learn_decay
        if learn_decay:
            self.decay = brainstate.ParamState(decay_logit)
        else:
            self.decay_const = jax.nn.sigmoid(decay_logit)
        self.h = brainstate.HiddenState(_arr(rng, *_hshape(n_h, batch), scale=0.5))

    def update(self, x):
        a = braintrace.element_wise(self.decay.value, jax.nn.sigmoid) if self.learn_decay else self.decay_const
        y = braintrace.matmul(x, self.w_in.value["weight"], self.w_in.value["bias"])
        self.h.value = a * self.h.value + (1.0 - a) * jnp.tanh(y)
        return self.h.value @ self.w_out.value


class VanillaRNN(brainstate.nn.Module):
    """``h = tanh(matmul(concat(x, h), W) + b)``, ``out = h @ W_out``.

    ``h`` reaches ``h`` only through the ETP matmul's data input: the cut
    Jacobian is zero.
    """

    def __init__(self, n_in, n_h, n_out, seed=0, *, batch=None):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w = brainstate.ParamState(_arr(rng, n_in + n_h, n_h, scale=1.2 / np.sqrt(n_in + n_h)))
        self.b = brainstate.ParamState(_arr(rng, n_h, scale=0.1))
        self.w_out = brainstate.ParamState(_arr(rng, n_h, n_out, scale=1.0 / np.sqrt(n_h)))
        self.h = brainstate.HiddenState(_arr(rng, *_hshape(n_h, batch), scale=0.5))

    def update(self, x):
        xh = jnp.concatenate([x, self.h.value], axis=-1)
        self.h.value = jnp.tanh(braintrace.matmul(xh, self.w.value) + self.b.value)
        return self.h.value @ self.w_out.value


class Adaptive(brainstate.nn.Module):
    """Two-state adaptive rate neuron, coupled element-wise:

    ``v = α v + matmul(x, W) - a``;  ``a = ρ a + β sigmoid(v)`` (new ``v``);
    ``out = v @ W_out``. ``grouped=False``: two HiddenStates ``v``, ``a``;
    ``grouped=True``: one HiddenGroupState ``va`` of shape ``(..., n_h, 2)``
    (``[..., 0] = v``, ``[..., 1] = a``). Same seed, same numbers either way.
    Per-position 2×2 cut blocks, no trainable state-to-state op: D_RTRL exact.
    """

    def __init__(self, n_in, n_h, n_out, seed=0, *, batch=None, grouped=False,
                 alpha=0.8, rho=0.7, beta=0.5):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.w = brainstate.ParamState(_arr(rng, n_in, n_h, scale=1.0 / np.sqrt(n_in)))
        self.w_out = brainstate.ParamState(_arr(rng, n_h, n_out, scale=1.0 / np.sqrt(n_h)))
        v0 = _arr(rng, *_hshape(n_h, batch), scale=0.5)
        a0 = _arr(rng, *_hshape(n_h, batch), scale=0.2)
        self.grouped = grouped
        self.alpha, self.rho, self.beta = alpha, rho, beta
        if grouped:
            self.va = brainstate.HiddenGroupState(jnp.stack([v0, a0], axis=-1))
        else:
            self.v = brainstate.HiddenState(v0)
            self.a = brainstate.HiddenState(a0)

    def update(self, x):
        if self.grouped:
            v, a = self.va.value[..., 0], self.va.value[..., 1]
        else:
            v, a = self.v.value, self.a.value
        v = self.alpha * v + braintrace.matmul(x, self.w.value) - a
        a = self.rho * a + self.beta * jax.nn.sigmoid(v)
        if self.grouped:
            self.va.value = jnp.stack([v, a], axis=-1)
            v = self.va.value[..., 0]
        else:
            self.v.value = v
            self.a.value = a
            v = self.v.value
        return v @ self.w_out.value


class GRU(brainstate.nn.Module):
    """GRU of DESIGN.md §3: ``h' = (1-z) h + z h̃`` with

    ``z = σ(matmul([x, h], Wz))``, ``r = σ(matmul([x, h], Wr))``,
    ``h̃ = tanh(matmul([x, r h], Wh))``; ``out = h' @ W_out``. ``wz``, ``wr``,
    ``wh`` are dict-valued ``{'weight', 'bias'}``. Cut block ``D = 1 - z``.
    """

    def __init__(self, n_in, n_h, n_out, seed=0, *, batch=None):
        super().__init__()
        rng = np.random.RandomState(seed)
        s = 1.0 / np.sqrt(n_in + n_h)
        for name in ("wz", "wr", "wh"):
            setattr(self, name, brainstate.ParamState(
                {"weight": _arr(rng, n_in + n_h, n_h, scale=s), "bias": _arr(rng, n_h, scale=0.1)}
            ))
        self.w_out = brainstate.ParamState(_arr(rng, n_h, n_out, scale=1.0 / np.sqrt(n_h)))
        self.h = brainstate.HiddenState(_arr(rng, *_hshape(n_h, batch), scale=0.5))

    def gates(self, x, h):
        """``(z, r, h̃)`` at input ``x`` and state ``h`` (plain JAX, for tests)."""
        xh = jnp.concatenate([x, h], axis=-1)
        z = jax.nn.sigmoid(xh @ self.wz.value["weight"] + self.wz.value["bias"])
        r = jax.nn.sigmoid(xh @ self.wr.value["weight"] + self.wr.value["bias"])
        xrh = jnp.concatenate([x, r * h], axis=-1)
        hc = jnp.tanh(xrh @ self.wh.value["weight"] + self.wh.value["bias"])
        return z, r, hc

    def update(self, x):
        h = self.h.value
        xh = jnp.concatenate([x, h], axis=-1)
        z = jax.nn.sigmoid(braintrace.matmul(xh, self.wz.value["weight"], self.wz.value["bias"]))
        r = jax.nn.sigmoid(braintrace.matmul(xh, self.wr.value["weight"], self.wr.value["bias"]))
        xrh = jnp.concatenate([x, r * h], axis=-1)
        hc = jnp.tanh(braintrace.matmul(xrh, self.wh.value["weight"], self.wh.value["bias"]))
        self.h.value = (1.0 - z) * h + z * hc
        return self.h.value @ self.w_out.value


def make_leaky(n_in=3, n_h=4, n_out=2, seed=0, **kw) -> Leaky:
    """Leaky integrator (exact class); kw: ``batch``, ``learn_decay``."""
    return Leaky(n_in, n_h, n_out, seed, **kw)


def make_rnn(n_in=3, n_h=4, n_out=2, seed=0, **kw) -> VanillaRNN:
    """Vanilla RNN (zero cut Jacobian); kw: ``batch``."""
    return VanillaRNN(n_in, n_h, n_out, seed, **kw)


def make_adaptive(n_in=3, n_h=4, n_out=2, seed=0, **kw) -> Adaptive:
    """Two-state adaptive neuron (exact class); kw: ``batch``, ``grouped``."""
    return Adaptive(n_in, n_h, n_out, seed, **kw)


def make_gru(n_in=3, n_h=4, n_out=2, seed=0, **kw) -> GRU:
    """GRU (approximate class, ``D = 1 - z``); kw: ``batch``."""
    return GRU(n_in, n_h, n_out, seed, **kw)
