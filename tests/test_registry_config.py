"""The plugin registry (entry points), model specs and llmpick.yaml."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from llmpick.context import Context
from llmpick.errors import ConfigError, ModelNotFoundError


def _install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real distribution on sys.path that declares a backend entry point."""
    pkg = tmp_path / "echo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent("""
        import time
        from llmpick.backends.base import Backend, Chunk, ModelIdentity, Usage

        class EchoBackend(Backend):
            name = "echo"
            is_local = True

            def describe(self):
                return ModelIdentity(backend="echo", model=self.model)

            async def generate(self, request):
                text = request.messages[-1].content[::-1]
                now = time.perf_counter()
                yield Chunk(text=text, time_s=now, tokens=1)
                yield Chunk(time_s=now, final=True, usage=Usage(completion_tokens=1))
    """)
    )
    dist = tmp_path / "echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[llmpick.backends]\necho = echo_plugin:EchoBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_entry_point_backend_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from llmpick.backends.base import GenerationRequest, collect

    _install_plugin(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    context = Context()
    assert {"echo", "llamacpp", "openai", "hf", "column"} <= set(context.backends.names())
    backend = context.open_backend("echo:whatever")
    gen = asyncio.run(collect(backend, GenerationRequest.from_prompt("abc")))
    assert gen.output == "cba"
    sys.modules.pop("echo_plugin", None)


def test_builtins_come_through_entry_points() -> None:
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="llmpick.backends")}
    assert {"llamacpp", "hf", "openai", "column"} <= names


def test_fresh_contexts_do_not_share_state(context: Context) -> None:
    from llmpick.backends.column import ColumnBackend

    other = Context()
    context.backends.register("mine", ColumnBackend)
    assert "mine" in context.backends.names()
    assert "mine" not in other.backends.names()


def test_specs(context: Context) -> None:
    spec = context.resolve("openai:qwen2.5:7b@http://127.0.0.1:11434/v1")
    assert (spec.backend, spec.model) == ("openai", "qwen2.5:7b")
    assert spec.options == {"base_url": "http://127.0.0.1:11434/v1"}
    assert context.resolve("column:canonical_solution").model == "canonical_solution"
    assert context.resolve("hf:HuggingFaceTB/SmolLM2-135M-Instruct").backend == "hf"
    hub = context.resolve("llamacpp:bartowski/X-GGUF@X-Q4_K_M.gguf")
    assert hub.options == {"hf_repo": "bartowski/X-GGUF"} and hub.model == "X-Q4_K_M.gguf"
    assert context.resolve("SmolLM2-135M-Instruct").source == "bundled"


def test_unknown_model_suggests(context: Context) -> None:
    with pytest.raises(ModelNotFoundError) as err:
        context.resolve("smollm2-135m")
    assert "smollm2-135m-instruct" in err.value.hint
    with pytest.raises(ModelNotFoundError, match="unknown backend 'vllm'"):
        context.resolve("vllm:foo")
    with pytest.raises(ModelNotFoundError, match="needs a model and a base URL"):
        context.resolve("openai:gpt")


def test_config_file_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "llmpick.yaml").write_text(
        textwrap.dedent("""
        models:
          local-qwen:
            backend: openai
            model: qwen2.5:7b
            base_url: http://127.0.0.1:11434/v1
            api_key_env: OLLAMA_KEY
            catalog_id: Qwen/Qwen2.5-7B-Instruct
            options: {timeout_s: 30}
          typo:
            backend: llamacpp
            model: x.gguf
            options: {n_ctxx: 10}
    """)
    )
    monkeypatch.chdir(tmp_path)
    context = Context()
    spec = context.resolve("local-qwen")
    assert spec.catalog_id == "Qwen/Qwen2.5-7B-Instruct"
    assert spec.options == {
        "timeout_s": 30,
        "base_url": "http://127.0.0.1:11434/v1",
        "api_key_env": "OLLAMA_KEY",
    }
    with pytest.raises(ConfigError, match="bad option 'n_ctxx' for backend llamacpp"):
        context.open_backend("typo")


def test_bad_config_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="cannot read config"):
        Context(config_path=bad)
    bad.write_text("models:\n  x: {backend: openai}\n")
    with pytest.raises(ConfigError, match=r"models\.x\.model"):
        Context(config_path=bad)
    with pytest.raises(ConfigError, match="does not exist"):
        Context(config_path=tmp_path / "missing.yaml")
