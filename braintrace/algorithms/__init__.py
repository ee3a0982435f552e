"""Layer 4: the online learners.

:class:`D_RTRL` keeps one eligibility trace per parameter (exact for
element-wise recurrences), :class:`ES_D_RTRL` factors it into input and output
traces (memory ``O(I + O)`` per weight); the SNN rules (:class:`EProp`,
:class:`OSTLRecurrent`, :class:`OSTLFeedforward`, :class:`OTTT`, :class:`OTPE`,
:class:`OSTTP`) and :class:`RFLO` are variants of their traces and learning
signals; :class:`RTRL`, :class:`SnAp` and :class:`UORO` keep (an approximation
of) the full influence matrix. All derive from :class:`ETraceVjpAlgorithm`,
which gives every one of them the κ filter, random feedback and a modulator
(three-factor learning).

Examples
--------
>>> import brainstate, jax.numpy as jnp
>>> import braintrace
>>> cell = braintrace.nn.VanillaRNNCell(2, 3)
>>> brainstate.nn.init_all_states(cell)  # doctest: +ELLIPSIS
VanillaRNNCell(...)
>>> learner = braintrace.algorithms.ES_D_RTRL(cell, decay_or_rank=0.9)
>>> _ = learner.compile_graph(jnp.zeros(2))
>>> learner(jnp.ones(2)).shape
(3,)
"""

from .base import ETraceAlgorithm as ETraceAlgorithm
from .rule import ETraceVjpAlgorithm as ETraceVjpAlgorithm
from .keys import TraceKey as TraceKey
from .d_rtrl import D_RTRL as D_RTRL, ParamDimVjpAlgorithm as ParamDimVjpAlgorithm
from .es_d_rtrl import ES_D_RTRL as ES_D_RTRL, IODimVjpAlgorithm as IODimVjpAlgorithm, pp_prop as pp_prop
from .trace_state import EligibilityTrace as EligibilityTrace, GradExpon as GradExpon
from .feedback import (
    FixedRandomFeedback as FixedRandomFeedback,
    KappaFilter as KappaFilter,
    PresynapticTrace as PresynapticTrace,
)
from .eprop import EProp as EProp
from .ostl import OSTLFeedforward as OSTLFeedforward, OSTLRecurrent as OSTLRecurrent
from .ottt import OTTT as OTTT
from .otpe import OTPE as OTPE
from .osttp import OSTTP as OSTTP
from .rflo import RFLO as RFLO
from .influence_traces import InfluenceVjpAlgorithm as InfluenceVjpAlgorithm
from .rtrl import RTRL as RTRL
from .snap import SnAp as SnAp
from .uoro import UORO as UORO

__all__ = [
    "ETraceAlgorithm",
    "ETraceVjpAlgorithm",
    "TraceKey",
    "ParamDimVjpAlgorithm",
    "D_RTRL",
    "IODimVjpAlgorithm",
    "ES_D_RTRL",
    "pp_prop",
    "EligibilityTrace",
    "GradExpon",
    "EProp",
    "OSTLRecurrent",
    "OSTLFeedforward",
    "OTTT",
    "OTPE",
    "OSTTP",
    "RFLO",
    "InfluenceVjpAlgorithm",
    "RTRL",
    "SnAp",
    "UORO",
    "PresynapticTrace",
    "KappaFilter",
    "FixedRandomFeedback",
]
