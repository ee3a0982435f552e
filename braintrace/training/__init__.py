r"""Running a learner over whole sequences: the loops users otherwise write by hand.

- :func:`online_gradients` / :func:`bptt_gradients`: the gradient of a
  sequence loss (masks, reductions, per-step outputs), online or by BPTT;
- :func:`online_evolve` / :func:`evaluate`: the same runs without gradients;
- :func:`online_fit`: weights that change while the sequence runs, an
  optimizer update every ``K`` steps, on arrays or streams of chunks;
- :func:`shard_batch`: the batch split over devices
  (:mod:`braintrace.training.sharding`).

The loss, masks and reductions are described in
:mod:`braintrace.training.losses`, what a mask freezes in
:mod:`braintrace.training.masking`.
"""

from .evaluation import evaluate as evaluate, online_evolve as online_evolve
from .fit import OnlineFitResult as OnlineFitResult, online_fit as online_fit
from .gradients import bptt_gradients as bptt_gradients, online_gradients as online_gradients
from .sharding import shard_batch as shard_batch

__all__ = ["online_gradients", "bptt_gradients", "online_evolve", "evaluate", "online_fit", "OnlineFitResult", "shard_batch"]
