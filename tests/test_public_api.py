"""The public surface: every exported object is documented with an example and typed.

"Public" is everything listed in the ``__all__`` of ``braintrace`` and of its
public subpackages/modules below. Objects that cannot carry their own
docstring (JAX ``Primitive`` instances, ``__version__``, read-only tables) must
be described in the docstring of the module that exports them.
"""

import importlib
import inspect

import pytest

PUBLIC_MODULES = [
    "braintrace",
    "braintrace.primitives",
    "braintrace.compiler",
    "braintrace.executor",
    "braintrace.algorithms",
    "braintrace.nn",
    "braintrace.nn.surrogate",
    "braintrace.legacy",
    "braintrace.datasets",
    "braintrace.training",
    "braintrace.checkpoint",
]


def _public():
    out, seen = [], set()
    for modname in PUBLIC_MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            key = obj.__name__ if inspect.ismodule(obj) else id(obj)
            if key in seen:
                continue
            seen.add(key)
            out.append((f"{modname}.{name}", module, name, obj))
    return out


PUBLIC = _public()
IDS = [p[0] for p in PUBLIC]


def _documentable(obj):
    return inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isfunction(obj)


@pytest.mark.parametrize("label, module, name, obj", PUBLIC, ids=IDS)
def test_docstring_with_examples(label, module, name, obj):
    if _documentable(obj):
        doc = obj.__doc__  # the object's own docstring, not an inherited one
        assert doc and doc.strip(), f"{label} has no docstring."
        assert "Examples\n" in inspect.cleandoc(doc) and ">>>" in doc, (
            f"{label}'s docstring has no NumPy-style 'Examples' section with a doctest; add one "
            "(it runs in tests/test_doctests.py)."
        )
    else:
        assert name in (module.__doc__ or ""), (
            f"{label} is a {type(obj).__name__} and cannot carry a docstring; describe it in the "
            f"docstring of {module.__name__}."
        )


def _signatures(obj):
    if inspect.isfunction(obj):
        yield obj.__qualname__, obj
    elif inspect.isclass(obj) and obj.__module__.startswith("braintrace") and not getattr(obj, "_is_protocol", False):
        for attr, value in vars(obj).items():
            if attr.startswith("_") and attr not in ("__init__", "__call__"):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                value = value.fget
            if inspect.isfunction(value):
                yield f"{obj.__qualname__}.{attr}", value


@pytest.mark.parametrize("label, module, name, obj", PUBLIC, ids=IDS)
def test_public_signatures_are_annotated(label, module, name, obj):
    missing = []
    for qualname, fn in _signatures(obj):
        sig = inspect.signature(fn)
        missing += [
            f"{qualname}({p.name})"
            for p in sig.parameters.values()
            if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
        ]
        if sig.return_annotation is inspect.Signature.empty:
            missing.append(f"{qualname} -> ?")
    assert not missing, f"missing type hints: {', '.join(missing)}"


OPERATORS = ["matmul", "element_wise", "conv", "sparse_matmul", "lora_matmul", "embedding", "grouped_matmul",
             "einsum", "register_primitive"]


@pytest.mark.parametrize("name", OPERATORS)
def test_every_etp_operator_is_exported_at_the_top_level(name):
    import braintrace

    assert name in braintrace.__all__ and name in braintrace.primitives.__all__
    assert getattr(braintrace, name) is getattr(braintrace.primitives, name)


@pytest.mark.parametrize("unbatched, batched", [("etp_embed_p", "etp_embed_batched_p"),
                                                ("etp_grouped_mv_p", "etp_grouped_mm_p"),
                                                ("etp_einsum_p", "etp_einsum_batched_p")])
def test_new_primitives_are_registered_with_their_vmap_partner(unbatched, batched):
    from braintrace import primitives as P

    entry = P.get_etp_primitive(getattr(P, unbatched))
    assert entry.batched_partner is P.get_etp_primitive(getattr(P, batched))
    assert {unbatched, batched} <= set(P.__all__)


@pytest.mark.parametrize("name", ["Embedding", "GroupedLinear"])
def test_new_layers_are_exported(name):
    import braintrace

    assert name in braintrace.nn.__all__ and isinstance(getattr(braintrace.nn, name), type)
