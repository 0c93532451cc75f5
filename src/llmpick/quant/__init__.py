"""Quantization measured on your data: build variants, measure what each loses, choose.

::

    from llmpick.quant import QuantOptions, run_quant, write_quant_report
    report = run_quant(context, "smollm2-135m-instruct", QuantOptions(variants=["Q8_0", "Q4_K_M"]))

- :mod:`llmpick.quant.files`: the reference GGUF and the variants, in the cache dir.
- :mod:`llmpick.quant.divergence`: KLD, same top token and ΔPPL, as llama.cpp defines them.
- :mod:`llmpick.quant.sweep`: the sweep (divergence, eval, bench) and the choice.
- :mod:`llmpick.quant.store`: results in the store; measured losses for fit/recommend/choose.
- :mod:`llmpick.quant.report`: the table and the chart (HTML, PNG, JSON).
"""

from llmpick.quant.divergence import Divergence
from llmpick.quant.files import BuiltFile, build_reference, build_variant, variant_names
from llmpick.quant.report import quant_chart, quant_table, write_quant_report
from llmpick.quant.store import (
    MeasuredQuantLoss,
    latest_quant_report,
    lookup_measured_loss,
    loss_lookup,
    measured_quant_loss,
    save_quant,
)
from llmpick.quant.sweep import (
    QuantOptions,
    QuantReport,
    VariantResult,
    choose_variant,
    run_quant,
    variant_specs,
)

__all__ = [
    "BuiltFile",
    "Divergence",
    "MeasuredQuantLoss",
    "QuantOptions",
    "QuantReport",
    "VariantResult",
    "build_reference",
    "build_variant",
    "choose_variant",
    "latest_quant_report",
    "lookup_measured_loss",
    "loss_lookup",
    "measured_quant_loss",
    "quant_chart",
    "quant_table",
    "run_quant",
    "save_quant",
    "variant_names",
    "variant_specs",
    "write_quant_report",
]
