"""``llmpick serve --ui`` in one process: the page and the API share the gateway's model pool.

The gateway (uvicorn on loopback, in a thread) serves SmolLM2; the workbench is
mounted under ``/ui`` by :func:`build_workbench`. A model column of the same
model runs on the model the gateway loaded — the pool holds one model
throughout — and each side keeps its own error shape and body limit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from conftest import free_port
from llmpick.context import Context
from llmpick.serve.app import create_app
from llmpick.serve.gateway import GatewayConfig
from llmpick.serve.server import build_gateway, build_workbench
from llmpick.ui.security import is_loopback

pytestmark = [pytest.mark.slow, pytest.mark.network]

SMOLLM = "smollm2-135m-instruct"


@pytest.fixture()
def served(context: Context, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    config = GatewayConfig(models=[SMOLLM], port=free_port(), db=tmp_path / "llmpick.db")
    built: dict[str, Any] = {}

    def serve() -> None:  # the store is opened in the thread that serves it, as in the CLI
        built["gateway"] = gateway = build_gateway(context, config)
        app = create_app(gateway, build_workbench(gateway))
        built["server"] = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning")
        )
        built["server"].run()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not ("server" in built and built["server"].started):
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    yield f"http://127.0.0.1:{config.port}", built["gateway"]
    built["server"].should_exit = True
    thread.join(timeout=30)


def test_the_page_and_the_api_share_one_loaded_model(served: tuple[str, Any]) -> None:
    base, gateway = served
    loaded = gateway.pool.get(SMOLLM)
    with httpx.Client(base_url=base, timeout=60) as client:
        assert client.get("/ui/").status_code == 200  # no key exists: open to loopback
        ok = {"x-csrf-token": client.cookies["llmpick_csrf"]}
        rows = b"".join(b'{"prompt": "Say %d."}\n' % i for i in range(3))
        sid = client.post("/ui/api/sheets?filename=a.jsonl", content=rows, headers=ok).json()["id"]
        client.post(f"/ui/api/sheets/{sid}/settings", json={"max_tokens": 4}, headers=ok)
        added = client.post(
            f"/ui/api/sheets/{sid}/columns", json={"kind": "model", "spec": SMOLLM}, headers=ok
        )
        assert added.status_code == 200, added.text
        deadline = time.monotonic() + 120
        while (progress := client.get(f"/ui/api/sheets/{sid}/progress").json())["state"] in (
            "running",
            "stopped",
        ):
            assert time.monotonic() < deadline, progress
            time.sleep(0.1)
        assert progress["state"] == "finished" and progress["done"] == 3, progress

        answer = openai.OpenAI(base_url=base + "/v1", api_key="unused").chat.completions.create(
            model=SMOLLM, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert answer.model == SMOLLM and answer.usage is not None
        assert gateway.pool.models() == [loaded]  # one model, loaded once, for both

        # each side answers errors its own way
        unknown = client.post(
            "/v1/chat/completions",
            json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
        missing = client.get("/ui/api/sheets/nope")
        assert missing.status_code == 400 and "no sheet" in missing.json()["error"]
        # the gateway's 1 MB body limit is for /v1; the workbench takes larger uploads
        big = b'{"prompt": "%s"}\n' % (b"x" * 1_200_000)
        assert client.post("/v1/completions", content=big).status_code == 413
        upload = client.post("/ui/api/sheets?filename=big.jsonl", content=big, headers=ok)
        assert upload.status_code == 200 and upload.json()["n_rows"] == 1


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.8.0.1")
    assert not is_loopback("192.168.1.4") and not is_loopback(None) and not is_loopback("x")


def test_key_login_follows_the_gateways_keys(context: Context, tmp_path: Path) -> None:
    """No key: open (to loopback); a key exists: only a valid, active key logs in."""
    gateway = build_gateway(context, GatewayConfig(db=tmp_path / "llmpick.db"))
    workbench = build_workbench(gateway)
    policy = gateway.policy
    assert workbench.key_check is not None and workbench.keys_required is not None

    async def check() -> None:
        assert not await workbench.keys_required()  # type: ignore[misc]
        _key, secret = policy.keys.create("ann")
        assert await workbench.keys_required()  # type: ignore[misc]
        assert await policy.key_owner(secret) == "ann"
        assert await policy.key_owner(secret[:-2] + "xx") is None
        policy.keys.revoke("ann")
        assert await policy.key_owner(secret) is None
        await policy.close()

    asyncio.run(check())
