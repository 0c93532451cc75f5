"""A tiny real OpenAI-compatible streaming server on 127.0.0.1 for the bench tests.

Even-numbered requests (0, 2, …) stream ``tokens`` content deltas spaced
``delay_s`` apart, then a usage chunk; odd ones get HTTP 500 when
``fail_odd`` is set. Run as a script it prints its port and serves until
killed (for the Ctrl-C test's subprocess).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: FakeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        index = self.server.next_index()
        if self.server.fail_odd and index % 2 == 1:
            payload = json.dumps({"error": {"message": "injected failure", "type": "server"}})
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload.encode())
            return
        n = min(int(body.get("max_tokens") or 16), self.server.tokens)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(data: dict[str, Any]) -> None:
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

        base = {
            "id": f"c{index}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model", "fake"),
        }
        for i in range(n):
            time.sleep(self.server.delay_s)
            event(
                {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}
                    ],
                }
            )
        event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
        event(
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n},
            }
        )
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class FakeServer(ThreadingHTTPServer):
    """The server; ``base_url`` is its OpenAI base URL."""

    daemon_threads = True

    def __init__(self, tokens: int = 8, delay_s: float = 0.005, fail_odd: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tokens = tokens
        self.delay_s = delay_s
        self.fail_odd = fail_odd
        self._count = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def next_index(self) -> int:
        with self._lock:
            index = self._count
            self._count += 1
            return index

    def start(self) -> FakeServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()


if __name__ == "__main__":
    server = FakeServer(tokens=int(sys.argv[1]), delay_s=float(sys.argv[2]), fail_odd=False)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
