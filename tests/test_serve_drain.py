"""Graceful drain: on SIGTERM /ready turns 503, new requests get 503, the stream in
flight finishes, and the process exits 0 (a real uvicorn process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]

_APP = """
import asyncio, sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from llmpick.serve.drain import DrainMiddleware, DrainState, DrainingServer

async def ok(request):
    return JSONResponse({"ok": True})

async def stream(request):
    async def parts():
        for i in range(int(sys.argv[3])):
            yield f"data: {i}\\n\\n"
            await asyncio.sleep(0.15)
    return StreamingResponse(parts(), media_type="text/event-stream")

routes = [Route("/health", ok), Route("/ready", ok), Route("/v1/models", ok),
          Route("/v1/stream", stream)]
state = DrainState()
app = DrainMiddleware(Starlette(routes=routes), state)
config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
DrainingServer(config, state, deadline_s=float(sys.argv[2])).run()
"""


@pytest.mark.slow
@pytest.mark.network
def test_sigterm_drains_the_stream_in_flight_then_exits_0() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _APP, str(port), "10", "8"], env=env)
    try:
        wait_for_port(proc, port, "drain app", timeout=30)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            with client.stream("GET", "/v1/stream") as response:
                lines = response.iter_lines()
                assert next(lines) == "data: 0"
                proc.send_signal(signal.SIGTERM)
                with httpx.Client(base_url=base, timeout=5) as other:
                    ready = other.get("/ready")
                    assert ready.status_code == 503
                    assert ready.json()["error"]["code"] == "shutting_down"
                    assert other.get("/v1/models").status_code == 503
                    assert other.get("/health").status_code == 200
                rest = [line for line in lines if line]
            assert rest == [f"data: {i}" for i in range(1, 8)]
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.network
def test_a_stream_longer_than_the_deadline_is_cut_and_the_process_still_exits_0() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", _APP, str(port), "0.3", "60"], env=env)
    try:
        wait_for_port(proc, port, "drain app", timeout=30)
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
            client.stream("GET", "/v1/stream") as response,
        ):
            lines = response.iter_lines()
            assert next(lines) == "data: 0"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(httpx.RemoteProtocolError):
                list(lines)  # cut after the deadline: the client sees a broken stream
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
