"""The hf backend (transformers) on the same SmolLM2 weights, dequantized from GGUF."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmpick.backends.base import GenerationRequest, collect
from llmpick.context import Context

pytest.importorskip("transformers")
pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.hf]


@pytest.fixture(scope="module")
def hf_backend(smollm2_path: Path):  # type: ignore[no-untyped-def]
    backend = Context().open_backend(f"hf:{smollm2_path}")
    yield backend
    asyncio.run(backend.aclose())


def test_answers_paris_like_llamacpp(hf_backend) -> None:  # type: ignore[no-untyped-def]
    req = GenerationRequest.from_prompt(
        "What is the capital of France? Answer in one word.", temperature=0, max_tokens=12
    )

    async def go():  # type: ignore[no-untyped-def]
        chunks = [c async for c in hf_backend.generate(req)]
        return chunks

    chunks = asyncio.run(go())
    text = "".join(c.text for c in chunks)
    assert "Paris" in text
    final = chunks[-1]
    assert final.final and final.usage.source == "backend"
    assert final.usage.prompt_tokens > 0
    assert sum(c.tokens for c in chunks) == final.usage.completion_tokens


def test_identity_and_limits(hf_backend) -> None:  # type: ignore[no-untyped-def]
    ident = hf_backend.describe()
    assert ident.backend == "hf"
    assert ident.quantization.startswith("gguf-dequantized")
    assert ident.weights_sha256 and ident.chat_template_sha256
    req = GenerationRequest.from_prompt("Count from 1 to 100.", temperature=0, max_tokens=6)
    gen = asyncio.run(collect(hf_backend, req))
    assert gen.usage.completion_tokens == 6


def test_bitsandbytes_needs_gpu(smollm2_path: Path) -> None:
    import torch

    from llmpick.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    context = Context()
    spec = context.resolve(f"hf:{smollm2_path}").model_copy(
        update={"options": {"load_in_4bit": True}}
    )
    with pytest.raises(ConfigError, match="CUDA GPU"):
        context.open_backend(spec)


def test_stop_string_cuts_output(hf_backend) -> None:  # type: ignore[no-untyped-def]
    req = GenerationRequest.from_prompt(
        "Count from 1 to 20, separated by commas.", temperature=0, max_tokens=60, stop=["5"]
    )
    gen = asyncio.run(collect(hf_backend, req))
    assert "5" not in gen.output
    assert "4" in gen.output
    assert gen.finish_reason == "stop"
    assert sum(gen.chunk_tokens) <= gen.usage.completion_tokens
