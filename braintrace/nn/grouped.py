r"""``G`` independent linear maps side by side: block-diagonal weights for multi-area models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import brainstate
import saiunit as u

from ..primitives import grouped_matmul
from .checks import check_trailing, layer_label, to_size

__all__ = ["GroupedLinear"]

init = brainstate.nn.init
Initializer = Callable[..., Any] | Any


class GroupedLinear(brainstate.nn.Module):
    r"""``G`` independent dense layers applied group by group, ``y_g = x_g W_g + b_g``.

    The equivalent of a ``(G·I, G·O)`` block-diagonal :class:`Linear` (areas
    that do not project to each other), with ``G`` times fewer weights and a
    ``G`` times smaller D_RTRL trace. The product goes through
    :func:`braintrace.grouped_matmul`; inputs and outputs keep the group axis
    second to last, so a hidden state fed by this layer has shape
    ``(..., G, O)``.

    .. math:: y_{\ldots g o} = \sum_i x_{\ldots g i} W_{g i o} + b_{g o}

    Parameters
    ----------
    num_groups : int
        :math:`G`.
    in_size : int
        :math:`I`, inputs per group.
    out_size : int
        :math:`O`, outputs per group.
    w_init : initializer or array, default ``KaimingNormal()``
        An initializer is called once per group with the shape ``(I, O)`` (so
        fan-in based scales see :math:`I`); an array must have shape
        ``(G, I, O)`` and may carry a saiunit unit.
    b_init : initializer, array or None, default ``ZeroInit()``
        Bias of shape ``(G, O)``; ``None`` gives no bias. Its unit must be
        ``unit(x) * unit(W)``.
    name : str, optional
        Module name, used in error messages.

    Attributes
    ----------
    weight : brainstate.ParamState
        ``dict(weight=(G, I, O), bias=(G, O))`` (``bias`` absent when ``b_init=None``).
    in_size, out_size : tuple of int
        ``(G, I)`` and ``(G, O)``.

    Raises
    ------
    ValueError
        Sizes that are not positive ints (construction); an input whose
        trailing axes are not ``(G, I)`` (call).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import braintrace
    >>> layer = braintrace.nn.GroupedLinear(3, 4, 2)          # 3 areas, 4 -> 2 units each
    >>> layer(jnp.ones((8, 3, 4))).shape
    (8, 3, 2)
    >>> layer.weight.value["weight"].shape
    (3, 4, 2)
    """

    def __init__(
        self,
        num_groups: int,
        in_size: int,
        out_size: int,
        w_init: Initializer = init.KaimingNormal(),
        b_init: Initializer | None = init.ZeroInit(),
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        label = type(self).__name__
        self.num_groups = to_size(num_groups, label, "num_groups")[0]
        self.in_size = (self.num_groups, to_size(in_size, label, "in_size")[0])
        self.out_size = (self.num_groups, to_size(out_size, label, "out_size")[0])
        G, I, O = self.num_groups, self.in_size[1], self.out_size[1]
        if callable(w_init):
            weight = u.math.stack([init.param(w_init, (I, O), allow_none=False) for _ in range(G)])
        else:
            weight = init.param(w_init, (G, I, O), allow_none=False)
        params = dict(weight=weight)
        if b_init is not None:
            params["bias"] = init.param(b_init, (G, O), allow_none=False)
        self.weight = brainstate.ParamState(params)

    @property
    def _label(self) -> str:
        return layer_label(self, num_groups=self.num_groups, in_size=self.in_size[1], out_size=self.out_size[1])

    def update(self, x: Any) -> Any:
        """One forward pass, group by group.

        Parameters
        ----------
        x : array_like
            The input, shape ``(..., G, I)``: any leading (batch) axes, then the
            group axis and each group's inputs.

        Returns
        -------
        jax.Array or Quantity
            ``y_g = x_g W_g + b_g``, shape ``(..., G, O)``.

        Raises
        ------
        ValueError
            ``x``'s trailing axes are not ``(G, I)``.
        """
        check_trailing(self._label, x, self.in_size)
        params = self.weight.value
        return grouped_matmul(x, params["weight"], params.get("bias"))
