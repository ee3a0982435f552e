"""Shared test configuration: makes ``tests/`` importable (``import oracle``).

On a GPU, each of ``pytest -n N``'s workers would otherwise claim 75% of the
device's memory when it first touches jax (and all but the first fail): the
workers allocate on demand instead. Set ``XLA_PYTHON_CLIENT_PREALLOCATE`` to
override.
"""

import os
import sys

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
