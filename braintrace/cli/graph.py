"""``braintrace graph MODULE:FACTORY``: which weights of a model learn online, and why.

The factory is imported from a module (pkg.models:make) or a file
(path/to/net.py:make) and called without arguments. It returns a model, or
(model, example_input) with the input of one time step; without an example
input, --input-shape gives its shape. A model whose states are not
initialised is initialised with --batch-size. The model is compiled with
braintrace.compile_etrace_graph and the compiler's diagnostics are printed
grouped by consequence: weights learned online (eligibility traces), weights
that receive their instantaneous gradient only (with the reason), and
parameters used through plain JAX operations. --dot writes the graph in
Graphviz DOT, with a legend; --png renders it with Graphviz's dot program.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import warnings
from typing import Any

from .train import positive_int

__all__ = ["add_parser", "run", "load_factory", "summarize", "to_dot", "data_flow", "REASONS", "LEGEND"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "graph",
        help="show which weights of a model learn online, which do not and why",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("factory", metavar="MODULE:FACTORY",
                   help="e.g. mypkg.nets:make_model or path/to/file.py:make_model")
    p.add_argument("--input-shape", type=_shape, metavar="N[,N...]",
                   help="shape of one time step of input, e.g. 10 or 32,10 (batched)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="batch size for initialising the model's states (default: unbatched)")
    p.add_argument("--dot", metavar="FILE", help="write the graph as Graphviz DOT")
    p.add_argument("--png", metavar="FILE", help="render the graph as PNG (needs the dot program of Graphviz)")
    p.add_argument("--all", action="store_true", help="also print the compiler's INFO notes on hidden groups")
    p.set_defaults(run=run)
    return p


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        shape = ()
    if not shape or any(n <= 0 for n in shape):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return shape


def load_factory(spec: str) -> Any:
    """The callable named by ``MODULE:FACTORY`` (a dotted module or a ``.py`` file)."""
    from . import CLIError

    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"{spec!r} is not MODULE:FACTORY (e.g. mypkg.nets:make_model or nets.py:make_model).")
    if module_name.endswith(".py") or os.path.sep in module_name:
        if not os.path.isfile(module_name):
            raise CLIError(f"no such file: {module_name}")
        name = "_braintrace_graph_" + os.path.splitext(os.path.basename(module_name))[0]
        mspec = importlib.util.spec_from_file_location(name, module_name)
        if mspec is None or mspec.loader is None:
            raise CLIError(f"cannot load {module_name} as a Python module.")
        module = importlib.util.module_from_spec(mspec)
        sys.path.insert(0, os.path.dirname(os.path.abspath(module_name)))
        try:
            mspec.loader.exec_module(module)
        finally:
            sys.path.pop(0)
    else:
        sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise CLIError(f"cannot import {module_name!r}: {err}") from err
        finally:
            sys.path.pop(0)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CLIError(f"{module_name} has no callable {attr!r}.")
    return factory


def _path(p: Any) -> str:
    from ..compiler.module_info import path_str

    return path_str(tuple(p))


#: The reason printed for each way a weight is not learned online (by DiagnosticKind name).
REASONS = {
    "RELATION_EXCLUDED_NON_TEMPORAL": "not connected to a hidden state",
    "RELATION_EXCLUDED_WEIGHT_TO_WEIGHT": "weight to weight",
    "RELATION_EXCLUDED_NON_ELEMENTWISE_TAIL": "mixing path to the hidden state",
    "RELATION_EXCLUDED_SHAPE_MISMATCH": "shape mismatch with the hidden state",
    "RELATION_EXCLUDED_NO_PARAMSTATE": "no ParamState",
    "WEIGHT_IN_CONTROL_FLOW": "inside control flow",
    "PRIMITIVE_INSIDE_CONTROL_FLOW": "inside control flow",
    "TRAINABLE_INVAR_NOT_PARAMSTATE": "constant operand",
}


def summarize(graph: Any, params: dict, show_info: bool = False) -> str:
    """The diagnostics of ``graph`` as text grouped by consequence.

    ``params`` maps every ``ParamState`` path of the model to its state, so
    that weights used only through plain JAX operations are listed too.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp, braintrace
    >>> from braintrace.cli.graph import summarize
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros(2))
    >>> print(summarize(graph, dict(cell.states(brainstate.ParamState))).splitlines()[0])
    1 hidden group(s), 2 online relation(s)
    """
    from ..compiler import DiagnosticKind, DiagnosticLevel

    online: dict[str, list] = {}
    excluded: list[tuple[str, str, str]] = []
    partial: list[tuple[str, str]] = []
    notes: list[str] = []
    mentioned = set()
    for rec in graph.diagnostics:
        w = _path(rec.weight_path) if rec.weight_path is not None else None
        if w is not None:
            mentioned.add(tuple(rec.weight_path))
        if rec.kind == DiagnosticKind.RELATION_INCLUDED and w is not None:
            hidden = ", ".join(_path(h) for h in rec.hidden_paths)
            online.setdefault(w, []).append(f"--{rec.primitive}--> {hidden}")
        elif rec.kind.name in REASONS and w is not None:
            excluded.append((w, REASONS[rec.kind.name], rec.message))
        elif rec.kind == DiagnosticKind.RELATION_PARTIAL_PATH:
            partial.append((w or "?", rec.message))
        elif show_info or rec.level >= DiagnosticLevel.WARNING:
            notes.append(str(rec))
    plain = [_path(p) for p in params if tuple(p) not in mentioned]
    lines = [
        f"{len(graph.hidden_groups)} hidden group(s), {len(graph.hidden_param_op_relations)} online relation(s)",
        "",
        "Learned online (eligibility traces):",
    ]
    width = max([len(w) for w in online] + [len(w) for w, _, _ in excluded] + [len(p) for p in plain] + [8])
    lines += [f"  {w:<{width}}  {'; '.join(rels)}" for w, rels in online.items()] or ["  (none)"]
    lines += ["", "Not learned online (instantaneous gradient only):"]
    lines += [f"  {w:<{width}}  {reason}: {msg}" for w, reason, msg in excluded] or ["  (none)"]
    if partial:
        lines += ["", "Learned online along some paths only:"]
        lines += [f"  {w:<{width}}  {msg}" for w, msg in partial]
    if plain:
        lines += ["", "Used through plain JAX operations (no ETP primitive; instantaneous gradient only):"]
        lines += [f"  {p}" for p in plain]
    lines += ["", "Hidden groups:"]
    for g in graph.hidden_groups:
        states = ", ".join(_path(p) for p in g.hidden_paths)
        lines.append(f"  group {g.index}: {states}  (varshape {g.varshape}, {g.num_state} state(s))")
    if not graph.hidden_groups:
        lines.append("  (none)")
    if notes:
        lines += ["", "Compiler notes:"] + [f"  {n}" for n in notes]
    return "\n".join(lines)


def _q(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, line breaks as DOT's ``\n``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


OUTPUT = "output"

#: The legend drawn under the graph (an HTML-like Graphviz label).
LEGEND = """<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="3" CELLPADDING="4">
<TR><TD BGCOLOR="palegreen">weight learned online (eligibility trace)</TD></TR>
<TR><TD BGCOLOR="lightgray">weight with its instantaneous gradient only (reason on its edge)</TD></TR>
<TR><TD>parameter used through plain JAX operations (instantaneous gradient only)</TD></TR>
<TR><TD STYLE="ROUNDED">hidden state (grouped by hidden group)</TD></TR>
<TR><TD BORDER="0" ALIGN="LEFT">edges: green = online relation; dashed = instantaneous gradient only;<BR ALIGN="LEFT"/>dotted = plain JAX operations; gray = a value read within the step<BR ALIGN="LEFT"/></TD></TR>
</TABLE>>"""


def data_flow(graph: Any, params: dict) -> dict[str, set[str]]:
    """What each hidden state and parameter feeds within one step.

    Keys and values are node names of :func:`to_dot`: ``'h:PATH'`` (a hidden
    state's new value), ``'w:PATH'`` (a parameter) and ``'output'``. A node
    feeds a hidden state when that state's new value depends on it, and feeds
    the output when an output depends on it other than through a hidden
    state's new value (the path through the state is the state's own edge).

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp, braintrace
    >>> from braintrace.cli.graph import data_flow
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros(2))
    >>> flow = data_flow(graph, cell.states(brainstate.ParamState))
    >>> flow["h:h"], flow["w:Wr.weight"]
    ({'output'}, {'h:h'})
    """
    from ..compiler.jaxpr_tools import UseDef, is_literal

    minfo = graph.module_info
    jaxpr = minfo.jaxpr
    usedef = UseDef(jaxpr)
    outs = {v for v in jaxpr.outvars[: minfo.num_out_leaves] if not is_literal(v)}
    new_value = {jaxpr.outvars[i]: "h:" + _path(s.path) for s in minfo.hidden_slots for i in s.outvars}
    stops = frozenset(new_value)

    def feeds(sources: list, own: frozenset) -> set[str]:
        reached = usedef.forward(sources, stop=stops - own)
        fed = {new_value[v] for v in reached & stops if v not in own}
        return fed | ({OUTPUT} if (reached - (stops - own)) & outs else set())

    flow: dict[str, set[str]] = {}
    for s in minfo.hidden_slots:
        mine = frozenset(jaxpr.outvars[i] for i in s.outvars)
        node = "h:" + _path(s.path)
        flow[node] = feeds([jaxpr.invars[i] for i in s.invars] + list(mine), mine) - {node}
    wanted = {tuple(p) for p in params}
    for s in minfo.param_slots:
        if tuple(s.path) in wanted:
            flow["w:" + _path(s.path)] = feeds([jaxpr.invars[i] for i in s.invars], frozenset())
    return flow


def to_dot(graph: Any, params: dict, name: str = "model") -> str:
    """The compiled graph in Graphviz DOT, with a legend.

    Hidden states are ellipses, one cluster per hidden group; weights are
    boxes (green: learned online; gray: instantaneous gradient only, the
    reason on the edge; white: used through plain JAX operations). Edges go
    from a weight to the hidden states it drives (or to ``output``), and in
    gray from a hidden state to the states and outputs that read it.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp, braintrace
    >>> from braintrace.cli.graph import to_dot
    >>> cell = braintrace.nn.GRUCell(2, 3)
    >>> _ = brainstate.nn.init_all_states(cell)
    >>> graph = braintrace.compile_etrace_graph(cell, jnp.zeros(2))
    >>> dot = to_dot(graph, cell.states(brainstate.ParamState), "GRUCell")
    >>> dot.splitlines()[0], '"h:h" -> "output" [color=gray60];' in dot
    ('digraph "GRUCell" {', True)
    """
    from ..compiler import DiagnosticKind

    out = [f"digraph {_q(name)} {{", '  rankdir=LR; fontname="Helvetica"; fontsize=10;',
           '  node [fontname="Helvetica", fontsize=10];',
           '  edge [fontname="Helvetica", fontsize=9];']
    for g in graph.hidden_groups:
        out.append(f"  subgraph cluster_{g.index} {{")
        out.append(f'    label={_q(f"hidden group {g.index}")}; style=rounded; color=gray60;')
        for p in g.hidden_paths:
            out.append(f'    {_q("h:" + _path(p))} [label={_q(_path(p))}, shape=ellipse];')
        out.append("  }")
    out.append(f"  {_q(OUTPUT)} [shape=doublecircle, style=filled, fillcolor=lightyellow];")
    weights: dict[str, str] = {}
    edges: list[str] = []
    for rec in graph.diagnostics:
        if rec.weight_path is None:
            continue
        w = _path(rec.weight_path)
        online = rec.kind == DiagnosticKind.RELATION_INCLUDED
        if online:
            weights[w] = "online"
        else:
            weights.setdefault(w, "instantaneous")
        style = "solid" if online else "dashed"
        color = "darkgreen" if online else "gray40"
        targets = [_q("h:" + _path(h)) for h in rec.hidden_paths] or [_q(OUTPUT)]
        label = rec.primitive or ""
        if rec.kind == DiagnosticKind.RELATION_PARTIAL_PATH:
            label += "\nthis path: instantaneous gradient only"
        elif not online:
            label += "\n" + REASONS.get(rec.kind.name, rec.kind.name.lower())
        for t in targets:
            edges.append(f"  {_q('w:' + w)} -> {t} [style={style}, color={color}, label={_q(label)}];")
    flow = data_flow(graph, params)
    for p in params:
        w = _path(p)
        if w not in weights:
            weights[w] = "plain"
            for t in sorted(flow.get("w:" + w, ())):
                edges.append(f"  {_q('w:' + w)} -> {_q(t)} [style=dotted, color=gray40];")
    for node, fed in flow.items():
        if node.startswith("h:"):
            edges += [f"  {_q(node)} -> {_q(t)} [color=gray60];" for t in sorted(fed)]
    fill = {"online": "palegreen", "instantaneous": "lightgray", "plain": "white"}
    for w, how in weights.items():
        out.append(f'  {_q("w:" + w)} [label={_q(w)}, shape=box, style=filled, fillcolor={fill[how]}];')
    out += edges
    out += ["  subgraph cluster_legend {", '    label="legend"; style=dashed; color=gray70;',
            f"    legend [shape=plaintext, fontsize=9, label={LEGEND}];", "  }", "}"]
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    import brainstate
    import jax.numpy as jnp

    from .. import compile_etrace_graph
    from ..errors import CompilationError, NotSupportedError
    from . import CLIError

    factory = load_factory(args.factory)
    made = factory()
    example = None
    if isinstance(made, tuple):
        if len(made) != 2:
            raise CLIError(f"{args.factory} returned a tuple of {len(made)}; return a model or (model, example_input).")
        made, example = made
    if not isinstance(made, brainstate.nn.Module):
        raise CLIError(f"{args.factory} returned {type(made).__name__}, not a brainstate.nn.Module.")
    model = made
    if example is None:
        if args.input_shape is None:
            raise CLIError(f"{args.factory} returned no example input: give --input-shape (e.g. --input-shape 10).")
        example = jnp.zeros(args.input_shape)
    if not model.states(brainstate.HiddenState):
        brainstate.nn.init_all_states(model, batch_size=args.batch_size)
    params = model.states(brainstate.ParamState)
    with warnings.catch_warnings():  # the warnings are printed below, grouped
        warnings.simplefilter("ignore", UserWarning)
        try:
            graph = compile_etrace_graph(model, example)
        except (CompilationError, NotSupportedError):
            raise
        except (TypeError, ValueError) as err:  # the model's own check of its input, or jax's
            where = "--input-shape" if args.input_shape is not None else "the example input its factory returned"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CLIError(
                f"{type(model).__name__} cannot take an input of shape {tuple(jnp.shape(example))} ({where}): "
                f"{first} Give the shape of one time step of input (with the batch axis if the model is batched)."
            ) from err
    print(f"{type(model).__name__} ({args.factory}), input shape {tuple(jnp.shape(example))}")
    print(summarize(graph, dict(params), show_info=args.all))
    status = 0
    dot_text = to_dot(graph, dict(params), type(model).__name__)
    if args.dot:
        with open(args.dot, "w") as f:
            f.write(dot_text)
        print(f"\nwrote {args.dot}")
    if args.png:
        exe = shutil.which("dot")
        if exe is None:
            dot_path = os.path.splitext(args.png)[0] + ".dot"
            if not args.dot:
                with open(dot_path, "w") as f:
                    f.write(dot_text)
            raise CLIError(
                f"cannot write {args.png}: Graphviz's `dot` program is not on PATH (install Graphviz, e.g. "
                f"`apt-get install graphviz`). The graph is in {args.dot or dot_path}; render it with "
                f"`dot -Tpng {args.dot or dot_path} -o {args.png}`."
            )
        proc = subprocess.run([exe, "-Tpng", "-o", args.png], input=dot_text, text=True, capture_output=True)
        if proc.returncode != 0:
            raise CLIError(f"`dot` failed on the graph: {proc.stderr.strip()}")
        print(f"wrote {args.png}")
    return status
