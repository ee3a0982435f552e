"""Layer 4: the online learners."""

from .base import ETraceAlgorithm as ETraceAlgorithm, ETraceVjpAlgorithm as ETraceVjpAlgorithm
from .d_rtrl import D_RTRL as D_RTRL, ParamDimVjpAlgorithm as ParamDimVjpAlgorithm
from .es_d_rtrl import ES_D_RTRL as ES_D_RTRL, IODimVjpAlgorithm as IODimVjpAlgorithm, pp_prop as pp_prop
from .trace_state import EligibilityTrace as EligibilityTrace, GradExpon as GradExpon

__all__ = [
    "ETraceAlgorithm",
    "ETraceVjpAlgorithm",
    "ParamDimVjpAlgorithm",
    "D_RTRL",
    "IODimVjpAlgorithm",
    "ES_D_RTRL",
    "pp_prop",
    "EligibilityTrace",
    "GradExpon",
]
