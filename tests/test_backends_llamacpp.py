"""The llamacpp backend on the bundled GGUFs: real generation, greedy."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmpick.backends.base import GenerationRequest, collect
from llmpick.backends.llamacpp import LlamaCppBackend, LlamaCppOptions
from llmpick.errors import ContextLengthError, ModelFileError

pytestmark = pytest.mark.slow

PARIS = "What is the capital of France? Answer in one word."


def test_run_cli_answers_paris_offline(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmpick",
            "run",
            "-m",
            "smollm2-135m-instruct",
            PARIS,
            "--temperature",
            "0",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "Paris" in data["output"]
    assert set(data) >= {"model", "output", "usage", "timing"}
    assert data["usage"]["prompt_tokens"] > 0
    assert data["usage"]["completion_tokens"] > 0
    timing = data["timing"]
    assert 0 < timing["time_to_first_token_s"] <= timing["total_s"]
    assert timing["output_tokens_per_second"] > 0


def test_stream_is_one_token_per_chunk(smollm2_backend: LlamaCppBackend) -> None:
    async def go() -> list:
        req = GenerationRequest.from_prompt(PARIS, temperature=0, max_tokens=32)
        return [c async for c in smollm2_backend.generate(req)]

    chunks = asyncio.run(go())
    body, final = chunks[:-1], chunks[-1]
    assert final.final and final.usage is not None
    assert final.finish_reason == "stop"
    assert all(c.tokens == 1 for c in body)
    assert sum(c.tokens for c in chunks) == final.usage.completion_tokens
    times = [c.time_s for c in chunks]
    assert times == sorted(times)


def test_greedy_is_deterministic_and_limits_tokens(smollm2_backend: LlamaCppBackend) -> None:
    req = GenerationRequest.from_prompt("Count from 1 to 50.", temperature=0, max_tokens=20)
    a = asyncio.run(collect(smollm2_backend, req))
    b = asyncio.run(collect(smollm2_backend, req))
    assert a.output == b.output
    assert a.usage.completion_tokens == 20
    assert a.finish_reason == "length"
    assert a.output.startswith("1")


def test_seeded_sampling_is_reproducible(smollm2_backend: LlamaCppBackend) -> None:
    req = GenerationRequest.from_prompt("Write a word.", temperature=1.0, max_tokens=12, seed=7)
    a = asyncio.run(collect(smollm2_backend, req))
    b = asyncio.run(collect(smollm2_backend, req))
    assert a.output == b.output


def test_stop_string_cuts_output(smollm2_backend: LlamaCppBackend) -> None:
    req = GenerationRequest.from_prompt(
        "Count from 1 to 20, separated by commas.", temperature=0, max_tokens=60, stop=["5"]
    )
    gen = asyncio.run(collect(smollm2_backend, req))
    assert "5" not in gen.output
    assert "4" in gen.output
    assert gen.finish_reason == "stop"


def test_ignore_eos_gives_exact_token_count(smollm2_backend: LlamaCppBackend) -> None:
    req = GenerationRequest.from_prompt("Hi", temperature=0, max_tokens=40, ignore_eos=True)
    gen = asyncio.run(collect(smollm2_backend, req))
    assert gen.usage.completion_tokens == 40


def test_describe_identity(smollm2_backend: LlamaCppBackend) -> None:
    ident = smollm2_backend.describe()
    assert ident.backend == "llamacpp"
    assert ident.quantization == "Q4_1"
    assert ident.weights_sha256 and len(ident.weights_sha256) == 64
    assert ident.chat_template_sha256
    assert len(ident.key()) == 64


def test_gemma_base_model_completes(gemma_path: Path) -> None:
    backend = LlamaCppBackend(str(gemma_path), LlamaCppOptions(n_ctx=512))
    try:
        req = GenerationRequest.from_prompt("The capital of France is", max_tokens=8)
        gen = asyncio.run(collect(backend, req))
        assert "Paris" in gen.output
        assert backend.describe().quantization == "Q4_K_M"
        assert backend.context_length() == 512
    finally:
        asyncio.run(backend.aclose())


def test_prompt_longer_than_context(smollm2_path: Path) -> None:
    backend = LlamaCppBackend(str(smollm2_path), LlamaCppOptions(n_ctx=64))
    try:
        req = GenerationRequest.from_prompt("word " * 200, max_tokens=4)
        with pytest.raises(ContextLengthError, match="context window is 64"):
            asyncio.run(collect(backend, req))
    finally:
        asyncio.run(backend.aclose())


def test_missing_and_corrupt_gguf(tmp_path: Path, smollm2_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        LlamaCppBackend(str(tmp_path / "nope.gguf"))
    truncated = tmp_path / "truncated.gguf"
    with smollm2_path.open("rb") as src, truncated.open("wb") as dst:
        dst.write(src.read(1_000_000))
    with pytest.raises(ModelFileError, match="could not load"):
        LlamaCppBackend(str(truncated))
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        LlamaCppBackend(str(garbage))


def test_hub_download_respects_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib

    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    importlib.reload(huggingface_hub.constants)  # it reads the variables at import
    try:
        with pytest.raises(ModelFileError, match="HF_HUB_OFFLINE"):
            LlamaCppBackend("x.gguf", LlamaCppOptions(hf_repo="someone/some-gguf"))
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)


def test_hub_cached_file_is_used_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, smollm2_path: Path
) -> None:
    """A GGUF already in the local Hub cache loads with HF_HUB_OFFLINE=1."""
    cache = tmp_path / "hub"
    snap = cache / "models--someone--smol-gguf" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (cache / "models--someone--smol-gguf" / "refs").mkdir()
    (cache / "models--someone--smol-gguf" / "refs" / "main").write_text("0" * 40)
    shutil.copy(smollm2_path, snap / "smol.gguf")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import importlib

    import huggingface_hub.constants

    importlib.reload(huggingface_hub.constants)
    try:
        backend = LlamaCppBackend(
            "smol.gguf",
            LlamaCppOptions(hf_repo="someone/smol-gguf", n_ctx=256, cache_dir=str(cache)),
        )
        assert backend.path.name == "smol.gguf"
        asyncio.run(backend.aclose())
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)
