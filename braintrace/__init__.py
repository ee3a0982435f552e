"""braintrace: online learning of recurrent and spiking networks by eligibility-trace propagation."""

__version__ = "0.2.0.dev0"

from . import primitives as primitives
from .errors import CompilationError as CompilationError, NotSupportedError as NotSupportedError
from .primitives import (
    element_wise as element_wise,
    matmul as matmul,
    register_primitive as register_primitive,
)

__all__ = [
    "__version__",
    "primitives",
    "CompilationError",
    "NotSupportedError",
    "element_wise",
    "matmul",
    "register_primitive",
]
