"""Red team for issue 19: each attack against real servers, and what it got.

Starts ``llmpick ui`` (no keys, the default) and ``llmpick serve --ui`` (SmolLM2,
keys, ``--redis``, access log) on loopback, runs the attacks of issue 19 and
prints ``attack → outcome`` as a table; "held" means the server refused as it
should. Needs Debian's redis-server.

    .venv/bin/python benchmarks/redteam.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import create_key, free_port, start_gateway, start_redis_server, stop  # noqa: E402
from ui_server import start_ui, stop_ui  # noqa: E402

SMOLLM = "smollm2-135m-instruct"
Attack = tuple[str, Callable[[], tuple[bool, str]]]


def _page(base: str, cookies: dict[str, str] | None = None) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60, cookies=cookies)
    client.get("/")
    client.headers["x-csrf-token"] = client.cookies.get("llmpick_csrf", "")
    return client


def _sheet(c: httpx.Client, settings: str = "{}") -> str:
    made = c.post("/api/sheets?filename=a.jsonl", content=b'{"prompt": "hi", "a": "x"}\n',
                  headers={"x-settings": settings})  # fmt: skip
    return str(made.json().get("id", "?"))


def ui_attacks(base: str) -> list[Attack]:
    c = _page(base)
    port = base.rsplit(":", 1)[1]

    def template() -> tuple[bool, str]:
        sid = _sheet(c, '{"template": "/etc/passwd"}')
        c.post(f"/api/sheets/{sid}/columns", json={"kind": "model", "spec": "column:a"})
        import time

        time.sleep(1.5)
        rows = c.get(f"/api/sheets/{sid}/grid").json().get("rows", [])
        prompt = rows[0]["prompt"] if rows else ""
        return "root:" not in prompt, f"prompt shown: {prompt[:30]!r}"

    def spec(s: str) -> Callable[[], tuple[bool, str]]:
        def run() -> tuple[bool, str]:
            r = c.post(f"/api/sheets/{_sheet(c)}/columns", json={"kind": "model", "spec": s})
            return r.status_code == 403, str(r.status_code)

        return run

    def body() -> tuple[bool, str]:
        r = c.post(f"/api/sheets/{_sheet(c)}/settings", content=b"x" * 5_000_000)
        return r.status_code == 413, str(r.status_code)

    def rebind() -> tuple[bool, str]:
        r = httpx.get(f"{base}/", headers={"host": f"evil.test:{port}"})
        return r.status_code == 421, str(r.status_code)

    def origin() -> tuple[bool, str]:
        r = c.post("/api/sheets?filename=a.jsonl", content=b'{"prompt": "x"}\n',
                   headers={"origin": "http://evil.test"})  # fmt: skip
        return r.status_code == 403, str(r.status_code)

    return [
        ("ui: template '/etc/passwd' from the page", template),
        ("ui: column openai:x@http://127.0.0.1:9/v1", spec("openai:x@http://127.0.0.1:9/v1")),
        ("ui: column llamacpp:/etc/passwd", spec("llamacpp:/etc/passwd")),
        ("ui: column hf:OWNER/REPO download", spec("hf:HuggingFaceTB/SmolLM2-135M-Instruct")),
        ("ui: 5 MB JSON body to settings", body),
        ("ui: Host evil.test (DNS rebinding)", rebind),
        ("ui: POST with Origin http://evil.test", origin),
    ]


def serve_attacks(url: str, keys: dict[str, str], work: Path, redis: subprocess.Popen[bytes]
                  ) -> list[Attack]:  # fmt: skip
    def chat(key: str, **extra: object) -> httpx.Response:
        body = {"model": SMOLLM, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        return httpx.post(f"{url}/v1/chat/completions", json={**body, **extra},
                          headers={"authorization": f"Bearer {key}"}, timeout=60)  # fmt: skip

    def revoked() -> tuple[bool, str]:
        subprocess.run([sys.executable, "-m", "llmpick", "keys", "revoke", "gone"], cwd=work,
                       capture_output=True, timeout=120, check=True)  # fmt: skip
        r = chat(keys["gone"])
        return r.status_code == 401, str(r.status_code)

    def tpm() -> tuple[bool, str]:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            got = list(pool.map(lambda _: chat(keys["tiny"], max_tokens=100).status_code,
                                range(10)))  # fmt: skip
        admitted = len([s for s in got if s != 429])
        return admitted <= 2, f"{admitted} of 10 admitted on 300 TPM"

    def ready() -> tuple[bool, str]:
        text = httpx.get(f"{url}/ready", timeout=30).text
        return ".gguf" not in text, "no paths" if ".gguf" not in text else "paths shown"

    def before_login() -> tuple[bool, str]:
        r = httpx.post(f"{url}/ui/api/sheets/x/settings", content=b"x" * 5_000_000, timeout=60)
        return r.status_code == 413, str(r.status_code)

    def refusals() -> tuple[bool, str]:
        chat("lp-000000000000-wrongwrongwrongwrongwrong")
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        ok = 'llmpick_refused_requests_total{code="http_401",status="401"}' in metrics
        return ok, "401 counted in /metrics" if ok else "not counted"

    def redis_down() -> tuple[bool, str]:
        redis.kill()
        redis.wait()
        r = chat(keys["limited"])
        return r.status_code == 503 and "retry-after" in r.headers, str(r.status_code)

    return [
        ("serve: key revoked without --redis", revoked),
        ("serve: 10 x max_tokens 100 on a 300-TPM key", tpm),
        ("serve: /ready without a key", ready),
        ("serve: 5 MB body to /ui before login", before_login),
        ("serve: refused request in /metrics", refusals),
        ("serve: Redis SIGKILLed, limited key", redis_down),
    ]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="redteam-"))
    rows: list[tuple[str, str, str]] = []
    port = free_port()
    ui = start_ui(work / "ui.db", port, work)
    try:
        for name, attack in ui_attacks(f"http://127.0.0.1:{port}"):
            held, what = attack()
            rows.append((name, "held" if held else "BROKEN", what))
    finally:
        stop_ui(ui)
    redis, redis_url = start_redis_server()
    keys = {
        n: create_key(work, n, *flags, "--redis", redis_url)
        for n, flags in {
            "full": (),
            "tiny": ("--tpm", "300"),
            "gone": (),
            "limited": ("--rpm", "1000"),
        }.items()
    }
    gateway, url = start_gateway(
        work,
        {"serve": {"models": [SMOLLM]}},
        "--ui",
        "--redis",
        redis_url,
        "--access-log",
        str(work / "access.jsonl"),
    )
    try:
        for name, attack in serve_attacks(url, keys, work, redis):
            held, what = attack()
            rows.append((name, "held" if held else "BROKEN", what))
    finally:
        stop(gateway)
        stop(redis)
    width = max(len(r[0]) for r in rows)
    print(f"{'attack':<{width}}  outcome  detail")
    for name, outcome, what in rows:
        print(f"{name:<{width}}  {outcome:<7}  {what}")
    return 0 if all(r[1] == "held" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
