"""The one table of learner names: ``'es_d_rtrl'`` -> :class:`~braintrace.ES_D_RTRL`.

The command line (``braintrace train --algorithm``), the benchmarks and
:func:`braintrace.compile` resolve learner names here, so a learner added to
:data:`LEARNERS` is offered everywhere at once.

Examples
--------
>>> import braintrace
>>> from braintrace.algorithms.catalog import learner_class
>>> learner_class("es_d_rtrl") is braintrace.ES_D_RTRL, learner_class("E-Prop") is braintrace.EProp
(True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .d_rtrl import D_RTRL
from .eprop import EProp
from .es_d_rtrl import ES_D_RTRL
from .ostl import OSTLFeedforward, OSTLRecurrent
from .osttp import OSTTP
from .otpe import OTPE
from .ottt import OTTT
from .rflo import RFLO
from .rtrl import RTRL
from .snap import SnAp
from .uoro import UORO

__all__ = ["LearnerSpec", "LEARNERS", "learner_class", "learner_names"]


@dataclasses.dataclass(frozen=True)
class LearnerSpec:
    """One learner's entry: its name, the class, other accepted names, one line of help.

    Attributes
    ----------
    name : str
        The canonical name (lower case, ``snake_case``).
    cls : type
        The learner class.
    aliases : tuple of str
        Other names that resolve to it (the 0.2.0 names among them).
    help : str
        One line: what the learner keeps and what it costs.
    memory : str
        The order of its trace memory (``B`` batch, ``|θ|`` weights learned
        online, ``S`` states per neuron, ``I``/``O`` a layer's input and output
        sizes, ``N`` hidden units, ``k_w`` the units one entry of weight ``w``
        reaches within SnAp's ``n`` steps), for tables such as ``docs/learners.md``.
    """

    name: str
    cls: type
    aliases: tuple[str, ...] = ()
    help: str = ""
    memory: str = ""


#: Every learner by name, in the order the command line lists them.
LEARNERS: tuple[LearnerSpec, ...] = (
    LearnerSpec("es_d_rtrl", ES_D_RTRL, ("pp_prop", "esd_rtrl"), "factored input/output traces, O(B(I+O)S) memory",
                "O(B(I+O)S)"),
    LearnerSpec("d_rtrl", D_RTRL, (), "exact diagonal traces, O(B|theta|S) memory", "O(B|θ|S)"),
    LearnerSpec("eprop", EProp, ("e_prop",), "e-prop (Bellec et al., 2020) on the D_RTRL traces", "O(B|θ|S)"),
    LearnerSpec("ostl", OSTLRecurrent, ("ostl_recurrent",), "OSTL, recurrent form (Bohnstingl et al., 2022)",
                "O(B|θ|S)"),
    LearnerSpec("ostl_ff", OSTLFeedforward, ("ostl_feedforward",), "OSTL, factored feed-forward form", "O(B(I+O)S)"),
    LearnerSpec("ottt", OTTT, (), "OTTT (Xiao et al., 2022): presynaptic traces", "O(BI)"),
    LearnerSpec("otpe", OTPE, (), "OTPE (Summe et al., 2023): presynaptic and postsynaptic traces",
                "O(B|θ|) ('full'), O(B(I+O)) ('approx')"),
    LearnerSpec("osttp", OSTTP, (), "OSTTP (Ortner et al., 2023): target projection as learning signal", "O(B|θ|S)"),
    LearnerSpec("rflo", RFLO, (), "RFLO (Murray, 2019): D_RTRL traces, random feedback of the output error",
                "O(B|θ|S)"),
    LearnerSpec("rtrl", RTRL, (), "exact RTRL: full influence matrix, O(B n |theta|) memory (small networks)",
                "O(B|θ|N)"),
    LearnerSpec("snap", SnAp, ("snap_n",), "SnAp-n (Menick et al., 2021): influence kept on an n-step sparsity pattern",
                "O(B·Σ_w |w|·k_w), k_w ≤ N"),
    LearnerSpec("uoro", UORO, (), "UORO (Tallec & Ollivier, 2018): unbiased rank-one influence, O(B n + |theta|)",
                "O(BN + |θ|)"),
)


def _normal(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _table() -> Mapping[str, LearnerSpec]:
    out: dict[str, LearnerSpec] = {}
    for spec in LEARNERS:
        for n in (spec.name, *spec.aliases):
            out[_normal(n)] = spec
    return out


def learner_names() -> tuple[str, ...]:
    """The canonical names, in :data:`LEARNERS` order.

    Examples
    --------
    >>> from braintrace.algorithms.catalog import learner_names
    >>> learner_names()[:2]
    ('es_d_rtrl', 'd_rtrl')
    """
    return tuple(spec.name for spec in LEARNERS)


def learner_class(name: Any) -> type:
    """The learner class of ``name`` (case-insensitive; ``-`` and ``_`` alike).

    Parameters
    ----------
    name : str
        A name or alias from :data:`LEARNERS`.

    Returns
    -------
    type

    Raises
    ------
    ValueError
        An unknown name; the message lists the valid ones.
    TypeError
        ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"a learner name must be a string, got {type(name).__name__}: {name!r}.")
    spec = _table().get(_normal(name))
    if spec is None:
        valid = ", ".join(f"'{n}'" for n in learner_names())
        raise ValueError(f"unknown learner {name!r}; valid names: {valid} (and 'bptt' where a driver offers it).")
    return spec.cls
