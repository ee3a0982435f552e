"""The compiler's relations and diagnostics on the seeds' examples and beyond."""

import warnings

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintrace
from braintrace import DiagnosticKind, DiagnosticLevel


def kinds(graph, kind):
    return [d for d in graph.diagnostics if d.kind == kind]


class GRUNet(brainstate.nn.Module):
    def __init__(self, n_in, n_rec, n_out):
        super().__init__()
        self.rnn = braintrace.nn.GRUCell(n_in, n_rec)
        self.readout = braintrace.nn.Linear(n_rec, n_out)

    def update(self, x):
        return self.readout(self.rnn(x))


def test_gru_cell_two_relations_and_wr_excluded_weight_to_weight():
    cell = braintrace.nn.GRUCell(in_size=4, out_size=8)
    brainstate.nn.init_all_states(cell, batch_size=2)
    with pytest.warns(UserWarning, match=r"Wr.*only through another trainable ETP primitive"):
        graph = braintrace.compile_etrace_graph(cell, jnp.zeros((2, 4)))
    assert sorted(r.weight_path for r in graph.hidden_param_op_relations) == [("Wh", "weight"), ("Wz", "weight")]
    (excl,) = kinds(graph, DiagnosticKind.RELATION_EXCLUDED_WEIGHT_TO_WEIGHT)
    assert excl.weight_path == ("Wr", "weight")
    assert excl.level == DiagnosticLevel.WARNING
    assert "instantaneous gradient" in excl.message


def test_readout_has_no_connected_hidden_state():
    net = GRUNet(3, 5, 2)
    brainstate.nn.init_all_states(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = braintrace.compile_etrace_graph(net, jnp.zeros(3))
    recs = graph.select(weight_path=("readout", "weight"), kind=DiagnosticKind.RELATION_EXCLUDED_NON_TEMPORAL)
    assert len(recs) == 1 and "no connected hidden state" in recs[0].message
    assert "readout.weight" in graph.explain(weight_path="readout.weight")


class ShapeMismatch(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState(jnp.ones((10, 20)))
        self.h = brainstate.HiddenState(jnp.zeros(10))

    def update(self, x):
        y = braintrace.matmul(x, self.w.value)
        self.h.value = y[:10]
        return self.h.value


def test_slicing_breaks_the_relation_with_a_shape_diagnostic():
    m = ShapeMismatch()
    with pytest.warns(UserWarning, match=r"`w`"):
        graph = braintrace.compile_etrace_graph(m, jnp.zeros(10))
    assert graph.hidden_param_op_relations == ()
    recs = kinds(graph, DiagnosticKind.RELATION_EXCLUDED_SHAPE_MISMATCH) + kinds(
        graph, DiagnosticKind.RELATION_EXCLUDED_NON_ELEMENTWISE_TAIL
    )
    assert [r.weight_path for r in recs] == [("w",)]


class ConstBias(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState(jnp.ones((3, 4)) * 0.1)
        self.h = brainstate.HiddenState(jnp.zeros(4))

    def update(self, x):
        self.h.value = 0.9 * self.h.value + braintrace.matmul(x, self.w.value, jnp.ones(4))
        return self.h.value


def test_constant_bias_is_trainable_invar_not_paramstate():
    with pytest.warns(UserWarning, match="bias"):
        graph = braintrace.compile_etrace_graph(ConstBias(), jnp.zeros(3))
    (rec,) = kinds(graph, DiagnosticKind.TRAINABLE_INVAR_NOT_PARAMSTATE)
    assert rec.context["input"] == "bias"
    (rel,) = graph.hidden_param_op_relations
    assert rel.trainable_names == ("weight",)


class ALIFLike(brainstate.nn.Module):
    """LIF with adaptation: v and a coupled element-wise (one group, S=2)."""

    def __init__(self, n_in, n):
        super().__init__()
        self.w = brainstate.ParamState({"weight": jnp.ones((n_in, n)) * 0.3})
        self.v = brainstate.HiddenState(jnp.zeros(n))
        self.a = brainstate.HiddenState(jnp.zeros(n))

    def update(self, x):
        spike = braintrace.nn.surrogate.sigmoid(self.v.value - 1.0 - self.a.value)
        v = 0.9 * self.v.value + braintrace.matmul(x, self.w.value["weight"]) - spike
        self.a.value = 0.95 * self.a.value + 0.1 * spike
        self.v.value = v
        return spike


def test_two_state_group_lif_with_adaptation():
    graph = braintrace.compile_etrace_graph(ALIFLike(3, 5), jnp.zeros(3))
    (g,) = graph.hidden_groups
    assert set(g.hidden_paths) == {("v",), ("a",)} and g.num_state == 2 and g.varshape == (5,)
    assert g.elementwise
    assert kinds(graph, DiagnosticKind.HIDDEN_GROUP_MERGED)
    (rel,) = graph.hidden_param_op_relations
    assert rel.hidden_groups == (0,)


class TwoLayers(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = brainstate.ParamState(jnp.ones((3, 4)) * 0.1)
        self.w2 = brainstate.ParamState(jnp.ones((4, 6)) * 0.1)
        self.h1 = brainstate.HiddenState(jnp.zeros(4))
        self.h2 = brainstate.HiddenState(jnp.zeros(6))

    def update(self, x):
        self.h1.value = 0.9 * self.h1.value + jnp.tanh(braintrace.matmul(x, self.w1.value))
        self.h2.value = 0.8 * self.h2.value + jnp.tanh(braintrace.matmul(self.h1.value, self.w2.value))
        return self.h2.value


def test_several_layers_have_separate_groups():
    graph = braintrace.compile_etrace_graph(TwoLayers(), jnp.zeros(3))
    assert [g.hidden_paths for g in graph.hidden_groups] == [(("h1",),), (("h2",),)]
    by_weight = {r.weight_path: r.hidden_paths for r in graph.hidden_param_op_relations}
    assert by_weight == {("w1",): (("h1",),), ("w2",): (("h2",),)}
    rec = graph.select(weight_path="w1", kind=DiagnosticKind.RELATION_PARTIAL_PATH)
    assert rec and "h2" in rec[0].message


class Reshaped(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState({"flat": jnp.arange(12.0) / 12, "t": jnp.ones((4, 3)) * 0.1})
        self.h = brainstate.HiddenState(jnp.zeros((2, 4)))

    def update(self, x):
        w1 = jnp.reshape(self.w.value["flat"], (3, 4))
        w2 = jnp.transpose(self.w.value["t"])
        self.h.value = jnp.where(
            x.sum() > 0, 0.9 * self.h.value + braintrace.matmul(x, w1) + braintrace.matmul(x, w2), self.h.value
        )
        return self.h.value


def test_weights_through_dict_reshape_transpose_and_where_in_a_batched_model():
    graph = braintrace.compile_etrace_graph(Reshaped(), jnp.ones((2, 3)))
    (g,) = graph.hidden_groups
    assert g.varshape == (2, 4)
    srcs = sorted(src for r in graph.hidden_param_op_relations for _, s in r.param_sources for src in s)
    assert srcs == [(("w",), ("flat",)), (("w",), ("t",))]


class WritesParam(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState(jnp.ones(3))
        self.h = brainstate.HiddenState(jnp.zeros(3))

    def update(self, x):
        self.w.value = self.w.value * 0.5
        self.h.value = self.h.value + x * self.w.value
        return self.h.value


def test_writing_a_paramstate_is_not_supported():
    with pytest.raises(braintrace.NotSupportedError, match="writes the ParamState `w`"):
        braintrace.compile_etrace_graph(WritesParam(), jnp.zeros(3))


class CondModel(brainstate.nn.Module):
    def __init__(self, touch):
        super().__init__()
        self.touch = touch
        self.w = brainstate.ParamState(jnp.ones((3, 3)))
        self.h = brainstate.HiddenState(jnp.zeros(3))

    def update(self, x):
        if self.touch:
            new = jnp.tanh(braintrace.matmul(self.h.value, self.w.value) + x)
            self.h.value = jax.lax.cond(jnp.sum(x) > 0, lambda: new, lambda: self.h.value)
        else:
            gain = jax.lax.cond(jnp.sum(x) > 0, lambda: 2.0, lambda: 1.0)
            self.h.value = 0.5 * self.h.value + gain * braintrace.matmul(x, self.w.value)
        return self.h.value


def test_cond_touching_state_is_refused_with_the_workaround():
    with pytest.raises(braintrace.NotSupportedError, match=r"cond.*hidden state `h`.*jax.lax.select"):
        braintrace.compile_etrace_graph(CondModel(True), jnp.zeros(3))


def test_cond_elsewhere_in_the_step_is_allowed():
    graph = braintrace.compile_etrace_graph(CondModel(False), jnp.zeros(3))
    assert len(graph.hidden_param_op_relations) == 1


class SeedsSimpleRNN(brainstate.nn.Module):
    """The core-concepts notebook's model: h is a ShortTermState."""

    def __init__(self, n_in, n_rec, n_out):
        super().__init__()
        self.w_in = brainstate.ParamState(jnp.ones((n_in, n_rec)) * 0.01)
        self.w_rec = brainstate.ParamState(jnp.ones((n_rec, n_rec)) * 0.01)
        self.w_out = brainstate.ParamState(jnp.ones((n_rec, n_out)) * 0.01)
        self.h = brainstate.ShortTermState(jnp.zeros(n_rec))

    def update(self, x):
        inp = x @ self.w_in.value
        rec = braintrace.matmul(self.h.value, self.w_rec.value)
        self.h.value = jax.nn.tanh(inp + rec)
        return self.h.value @ self.w_out.value


def test_recurrent_shortterm_state_is_treated_as_hidden_with_a_warning():
    with pytest.warns(UserWarning, match=r"`h` is a brainstate.ShortTermState.*HiddenState"):
        graph = braintrace.compile_etrace_graph(SeedsSimpleRNN(2, 3, 1), jnp.zeros(2))
    assert [r.weight_path for r in graph.hidden_param_op_relations] == [("w_rec",)]
    assert kinds(graph, DiagnosticKind.STATE_MISMATCH)


def test_diagnostic_levels_order_and_sort():
    L = DiagnosticLevel
    assert L.INFO < L.WARNING < L.ERROR
    assert sorted([L.ERROR, L.INFO, L.WARNING]) == [L.INFO, L.WARNING, L.ERROR]
    assert max(L) == L.ERROR


def test_warnings_are_emitted_once_per_compile():
    cell = braintrace.nn.GRUCell(2, 3)
    brainstate.nn.init_all_states(cell)
    with pytest.warns(UserWarning) as rec:
        braintrace.compile_etrace_graph(cell, jnp.zeros(2))
    n = len([w for w in rec if "Wr" in str(w.message)])
    assert n == 1
    learner = braintrace.D_RTRL(cell)
    with pytest.warns(UserWarning, match="Wr"):
        learner.compile_graph(jnp.zeros(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner.compile_graph(jnp.zeros(2))  # compiled for these shapes: no second trace, no second warning


class LibraryFunctions(brainstate.nn.Module):
    """Tail and transition written with jax.nn / jnp library functions (jit- and custom_jvp-wrapped)."""

    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState(jnp.ones((3, 4)) * 0.1)
        self.v = brainstate.HiddenState(jnp.zeros(4))

    def update(self, x):
        y = braintrace.matmul(x, self.w.value)
        act = jax.nn.relu(y) + jax.nn.softplus(y) + jax.nn.gelu(y) + jnp.clip(y, -1.0, 1.0)
        v = jnp.where(self.v.value > 1.0, 0.0, 0.9 * self.v.value) + jax.nn.silu(act)
        self.v.value = v
        return v


def test_library_functions_in_the_step_are_seen_through():
    graph = braintrace.compile_etrace_graph(LibraryFunctions(), jnp.zeros(3))
    (g,) = graph.hidden_groups
    assert g.elementwise
    assert [r.weight_path for r in graph.hidden_param_op_relations] == [("w",)]
    assert not graph.select(min_level=DiagnosticLevel.WARNING)


class ScanModel(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState(jnp.ones((3, 3)) * 0.1)
        self.h = brainstate.HiddenState(jnp.zeros(3))

    def update(self, x):
        def body(h, _):
            return jnp.tanh(braintrace.matmul(h, self.w.value) + x), None

        self.h.value, _ = jax.lax.scan(body, self.h.value, None, length=2)
        return self.h.value


def test_scan_touching_a_weight_is_refused():
    with pytest.raises(braintrace.NotSupportedError, match=r"scan.*(weight `w`|hidden state `h`)"):
        braintrace.compile_etrace_graph(ScanModel(), jnp.zeros(3))
