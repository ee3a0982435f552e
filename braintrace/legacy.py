r"""The deprecated v0.1.x class-based API, as thin shims over the ETP primitives.

braintrace 0.1 described an online-learned weight by an *operator object*
(``MatMulOp``, ``ConvOp``, ...) held by a *parameter state*
(``ETraceParam``, ``ElemWiseParam``, ``NonTempParam``). From 0.2 on, a weight is
an ordinary :class:`brainstate.ParamState` and the operation is a function
call on its value (:func:`braintrace.matmul`, :func:`braintrace.conv`, ...).
The classes below keep 0.1 code running while it is migrated; each one only
forwards to its replacement, so results are identical (see
``docs/migration.md``).

Call conventions
----------------
Operators are called as ``op(x, weights)`` and return what the replacement
function returns. ``weights`` is a dict of named arrays (or a bare array,
read as ``{'weight': array}``):

=================  ===============================  =====================================================
class              ``weights`` keys                 forwards to
=================  ===============================  =====================================================
``MatMulOp``       ``weight``, ``bias`` (optional)   ``matmul(x, weight, bias)``
``ElemWiseOp``     ``weight``                        ``element_wise(weight, fn)`` (``x`` is not used)
``ConvOp``         ``weight``, ``bias`` (optional)   ``conv(x, weight, bias, **options)``
``SpMatMulOp``     ``weight``, ``bias`` (optional)   ``sparse_matmul(x, weight, sparse_mat=..., bias=...)``
``LoraOp``         ``B``, ``A``, ``bias`` (optional) ``lora_matmul(x, B, A, alpha=..., bias=...)``
=================  ===============================  =====================================================

The constructors take braintrace 0.2.0's arguments, in its order.

The parameter classes live in :mod:`braintrace.legacy_params` (served from
here too). ``ETraceParam``, ``ElemWiseParam`` and ``NonTempParam`` are
:class:`brainstate.ParamState` subclasses holding the value and an operator;
``param.execute(x)`` applies the operator to ``x`` and the current value.
``ETraceParam`` and ``ElemWiseParam`` bind ETP primitives, so their weight
learns online; ``NonTempParam`` applies a plain JAX callable, so its weight
receives only its instantaneous gradient. ``FakeETraceParam`` and
``FakeElemWiseParam`` hold a constant (not a state): their operator runs in
plain JAX and the value is never trained.

Deprecation
-----------
Every name resolves through the one table :data:`DEPRECATIONS` (old name ->
replacement). ``import braintrace`` does not import this module: the package's
module ``__getattr__`` serves the old names on first access, and each class
emits one :class:`DeprecationWarning` naming its replacement the first time it
is instantiated.

Examples
--------
>>> import warnings
>>> import jax.numpy as jnp
>>> import braintrace
>>> sorted(braintrace.legacy.DEPRECATIONS)[:3]
['ConvOp', 'ETraceParam', 'ElemWiseOp']
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore", DeprecationWarning)
...     op = braintrace.MatMulOp()
>>> op(jnp.ones(3), {"weight": jnp.ones((3, 2))}).tolist()
[3.0, 3.0]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from .primitives import conv, element_wise, lora_matmul, matmul, sparse_matmul

__all__ = [
    "DEPRECATIONS",
    "MatMulOp",
    "ElemWiseOp",
    "ConvOp",
    "SpMatMulOp",
    "LoraOp",
    # served by __getattr__ from braintrace.legacy_params
    "ETraceParam",  # noqa: F822
    "ElemWiseParam",  # noqa: F822
    "NonTempParam",  # noqa: F822
    "FakeETraceParam",  # noqa: F822
    "FakeElemWiseParam",  # noqa: F822
]

#: The names defined in :mod:`braintrace.legacy_params` (imported on first access).
_PARAM_NAMES = frozenset({"ETraceParam", "ElemWiseParam", "NonTempParam", "FakeETraceParam", "FakeElemWiseParam"})

#: Old v0.1 name -> its v0.2 replacement. The one table every legacy name resolves through.
DEPRECATIONS: Mapping[str, str] = MappingProxyType(
    {
        "MatMulOp": "braintrace.matmul(x, weight, bias)",
        "ElemWiseOp": "braintrace.element_wise(weight, fn)",
        "ConvOp": "braintrace.conv(x, kernel, bias, ...)",
        "SpMatMulOp": "braintrace.sparse_matmul(x, weight_data, sparse_mat=..., bias=...)",
        "LoraOp": "braintrace.lora_matmul(x, B, A, alpha=..., bias=...)",
        "ETraceParam": "a brainstate.ParamState plus an ETP primitive function "
        "(braintrace.matmul, braintrace.conv, ...) applied to its value",
        "ElemWiseParam": "a brainstate.ParamState plus braintrace.element_wise(param.value, fn)",
        "NonTempParam": "a brainstate.ParamState plus plain JAX ops on its value (e.g. x @ param.value)",
        "FakeETraceParam": "a constant array (not a ParamState) plus plain JAX ops on it (e.g. x @ w)",
        "FakeElemWiseParam": "a constant array (not a ParamState) plus a plain JAX function of it (e.g. jnp.exp(w))",
    }
)

_MESSAGE = (
    "braintrace.{name} is deprecated since braintrace 0.2.0 and will be removed in a future "
    "release; use {replacement} instead. See docs/migration.md for the migration guide."
)


def deprecation_message(name: str) -> str:
    """The :class:`DeprecationWarning` text for the legacy name ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`DEPRECATIONS`.

    Returns
    -------
    str
        The message, naming the replacement.

    Raises
    ------
    KeyError
        ``name`` is not a legacy name.

    Examples
    --------
    >>> from braintrace.legacy import deprecation_message
    >>> deprecation_message("MatMulOp")[:60]
    'braintrace.MatMulOp is deprecated since braintrace 0.2.0 and'
    """
    return _MESSAGE.format(name=name, replacement=DEPRECATIONS[name])


def resolve(name: str, module: str = "braintrace") -> Any:
    """Return the legacy class called ``name``; the module ``__getattr__`` of ``braintrace``.

    Resolving does not warn (only instantiating does, once per class), so
    ``hasattr`` or ``dir``-walking tools stay silent.

    Parameters
    ----------
    name : str
        The attribute looked up.
    module : str, default ``'braintrace'``
        The module whose attribute lookup failed, for the error message.

    Returns
    -------
    type
        The legacy shim class.

    Raises
    ------
    AttributeError
        ``name`` is not a legacy name either.

    Examples
    --------
    >>> from braintrace.legacy import resolve
    >>> resolve("MatMulOp").__name__
    'MatMulOp'
    """
    if name in _PARAM_NAMES:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.legacy_params"), name)
    if name in DEPRECATIONS:
        return globals()[name]
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def __getattr__(name: str) -> Any:
    """The parameter classes of :mod:`braintrace.legacy_params`, imported on first access."""
    if name in _PARAM_NAMES:
        return resolve(name, __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _WarnOnce:
    """Mixin: one :class:`DeprecationWarning` per class, on its first instantiation."""

    _legacy_name: ClassVar[str]
    _deprecation_warned: ClassVar[bool] = False

    @classmethod
    def _warn_deprecated(cls, stacklevel: int = 3) -> None:
        # the flag lives on the class: a second instantiation does not warn,
        # whatever the active warning filters are
        if cls._deprecation_warned:
            return
        cls._deprecation_warned = True
        warnings.warn(deprecation_message(cls._legacy_name), DeprecationWarning, stacklevel=stacklevel)


def _as_weights(weights: Any, op: str) -> dict[str, Any]:
    """``weights`` as a dict of named arrays: a bare array is ``{'weight': array}``."""
    if isinstance(weights, Mapping):
        return dict(weights)
    if weights is None:
        raise TypeError(f"braintrace.{op}: `weights` is None; pass a dict such as {{'weight': w}} or an array.")
    return {"weight": weights}


def _check_fn(fn: Any, op: str, arg: str) -> Any:
    """``fn`` if it is ``None`` or callable; ``TypeError`` naming ``op`` and ``arg`` otherwise."""
    if fn is not None and not callable(fn):
        raise TypeError(f"braintrace.{op}: `{arg}` must be callable, got {type(fn).__name__}.")
    return fn


def _masked(weight: Any, mask: Any, fn: Any, fn_first: bool) -> Any:
    """``fn(weight * mask)`` (``fn(weight) * mask`` if ``fn_first``); ``None`` mask/fn are skipped."""
    if fn is not None and (fn_first or mask is None):
        weight = fn(weight)
    if mask is not None:
        weight = weight * mask
        if fn is not None and not fn_first:
            weight = fn(weight)
    return weight


def _require(weights: Mapping[str, Any], key: str, op: str) -> Any:
    if key not in weights:
        raise KeyError(
            f"braintrace.{op}: the weight dict has keys {sorted(weights)} but needs {key!r}; "
            f"pass e.g. {{{key!r}: array}}."
        )
    return weights[key]


class _LegacyOp(_WarnOnce):
    """Base of the v0.1 operator shims: ``op(x, weights)``."""

    def __call__(self, x: Any, weights: Any) -> Any:
        raise NotImplementedError


class MatMulOp(_LegacyOp):
    r"""Deprecated: use :func:`braintrace.matmul`.

    ``op(x, {'weight': W, 'bias': b})`` returns ``braintrace.matmul(x, W', b)``
    with :math:`W' = f(W \odot M)` for the optional ``weight_fn`` :math:`f` and
    ``weight_mask`` :math:`M`, or :math:`W' = f(W) \odot M` with
    ``apply_weight_fn_before_mask=True`` (plain JAX applied to the weight
    before the primitive, as in :class:`braintrace.nn.Linear`).

    Parameters
    ----------
    weight_mask : array, shape ``(I, O)``, optional
        Fixed mask multiplied into the weight.
    weight_fn : callable, optional
        Transform of the weight, e.g. ``jnp.abs``; default identity.
    apply_weight_fn_before_mask : bool, default False
        Apply ``weight_fn`` to the weight, then the mask (default: to the
        masked weight).

    Examples
    --------
    >>> import warnings
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     op = braintrace.MatMulOp()
    >>> x, w = jnp.ones((2, 3)), {"weight": jnp.ones((3, 4)), "bias": jnp.ones(4)}
    >>> bool(jnp.all(op(x, w) == braintrace.matmul(x, w["weight"], w["bias"])))
    True
    """

    _legacy_name = "MatMulOp"

    def __init__(
        self,
        weight_mask: Any = None,
        weight_fn: Callable[[Any], Any] | None = None,
        apply_weight_fn_before_mask: bool = False,
    ) -> None:
        self._warn_deprecated()
        self.weight_mask = weight_mask
        self.weight_fn = _check_fn(weight_fn, "MatMulOp", "weight_fn")
        self.apply_weight_fn_before_mask = bool(apply_weight_fn_before_mask)

    def __call__(self, x: Any, weights: Any) -> Any:
        """``braintrace.matmul(x, weight, bias)``; ``weights`` as in the class docstring.

        Parameters
        ----------
        x : array
            Input, shape ``(..., I)``.
        weights : dict or array
            ``{'weight': W, 'bias': b}`` (``bias`` optional) or a bare ``W``.
        """
        w = _as_weights(weights, "MatMulOp")
        weight = _masked(_require(w, "weight", "MatMulOp"), self.weight_mask, self.weight_fn,
                         self.apply_weight_fn_before_mask)
        return matmul(x, weight, w.get("bias"))


class ElemWiseOp(_LegacyOp):
    r"""Deprecated: use :func:`braintrace.element_wise`.

    ``op(weights)`` (or ``op(None, weights)``, the operator convention with an
    unused ``x``) returns ``braintrace.element_wise(weight, fn)``.

    Parameters
    ----------
    fn : callable, default identity
        Element-wise function of the weight.

    Examples
    --------
    >>> import warnings
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     op = braintrace.ElemWiseOp(jax.nn.sigmoid)
    >>> op({"weight": jnp.zeros(2)}).tolist()
    [0.5, 0.5]
    >>> op(None, jnp.zeros(2)).tolist() == braintrace.element_wise(jnp.zeros(2), jax.nn.sigmoid).tolist()
    True
    """

    _legacy_name = "ElemWiseOp"

    def __init__(self, fn: Callable[[Any], Any] | None = None) -> None:
        self._warn_deprecated()
        if fn is not None and not callable(fn):
            raise TypeError(f"braintrace.ElemWiseOp: `fn` must be callable, got {type(fn).__name__}.")
        self.fn = fn

    def __call__(self, x: Any, weights: Any = None) -> Any:
        """``braintrace.element_wise(weight, fn)``; called with the weights alone or as ``(None, weights)``."""
        if weights is None:
            x, weights = None, x
        if x is not None:
            raise TypeError(
                "braintrace.ElemWiseOp: an element-wise operation takes no input `x`; call it as "
                "op(weights) or op(None, weights)."
            )
        weight = _require(_as_weights(weights, "ElemWiseOp"), "weight", "ElemWiseOp")
        return element_wise(weight) if self.fn is None else element_wise(weight, self.fn)


class ConvOp(_LegacyOp):
    """Deprecated: use :func:`braintrace.conv`.

    ``op(x, {'weight': K, 'bias': b})`` returns
    ``braintrace.conv(x, K', b, strides=window_strides, padding=padding, ...)``
    with ``K' = K * weight_mask`` when a mask is given. The signature is
    braintrace 0.2.0's.

    Parameters
    ----------
    xinfo : jax.ShapeDtypeStruct, array or None
        Description of the input (0.2.0 derived the layout from it). Kept as
        the attribute ``xinfo``; :func:`braintrace.conv` reads the input's
        shape from ``x`` at each call, so ``None`` is accepted too.
    window_strides : int or sequence of int
        The strides (``strides`` of :func:`braintrace.conv`).
    padding : str, int or sequence of (low, high) pairs
        ``'SAME'``, ``'VALID'``, or explicit padding.
    lhs_dilation, rhs_dilation, feature_group_count, batch_group_count, dimension_numbers
        Forwarded to :func:`braintrace.conv` (same meaning and defaults).
    weight_mask : array, optional
        Fixed mask of the kernel's shape multiplied into the kernel.

    Examples
    --------
    >>> import warnings
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> x, k = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4))
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     op = braintrace.ConvOp(jax.ShapeDtypeStruct(x.shape, x.dtype), 1, "VALID")
    >>> op(x, {"weight": k}).shape
    (1, 3, 3, 4)
    >>> bool(jnp.all(op(x, k) == braintrace.conv(x, k, padding="VALID")))
    True
    """

    _legacy_name = "ConvOp"

    def __init__(
        self,
        xinfo: Any,
        window_strides: Any,
        padding: Any,
        lhs_dilation: Any = None,
        rhs_dilation: Any = None,
        feature_group_count: int = 1,
        batch_group_count: int = 1,
        dimension_numbers: Any = None,
        weight_mask: Any = None,
    ) -> None:
        self._warn_deprecated()
        if xinfo is not None and not hasattr(xinfo, "shape"):
            raise TypeError(
                "braintrace.ConvOp: `xinfo` must describe the input (a jax.ShapeDtypeStruct or an array), "
                f"got {type(xinfo).__name__}."
            )
        self.xinfo = xinfo
        self.options = {
            "strides": window_strides,
            "padding": padding,
            "lhs_dilation": lhs_dilation,
            "rhs_dilation": rhs_dilation,
            "feature_group_count": feature_group_count,
            "batch_group_count": batch_group_count,
            "dimension_numbers": dimension_numbers,
        }
        self.weight_mask = weight_mask

    def __call__(self, x: Any, weights: Any) -> Any:
        """``braintrace.conv(x, weight, bias, **options)``.

        Parameters
        ----------
        x : array
            Input, e.g. ``(N, H, W, C_in)``.
        weights : dict or array
            ``{'weight': K, 'bias': b}`` (``bias`` optional) or a bare ``K``.
        """
        w = _as_weights(weights, "ConvOp")
        kernel = _require(w, "weight", "ConvOp")
        if self.weight_mask is not None:
            kernel = kernel * self.weight_mask
        return conv(x, kernel, w.get("bias"), **self.options)


class SpMatMulOp(_LegacyOp):
    """Deprecated: use :func:`braintrace.sparse_matmul`.

    ``op(x, {'weight': data, 'bias': b})`` returns
    ``braintrace.sparse_matmul(x, f(data), sparse_mat=sparse_mat, bias=b)``;
    ``data`` holds one value per nonzero of ``sparse_mat``, in its data order.

    Parameters
    ----------
    sparse_mat : saiunit.sparse.CSR, CSC or COO
        The connectivity; its own values are not used.
    weight_fn : callable, optional
        Transform ``f`` of the nonzero values, e.g. ``jnp.abs``; default identity.

    Examples
    --------
    >>> import warnings
    >>> import jax.numpy as jnp
    >>> import saiunit as u
    >>> import braintrace
    >>> csr = u.sparse.CSR.fromdense(jnp.array([[1., 0., 1.], [0., 1., 0.]]))
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     op = braintrace.SpMatMulOp(csr)
    >>> op(jnp.array([1., 2.]), {"weight": jnp.array([1., 2., 3.])}).tolist()
    [1.0, 6.0, 2.0]
    """

    _legacy_name = "SpMatMulOp"

    def __init__(self, sparse_mat: Any, weight_fn: Callable[[Any], Any] | None = None) -> None:
        self._warn_deprecated()
        self.sparse_mat = sparse_mat
        self.weight_fn = _check_fn(weight_fn, "SpMatMulOp", "weight_fn")

    def __call__(self, x: Any, weights: Any) -> Any:
        """``braintrace.sparse_matmul(x, weight_fn(weight), sparse_mat=..., bias=...)``.

        Parameters
        ----------
        x : array
            Input, shape ``(..., I)``.
        weights : dict or array
            ``{'weight': data, 'bias': b}`` (``bias`` optional) or a bare ``data``.
        """
        w = _as_weights(weights, "SpMatMulOp")
        data = _masked(_require(w, "weight", "SpMatMulOp"), None, self.weight_fn, False)
        return sparse_matmul(x, data, sparse_mat=self.sparse_mat, bias=w.get("bias"))


class LoraOp(_LegacyOp):
    r"""Deprecated: use :func:`braintrace.lora_matmul`.

    ``op(x, {'B': B, 'A': A, 'bias': b})`` returns
    ``braintrace.lora_matmul(x, B, A, alpha=alpha, bias=b)``, i.e.
    :math:`y = \alpha\, x B A + b` with ``B`` of shape ``(I, r)`` and ``A`` of
    shape ``(r, O)``.

    Parameters
    ----------
    alpha : float, optional
        Static scale; ``None`` (the default) is 1.

    Examples
    --------
    >>> import warnings
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     op = braintrace.LoraOp(alpha=0.5)
    >>> op(jnp.ones(3), {"B": jnp.ones((3, 1)), "A": jnp.ones((1, 2))}).tolist()
    [1.5, 1.5]
    """

    _legacy_name = "LoraOp"

    def __init__(self, alpha: float | None = None) -> None:
        self._warn_deprecated()
        self.alpha = alpha

    def __call__(self, x: Any, weights: Any) -> Any:
        """``braintrace.lora_matmul(x, B, A, alpha=alpha, bias=bias)``.

        Parameters
        ----------
        x : array
            Input, shape ``(..., I)``.
        weights : dict
            ``{'B': B, 'A': A, 'bias': b}`` (``bias`` optional).
        """
        if not isinstance(weights, Mapping):
            raise TypeError(
                "braintrace.LoraOp: `weights` must be a dict with keys 'B' (I, r) and 'A' (r, O) "
                f"(and optionally 'bias'), got {type(weights).__name__}."
            )
        B = _require(weights, "B", "LoraOp")
        A = _require(weights, "A", "LoraOp")
        return lora_matmul(x, B, A, alpha=1.0 if self.alpha is None else self.alpha, bias=weights.get("bias"))
