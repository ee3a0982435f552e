r"""Names that ``braintrace.nn`` forwarded to other libraries in 0.2.0, kept with a warning.

braintrace 0.2.0 let ``braintrace.nn.ReLU``, ``braintrace.nn.Dropout``,
``braintrace.nn.MaxPool2d``, ... resolve to the ``brainstate.nn`` class of the
same name, and ``braintrace.nn.Expon``, ``braintrace.nn.STP``, ... to the
synapse models now in ``brainpy.state``. None of them binds an ETP primitive:
they are the other library's classes, returned as is, so their parameters (if
any) receive only their instantaneous gradient. Import them from their own
library instead.

Every such name resolves through the one table :data:`FORWARDED` (name ->
module), served by the module ``__getattr__`` of :mod:`braintrace.nn`, which
emits a :class:`DeprecationWarning` naming the replacement on each access.
braintrace's own layers (``LIF``, ``BatchNorm1d``, ``LayerNorm``, ...) are not
in the table: they are defined in :mod:`braintrace.nn` itself.

Examples
--------
>>> import warnings
>>> import brainstate
>>> import braintrace
>>> braintrace.nn.forwarded.FORWARDED["ReLU"]
'brainstate.nn'
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     cls = braintrace.nn.ReLU
>>> cls is brainstate.nn.ReLU, caught[0].category.__name__
(True, 'DeprecationWarning')
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

__all__ = ["FORWARDED", "resolve"]

_BRAINSTATE = (
    # activations
    "ReLU RReLU Hardtanh ReLU6 Sigmoid Hardsigmoid Tanh SiLU Mish Hardswish ELU CELU SELU GLU GELU "
    "Hardshrink LeakyReLU LogSigmoid Softplus Softshrink PReLU Softsign Tanhshrink Softmin Softmax "
    "Softmax2d LogSoftmax "
    # dropout and shape
    "Dropout Dropout1d Dropout2d Dropout3d Identity SpikeBitwise Flatten Unflatten "
    # pooling
    "AvgPool1d AvgPool2d AvgPool3d MaxPool1d MaxPool2d MaxPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d "
    "AdaptiveAvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d "
    # normalisation not defined by braintrace.nn
    "BatchNorm0d BatchNorm2d BatchNorm3d RMSNorm GroupNorm"
).split()
_BRAINPY_STATE = "Expon Alpha DualExpon STP STD".split()

#: ``braintrace.nn`` name -> the module its class is taken from. The one table
#: every forwarded name resolves through.
FORWARDED: Mapping[str, str] = MappingProxyType(
    {**{n: "brainstate.nn" for n in _BRAINSTATE}, **{n: "brainpy.state" for n in _BRAINPY_STATE}}
)

_MESSAGE = (
    "braintrace.nn.{name} is {module}.{name}, forwarded for code written for braintrace 0.2.0; this "
    "forwarding is deprecated and will be removed. Use {module}.{name} directly (it binds no ETP "
    "primitive: its parameters are not learned online)."
)


def resolve(name: str) -> Any:
    """The class forwarded as ``braintrace.nn.<name>``, with a :class:`DeprecationWarning`.

    Parameters
    ----------
    name : str
        The attribute looked up on :mod:`braintrace.nn`.

    Returns
    -------
    type
        ``brainstate.nn.<name>`` or ``brainpy.state.<name>``.

    Raises
    ------
    AttributeError
        ``name`` is not a forwarded name.
    ModuleNotFoundError
        ``name`` is a ``brainpy.state`` model and ``brainpy`` is not installed
        (``pip install brainpy``, or the ``brainpy`` extra of braintrace).

    Examples
    --------
    >>> import warnings
    >>> from braintrace.nn.forwarded import resolve
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     print(resolve("Dropout").__name__)
    Dropout
    """
    module = FORWARDED.get(name)
    if module is None:
        raise AttributeError(f"module 'braintrace.nn' has no attribute {name!r}")
    warnings.warn(_MESSAGE.format(name=name, module=module), DeprecationWarning, stacklevel=3)
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            f"braintrace.nn.{name} forwards to {module}.{name}, which needs the package "
            f"{module.split('.')[0]!r}: pip install {module.split('.')[0]} (or braintrace[brainpy])."
        ) from err
    return getattr(mod, name)
