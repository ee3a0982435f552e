"""ES_D_RTRL written out by hand in plain JAX for the benchmark models.

How fast can the algorithm itself be in JAX on this machine, with no framework
around it? This module is the same computation as ``es_d_rtrl_winK`` of
:mod:`benchmarks.methods` on :class:`~benchmarks.models.RecurrentLIFNet` and
:class:`~benchmarks.models.GRUNet`, written directly: one ``scan`` per
``K``-step window that advances the model and the traces and keeps every step's
traces, then the window's weight gradients as matrix products over its ``K·B``
rows. It times, in rounds (each round calls every variant once), the forward
pass, braintrace's ES_D_RTRL and this one, and prints the largest relative
difference between the two gradients::

    python -m benchmarks.hand_es --model lif-256 --T 1000 --window 25

The LIF rule (:class:`braintrace.ES_D_RTRL`, decay ``a``; LIF decay ``α``, read-out
decay ``κ``; ``σ'`` the sigmoid surrogate; ``s^{t-1} = H(v^{t-1} - 1)``):

.. math::

    D^t = α\\,(1 - σ'(v^{t-1} - 1)), \\quad
    ε_f^t = a D^t ε_f^{t-1} + (1 - a), \\quad
    ε_b^t = D^t ε_b^{t-1} + 1, \\quad
    ε_r^t = a κ ε_r^{t-1} + (1 - a),

x-traces ``ε^t = a ε^{t-1} + x^t`` of ``x^t`` (input), ``s^{t-1}`` (recurrent)
and ``s^t`` (read-out), learning signals ``δ_r^t = ∂L^t/∂r^t`` and
``δ_v^t = σ'(v^t - 1)\\,(δ_r^t W_{out}^T)``, and with ``c_t = 1 - a^{t+1}``:
``∇W_{in} = Σ_t ε_{x}^{t T} (ε_f^t δ_v^t / c_t)``, the same for ``W_{rec}``,
``∇b = Σ_t ε_b^t δ_v^t`` and ``∇W_{out} = Σ_t ε_s^{t T} (ε_r^t δ_r^t / c_t)``.
The GRU's rule is in :func:`hand_es_gru`.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable

import brainstate
import jax
import jax.numpy as jnp

from .decompose import rounds_table, spec_from_name, time_in_rounds
from .methods import ES_DECAY, build_body
from .models import ModelSpec, build_model, make_data

__all__ = ["compare", "format_comparison", "gru_params", "hand_es_gru", "hand_es_lif", "lif_params", "main",
           "max_relative_difference"]

_SURROGATE_ALPHA = 4.0  # braintrace.nn.surrogate.sigmoid's default


def lif_params(model) -> dict[str, jax.Array]:
    """The weights of a :class:`~benchmarks.models.RecurrentLIFNet` and its decays ``alpha``, ``kappa``."""
    lif = model.lif
    return {
        "w_in": model.w_in.weight.value["weight"],
        "b_in": model.w_in.weight.value["bias"],
        "w_rec": model.w_rec.weight.value["weight"],
        "w_out": model.readout.W.value,
        "alpha": jnp.asarray(lif._decay("tau")),
        "kappa": jnp.asarray(model.readout.decay),
    }


def _spike(u):
    return (u >= 0).astype(u.dtype)


def _surrogate(u):
    sg = jax.nn.sigmoid(_SURROGATE_ALPHA * u)
    return _SURROGATE_ALPHA * sg * (1 - sg)


def hand_es_lif(p: dict, xs: jax.Array, ys: jax.Array, K: int, decay: float = ES_DECAY) -> tuple[dict, jax.Array]:
    """ES_D_RTRL's summed gradient and the summed loss over ``(T, B, I)`` inputs, ``K``-step windows.

    ``p`` as from :func:`lif_params`; states start at zero, the trace count at 0.
    Returns ``({'w_in', 'b_in', 'w_rec', 'w_out'}: gradient, loss)``; the loss is
    ``Σ_t mean((r^t - y^t)^2)``.
    """
    T, B, n_in = xs.shape
    N, n_out = p["w_rec"].shape[0], p["w_out"].shape[1]
    a, alpha, kappa = decay, p["alpha"], p["kappa"]

    def window(carry, xy):
        v, r, traces, k, grads, total = carry
        x_win, y_win = xy

        def step(c, x):
            v, r, (ex, es_prev, es, ef, eb, er), k = c
            s_prev = _spike(v - 1.0)
            D = alpha * (1.0 - _surrogate(v - 1.0))
            v = alpha * (v - s_prev) + x @ p["w_in"] + p["b_in"] + s_prev @ p["w_rec"]
            s = _spike(v - 1.0)
            r = kappa * r + s @ p["w_out"]
            ex, es_prev, es = a * ex + x, a * es_prev + s_prev, a * es + s
            ef, eb, er = a * D * ef + (1 - a), D * eb + 1.0, a * kappa * er + (1 - a)
            inv_c = 1.0 / (1.0 - a ** (k + 1.0))
            kept = (ex, es_prev, es, ef * inv_c, eb, er * inv_c, _surrogate(v - 1.0), r)
            return (v, r, (ex, es_prev, es, ef, eb, er), k + 1.0), kept

        (v, r, traces, k), kept = jax.lax.scan(step, (v, r, traces, k), x_win)
        ex, es_prev, es, ef, eb, er, sg, rs = kept
        d_r = 2.0 * (rs - y_win) / (B * n_out)  # ∂ mean((r - y)^2) / ∂r, per step
        d_v = (d_r @ p["w_out"].T) * sg
        rows = K * B
        lv = (ef * d_v).reshape(rows, N)
        grads = {
            "w_in": grads["w_in"] + ex.reshape(rows, n_in).T @ lv,
            "b_in": grads["b_in"] + jnp.sum((eb * d_v).reshape(rows, N), axis=0),
            "w_rec": grads["w_rec"] + es_prev.reshape(rows, N).T @ lv,
            "w_out": grads["w_out"] + es.reshape(rows, N).T @ (er * d_r).reshape(rows, n_out),
        }
        total = total + jnp.sum(jnp.mean((rs - y_win) ** 2, axis=(1, 2)))
        return (v, r, traces, k, grads, total), None

    dt = xs.dtype
    traces = (jnp.zeros((B, n_in), dt), jnp.zeros((B, N), dt), jnp.zeros((B, N), dt),
              jnp.zeros((B, N), dt), jnp.zeros((B, N), dt), jnp.zeros((B, n_out), dt))
    grads = {name: jnp.zeros_like(p[name]) for name in ("w_in", "b_in", "w_rec", "w_out")}
    carry = (jnp.zeros((B, N), dt), jnp.zeros((B, n_out), dt), traces, jnp.zeros((), dt), grads, jnp.zeros((), dt))
    windows = (xs.reshape((T // K, K) + xs.shape[1:]), ys.reshape((T // K, K) + ys.shape[1:]))
    (_, _, _, _, grads, total), _ = jax.lax.scan(window, carry, windows)
    return grads, total


def gru_params(model) -> dict[str, jax.Array]:
    """The weights and biases of a :class:`~benchmarks.models.GRUNet` (``[x, h]`` rows first ``x``)."""
    cell, out = model.cell, model.readout.weight.value
    p = {f"{g}_{n}": getattr(cell, g).weight.value[n] for g in ("Wz", "Wr", "Wh") for n in ("weight", "bias")}
    p.update(Wo_weight=out["weight"], Wo_bias=out["bias"])
    return p


def hand_es_gru(p: dict, xs: jax.Array, ys: jax.Array, K: int, decay: float = ES_DECAY) -> tuple[dict, jax.Array]:
    """ES_D_RTRL's summed gradient and the summed loss of a :class:`~benchmarks.models.GRUNet`.

    ``p`` as from :func:`gru_params`. ``Wz`` and ``Wh`` learn from traces (``D = 1 - z``,
    ``df_z = (h̃ - h) z (1 - z)``, ``df_h = z (1 - h̃^2)``; exact traces for their
    biases); ``Wr``, which reaches ``h`` only through ``Wh``'s input, and the
    read-out learn from their instantaneous gradients.
    """
    T, B, n_in = xs.shape
    N, n_out = p["Wz_weight"].shape[1], p["Wo_weight"].shape[1]
    a = decay
    w_h_hidden = p["Wh_weight"][n_in:]

    def window(carry, xy):
        h, traces, k, grads, total = carry
        x_win, y_win = xy

        def step(c, x):
            h, (ex_z, ex_h, ef_z, ef_h, eb_z, eb_h), k = c
            xh = jnp.concatenate([x, h], axis=-1)
            z = jax.nn.sigmoid(xh @ p["Wz_weight"] + p["Wz_bias"])
            r = jax.nn.sigmoid(xh @ p["Wr_weight"] + p["Wr_bias"])
            xrh = jnp.concatenate([x, r * h], axis=-1)
            cand = jnp.tanh(xrh @ p["Wh_weight"] + p["Wh_bias"])
            D, df_z, df_h = 1.0 - z, (cand - h) * z * (1.0 - z), z * (1.0 - cand**2)
            h_new = (1.0 - z) * h + z * cand
            ex_z, ex_h = a * ex_z + xh, a * ex_h + xrh
            ef_z, ef_h = a * D * ef_z + (1 - a) * df_z, a * D * ef_h + (1 - a) * df_h
            eb_z, eb_h = D * eb_z + df_z, D * eb_h + df_h
            inv_c = 1.0 / (1.0 - a ** (k + 1.0))
            # Wr's instantaneous gradient needs the step's inputs and gate values
            kept = (ex_z, ex_h, ef_z * inv_c, ef_h * inv_c, eb_z, eb_h, xh, h * r * (1.0 - r), df_h, h_new)
            return (h_new, (ex_z, ex_h, ef_z, ef_h, eb_z, eb_h), k + 1.0), kept

        (h, traces, k), kept = jax.lax.scan(step, (h, traces, k), x_win)
        ex_z, ex_h, ef_z, ef_h, eb_z, eb_h, xh, gate_r, df_h, hs = kept
        rows = K * B
        ys_hat = hs @ p["Wo_weight"] + p["Wo_bias"]
        d_y = 2.0 * (ys_hat - y_win) / (B * n_out)
        d_h = d_y @ p["Wo_weight"].T
        d_r = ((d_h * df_h) @ w_h_hidden.T) * gate_r  # through Wh's hidden input r ⊙ h
        flat = lambda v: v.reshape(rows, v.shape[-1])
        grads = {
            "Wz_weight": grads["Wz_weight"] + flat(ex_z).T @ flat(ef_z * d_h),
            "Wz_bias": grads["Wz_bias"] + jnp.sum(flat(eb_z * d_h), axis=0),
            "Wh_weight": grads["Wh_weight"] + flat(ex_h).T @ flat(ef_h * d_h),
            "Wh_bias": grads["Wh_bias"] + jnp.sum(flat(eb_h * d_h), axis=0),
            "Wr_weight": grads["Wr_weight"] + flat(xh).T @ flat(d_r),
            "Wr_bias": grads["Wr_bias"] + jnp.sum(flat(d_r), axis=0),
            "Wo_weight": grads["Wo_weight"] + flat(hs).T @ flat(d_y),
            "Wo_bias": grads["Wo_bias"] + jnp.sum(flat(d_y), axis=0),
        }
        total = total + jnp.sum(jnp.mean((ys_hat - y_win) ** 2, axis=(1, 2)))
        return (h, traces, k, grads, total), None

    dt = xs.dtype
    traces = (jnp.zeros((B, n_in + N), dt), jnp.zeros((B, n_in + N), dt)) + tuple(jnp.zeros((B, N), dt) for _ in range(4))
    grads = {name: jnp.zeros_like(v) for name, v in p.items()}
    carry = (jnp.zeros((B, N), dt), traces, jnp.zeros((), dt), grads, jnp.zeros((), dt))
    windows = (xs.reshape((T // K, K) + xs.shape[1:]), ys.reshape((T // K, K) + ys.shape[1:]))
    (_, _, _, grads, total), _ = jax.lax.scan(window, carry, windows)
    return grads, total


def _library_grads(grads: dict) -> dict[str, jax.Array]:
    """braintrace's ``{path: {name: grad}}`` in the names of :func:`lif_params` / :func:`gru_params`."""
    if ("cell", "Wz", "weight") in grads:
        out = {f"{g}_{n}": grads[("cell", g, "weight")][n] for g in ("Wz", "Wr", "Wh") for n in ("weight", "bias")}
        out.update(Wo_weight=grads[("readout", "weight")]["weight"], Wo_bias=grads[("readout", "weight")]["bias"])
        return out
    return {
        "w_in": grads[("w_in", "weight")]["weight"],
        "b_in": grads[("w_in", "weight")]["bias"],
        "w_rec": grads[("w_rec", "weight")]["weight"],
        "w_out": grads[("readout", "W")],
    }


def max_relative_difference(a: dict, b: dict) -> float:
    """``max_k max|a_k - b_k| / max|b_k|`` over the gradients of both."""
    return max(float(jnp.max(jnp.abs(a[k] - b[k])) / (jnp.max(jnp.abs(b[k])) + 1e-30)) for k in b)


def compare(spec: ModelSpec, K: int, rounds: int = 7) -> dict:
    """Per-step times of ``forward``, ``braintrace`` and ``by_hand`` (fastest and median calls)
    and ``max_rel_diff`` of the two gradients.

    Raises ``ValueError`` for a ``K`` that does not divide ``spec.T``.
    """
    if K < 1 or spec.T % K:
        raise ValueError(f"window K={K} must divide T={spec.T}")
    xs, ys = make_data(spec)
    model = build_model(spec)
    params, rule = (lif_params(model), hand_es_lif) if spec.kind == "lif" else (gru_params(model), hand_es_gru)
    fns: dict[str, Callable] = {
        "forward": brainstate.transform.jit(build_body("forward", build_model(spec), spec)),
        "braintrace": brainstate.transform.jit(build_body(f"es_d_rtrl_win{K}", model, spec)),
        # the parameters as arguments, as braintrace's are: closed over, they would be
        # compile-time constants, which XLA pre-packs and rewrites (e.g. splits
        # ``[x, h] @ W`` into two products)
        "by_hand": functools.partial(jax.jit(lambda p, xs, ys: rule(p, xs, ys, K)), params),
    }
    lib_grads, _ = fns["braintrace"](xs, ys)
    hand_grads, _ = fns["by_hand"](xs, ys)
    jax.block_until_ready(fns["forward"](xs, ys))  # compile (the others are)
    out: dict = time_in_rounds(fns, (xs, ys), spec.T, rounds)
    out["max_rel_diff"] = max_relative_difference(hand_grads, _library_grads(lib_grads))
    return out


def format_comparison(spec: ModelSpec, K: int, result: dict) -> str:
    """A markdown table of :func:`compare`'s times and their multiples of the forward step."""
    title = (f"{spec.name}, {K}-step windows; gradients: by hand vs braintrace, max relative "
             f"difference {result['max_rel_diff']:.2e}")
    return rounds_table(title, {name: result[name] for name in ("forward", "braintrace", "by_hand")})


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lif-256", help="lif-N or gru-N (default lif-256)")
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--window", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    spec = spec_from_name(args.model, args.T, args.batch)
    text = format_comparison(spec, args.window, compare(spec, args.window, args.rounds))
    print(text, flush=True)
    return text


if __name__ == "__main__":
    main()
