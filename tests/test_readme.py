"""The README's code runs as written: the one-changed-line example, batched, and its sequence calls."""

import pathlib
import re

import brainstate
import braintrace
import jax.numpy as jnp

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text[text.index("## One changed line per weight"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_runs_batched_and_resets():
    env: dict = {}
    exec(compile(_example(), "README.md", "exec"), env)
    model, learner, grads = env["model"], env["learner"], env["grads"]
    assert model.h.value.shape == (8, 16)
    assert set(grads) == {("w_in",), ("w_rec",), ("w_out",)}
    xs, ys = jnp.ones((5, 8, 3)), jnp.zeros((5, 8, 2))

    def loss(o, y):
        return jnp.sum((o - y) ** 2)

    first = braintrace.online_gradients(learner, xs, ys, loss, batch_size=8)[1]
    again = braintrace.online_gradients(learner, xs, ys, loss, batch_size=8)[1]
    bptt = [braintrace.bptt_gradients(model, xs, ys, loss, batch_size=8)[1] for _ in range(2)]
    assert float(first) == float(again)
    assert float(bptt[0]) == float(bptt[1])
    assert isinstance(learner, braintrace.D_RTRL) and brainstate.nn.Module in type(model).__mro__
