"""llmpick: choose an open-weight LLM for your task, hardware and budget, then prove it.

The curated library API (the CLI is a thin layer over these)::

    from llmpick import Context, GenerationRequest, collect, fit_model, recommend, run_eval

Names are imported on first use (PEP 562), so ``import llmpick`` stays cheap
and sets up no state; each stage package (``llmpick.catalog``,
``llmpick.fit``, ``llmpick.evaluate``, ``llmpick.bench``…) has its own
``__all__`` for the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # the run context and plugin seams
    "Context": "llmpick.context",
    "Backend": "llmpick.backends.base",
    "BackendOptions": "llmpick.backends.base",
    "Chunk": "llmpick.backends.base",
    "Generation": "llmpick.backends.base",
    "GenerationRequest": "llmpick.backends.base",
    "Message": "llmpick.backends.base",
    "ModelIdentity": "llmpick.backends.base",
    "SamplingParams": "llmpick.backends.base",
    "Usage": "llmpick.backends.base",
    "collect": "llmpick.backends.base",
    "Cell": "llmpick.evaluate.scorers.base",
    "Score": "llmpick.evaluate.scorers.base",
    "ScorerSpec": "llmpick.evaluate.scorers.base",
    # the pipeline's stages
    "load_catalog": "llmpick.catalog",
    "fit_model": "llmpick.fit",
    "get_device": "llmpick.hardware",
    "detect_local": "llmpick.hardware",
    "Constraints": "llmpick.recommend",
    "recommend": "llmpick.recommend",
    "load_dataset": "llmpick.evaluate",
    "RunOptions": "llmpick.evaluate",
    "run_eval": "llmpick.evaluate",
    "BenchConfig": "llmpick.bench",
    "run_bench": "llmpick.bench",
    "ChooseOptions": "llmpick.choose",
    "choose": "llmpick.choose",
    # errors
    "LlmpickError": "llmpick.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmpick' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
