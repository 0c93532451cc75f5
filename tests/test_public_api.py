"""The public API is explicit and locked: changing it must change this test."""

from __future__ import annotations

import subprocess
import sys

import llmpick

EXPECTED = {
    "__version__",
    "Backend",
    "BackendOptions",
    "BenchConfig",
    "Cell",
    "ChooseOptions",
    "Chunk",
    "Constraints",
    "Context",
    "Generation",
    "GenerationRequest",
    "LlmpickError",
    "Message",
    "ModelIdentity",
    "RunOptions",
    "SamplingParams",
    "Score",
    "ScorerSpec",
    "Usage",
    "choose",
    "collect",
    "detect_local",
    "fit_model",
    "get_device",
    "load_catalog",
    "load_dataset",
    "recommend",
    "run_bench",
    "run_eval",
}


def test_all_is_locked() -> None:
    assert set(llmpick.__all__) == EXPECTED


def test_every_name_resolves() -> None:
    for name in llmpick.__all__:
        assert getattr(llmpick, name) is not None, name


def test_import_is_cheap_and_stateless() -> None:
    code = "import sys, llmpick; print(sorted(m for m in sys.modules if m.startswith('llmpick')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['llmpick']"
