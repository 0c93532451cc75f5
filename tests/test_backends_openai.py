"""The openai backend against llama-cpp-python's own server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port
from llmpick.backends.base import GenerationRequest, collect
from llmpick.backends.openai_compat import OpenAIBackend, OpenAIOptions
from llmpick.errors import (
    AuthenticationError,
    ConfigError,
    ContextLengthError,
    EndpointUnreachableError,
)

pytestmark = [pytest.mark.slow, pytest.mark.network]

PARIS = "What is the capital of France? Answer in one word."


def backend(url: str, **opts: object) -> OpenAIBackend:
    return OpenAIBackend("smollm2", OpenAIOptions(base_url=url, **opts))  # type: ignore[arg-type]


def run(b: OpenAIBackend, req: GenerationRequest):  # type: ignore[no-untyped-def]
    """collect() then close the client, on one event loop."""

    async def go():  # type: ignore[no-untyped-def]
        try:
            return await collect(b, req)
        finally:
            await b.aclose()

    return asyncio.run(go())


def test_streams_paris_with_usage(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", "sekret")
    b = backend(llama_server, api_key_env="LOCAL_KEY")

    async def go() -> tuple[list, object]:
        req = GenerationRequest.from_prompt(PARIS, temperature=0, max_tokens=32)
        chunks = [c async for c in b.generate(req)]
        gen = await collect(b, req)
        await b.aclose()
        return chunks, gen

    chunks, gen = asyncio.run(go())
    assert "Paris" in gen.output  # type: ignore[attr-defined]
    assert len([c for c in chunks if c.text]) >= 2, "streamed in several chunks"
    final = chunks[-1]
    assert final.final
    # llama-cpp-python's server sends no usage in streams: counted from chunks.
    assert final.usage.source == "chunks"
    assert final.usage.completion_tokens == len([c for c in chunks if c.text])
    assert gen.time_to_first_token_s > 0  # type: ignore[attr-defined]


def test_a_request_not_streamed_is_asked_in_one_piece(
    llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_KEY", "sekret")
    b = backend(llama_server, api_key_env="LOCAL_KEY")
    streamed = GenerationRequest.from_prompt(PARIS, temperature=0, max_tokens=16)
    whole = streamed.model_copy(update={"stream": False})

    async def go() -> tuple[list, list]:
        try:
            return [c async for c in b.generate(whole)], [c async for c in b.generate(streamed)]
        finally:
            await b.aclose()

    chunks, pieces = asyncio.run(go())
    texts = [c for c in chunks if c.text]
    assert len(texts) == 1 and chunks[-1].final
    assert texts[0].text == "".join(c.text for c in pieces)  # same greedy answer
    # in one piece the server reports its usage (its streams carry none)
    usage = chunks[-1].usage
    assert usage.source == "backend" and usage.prompt_tokens
    assert usage.completion_tokens == texts[0].tokens == len([c for c in pieces if c.text])


def test_same_answer_as_in_process(llama_server: str, smollm2_backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LOCAL_KEY", "sekret")
    req = GenerationRequest.from_prompt(PARIS, temperature=0, max_tokens=16)
    remote = run(backend(llama_server, api_key_env="LOCAL_KEY"), req)
    local = asyncio.run(collect(smollm2_backend, req))
    assert remote.output.strip() == local.output.strip()


def test_wrong_api_key(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", "wrong")
    b = backend(llama_server, api_key_env="LOCAL_KEY", max_retries=0)
    with pytest.raises(AuthenticationError, match="refused the API key"):
        run(b, GenerationRequest.from_prompt("hi", max_tokens=4))


def test_missing_key_variable() -> None:
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR is not set"):
        backend("http://127.0.0.1:1/v1", api_key_env="NO_SUCH_KEY_VAR")


def test_prompt_longer_than_context(llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream closes empty; a non-streamed retry learns the real 400."""
    monkeypatch.setenv("LOCAL_KEY", "sekret")
    b = backend(llama_server, api_key_env="LOCAL_KEY", max_retries=0)
    with pytest.raises(ContextLengthError, match="maximum context length is 2048"):
        run(b, GenerationRequest.from_prompt("word " * 3000, max_tokens=4))


def test_unreachable_endpoint() -> None:
    b = backend(f"http://127.0.0.1:{free_port()}/v1", max_retries=0, connect_timeout_s=2)
    with pytest.raises(EndpointUnreachableError, match="cannot connect"):
        run(b, GenerationRequest.from_prompt("hi", max_tokens=4))


class _TooLong(BaseHTTPRequestHandler):
    """Answers like vLLM does when the prompt exceeds the context."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(
            {
                "object": "error",
                "type": "BadRequestError",
                "code": 400,
                "message": "This model's maximum context length is 2048 tokens. "
                "However, you requested 5000 tokens.",
            }
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_vllm_style_context_error_is_translated() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TooLong)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        b = backend(f"http://127.0.0.1:{server.server_address[1]}/v1", max_retries=0)
        with pytest.raises(ContextLengthError, match="maximum context length"):
            run(b, GenerationRequest.from_prompt("long", max_tokens=4))
    finally:
        server.shutdown()
        server.server_close()
