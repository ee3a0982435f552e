"""D_RTRL through every primitive against the oracle.

For each primitive two models: a leaky one whose cut transition is element-wise
(D_RTRL must equal BPTT) and a recurrent one where the primitive's output feeds
back through its data input (D_RTRL must equal the diagonal RTRL reference).
The reference library computed conv and LoRA traces as a product of sums; these
tests would catch that.
"""

import numpy as np
import pytest

import brainstate
import braintrace
import jax
import jax.numpy as jnp
import saiunit as u

import oracle as O
from learning import online_grads, window_grads, x64  # noqa: F401

T = 4


def arr(rng, *shape, scale=0.5):
    return jnp.asarray(rng.randn(*shape) * scale)


class ConvNet(brainstate.nn.Module):
    """``h = a h + (1-a) tanh(conv(inp, K, b))``; ``inp`` is ``x`` (leaky) or ``[x, h]`` (recurrent)."""

    def __init__(self, recurrent, layout="NHWC", batch=None, groups=1, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.recurrent, self.layout, self.groups = recurrent, layout, groups
        cin, cout, H = 2, 2, 4
        cin_total = cin + (cout if recurrent else 0)
        k_in = cin_total // groups
        kshape = (3, 3, k_in, cout) if layout == "NHWC" else (cout, k_in, 3, 3)
        self.k = brainstate.ParamState({"weight": arr(rng, *kshape), "bias": arr(rng, cout, scale=0.1)})
        self.readout = brainstate.ParamState(arr(rng, cout, 2))
        hshape = (H, H, cout) if layout == "NHWC" else (cout, H, H)
        if batch is not None:
            hshape = (batch,) + hshape
        self.h = brainstate.HiddenState(arr(rng, *hshape))
        self.a = jax.nn.sigmoid(arr(rng, *hshape[-3:], scale=1.0))

    def update(self, x):
        caxis = -1 if self.layout == "NHWC" else -3
        inp = jnp.concatenate([x, self.h.value], axis=caxis) if self.recurrent else x
        dn = ("NHWC", "HWIO", "NHWC") if self.layout == "NHWC" else ("NCHW", "OIHW", "NCHW")
        y = braintrace.conv(
            inp, self.k.value["weight"], self.k.value["bias"], padding="SAME",
            dimension_numbers=dn, feature_group_count=self.groups,
        )
        self.h.value = self.a * self.h.value + (1 - self.a) * jnp.tanh(y)
        pooled = self.h.value.mean(axis=(-3, -2) if self.layout == "NHWC" else (-2, -1))
        return pooled @ self.readout.value


class SparseNet(brainstate.nn.Module):
    def __init__(self, recurrent, batch=None, seed=0, fmt="csr"):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.recurrent = recurrent
        n_in, n = 3, 5
        rows = n_in + (n if recurrent else 0)
        dense = rng.randn(rows, n) * (rng.rand(rows, n) < 0.5)
        mat = (u.sparse.CSR if fmt == "csr" else u.sparse.COO).fromdense(jnp.asarray(dense))
        self.mat = mat
        self.w = brainstate.ParamState({"weight": jnp.asarray(mat.data), "bias": arr(rng, n, scale=0.1)})
        self.readout = brainstate.ParamState(arr(rng, n, 2))
        self.h = brainstate.HiddenState(arr(rng, *((n,) if batch is None else (batch, n))))

    def update(self, x):
        inp = jnp.concatenate([x, self.h.value], axis=-1) if self.recurrent else x
        y = braintrace.sparse_matmul(inp, self.w.value["weight"], sparse_mat=self.mat, bias=self.w.value["bias"])
        self.h.value = 0.7 * self.h.value + 0.3 * jnp.tanh(y)
        return self.h.value @ self.readout.value


class LoraNet(brainstate.nn.Module):
    def __init__(self, recurrent, batch=None, seed=0):
        super().__init__()
        rng = np.random.RandomState(seed)
        self.recurrent = recurrent
        n_in, n, r = 3, 5, 2
        rows = n_in + (n if recurrent else 0)
        self.lora = brainstate.ParamState({"B": arr(rng, rows, r), "A": arr(rng, r, n), "bias": arr(rng, n, scale=0.1)})
        self.readout = brainstate.ParamState(arr(rng, n, 2))
        self.h = brainstate.HiddenState(arr(rng, *((n,) if batch is None else (batch, n))))

    def update(self, x):
        inp = jnp.concatenate([x, self.h.value], axis=-1) if self.recurrent else x
        p = self.lora.value
        y = braintrace.lora_matmul(inp, p["B"], p["A"], alpha=0.7, bias=p["bias"])
        self.h.value = 0.6 * self.h.value + 0.4 * jnp.tanh(y)
        return self.h.value @ self.readout.value


def data(model, x_shape, batch=None, seed=1):
    rng = np.random.RandomState(seed)
    lead = (T,) if batch is None else (T, batch)
    xs = jnp.asarray(rng.randn(*lead, *x_shape))
    targets = jnp.asarray(rng.randn(*lead, 2))

    def loss(out, t):
        return 0.5 * jnp.sum((out - targets[t]) ** 2)

    return xs, loss


def online_spec(graph):
    out = set()
    for r in graph.hidden_param_op_relations:
        for _, leaves in r.param_sources:
            for path, key in leaves:
                out.add(path if key == () else (path, key[0]))
    return out


CASES = {
    "conv_nhwc": (lambda rec, b: ConvNet(rec, "NHWC", b), (4, 4, 2)),
    "conv_nchw": (lambda rec, b: ConvNet(rec, "NCHW", b), (2, 4, 4)),
    "conv_groups": (lambda rec, b: ConvNet(rec, "NHWC", b, groups=2), (4, 4, 2)),
    "sparse_csr": (lambda rec, b: SparseNet(rec, b), (3,)),
    "sparse_coo": (lambda rec, b: SparseNet(rec, b, fmt="coo"), (3,)),
    "lora": (lambda rec, b: LoraNet(rec, b), (3,)),
}


# The base primitives run unbatched and batched; the variants (NCHW layout, feature groups, COO
# format) batched only: they differ from their base in how the trace rule reads its operands, and
# their rules are checked against the full Jacobian, batched and not, in tests/primitives/
# (test_conv.py, test_sparse.py: test_trace_rule_equals_full_jacobian).
CASE_BATCHES = [(c, b) for c in ("conv_nhwc", "sparse_csr", "lora") for b in (None, 2)] + [
    (c, 2) for c in ("conv_nchw", "conv_groups", "sparse_coo")
]


@pytest.mark.parametrize("case,batch", CASE_BATCHES)
def test_leaky_models_equal_bptt(x64, case, batch):
    make, xshape = CASES[case]
    model = make(False, batch)
    xs, loss = data(model, xshape, batch)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    assert len(learner.graph.hidden_param_op_relations) == 1
    got, _ = online_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, bptt) < 1e-9


@pytest.mark.parametrize("case,batch", CASE_BATCHES)
def test_recurrent_models_equal_diagonal_reference(x64, case, batch):
    make, xshape = CASES[case]
    model = make(True, batch)
    xs, loss = data(model, xshape, batch)
    learner = braintrace.D_RTRL(model).compile_graph(xs[0])
    ref, _ = O.rtrl_reference(model, xs, loss, mode="diagonal", online=online_spec(learner.graph))
    bptt, _ = O.bptt_grads(model, xs, loss)
    got, _ = online_grads(learner, xs, loss)
    assert O.tree_max_rel_err(got, ref) < 1e-9
    assert O.tree_max_rel_err(got, bptt) > 1e-4


@pytest.mark.parametrize("case", ["conv_nchw", "sparse_csr", "lora"])
def test_multi_step_windows_equal_hybrid_reference(x64, case):
    make, xshape = CASES[case]
    model = make(True, None)
    xs, loss = data(model, xshape)
    learner = braintrace.D_RTRL(model, vjp_method="multi-step").compile_graph(xs[0])
    ref, _ = O.rtrl_reference(model, xs, loss, mode="diagonal", online=online_spec(learner.graph), windows=2)
    got, _ = window_grads(learner, xs, loss, 2)
    assert O.tree_max_rel_err(got, ref) < 1e-9


# conv_nchw and sparse_coo: the factored rule reaches the primitive through the same
# xy_to_dw as NHWC / CSR (checked for every layout and format in tests/primitives/test_conv.py
# and test_sparse.py::test_forward_grad_jvp_vjp_xy_to_dw); ES_D_RTRL's exact windows through
# conv_groups and conv_nhwc are test_windows::test_window_equals_step_by_step_for_every_primitive.
@pytest.mark.parametrize("case", [c for c in CASES if c not in ("conv_nchw", "sparse_coo")])
def test_es_d_rtrl_runs_and_points_the_right_way(x64, case):
    make, xshape = CASES[case]
    model = make(False, None)
    xs, loss = data(model, xshape)
    bptt, _ = O.bptt_grads(model, xs, loss)
    learner = braintrace.ES_D_RTRL(model, 0.8).compile_graph(xs[0])
    got, _ = online_grads(learner, xs, loss)
    cos = O.tree_cosine(got, bptt)
    print(f"ES_D_RTRL {case}: cosine with BPTT {cos:.4f}")
    assert cos > 0.8
