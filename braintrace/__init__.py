"""braintrace: online learning of recurrent and spiking networks by eligibility-trace propagation."""

__version__ = "0.2.0.dev0"

from . import primitives as primitives
from . import nn as nn
from .errors import CompilationError as CompilationError, NotSupportedError as NotSupportedError
from .primitives import (
    conv as conv,
    element_wise as element_wise,
    lora_matmul as lora_matmul,
    matmul as matmul,
    register_primitive as register_primitive,
    sparse_matmul as sparse_matmul,
)

__all__ = [
    "__version__",
    "primitives",
    "nn",
    "CompilationError",
    "NotSupportedError",
    "conv",
    "element_wise",
    "lora_matmul",
    "matmul",
    "register_primitive",
    "sparse_matmul",
]
