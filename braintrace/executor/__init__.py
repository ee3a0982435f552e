"""Layer 3: running a compiled eligibility-trace graph."""

from .graph_executor import (
    ETraceGraphExecutor as ETraceGraphExecutor,
    ETraceVjpGraphExecutor as ETraceVjpGraphExecutor,
    StepTraceData as StepTraceData,
    zeros_cotangent as zeros_cotangent,
)

__all__ = ["ETraceGraphExecutor", "ETraceVjpGraphExecutor", "StepTraceData", "zeros_cotangent"]
