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

Parameter classes are :class:`brainstate.ParamState` subclasses holding the
value and an operator; ``param.execute(x)`` applies the operator to ``x`` and
the current value. ``ETraceParam`` and ``ElemWiseParam`` bind ETP primitives,
so their weight learns online; ``NonTempParam`` applies a plain JAX callable,
so its weight receives only its instantaneous gradient.

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

import brainstate

from .primitives import conv, element_wise, lora_matmul, matmul, sparse_matmul

__all__ = [
    "DEPRECATIONS",
    "MatMulOp",
    "ElemWiseOp",
    "ConvOp",
    "SpMatMulOp",
    "LoraOp",
    "ETraceParam",
    "ElemWiseParam",
    "NonTempParam",
]

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
    if name in DEPRECATIONS:
        return globals()[name]
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


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
    with :math:`W' = f(W) \odot M` for the optional ``weight_fn`` :math:`f` and
    ``weight_mask`` :math:`M` (plain JAX applied to the weight before the
    primitive, as in :class:`braintrace.nn.Linear`).

    Parameters
    ----------
    weight_mask : array, shape ``(I, O)``, optional
        Fixed mask multiplied into the weight.
    weight_fn : callable, optional
        Transform of the weight, e.g. ``jnp.abs``.

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

    def __init__(self, weight_mask: Any = None, weight_fn: Callable[[Any], Any] | None = None) -> None:
        self._warn_deprecated()
        if weight_fn is not None and not callable(weight_fn):
            raise TypeError(f"braintrace.MatMulOp: `weight_fn` must be callable, got {type(weight_fn).__name__}.")
        self.weight_mask = weight_mask
        self.weight_fn = weight_fn

    def __call__(self, x: Any, weights: Any) -> Any:
        """``braintrace.matmul(x, weight, bias)``; ``weights`` as in the class docstring."""
        w = _as_weights(weights, "MatMulOp")
        weight = _require(w, "weight", "MatMulOp")
        if self.weight_fn is not None:
            weight = self.weight_fn(weight)
        if self.weight_mask is not None:
            weight = weight * self.weight_mask
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
    ``braintrace.conv(x, K', b, **options)`` with ``K' = K * weight_mask`` when a
    mask is given.

    Parameters
    ----------
    strides, padding, lhs_dilation, rhs_dilation, feature_group_count, dimension_numbers
        Forwarded to :func:`braintrace.conv` (same meaning and defaults).
    weight_mask : array, optional
        Fixed mask of the kernel's shape multiplied into the kernel.

    Examples
    --------
    >>> import warnings
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     op = braintrace.ConvOp(padding="VALID")
    >>> x, k = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4))
    >>> op(x, {"weight": k}).shape
    (1, 3, 3, 4)
    >>> bool(jnp.all(op(x, k) == braintrace.conv(x, k, padding="VALID")))
    True
    """

    _legacy_name = "ConvOp"

    def __init__(
        self,
        strides: Any = 1,
        padding: Any = "SAME",
        lhs_dilation: Any = None,
        rhs_dilation: Any = None,
        feature_group_count: int = 1,
        dimension_numbers: Any = None,
        weight_mask: Any = None,
    ) -> None:
        self._warn_deprecated()
        self.options = dict(
            strides=strides,
            padding=padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            feature_group_count=feature_group_count,
            dimension_numbers=dimension_numbers,
        )
        self.weight_mask = weight_mask

    def __call__(self, x: Any, weights: Any) -> Any:
        """``braintrace.conv(x, weight, bias, **options)``."""
        w = _as_weights(weights, "ConvOp")
        kernel = _require(w, "weight", "ConvOp")
        if self.weight_mask is not None:
            kernel = kernel * self.weight_mask
        return conv(x, kernel, w.get("bias"), **self.options)


class SpMatMulOp(_LegacyOp):
    """Deprecated: use :func:`braintrace.sparse_matmul`.

    ``op(x, {'weight': data, 'bias': b})`` returns
    ``braintrace.sparse_matmul(x, data, sparse_mat=sparse_mat, bias=b)``; ``data``
    holds one value per nonzero of ``sparse_mat``, in its data order.

    Parameters
    ----------
    sparse_mat : saiunit.sparse.CSR, CSC or COO
        The connectivity; its own values are not used.

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

    def __init__(self, sparse_mat: Any) -> None:
        self._warn_deprecated()
        self.sparse_mat = sparse_mat

    def __call__(self, x: Any, weights: Any) -> Any:
        """``braintrace.sparse_matmul(x, weight, sparse_mat=..., bias=...)``."""
        w = _as_weights(weights, "SpMatMulOp")
        data = _require(w, "weight", "SpMatMulOp")
        return sparse_matmul(x, data, sparse_mat=self.sparse_mat, bias=w.get("bias"))


class LoraOp(_LegacyOp):
    r"""Deprecated: use :func:`braintrace.lora_matmul`.

    ``op(x, {'B': B, 'A': A, 'bias': b})`` returns
    ``braintrace.lora_matmul(x, B, A, alpha=alpha, bias=b)``, i.e.
    :math:`y = \alpha\, x B A + b` with ``B`` of shape ``(I, r)`` and ``A`` of
    shape ``(r, O)``.

    Parameters
    ----------
    alpha : float, default 1.0
        Static scale.

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

    def __init__(self, alpha: float = 1.0) -> None:
        self._warn_deprecated()
        self.alpha = alpha

    def __call__(self, x: Any, weights: Any) -> Any:
        """``braintrace.lora_matmul(x, B, A, alpha=alpha, bias=bias)``."""
        if not isinstance(weights, Mapping):
            raise TypeError(
                "braintrace.LoraOp: `weights` must be a dict with keys 'B' (I, r) and 'A' (r, O) "
                f"(and optionally 'bias'), got {type(weights).__name__}."
            )
        B = _require(weights, "B", "LoraOp")
        A = _require(weights, "A", "LoraOp")
        return lora_matmul(x, B, A, alpha=self.alpha, bias=weights.get("bias"))


class _LegacyParam(_WarnOnce, brainstate.ParamState):
    """Base of the v0.1 parameter shims: a ``ParamState`` holding an operator."""

    op: Any

    def __init__(self, value: Any, op: Any, name: str | None = None) -> None:
        # stacklevel 4: _warn_deprecated <- _LegacyParam.__init__ <- subclass __init__ <- user
        self._warn_deprecated(stacklevel=4)
        super().__init__(value, name=name, op=op)


class ETraceParam(_LegacyParam):
    """Deprecated: use a :class:`brainstate.ParamState` plus an ETP primitive function.

    A ``ParamState`` holding the value (a dict of named arrays, or one array)
    and a legacy operator; ``param.execute(x)`` is ``op(x, param.value)``,
    which binds the operator's ETP primitive, so the weight learns online.

    Parameters
    ----------
    value : array or dict of arrays
        The parameter, e.g. ``{'weight': W, 'bias': b}``.
    op : MatMulOp, ConvOp, SpMatMulOp, LoraOp or ElemWiseOp
        The operator.
    name : str, optional
        State name.

    Examples
    --------
    >>> import warnings
    >>> import brainstate, jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     param = braintrace.ETraceParam({"weight": jnp.ones((3, 2))}, braintrace.MatMulOp())
    >>> isinstance(param, brainstate.ParamState)
    True
    >>> param.execute(jnp.ones(3)).tolist()
    [3.0, 3.0]
    """

    _legacy_name = "ETraceParam"

    def __init__(self, value: Any, op: Any, name: str | None = None) -> None:
        if not isinstance(op, _LegacyOp):
            raise TypeError(
                "braintrace.ETraceParam: `op` must be a legacy operator (MatMulOp, ElemWiseOp, ConvOp, "
                f"SpMatMulOp or LoraOp), got {type(op).__name__}. For a plain JAX function of the weight "
                "use NonTempParam, or better a brainstate.ParamState with braintrace.matmul & co."
            )
        super().__init__(value, op, name=name)

    def execute(self, x: Any = None) -> Any:
        """``op(x, self.value)``; ``x`` stays ``None`` for an :class:`ElemWiseOp`."""
        return self.op(x, self.value)


class ElemWiseParam(_LegacyParam):
    """Deprecated: use a :class:`brainstate.ParamState` plus :func:`braintrace.element_wise`.

    ``param.execute()`` is ``braintrace.element_wise(weight, fn)``.

    Parameters
    ----------
    value : array or dict with key ``'weight'``
        The parameter, e.g. a vector of time constants.
    op : ElemWiseOp or callable, optional
        The operator, or directly its element-wise function (default identity).
    name : str, optional
        State name.

    Examples
    --------
    >>> import warnings
    >>> import jax, jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     tau = braintrace.ElemWiseParam(jnp.zeros(2), jax.nn.sigmoid)
    >>> tau.execute().tolist()
    [0.5, 0.5]
    """

    _legacy_name = "ElemWiseParam"

    def __init__(self, value: Any, op: Any = None, name: str | None = None) -> None:
        if op is not None and not isinstance(op, ElemWiseOp) and not callable(op):
            raise TypeError(
                f"braintrace.ElemWiseParam: `op` must be an ElemWiseOp or a callable, got {type(op).__name__}."
            )
        super().__init__(value, op, name=name)

    def execute(self, x: Any = None) -> Any:
        """``braintrace.element_wise(weight, fn)``; ``x`` must be ``None`` (element-wise ops take no input)."""
        if x is not None:
            raise TypeError("braintrace.ElemWiseParam.execute: an element-wise parameter takes no input `x`.")
        if isinstance(self.op, ElemWiseOp):
            return self.op(self.value)
        weight = _require(_as_weights(self.value, "ElemWiseParam"), "weight", "ElemWiseParam")
        return element_wise(weight) if self.op is None else element_wise(weight, self.op)


class NonTempParam(_LegacyParam):
    """Deprecated: use a :class:`brainstate.ParamState` plus plain JAX ops.

    ``param.execute(x)`` is ``op(x, param.value)`` with a plain JAX callable, so
    the weight is not learned online: it receives its instantaneous gradient
    only.

    Parameters
    ----------
    value : array or dict of arrays
        The parameter.
    op : callable
        ``op(x, value) -> y`` in plain JAX, e.g. ``lambda x, w: x @ w``.
    name : str, optional
        State name.

    Raises
    ------
    TypeError
        ``op`` is a legacy ETP operator (``MatMulOp`` & co.): it would bind an
        ETP primitive and make the weight learn online; use
        :class:`ETraceParam` for that.

    Examples
    --------
    >>> import warnings
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", DeprecationWarning)
    ...     readout = braintrace.NonTempParam(jnp.ones((3, 2)), lambda x, w: x @ w)
    >>> readout.execute(jnp.ones(3)).tolist()
    [3.0, 3.0]
    """

    _legacy_name = "NonTempParam"

    def __init__(self, value: Any, op: Callable[[Any, Any], Any], name: str | None = None) -> None:
        if isinstance(op, _LegacyOp):
            raise TypeError(
                f"braintrace.NonTempParam: `op` is a {type(op).__name__}, which binds an ETP primitive and "
                "would make this weight learn online. Pass a plain JAX callable op(x, value) (e.g. "
                "lambda x, w: x @ w), or use ETraceParam for an online-learned weight."
            )
        if not callable(op):
            raise TypeError(f"braintrace.NonTempParam: `op` must be callable, got {type(op).__name__}.")
        super().__init__(value, op, name=name)

    def execute(self, x: Any) -> Any:
        """``op(x, self.value)``."""
        return self.op(x, self.value)
