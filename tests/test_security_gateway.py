"""Attacks on a real ``llmpick serve --ui`` with keys, Redis and an access log: each must fail.

Issue 19, items 2 (admission), 3, 7–12: one gateway process on 127.0.0.1
serving SmolLM2, Debian's redis-server on a free port (killed and restarted in
the last test), keys made with the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import create_key, start_gateway, start_redis_server, stop, wait_for_port

pytestmark = [pytest.mark.slow]

SMOLLM = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("gateway-attacks")
    redis, redis_url = start_redis_server()
    keys = {
        "full": create_key(work, "full", "--redis", redis_url),
        "tiny": create_key(work, "tiny", "--tpm", "300", "--redis", redis_url),
        "other": create_key(work, "other", "--models", "nothing-here", "--redis", redis_url),
        "gone": create_key(work, "gone", "--redis", redis_url),
        "limited": create_key(work, "limited", "--rpm", "1000", "--redis", redis_url),
    }
    config = {"serve": {"models": [SMOLLM], "default_max_tokens": 8}}
    log = work / "access.jsonl"
    proc, url = start_gateway(
        work, config, "--ui", "--redis", redis_url, "--access-log", str(log), "--timeout", "60",
        capture=True,
    )  # fmt: skip
    yield {"url": url, "keys": keys, "work": work, "log": log, "redis": redis,
           "redis_url": redis_url}  # fmt: skip
    stop(proc)
    redis_proc = deployment_redis.get("proc", redis)
    stop(redis_proc)


deployment_redis: dict[str, subprocess.Popen[bytes]] = {}


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _chat(url: str, key: str, **extra: Any) -> httpx.Response:
    body = {"model": SMOLLM, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}
    return httpx.post(f"{url}/v1/chat/completions", json={**body, **extra}, headers=_auth(key),
                      timeout=60)  # fmt: skip


def test_a_key_revoked_without_redis_flag_is_refused(deployment: dict[str, Any]) -> None:
    """Item 7: ``keys revoke`` without ``--redis`` leaves Redis's copy active; still 401."""
    url, key = deployment["url"], deployment["keys"]["gone"]
    assert _chat(url, key).status_code == 200
    done = subprocess.run(
        [sys.executable, "-m", "llmpick", "keys", "revoke", "gone"],
        cwd=deployment["work"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _chat(url, key).status_code == 401


def test_tpm_is_a_bound_under_concurrency(deployment: dict[str, Any]) -> None:
    """Item 9: 10 concurrent short prompts with max_tokens 100 on a 300-TPM key."""
    url, key = deployment["url"], deployment["keys"]["tiny"]
    statuses: list[int] = []

    def one() -> None:
        statuses.append(_chat(url, key, max_tokens=100).status_code)

    threads = [threading.Thread(target=one) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    admitted = len([s for s in statuses if s != 429])  # 200, or 504 on a busy machine
    assert set(statuses) <= {200, 429, 504}, statuses
    # each reserves its prompt (~10 tokens) + 100: at most 2 fit in 300
    assert 1 <= admitted <= 2, statuses


def test_workbench_generations_are_admitted_as_the_key(deployment: dict[str, Any]) -> None:
    """Item 2: a key that may not use the model cannot run it from the page either."""
    url, key = deployment["url"], deployment["keys"]["other"]
    with httpx.Client(base_url=url, timeout=60, cookies={"llmpick_key": key}) as c:
        assert c.get("/ui/").status_code == 200
        c.headers["x-csrf-token"] = c.cookies["llmpick_csrf"]
        sid = c.post("/ui/api/sheets?filename=a.jsonl", content=b'{"prompt": "hi"}\n').json()["id"]
        added = c.post(f"/ui/api/sheets/{sid}/columns", json={"kind": "model", "spec": SMOLLM})
        assert added.status_code == 403, added.text


def test_a_big_body_is_refused_before_login(deployment: dict[str, Any]) -> None:
    """Item 3: no key, 5 MB of JSON to a workbench route: 413, never parsed."""
    big = b'{"template": "' + b"x" * 5_000_000 + b'"}'
    answer = httpx.post(f"{deployment['url']}/ui/api/sheets/x/settings", content=big, timeout=60)
    assert answer.status_code == 413, answer.status_code


def test_ready_names_states_publicly_details_with_a_key(deployment: dict[str, Any]) -> None:
    """Item 12: no file paths or URLs for anonymous callers; the limiter's storage is shown."""
    url = deployment["url"]
    public = httpx.get(f"{url}/ready", timeout=30).json()
    assert public["models"] == [
        {k: public["models"][0][k] for k in ("name", "state", "in_flight", "queued", "concurrency")}
    ]
    assert ".gguf" not in json.dumps(public) and public["limiter"]["storage"] == "redis"
    detailed = httpx.get(f"{url}/ready", headers=_auth(deployment["keys"]["full"]), timeout=30)
    assert ".gguf" in json.dumps(detailed.json())


def test_a_hung_up_client_frees_its_slot(deployment: dict[str, Any]) -> None:
    """Item 11: a non-streamed answer is cancelled when its client goes away."""
    url, key = deployment["url"], deployment["keys"]["full"]
    body = {"model": SMOLLM, "messages": [{"role": "user", "content": "Count to a thousand."}],
            "max_tokens": 3000, "ignore_eos": True}  # fmt: skip
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json=body, headers=_auth(key), timeout=1.0)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        ready = httpx.get(f"{url}/ready", timeout=10).json()
        if ready["models"][0]["in_flight"] == 0:
            break
        time.sleep(0.1)
    assert ready["models"][0]["in_flight"] == 0, "the model kept generating for nobody"


def test_refusals_reach_the_access_log_and_metrics(deployment: dict[str, Any]) -> None:
    """Item 10: 401, 403, 404, 413 and 421 each leave a line and a counter."""
    url, keys = deployment["url"], deployment["keys"]
    port = url.rsplit(":", 1)[1]
    assert _chat(url, "lp-000000000000-wrongwrongwrongwrongwrong").status_code == 401
    assert _chat(url, keys["other"]).status_code == 403
    assert _chat(url, keys["full"], model="no-such-model").status_code == 404
    big = httpx.post(f"{url}/v1/chat/completions", content=b"x" * 2_000_000, timeout=30)
    assert big.status_code == 413
    time.sleep(0.5)
    lines = [json.loads(x) for x in deployment["log"].read_text().splitlines()]
    logged = {line["status"] for line in lines}
    assert {401, 403, 404, 413} <= logged, logged
    host = httpx.get(f"{url}/health", headers={"host": f"evil.test:{port}"}, timeout=30)
    assert host.status_code == 421
    time.sleep(0.5)
    lines = [json.loads(x) for x in deployment["log"].read_text().splitlines()]
    assert 421 in {line["status"] for line in lines}
    assert any(x["status"] == 403 and x.get("key_name") == "other" for x in lines)
    metrics = httpx.get(f"{url}/metrics", timeout=30).text
    for status in ("401", "403", "404", "413", "421"):
        assert (
            'llmpick_refused_requests_total{code="' in metrics and f'status="{status}"' in metrics
        )


def test_redis_down_is_503_not_500_and_limits_come_back(deployment: dict[str, Any]) -> None:
    """Item 8: Redis SIGKILLed: limited keys get 503 + Retry-After in time, /ready says so."""
    url, keys = deployment["url"], deployment["keys"]
    deployment["redis"].kill()
    deployment["redis"].wait()
    started = time.monotonic()
    down = _chat(url, keys["limited"])
    assert down.status_code == 503 and "Retry-After" in down.headers, down.text
    assert time.monotonic() - started < 5
    assert _chat(url, keys["full"]).status_code == 200  # no limits to decide: still served
    ready = httpx.get(f"{url}/ready", timeout=10)
    assert ready.status_code == 503 and ready.json()["limiter"]["state"] == "refusing"
    port = int(deployment["redis_url"].rsplit(":", 1)[1].split("/")[0])
    again = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deployment_redis["proc"] = again
    wait_for_port(again, port, "redis-server", timeout=20)
    deadline = time.monotonic() + 10
    while (answer := _chat(url, keys["limited"])).status_code != 200:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.2)


def test_a_key_sees_only_its_own_and_shared_sheets(deployment: dict[str, Any]) -> None:
    """Item 5: sheets belong to the key that made them until it shares them."""
    url, keys = deployment["url"], deployment["keys"]

    def page(name: str) -> httpx.Client:
        c = httpx.Client(base_url=url, timeout=60, cookies={"llmpick_key": keys[name]})
        assert c.get("/ui/").status_code == 200
        c.headers["x-csrf-token"] = c.cookies["llmpick_csrf"]
        return c

    ann, bob = page("full"), page("other")
    try:
        made = ann.post("/ui/api/sheets?filename=ann-secret.jsonl", content=b'{"prompt": "x"}\n')
        sid = made.json()["id"]
        assert "ann-secret" not in bob.get("/ui/").text
        seen = bob.get(f"/ui/api/sheets/{sid}")
        missing = bob.get("/ui/api/sheets/0000000000")
        assert seen.status_code == missing.status_code == 400  # as if it did not exist
        assert bob.get(f"/ui/sheets/{sid}/export.csv").status_code == 400
        assert bob.post(f"/ui/api/sheets/{sid}/share", json={"with": ["other"]}).status_code == 400
        assert ann.post(f"/ui/api/sheets/{sid}/share", json={"with": ["other"]}).status_code == 200
        assert bob.get(f"/ui/api/sheets/{sid}").status_code == 200
        assert "ann-secret" in bob.get("/ui/").text
    finally:
        ann.close()
        bob.close()
