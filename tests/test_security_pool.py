"""Issue 19 against a remote model: back-off frees the slot (11), dense prompts are counted (9).

A real HTTP server on 127.0.0.1 answers the first request 503 with
``Retry-After: 2`` and every other one at once; the model has one slot. While
the first request waits to retry, a second one must get the slot and finish.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import start_gateway, stop
from llmpick.backends.base import GenerationRequest, Message, SamplingParams
from llmpick.backends.pool import ModelPool, PoolOptions
from llmpick.context import Context


class _Upstream(BaseHTTPRequestHandler):
    calls = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # /v1/models, the pool's probe
        self._json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).calls += 1
        if type(self).calls == 1:
            self._json(503, {"error": {"message": "busy"}}, {"Retry-After": "2"})
            return
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "fake",
                "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
            }
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n")
            return
        self._json(
            200,
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "fake",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "ok"},
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _json(self, status: int, doc: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def upstream() -> Iterator[str]:
    _Upstream.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_backing_off_releases_the_slot(context: Context, upstream: str) -> None:
    async def run() -> tuple[float, float]:
        async with ModelPool(context, PoolOptions(remote_concurrency=1)) as pool:
            model = await pool.open(f"openai:fake@{upstream}")
            request = GenerationRequest(
                messages=[Message(role="user", content="hi")],
                params=SamplingParams(max_tokens=2),
            )
            start = time.perf_counter()

            async def second() -> float:
                await asyncio.sleep(0.3)  # the first is backing off by now
                await model.generate(request)
                return time.perf_counter() - start

            first, other = await asyncio.gather(model.generate(request), second())
            assert first.output == "ok"
            return time.perf_counter() - start, other

    total, second_done = asyncio.run(run())
    assert total >= 2.0  # the first waited out its Retry-After
    assert second_done < 1.5, f"the second request waited {second_done:.2f} s for a sleeping slot"


@pytest.mark.slow
def test_dense_text_cannot_slip_past_max_input_tokens(tmp_path: Path, upstream: str) -> None:
    """Item 9: a remote model's prompt is counted conservatively: 2,000 Chinese characters
    are not 500 tokens (``len // 4``) under a 1,000-token ``max_input_tokens``."""
    _Upstream.calls = 1  # the upstream answers at once
    config = {"serve": {"models": [f"openai:fake@{upstream}"],
                        "security": {"rules": {"max_input_tokens": 1000}}}}  # fmt: skip
    proc, url = start_gateway(tmp_path, config)
    try:
        name = httpx.get(f"{url}/v1/models", timeout=30).json()["data"][0]["id"]

        def ask(text: str) -> httpx.Response:
            body = {"model": name, "messages": [{"role": "user", "content": text}]}
            return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)

        assert ask("hello " * 50).status_code == 200
        dense = ask("中" * 2000)
        assert dense.status_code == 400, dense.text
        assert dense.json()["error"]["code"] == "input_too_long"
    finally:
        stop(proc)
