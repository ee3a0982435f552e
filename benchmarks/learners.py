"""Every learner side by side: memory order, time per step, gradient cosine with BPTT.

Run from the repository root::

    python -m benchmarks.learners --out learners.json --md learners.md --plot docs/img/learners_cosine.png
    python -m benchmarks.learners --quick --out quick.json     # small sizes, a few minutes on 2 CPU cores

The learners are those of :data:`braintrace.algorithms.catalog.LEARNERS` (a
learner added there is measured here too, with the keyword arguments of
:func:`learner_options`), plus BPTT and the forward pass for reference.
Measurements:

- *time per step*: one whole sequence (``--T`` steps, batch 16, random
  targets, mean-squared error) through :func:`braintrace.online_gradients`
  (the learner's default window; for learners that keep every step's traces
  of a window, the longest whose traces fit in ``--max-trace-gb``), jitted; every learner's
  body is compiled, then ``--repeats`` rounds call each once in turn; the
  fastest call (the median and the CPU time are in the JSON), divided by ``T``;
  on the models of
  :mod:`benchmarks.models` (``GRU-128`` and ``LIF-1024`` by default). A learner
  whose traces would exceed ``--max-trace-gb`` is not run.
- *cosine with BPTT*: the copying task (recall ``L = min(5, T // 2)`` symbols
  of 4 after a delay, sequence length ``T``; cross-entropy on the recall steps), the summed
  online gradient against BPTT's at the initial weights, over the weights of
  the recurrent layer (a read-out that reaches no hidden state has the same
  gradient under every learner) and over all weights; the mean over
  ``--seeds`` batches of ``--copy-batch``. ``GRU-64`` and ``LIF-128`` at ``--copy-T``, and the
  sweep over ``--sweep-T`` on the GRU for the figure.

Nothing here asserts on the numbers. A learner that refuses a model (or fails)
gets its message in the JSON instead of a number (in the table: ``refused``, or
``— (influence 1.3e8 entries)`` / ``— (traces 2.5 GiB)`` for a learner skipped by a limit).

``--merge`` adds the learners measured now to the results already in ``--out``
(the other learners' entries, ``forward`` among them, are kept; this run's settings,
machine, commit and load average go to ``meta['runs']``) and writes ``--md`` and
``--plot`` from the merged results::

    python -m benchmarks.learners --learners uoro --out docs/data/learners_cpu.json --merge \
        --md docs/data/learners_cpu.md --plot docs/img/learners_cosine.png
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import statistics
import sys
import time
import traceback
import warnings
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/learners.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import optax

import braintrace
from braintrace.algorithms.catalog import LEARNERS, learner_class
from braintrace.cli.train import target_projections

from benchmarks.measure import machine_info
from benchmarks.models import GRUNet, ModelSpec, RecurrentLIFNet, build_model, make_data, mse_loss

__all__ = ["learner_options", "build_learner", "time_per_step", "copying_cosine", "format_table", "plot",
           "merge_results", "main"]

#: reference rows besides the catalog's learners
BPTT, FORWARD = "bptt", "forward"
#: learners that keep (or, for SnAp, push forward) the dense influence ``N·|θ|`` (``N`` hidden values, batch
#: included), at ``|θ|`` forward passes per step: skipped above ``--max-influence`` entries. On 2 CPU cores,
#: batch 16: RTRL on GRU-128 (1.3e8 entries) took 2 GB and 7.5 s per step; GRU-64 (1.4e7) and LIF-128 (4.8e7)
#: under 1 GB for RTRL and SnAp; LIF-1024 has 1.8e10 entries
DENSE_INFLUENCE = frozenset({"rtrl", "snap"})
#: the decays of the benchmark models (LIF tau = 20 steps, leaky read-out 0.9)
LIF_LEAK, READOUT_DECAY = math.exp(-1.0 / 20.0), 0.9


def learner_options(name: str, kind: str) -> dict:
    """The keyword arguments of learner ``name`` on a ``'gru'`` or ``'lif'`` model (``{}`` for learners not listed).

    Examples
    --------
    >>> from benchmarks.learners import learner_options
    >>> learner_options("eprop", "lif"), learner_options("eprop", "gru")
    ({'kappa_filter_decay': 0.9}, {})
    """
    leak = LIF_LEAK if kind == "lif" else 0.9
    table: dict[str, dict] = {
        "es_d_rtrl": {"decay_or_rank": 0.9},
        "ostl_ff": {"decay_or_rank": 0.9},
        # the κ filter matches a leaky read-out; the GRU's read-out is not leaky
        "eprop": {"kappa_filter_decay": READOUT_DECAY} if kind == "lif" else {},
        "ottt": {"mode": "A", "leak": leak},
        "otpe": {"mode": "full", "leak": leak},
        "rflo": {"random_feedback_key": 0},
    }
    return dict(table.get(name, {}))


def build_learner(name: str, model: Any, example: Any, kind: str, n_target: int) -> Any:
    """A compiled learner (``osttp`` gets one fixed random target projection per hidden layer)."""
    kwargs = learner_options(name, kind)
    with warnings.catch_warnings():  # the compiler's notes (a GRU's reset gate learns from its instantaneous gradient)
        warnings.simplefilter("ignore", UserWarning)
        if name == "osttp":
            kwargs["B_list"] = target_projections(model, example, n_target, seed=0)
        return learner_class(name)(model, **kwargs).compile_graph(example)


def trace_bytes(learner: Any) -> int:
    """Bytes of the learner's traces (from their shapes, nothing allocated)."""
    leaves = jax.tree.leaves(learner.trace_shapes())
    return int(sum(math.prod(s.shape) * jnp.dtype(s.dtype).itemsize for s in leaves))


def _window(learner: Any, T: int, limit_bytes: float) -> Any:
    """``'auto'``, or for a learner that keeps every step's traces of a window (``traces_in_scan``), the
    longest window up to its default whose traces fit in ``limit_bytes`` (``None``: one step at a time)."""
    K = learner.default_window or 1
    if not learner.driver.rule.traces_in_scan or K == 1 or math.isinf(limit_bytes):
        return "auto"
    fit = min(K, int(limit_bytes // max(trace_bytes(learner), 1)))
    divisors = [k for k in range(fit, 1, -1) if T % k == 0]
    return divisors[0] if divisors else None


def _target_grads(learner: Any, loss_fn: Any, batch: int) -> Any:
    """``grads(xs, ys, projected)`` for a learner called as ``learner(x, y_target)`` (OSTTP)."""
    params = learner.model.states(brainstate.ParamState)

    def grad_fn(xs, ys, projected):
        learner.reset(batch)

        def step(acc, inp):
            x, y, p = inp
            g = brainstate.transform.grad(lambda: loss_fn(learner(x, p), y), params)()
            return jax.tree.map(jnp.add, acc, g), None

        zeros = jax.tree.map(jnp.zeros_like, {k: v.value for k, v in params.items()})
        return brainstate.transform.scan(step, zeros, (xs, ys, projected))[0]

    return grad_fn


def dense_influence_size(model: Any) -> int:
    """``N·|θ|``: the model's hidden values (batch included) times its parameter entries."""
    n = sum(int(np.size(s.value)) for s in model.states(brainstate.HiddenState).values())
    p = sum(int(np.size(leaf)) for s in model.states(brainstate.ParamState).values() for leaf in jax.tree.leaves(s.value))
    return n * p


def gradient_function(name: str, model: Any, example: Any, kind: str, n_out: int, batch: int, loss_fn: Any,
                      T: int, max_trace_bytes: float, max_influence: float = float("inf")) -> tuple[Any, dict]:
    """``(grads(xs, ys, projected), info)`` for a learner name, ``'bptt'`` or ``'forward'`` (its summed loss)."""
    if name == FORWARD:
        def forward(xs, ys, projected):
            brainstate.nn.reset_all_states(model, batch_size=batch)
            outs = brainstate.transform.for_loop(model, xs)
            return jnp.sum(jax.vmap(loss_fn)(outs, ys))
        return forward, {}
    if name == BPTT:
        return (lambda xs, ys, p: braintrace.bptt_gradients(model, xs, ys, loss_fn, batch_size=batch)[0]), {}
    if name in DENSE_INFLUENCE and dense_influence_size(model) > max_influence:
        raise MemoryError(f"the dense influence has {dense_influence_size(model):,} entries, over --max-influence")
    learner = build_learner(name, model, example, kind, n_out)
    size = trace_bytes(learner)
    info = {"trace_bytes": size}
    if size > max_trace_bytes:
        raise MemoryError(f"traces of {size / 2**30:.2f} GiB exceed --max-trace-gb")
    if name == "osttp":
        return _target_grads(learner, loss_fn, batch), info
    window = _window(learner, T, max_trace_bytes)
    info["window"] = window
    return (lambda xs, ys, p: braintrace.online_gradients(
        learner, xs, ys, loss_fn, batch_size=batch, window=window)[0]), info


def _block(tree: Any) -> None:
    jax.block_until_ready(tree)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_per_step(names: list[str], spec: ModelSpec, repeats: int, max_trace_bytes: float,
                  max_influence: float = float("inf")) -> dict:
    """``{name: entry}``: seconds per step of one sequence of ``spec`` for every name, or why there is none.

    Every body is compiled first; then ``repeats`` rounds call each body once in turn, so that a
    load that drifts on a shared machine reaches every learner alike. ``time_per_step_s`` is the
    fastest call (the others waited for the cores), ``median_per_step_s`` the median, ``cpu_per_step_s``
    the process's CPU time (all threads) of the fastest call.
    """
    bodies, out = {}, {}
    xs, ys = make_data(spec)
    example = jnp.zeros((spec.batch, spec.n_in), jnp.float32)
    for name in names:
        try:
            model = build_model(spec)
            t0 = time.perf_counter()
            fn, info = gradient_function(name, model, example, spec.kind, spec.n_out, spec.batch, mse_loss, spec.T,
                                         max_trace_bytes, max_influence)
            body = brainstate.transform.jit(fn)
            _block(body(xs, ys, ys))
            bodies[name] = body
            out[name] = {**info, "compile_and_first_s": time.perf_counter() - t0, "times_s": [], "cpu_s": []}
        except Exception as err:  # noqa: BLE001 -- a learner's refusal is a result
            out[name] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            traceback.print_exc(limit=1)
    for _ in range(repeats):
        for name, body in bodies.items():
            t0, c0 = time.perf_counter(), _cpu_s()
            _block(body(xs, ys, ys))
            out[name]["times_s"].append(time.perf_counter() - t0)
            out[name]["cpu_s"].append(_cpu_s() - c0)
    for name in bodies:
        entry = out[name]
        best = int(np.argmin(entry["times_s"]))
        entry["time_per_step_s"] = entry["times_s"][best] / spec.T
        entry["median_per_step_s"] = statistics.median(entry["times_s"]) / spec.T
        entry["cpu_per_step_s"] = entry["cpu_s"][best] / spec.T
    return out


# -- the copying task -------------------------------------------------------------------------


def copying_batch(T: int, batch: int, seed: int, n_symbols: int = 4, length: int = 5) -> tuple:
    """Time-major inputs ``(T, B, n_symbols + 1)``, labels and recall mask ``(T, B)``: recall ``length``
    symbols in order after a delay of ``T - 2 length`` steps, cued by the last input channel.

    Examples
    --------
    >>> from benchmarks.learners import copying_batch
    >>> x, (labels, mask) = copying_batch(12, 2, 0)
    >>> x.shape, float(mask.sum())
    ((12, 2, 5), 10.0)
    """
    delay = T - 2 * length
    if delay < 0:
        raise ValueError(f"copying_batch: T={T} is shorter than twice the {length} symbols.")
    rng = np.random.RandomState(seed)
    symbols = rng.randint(0, n_symbols, size=(batch, length))
    x = np.zeros((T, batch, n_symbols + 1), np.float32)
    labels = np.zeros((T, batch), np.int32)
    mask = np.zeros((T, batch), np.float32)
    for k in range(length):
        x[k, np.arange(batch), symbols[:, k]] = 1.0
        labels[length + delay + k] = symbols[:, k]
        mask[length + delay + k] = 1.0
    x[length + delay:, :, n_symbols] = 1.0
    return jnp.asarray(x), (jnp.asarray(labels), jnp.asarray(mask))


def _copy_loss(logits: Any, target: Any) -> Any:
    labels, mask = target
    return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels) * mask)


def _cosine(a: dict, b: dict, keep: Any) -> float:
    pa = [np.ravel(np.asarray(v)) for k, v in sorted(a.items(), key=str) if keep(k)]
    pb = [np.ravel(np.asarray(b[k])) for k in sorted(a, key=str) if keep(k)]
    va, vb = np.concatenate(pa), np.concatenate(pb)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-30))


def _flat(grads: dict) -> dict:
    return {(k, i): leaf for k, v in grads.items() for i, leaf in enumerate(jax.tree.leaves(v))}


def copying_cosine(names: list[str], kind: str, hidden: int, T: int, seeds: int, batch: int = 4,
                   max_influence: float = float("inf")) -> dict:
    """``{name: {'hidden': cos, 'all': cos}}`` with BPTT on the copying task (mean over ``seeds`` batches)."""
    n_in, n_out = 5, 4
    out: dict[str, Any] = {}
    per: dict[str, list] = {n: [] for n in names}
    layer = ("cell",) if kind == "gru" else ("w_in", "w_rec", "lif")
    for seed in range(seeds):
        xs, target = copying_batch(T, batch, seed, length=min(5, T // 2))
        projected = jax.nn.one_hot(target[0], n_out) * target[1][..., None]
        model = GRUNet(n_in, hidden, n_out, seed=seed) if kind == "gru" else RecurrentLIFNet(n_in, hidden, n_out, seed)
        brainstate.nn.init_all_states(model, batch_size=batch)
        example = jnp.zeros((batch, n_in), jnp.float32)
        ref = _flat(braintrace.bptt_gradients(model, xs, target, _copy_loss, batch_size=batch)[0])
        for name in names:
            if isinstance(out.get(name), str):
                continue
            try:
                fn, _ = gradient_function(name, model, example, kind, n_out, batch, _copy_loss, T, float("inf"),
                                          max_influence)
                got = _flat(brainstate.transform.jit(fn)(xs, target, projected))
            except Exception as err:  # noqa: BLE001 -- a learner's refusal is a result
                out[name] = f"{type(err).__name__}: {str(err).splitlines()[0]}"
                continue
            per[name].append((_cosine(got, ref, lambda k: k[0][0] in layer), _cosine(got, ref, lambda k: True)))
    for name in names:
        if name not in out and per[name]:
            out[name] = {"hidden": float(np.mean([c[0] for c in per[name]])),
                         "all": float(np.mean([c[1] for c in per[name]]))}
    return out


# -- output -------------------------------------------------------------------------------------


def _memory(name: str) -> str:
    if name == BPTT:
        return "O(T·B·N)"
    if name == FORWARD:
        return "-"
    return next((s.memory for s in LEARNERS if s.name == name), "") or "?"


def _why_not(entry: Any) -> str:
    """The table cell of an entry that is not a number: ``n/a``, the limit that skipped it, or ``refused``.

    Examples
    --------
    >>> from benchmarks.learners import _why_not
    >>> _why_not("MemoryError: the dense influence has 18,119,393,280 entries, over --max-influence")
    '— (influence 1.8e10 entries)'
    """
    if entry is None:
        return "n/a"
    m = re.search(r"dense influence has ([\d,]+) entries", entry)
    if m:
        mant, exp = f"{int(m.group(1).replace(',', '')):.1e}".split("e")
        return f"— (influence {mant}e{int(exp)} entries)"
    m = re.search(r"traces of ([\d.]+) GiB exceed", entry)
    return f"— (traces {m.group(1)} GiB)" if m else "refused"


def _fmt_time(entry: Any) -> str:
    return f"{entry['time_per_step_s'] * 1e3:.2f}" if isinstance(entry, dict) else _why_not(entry)


def _fmt_cos(entry: Any) -> str:
    return f"{entry['hidden']:.3f} ({entry['all']:.3f})" if isinstance(entry, dict) else _why_not(entry)


def format_table(result: dict) -> str:
    """A markdown table: learner, memory order, ms per step per model, cosine per copying model."""
    time_models = result["meta"]["time_models"]
    copy_models = result["meta"]["copy_models"]
    T = result["meta"]["copy_T"]
    head = ["learner", "trace memory"] + [f"ms/step {m}" for m in time_models]
    head += [f"cos BPTT, copying T={T}, {m}" for m in copy_models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in result["rows"].items():
        cells = [f"`{name}`", row["memory"].replace("|", "\\|")]  # a pipe would end the cell
        cells += [_fmt_time(row["time"].get(m)) for m in time_models]
        cells += [_fmt_cos(row["cosine"].get(m)) for m in copy_models]
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    for name, row in result["rows"].items():
        for what in ("time", "cosine"):
            for m, entry in row[what].items():
                if isinstance(entry, str):
                    notes.append(f"- `{name}`, {what} on {m}: {entry}")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def plot(result: dict, path: str) -> bool:
    """Cosine with BPTT against the sequence length (the sweep), one line per learner; ``False`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sweep = result.get("sweep", {})
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles, markers = ["-", "--", ":", "-."], "os^vDx+*<>phd"
    colors = [f"C{i}" for i in range(10)] + ["#556b2f", "#d6278f", "#6b4c9a", "#b8860b"]
    for i, (name, by_T) in enumerate(sweep.items()):
        pts = sorted((int(T), v["hidden"]) for T, v in by_T.items() if isinstance(v, dict))
        if pts and name == BPTT:  # the reference, a thin line under the learners that reach it (RTRL)
            ax.plot(*zip(*pts), color="k", lw=0.8, zorder=1, label=name)
        elif pts:  # learners with equal gradients overlap: markers and dashes tell them apart
            ax.plot(*zip(*pts), marker=markers[i % len(markers)], ms=5, mfc="none", ls=styles[i % len(styles)],
                    color=colors[i % len(colors)], label=name)
    ax.set_xscale("log")
    ax.set(xlabel="sequence length T (copying task)", ylabel="cosine with BPTT (recurrent layer)",
           title=f"gradient cosine with BPTT, {result['meta']['sweep_model']}, mean of {result['meta']['seeds']} batches")
    ax.axhline(0.0, color="0.7", lw=0.6)
    ax.legend(frameon=False, fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _spec(name: str, T: int) -> ModelSpec:
    kind, size = name.lower().split("-")
    return ModelSpec(kind, int(size), T)


def _save(result: dict, path: str | None, base: dict | None = None) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(result if base is None else merge_results(base, result), f, indent=1)


#: settings that must agree between merged runs (for the parts measured)
_TIME_SETTINGS, _COPY_SETTINGS = ("T",), ("copy_T", "sweep_model", "sweep_T", "seeds", "copy_batch")


def _row_order(name: str) -> tuple:
    order = [s.name for s in LEARNERS] + [BPTT, FORWARD]
    return (order.index(name), "") if name in order else (len(order), name)


def merge_results(base: dict, new: dict) -> dict:
    """``base`` with the learners measured in ``new`` added or replaced, entry by entry (model by model, T by T).

    Only the learners ``new`` was asked for (``new['meta']['learners']``) are taken: ``forward``, timed in
    every run as a reference, stays as it is in ``base`` (this run's is in its ``meta['runs']`` record).
    ``new``'s settings, machine and load average are recorded in ``meta['runs']``; a setting that differs
    from ``base``'s for a part that was measured raises ``ValueError``.
    """
    out = json.loads(json.dumps(base))
    meta, nmeta = out["meta"], new["meta"]
    parts = [p for p in ("time", "cosine") if nmeta["measured"][p]]
    for key in (_TIME_SETTINGS if "time" in parts else ()) + (_COPY_SETTINGS if "cosine" in parts else ()):
        if key in meta and key in nmeta and meta[key] != nmeta[key]:
            raise ValueError(f"--merge: {key}={nmeta[key]!r} differs from {meta[key]!r} in the merged results")
    names = nmeta["learners"]
    run_key = f"{'+'.join(parts) or 'nothing'}: {','.join(names)}"
    record = {k: nmeta[k] for k in ("argv", "started", "machine", "load_average", "complete") if k in nmeta}
    record.update({k: nmeta[k] for k in ("load_average_end",) if k in nmeta})
    settings = _TIME_SETTINGS + _COPY_SETTINGS + ("time_models", "copy_models", "max_influence", "repeats")
    record.update({k: nmeta[k] for k in settings if k in nmeta})
    if FORWARD not in names and new["rows"].get(FORWARD, {}).get("time"):
        record["forward_time"] = new["rows"][FORWARD]["time"]
    meta.setdefault("runs", {})[run_key] = record
    for key, part in (("time_models", "time"), ("copy_models", "cosine")):
        if part in parts:
            meta[key] = list(dict.fromkeys(list(meta.get(key, [])) + list(nmeta[key])))
    meta.setdefault("options", {}).update({n: nmeta["options"][n] for n in names if n in nmeta.get("options", {})})
    rows = out.setdefault("rows", {})
    for name in names:
        row = rows.setdefault(name, {"memory": new["rows"][name]["memory"], "time": {}, "cosine": {}})
        row["memory"] = new["rows"][name]["memory"]
        for what in ("time", "cosine"):
            row.setdefault(what, {}).update(new["rows"][name][what])
            if new["rows"][name][what]:
                row.setdefault("runs", {})[what] = run_key
        if name in new.get("sweep", {}):
            out.setdefault("sweep", {}).setdefault(name, {}).update(new["sweep"][name])
    out["rows"] = dict(sorted(rows.items(), key=lambda kv: _row_order(kv[0])))
    out["sweep"] = dict(sorted(out.get("sweep", {}).items(), key=lambda kv: _row_order(kv[0])))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks.learners", description=__doc__.split("\n\n")[0])
    p.add_argument("--learners", help="comma-separated catalog names (default: every learner, then bptt)")
    p.add_argument("--time-models", default="gru-128,lif-1024", help="models timed (default: %(default)s)")
    p.add_argument("--T", type=int, default=100, help="steps of a timed sequence (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls after the warm-up (default: %(default)s)")
    p.add_argument("--copy-models", default="gru-64,lif-128", help="models of the copying cosine")
    p.add_argument("--copy-T", type=int, default=100, help="copying sequence length of the table")
    p.add_argument("--sweep-T", default="2,4,10,25,50,100,200", help="copying lengths of the figure (GRU)")
    p.add_argument("--seeds", type=int, default=3, help="copying batches averaged (default: %(default)s)")
    p.add_argument("--max-trace-gb", type=float, default=2.0,
                   help="skip a learner whose traces exceed this; a window keeps at most this many bytes of traces")
    p.add_argument("--max-influence", type=float, default=2**26,
                   help="skip RTRL/SnAp where the dense influence N·|θ| has more entries (default: %(default)s; "
                        "GRU-128 at batch 16 has 1.3e8, at 7.5 s per step for RTRL on 2 CPU cores)")
    p.add_argument("--copy-batch", type=int, default=4, help="sequences per copying batch (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="small sizes: GRU-32, LIF-128, T=20, one seed")
    p.add_argument("--skip-time", action="store_true", help="measure the cosines only")
    p.add_argument("--skip-cosine", action="store_true", help="measure the times only")
    p.add_argument("--out", help="JSON file (rewritten after each measurement)")
    p.add_argument("--md", help="markdown table file")
    p.add_argument("--plot", help="PNG of the cosine sweep")
    p.add_argument("--merge", action="store_true",
                   help="add the learners measured now to the results in --out (the others kept); --md and --plot "
                        "are written from the merged results")
    args = p.parse_args(argv)
    if args.merge and not args.out:
        p.error("--merge needs --out (the results to merge into)")
    base = None
    if args.merge and os.path.exists(args.out):
        with open(args.out) as f:
            base = json.load(f)
    if args.quick:
        args.time_models, args.T, args.copy_models = "gru-32,lif-128", 20, "gru-16,lif-32"
        args.copy_T, args.sweep_T, args.seeds, args.repeats = 24, "12,24", 1, 1
    names = args.learners.split(",") if args.learners else [s.name for s in LEARNERS] + [BPTT]
    time_models = args.time_models.split(",")
    copy_models = [m.upper() for m in args.copy_models.split(",")]
    sweep_T = [int(t) for t in args.sweep_T.split(",")]
    result: dict[str, Any] = {
        "meta": {
            "machine": machine_info(), "load_average": os.getloadavg(), "argv": sys.argv[1:] if argv is None else argv,
            "time_models": [m.upper() for m in time_models], "T": args.T, "copy_models": copy_models,
            "copy_T": args.copy_T, "sweep_model": copy_models[0], "sweep_T": sweep_T, "seeds": args.seeds,
            "copy_batch": args.copy_batch, "max_influence": args.max_influence, "repeats": args.repeats,
            "learners": names, "measured": {"time": not args.skip_time, "cosine": not args.skip_cosine},
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "complete": False,
            "options": {n: {k: learner_options(n, k) for k in ("gru", "lif")} for n in names},
        },
        "rows": {n: {"memory": _memory(n), "time": {}, "cosine": {}} for n in names + [FORWARD]},
        "sweep": {},
    }
    if base is not None:
        try:  # a setting that differs from the merged results': refused before measuring anything
            merge_results(base, result)
        except ValueError as err:
            p.error(str(err))
    limit = args.max_trace_gb * 2**30
    for model in [] if args.skip_time else time_models:
        spec = _spec(model, args.T)
        for name, entry in time_per_step(names + [FORWARD], spec, args.repeats, limit, args.max_influence).items():
            result["rows"][name]["time"][spec.model_name] = entry
            print(f"{spec.model_name} {name}: {_fmt_time(entry)} ms/step", flush=True)
        _save(result, args.out, base)
    for model in [] if args.skip_cosine else copy_models:
        kind, size = model.lower().split("-")
        cos = copying_cosine(names, kind, int(size), args.copy_T, args.seeds, args.copy_batch, args.max_influence)
        for name in names:
            result["rows"][name]["cosine"][model] = cos.get(name)
        print(f"copying {model}: " + ", ".join(f"{n} {_fmt_cos(cos.get(n))}" for n in names), flush=True)
        _save(result, args.out, base)
    kind, size = copy_models[0].lower().split("-")
    for T in [] if args.skip_cosine else sweep_T:
        cos = copying_cosine(names, kind, int(size), T, args.seeds, args.copy_batch, args.max_influence)
        for name in names:
            result["sweep"].setdefault(name, {})[str(T)] = cos.get(name)
        print(f"sweep T={T} done", flush=True)
        _save(result, args.out, base)
    result["meta"]["complete"] = True
    result["meta"]["load_average_end"] = os.getloadavg()
    _save(result, args.out, base)
    if base is not None:
        result = merge_results(base, result)
    table = format_table(result)
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table)
    if args.plot:
        plot(result, args.plot)
    return result


if __name__ == "__main__":
    main()
