"""Whole-brain scale on one device: the connectome-like network of ``examples/whole_brain_scale.py``.

At ``--scale 1`` (139,255 LIF neurons, about 50 million synapses, batch 1) one
run measures, in this order and within ``--budget`` seconds (later items are
skipped, with the reason, when the time left would not cover them):

1. the connectome's generation (NumPy) and its event-driven structure;
2. the forward pass over ``T`` steps (inference, event-driven recurrence),
   with the spike statistics: firing rate, active synapse blocks per step
   and the steps over the event path's capacity (which take the CSR product);
3. ES_D_RTRL with ``--window``-step windows (``online_gradients``): braintrace's
   graph compilation, tracing/lowering and XLA compile time, time per step,
   XLA's memory analysis and the device's peak memory;
4. BPTT over the same ``T`` steps: compiled for its memory, run if it fits;
5. training: online ES_D_RTRL with an Adam step after every window, for
   ``--train-steps`` steps: the loss curve and the time per step (the weights
   are restored afterwards);
6. ES_D_RTRL one step at a time (no windows);
7. ES_D_RTRL with windows on the CSR product (``events=False``): what the
   event-driven product saves;
8. ES_D_RTRL with windows over ``10 T`` steps, compiled only: its memory does
   not grow with the sequence;
9. compile time against the window length, and with the loops unrolled 10
   steps per iteration as before (``--unroll-check``).

Run (a GPU; about 8 minutes at ``--scale 1``)::

    python -m benchmarks.whole_brain --scale 1 --out wb        # writes wb/whole_brain.json
    python -m benchmarks.whole_brain --report wb               # wb/whole_brain.md and wb/whole_brain_loss.png
    python -m benchmarks.whole_brain --quick --out wb_cpu      # a CPU smoke run (about a minute)
    python -m benchmarks.whole_brain --compile-sweep --out sw  # compile time vs size, window, unroll (CPU)

The JSON is rewritten after every item, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import traceback
import warnings
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/whole_brain.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

import braintrace
from benchmarks.measure import machine_info, peak_rss_mb
from benchmarks.op_profile import op_profile

__all__ = ["load_example", "main"]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON_NAME = "whole_brain.json"


def load_example():
    """``examples/whole_brain_scale.py`` as a module (the examples are scripts, not a package)."""
    path = os.path.join(REPO, "examples", "whole_brain_scale.py")
    spec = importlib.util.spec_from_file_location("whole_brain_scale", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _device_memory() -> dict:
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory stats
        return {}
    out = {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_mb"] = stats["peak_bytes_in_use"] / 2**20
    if "bytes_limit" in stats:
        out["device_limit_mb"] = stats["bytes_limit"] / 2**20
    return out


def _memory(compiled) -> dict:
    out = {}
    mem = compiled.memory_analysis()
    for field in ("temp", "argument", "output", "alias", "generated_code"):
        value = getattr(mem, f"{field}_size_in_bytes", None) if mem is not None else None
        if value is not None:
            out[f"{field}_bytes"] = int(value)
    return out


def compile_body(body, *args) -> tuple[Any, Any, dict]:
    """``(compiled, state values, record)``: ``brainstate.transform.jit(body)`` lowered and compiled."""
    rec: dict = {}
    jitted = brainstate.transform.jit(body)
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    rec["lower_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    rec["compile_s"] = time.perf_counter() - t0
    rec.update(_memory(compiled))
    return compiled, jitted.stateful_fun.get_state_trace(*args).get_state_values(), rec


def time_compiled(compiled, state_vals, args, steps: int, repeats: int) -> dict:
    """Median wall time of ``repeats`` calls after one warm-up, per call and per step."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(state_vals, *args))
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(state_vals, *args))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"warmup_s": warm, "times_s": times, "time_s": med, "time_per_step_s": med / steps,
            "min_per_step_s": min(times) / steps, "result": out[1]}


class Run:
    """The state of one benchmark run: the record, the budget and the JSON file."""

    def __init__(self, args):
        self.args = args
        self.start = time.perf_counter()
        self.record: dict = {"meta": {"machine": machine_info(), "args": vars(args), "complete": False},
                             "measurements": {}, "skipped": {}}
        os.makedirs(args.out, exist_ok=True)
        self.path = os.path.join(args.out, JSON_NAME)

    def left(self) -> float:
        return self.args.budget - (time.perf_counter() - self.start)

    def save(self):
        self.record["meta"]["elapsed_s"] = time.perf_counter() - self.start
        with open(self.path, "w") as f:
            json.dump(self.record, f, indent=1, default=float)

    def item(self, name: str, fn, need_s: float = 0.0):
        """Run ``fn() -> dict`` as measurement ``name`` unless less than ``need_s`` (> 0) seconds are left."""
        if need_s > 0 and self.left() < need_s:
            self.record["skipped"][name] = f"{self.left():.0f} s left of the budget, about {need_s:.0f} s needed"
            print(f"[{name}] skipped: {self.record['skipped'][name]}", flush=True)
            self.save()
            return None
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the compiler's notes
                rec = fn()
        except Exception as err:  # noqa: BLE001 - recorded, the run goes on
            rec = {"status": "error", "reason": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc(limit=10)}
        rec.setdefault("status", "ok")
        rec["item_s"] = time.perf_counter() - t0
        rec["rss_peak_mb"] = peak_rss_mb()
        rec.update(_device_memory())
        self.record["measurements"][name] = rec
        self.save()
        shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in rec.items()
                 if k not in ("traceback", "losses", "times_s", "rates", "active_fraction")}
        print(f"[{name}] {shown}", flush=True)
        return rec


def _unroll(n: int | None):
    """A context forcing the window loops' unroll to ``n`` (``None``: braintrace's rule)."""
    import contextlib

    from braintrace.executor import driver

    @contextlib.contextmanager
    def ctx():
        if n is None:
            yield
            return
        original = driver.window_unroll
        driver.window_unroll = lambda K, **_: max(1, min(int(K), n))
        try:
            yield
        finally:
            driver.window_unroll = original

    return ctx()


def benchmark(args) -> dict:
    W = load_example()
    run = Run(args)
    n = W.neurons_from(args)
    T, K = args.T, args.window
    built: dict = {}

    def build(events="auto"):
        t0 = time.perf_counter()
        c, model, recorded = W.build(n, round(args.degree * n), n_in=args.inputs, max_active=args.max_active,
                                     events=events, seed=args.seed, connectome=built.get("c"))
        return c, model, recorded, time.perf_counter() - t0

    def connectome():
        c, model, recorded, seconds = build()
        built.update(c=c, model=model, recorded=recorded)
        task = W.make_task(max(10 * T, args.train_steps), args.inputs, len(recorded), seed=args.seed + 3)
        built["xs"], built["ys"] = jnp.asarray(task.inputs), jnp.asarray(task.targets)
        s = model.rec.structure
        deg, indeg = c.out_degree(), c.in_degree()
        return {"neurons": c.n, "synapses": c.nnz, "modules": int(len(np.unique(c.module))),
                "excitatory_fraction": float(c.excitatory.mean()), "generate_s": c.seconds, "build_s": seconds,
                "out_degree": {"mean": float(deg.mean()), "median": float(np.median(deg)), "max": int(deg.max())},
                "in_degree": {"mean": float(indeg.mean()), "median": float(np.median(indeg)), "max": int(indeg.max())},
                "recorded": len(recorded), "events": bool(model.rec.events),
                "blocks": s.n_blocks if s is not None else None, "block": s.block if s is not None else None,
                "capacity_blocks": s.capacity if s is not None else None}

    if run.item("connectome", connectome) is None or "model" not in built:
        return run.record
    model, xs, ys = built["model"], built["xs"][:T], built["ys"][:T]
    mse = W.mse

    def _profile(rec, compiled, state_vals, call_args, steps):
        if args.profile:  # the operations of one more call: where a step's time goes
            p = op_profile(lambda *a: compiled(state_vals, *a), *call_args, top=args.profile)
            rec["profile"] = dict(p, steps=steps, ops_ms_per_step=p["ops_ms"] / steps)

    def forward():
        blocks_per_row = None
        if model.rec.structure is not None:
            s = model.rec.structure
            blocks_per_row = jnp.asarray(np.bincount(s.block_row, minlength=s.n_rows).astype(np.float32))

        def body(xs, ys):
            brainstate.nn.reset_all_states(model)

            def step(x):
                out = model(x)
                spk = model.lif.get_spike()
                act = spk @ blocks_per_row if blocks_per_row is not None else jnp.zeros(())
                return out, jnp.mean(spk), act

            outs, rates, active = brainstate.transform.for_loop(step, xs)
            return jnp.sum(jax.vmap(mse)(outs, ys)), rates, active

        compiled, state_vals, rec = compile_body(body, xs, ys)
        t = time_compiled(compiled, state_vals, (xs, ys), T, args.repeats)
        _profile(rec, compiled, state_vals, (xs, ys), T)
        loss, rates, active = t.pop("result")
        rates, active = np.asarray(rates), np.asarray(active)
        rec.update(t, loss=float(loss), rate_mean=float(rates.mean()), rate_max=float(rates.max()),
                   rates=rates[:: max(1, T // 200)].tolist())
        if model.rec.structure is not None:
            s = model.rec.structure
            frac = active / s.n_blocks
            rec.update(active_fraction_mean=float(frac.mean()), active_fraction_max=float(frac.max()),
                       over_capacity_steps=int(np.sum(active > s.capacity)),
                       active_fraction=frac[:: max(1, T // 200)].tolist())
        return rec

    def es_d_rtrl(window, unroll=None, timed=True, net=None, steps=T):
        net = net if net is not None else model
        X, Y = built["xs"][:steps], built["ys"][:steps]

        def fn():
            t0 = time.perf_counter()
            learner = braintrace.ES_D_RTRL(net, decay_or_rank=0.95).compile_graph(xs[0])
            graph_s = time.perf_counter() - t0
            with _unroll(unroll):
                compiled, state_vals, rec = compile_body(
                    lambda xs, ys: braintrace.online_gradients(learner, xs, ys, mse, window=window), X, Y)
            rec.update(graph_s=graph_s, window=window, unroll=unroll or "auto", T=steps,
                       step_size=learner.driver.step_size)
            if timed:
                t = time_compiled(compiled, state_vals, (xs, ys), T, args.repeats)
                rec.update(t, loss=float(t.pop("result")[1]))
                _profile(rec, compiled, state_vals, (xs, ys), T)
            return rec

        return fn

    def train():
        params = model.states(brainstate.ParamState)
        initial = {k: v.value for k, v in params.items()}
        try:
            return _train()
        finally:  # the later measurements use the initial weights again
            for k, v in initial.items():
                params[k].value = v

    def _train():
        learner = braintrace.ES_D_RTRL(model, decay_or_rank=0.95).compile_graph(xs[0])
        trainer, opt_state = W.make_trainer(model, learner, K, args.lr)
        chunk = T
        steps = (args.train_steps // chunk) * chunk
        X, Y = built["xs"][:steps], built["ys"][:steps]
        t0 = time.perf_counter()
        losses, times = [], []
        brainstate.nn.reset_all_states(model)
        for i in range(steps // chunk):
            t1 = time.perf_counter()
            chunk_losses, opt_state = trainer(X[i * chunk:(i + 1) * chunk], Y[i * chunk:(i + 1) * chunk], opt_state)
            losses.extend(np.asarray(chunk_losses).tolist())
            times.append(time.perf_counter() - t1)
        first = times[0]
        rest = statistics.median(times[1:]) if len(times) > 1 else first
        return {"steps": steps, "window": K, "chunk": chunk, "lr": args.lr, "losses": losses,
                "first_chunk_s": first,  # compilation included
                "time_per_step_s": rest / chunk, "total_s": time.perf_counter() - t0,
                "loss_first": float(np.mean(losses[: chunk // K])), "loss_last": float(np.mean(losses[-(chunk // K):]))}

    def bptt():
        compiled, state_vals, rec = compile_body(lambda xs, ys: braintrace.bptt_gradients(model, xs, ys, mse), xs, ys)
        need = sum(rec.get(k, 0) for k in ("temp_bytes", "argument_bytes", "output_bytes"))
        limit = _device_memory().get("device_limit_mb")
        rec["needs_mb"] = need / 2**20
        if limit is not None and need > 0.9 * limit * 2**20:
            rec.update(status="memory-only", reason=f"needs {need / 2**30:.1f} GiB, more than 90% of the device")
            return rec
        t = time_compiled(compiled, state_vals, (xs, ys), T, max(1, args.repeats // 2))
        rec.update(t, loss=float(t.pop("result")[1]))
        return rec

    def csr():
        _, net, _, seconds = build(events=False)
        rec = es_d_rtrl(K, net=net)()
        rec["build_s"] = seconds
        return rec

    run.item("forward", forward)
    esd = run.item(f"es_d_rtrl_win{K}", es_d_rtrl(K), need_s=30)
    guess = (esd or {}).get("compile_s", 20.0) + (esd or {}).get("lower_s", 10.0)
    run.item("bptt", bptt, need_s=2 * guess)
    run.item("train", train, need_s=guess + args.train_steps * 2e-3)
    run.item("es_d_rtrl_steps", es_d_rtrl(None), need_s=guess)
    run.item(f"es_d_rtrl_win{K}_csr", csr, need_s=2 * guess)
    run.item(f"compile_win{K}_T{10 * T}", es_d_rtrl(K, timed=False, steps=10 * T), need_s=guess * 1.5)
    for w in args.sweep_windows:
        if w != K and T % w == 0:
            run.item(f"compile_win{w}", es_d_rtrl(w, timed=False), need_s=guess * 1.5)
    if args.unroll_check:
        run.item(f"compile_win{K}_unroll10", es_d_rtrl(K, unroll=10, timed=False), need_s=guess * 8)
    run.record["meta"]["complete"] = True
    run.save()
    return run.record


def compile_sweep(args) -> dict:
    """Compile time of ES_D_RTRL windows (``online_gradients``) against size, window and unroll."""
    W = load_example()
    out: dict = {"meta": {"machine": machine_info(), "args": vars(args)}, "sweep": []}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "compile_sweep.json")
    for n in args.sweep_neurons:
        _, model, recorded = W.build(n, round(args.degree * n), n_in=args.inputs, max_active=args.max_active,
                                     seed=args.seed)
        for window in args.sweep_windows:
            task = W.make_task(2 * window, args.inputs, len(recorded), seed=args.seed + 3)
            xs, ys = jnp.asarray(task.inputs), jnp.asarray(task.targets)
            for unroll in args.sweep_unroll:
                learner = braintrace.ES_D_RTRL(model, decay_or_rank=0.95).compile_graph(xs[0])
                with warnings.catch_warnings(), _unroll(unroll):
                    warnings.simplefilter("ignore")
                    _, _, rec = compile_body(
                        lambda xs, ys: braintrace.online_gradients(learner, xs, ys, W.mse, window=window), xs, ys)
                rec.update(neurons=n, synapses=model.rec.structure.nnz if model.rec.events else None,
                           window=window, unroll=unroll or "auto")
                out["sweep"].append(rec)
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rec.items()}, flush=True)
                with open(path, "w") as f:
                    json.dump(out, f, indent=1)
    return out


def report(folder: str) -> str:
    """``whole_brain.md`` (a table) and ``whole_brain_loss.png`` (the loss curve) from ``whole_brain.json``."""
    with open(os.path.join(folder, JSON_NAME)) as f:
        rec = json.load(f)
    m, machine = rec["measurements"], rec["meta"]["machine"]
    c = m.get("connectome", {})
    lines = [f"# Whole-brain scale: {c.get('neurons', 0):,} neurons, {c.get('synapses', 0):,} synapses",
             "", f"{machine.get('device_kind')} ({machine.get('backend')}), jax {machine.get('jax')}, "
             f"braintrace {machine.get('braintrace')} ({machine.get('braintrace_commit')})", "",
             "| measurement | graph s | lower s | compile s | time / step | temp MiB | argument MiB | "
             "device peak MiB | note |", "|---|---|---|---|---|---|---|---|---|"]

    def mib(v):
        return f"{v / 2**20:.0f}" if isinstance(v, (int, float)) else ""

    def num(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else ""

    for name, r in m.items():
        if name == "connectome":
            continue
        step = r.get("time_per_step_s")
        note = r.get("reason", "") if r.get("status") != "ok" else ""
        if name == "forward" and "rate_mean" in r:
            note = (f"rate {r['rate_mean']:.3f}/step; active blocks {r.get('active_fraction_mean', 0):.3f} "
                    f"(max {r.get('active_fraction_max', 0):.3f}); {r.get('over_capacity_steps', 0)} steps over capacity")
        if name == "train":
            note = f"loss {r['loss_first']:.2e} -> {r['loss_last']:.2e} in {r['steps']} steps"
        lines.append(
            f"| {name} | {num(r.get('graph_s'), '.1f')} | {num(r.get('lower_s'), '.1f')} | "
            f"{num(r.get('compile_s'), '.1f')} | {num(step * 1e3, '.3f') + ' ms' if step else ''} | "
            f"{mib(r.get('temp_bytes'))} | {mib(r.get('argument_bytes'))} | {num(r.get('device_peak_mb'), '.0f')} | "
            f"{note} |")
    for name, why in rec.get("skipped", {}).items():
        lines.append(f"| {name} | | | | | | | | skipped: {why} |")
    for name, r in m.items():
        p = r.get("profile")
        if p:
            lines += ["", f"{name}: {p['ops_ms_per_step'] * 1e3:.1f} µs of {p['source']} operations per step "
                      f"({p['ops']} over {p['steps']} steps); the largest:", "", "| operation | ms | calls |",
                      "|---|---:|---:|"] + [f"| `{op}` | {ms:.2f} | {n} |" for op, ms, n in p["top"]]
    lines += ["", f"Connectome: generated in {c.get('generate_s', 0):.1f} s; out-degree {c.get('out_degree')}, "
              f"in-degree {c.get('in_degree')}; {c.get('modules')} modules; {c.get('blocks')} blocks of "
              f"{c.get('block')}, capacity {c.get('capacity_blocks')} blocks per step."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(folder, "whole_brain.md"), "w") as f:
        f.write(text)
    if "train" in m and m["train"].get("losses"):
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return text
        r = m["train"]
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.plot(np.arange(len(r["losses"])) * r["window"], r["losses"], lw=0.8)
        ax.set(xlabel="time step", ylabel="MSE per window", yscale="log",
               title=f"{c.get('neurons', 0):,} neurons, ES_D_RTRL online")
        fig.tight_layout()
        fig.savefig(os.path.join(folder, "whole_brain_loss.png"), dpi=90)
        plt.close(fig)
    return text


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def _unrolls(s: str) -> list[int | None]:
    return [None if v == "auto" else int(v) for v in s.split(",") if v]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="whole_brain_results", help="folder for the JSON")
    parser.add_argument("--report", metavar="FOLDER", help="write the markdown table and loss plot of a run")
    parser.add_argument("--scale", type=float, default=None, help="fraction of the fly connectome (1: full size)")
    parser.add_argument("--neurons", type=int, default=2000, help="neurons, when --scale is not given")
    parser.add_argument("--degree", type=float, default=None, help="mean synapses per neuron (default: the example's)")
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--max-active", type=float, default=0.1)
    parser.add_argument("--T", type=int, default=1000, help="steps of the timed sequences")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--train-steps", type=int, default=20000)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run")
    parser.add_argument("--sweep-windows", type=_ints, default=[10, 100])
    parser.add_argument("--unroll-check", action="store_true", help="also compile with 10-step unrolling")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="profile one more call of each timed item; keep its TOP largest operations")
    parser.add_argument("--compile-sweep", action="store_true", help="compile times only, against size and window")
    parser.add_argument("--sweep-neurons", type=_ints, default=[500, 1000, 2000, 4000])
    parser.add_argument("--sweep-unroll", type=_unrolls, default=[None, 10])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a CPU smoke run: 400 neurons, T=100")
    args = parser.parse_args(argv)
    if args.report:
        text = report(args.report)
        print(text)
        return text
    W = load_example()
    if args.degree is None:
        args.degree = W.FULL_SYNAPSES / W.FULL_NEURONS
    if args.quick:
        args.neurons, args.scale, args.degree, args.T, args.window = 400, None, 60.0, 100, 10
        args.train_steps, args.repeats, args.sweep_windows = 200, 1, [20]
    if args.compile_sweep:
        return compile_sweep(args)
    return benchmark(args)


if __name__ == "__main__":
    main()
