"""The model catalog: sourced model cards, one YAML file per family.

Usage::

    from llmpick.catalog import load_catalog

    card = load_catalog().get("qwen2.5-7b-instruct")
    card.architecture.num_key_value_heads, card.context.native
"""

from llmpick.catalog.loader import Catalog, load_catalog
from llmpick.catalog.schema import (
    Architecture,
    Benchmark,
    BenchmarkProtocol,
    Context,
    HubGguf,
    License,
    ModelCard,
    Params,
    Price,
    SourcedInt,
    Variant,
)

__all__ = [
    "Architecture",
    "Benchmark",
    "BenchmarkProtocol",
    "Catalog",
    "Context",
    "HubGguf",
    "License",
    "ModelCard",
    "Params",
    "Price",
    "SourcedInt",
    "Variant",
    "load_catalog",
]
