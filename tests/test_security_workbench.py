"""Attacks on a real ``llmpick ui`` (no keys, the default) on 127.0.0.1: each must fail.

Issue 19, items 1–4 and 6: a template naming a file, model specs the operator
did not declare, bodies without bound, DNS rebinding (in real Chromium), and a
run opened as a sheet keeping its results. Models are ``column:`` specs (answers
read from the data), so nothing is loaded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port
from ui_server import start_ui, stop_ui

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attacks")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[str]:
    port = free_port()
    process = start_ui(workdir / "llmpick.db", port, workdir)
    yield f"http://127.0.0.1:{port}"
    stop_ui(process)


@pytest.fixture()
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as c:
        assert c.get("/").status_code == 200
        c.headers["x-csrf-token"] = c.cookies["llmpick_csrf"]
        yield c


def _sheet(client: httpx.Client, settings: str = "{}") -> str:
    rows = b'{"prompt": "hello", "answer": "hi"}\n{"prompt": "bye", "answer": "ciao"}\n'
    made = client.post(
        "/api/sheets?filename=a.jsonl", content=rows, headers={"x-settings": settings}
    )
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def _wait(client: httpx.Client, sid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress: dict[str, Any] = client.get(f"/api/sheets/{sid}/progress").json()
        if progress["state"] not in ("running", "stopped"):
            return progress
        time.sleep(0.1)
    raise AssertionError(progress)


def test_a_template_from_the_page_is_text_never_a_file(client: httpx.Client) -> None:
    """Item 1: ``{"template": "/etc/passwd"}`` is the prompt '/etc/passwd', not the file."""
    sid = _sheet(client, '{"template": "/etc/passwd"}')
    added = client.post(
        f"/api/sheets/{sid}/columns", json={"kind": "model", "spec": "column:answer"}
    )
    assert added.status_code == 200, added.text
    assert _wait(client, sid)["state"] == "finished"
    # the settings route and a column's own template are the same text, not files
    changed = client.post(f"/api/sheets/{sid}/settings", json={"template": "/etc/hostname"})
    assert changed.status_code == 200
    prompts = [r["prompt"] for r in client.get(f"/api/sheets/{sid}/grid").json()["rows"]]
    assert prompts == ["/etc/passwd", "/etc/passwd"], prompts
    assert not any("root:" in p for p in prompts)


def _listener() -> tuple[socket.socket, list[bytes]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    seen: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            seen.append(conn.recv(4096))
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return sock, seen


def test_a_column_uses_only_the_models_the_operator_declared(client: httpx.Client) -> None:
    """Item 2: URLs, paths and downloads from the page are refused before anything happens."""
    sid = _sheet(client)
    sock, seen = _listener()
    port = sock.getsockname()[1]
    try:
        attacks = [
            {"kind": "model", "spec": f"openai:x@http://127.0.0.1:{port}/v1"},
            {"kind": "model", "spec": "llamacpp:/etc/passwd"},
            {"kind": "model", "spec": "llamacpp:/no/such/file.gguf"},
            {"kind": "model", "spec": "hf:HuggingFaceTB/SmolLM2-135M-Instruct"},
            {"kind": "pairwise", "spec": f"openai:judge@http://127.0.0.1:{port}/v1"},
            {"kind": "scorer", "spec": "judge", "judge_model": f"openai:j@http://127.0.0.1:{port}"},
            {"kind": "scorer", "spec": "json:schema_file=/etc/passwd"},
        ]
        answers = [client.post(f"/api/sheets/{sid}/columns", json=a) for a in attacks]
        settings = client.post(
            f"/api/sheets/{sid}/settings", json={"judge_model": f"openai:j@http://127.0.0.1:{port}"}
        )
        time.sleep(0.5)
    finally:
        sock.close()
    assert [a.status_code for a in answers] == [403] * len(attacks), [a.text for a in answers]
    assert settings.status_code == 403
    # an existing and a missing file get the same answer: no file oracle
    assert answers[1].json()["detail"] == answers[2].json()["detail"]
    assert seen == [], "the server connected where the page said"
    assert client.get(f"/api/sheets/{sid}").json()["columns"] == []
    # what the operator declared still works
    ok = client.post(f"/api/sheets/{sid}/columns", json={"kind": "model", "spec": "column:answer"})
    assert ok.status_code == 200, ok.text


def test_bodies_are_bounded_while_read(client: httpx.Client) -> None:
    """Item 3: a big JSON body is 413 before parsing; a chunked upload is cut at its cap."""
    sid = _sheet(client)
    big = b'{"template": "' + b"x" * 5_000_000 + b'"}'
    answer = client.post(f"/api/sheets/{sid}/settings", content=big)
    assert answer.status_code == 413, answer.status_code
    sent = 0

    def chunks() -> Iterator[bytes]:  # no Content-Length: 200 MB in 1 MB pieces
        nonlocal sent
        for _ in range(200):
            sent += 1
            yield b'{"prompt": "' + b"y" * 1_000_000 + b'"}\n'

    try:
        upload = client.post("/api/sheets?filename=big.jsonl", content=chunks())
        assert upload.status_code == 413
    except httpx.TransportError:
        pass  # the server answered 413 and closed while the client was still sending
    assert sent < 100, f"the server read {sent} MB of an upload capped at 64 MB"


def test_another_name_for_this_machine_is_refused(server: str) -> None:
    """Item 4: Host must be this server's; Origin of a state change must be its own."""
    port = server.rsplit(":", 1)[1]
    with httpx.Client(base_url=server, timeout=30) as c:
        evil = c.get("/", headers={"host": f"rebind.evil.test:{port}"})
        assert evil.status_code == 421, evil.status_code
        assert c.get("/", headers={"host": f"localhost:{port}"}).status_code == 200
        c.headers["x-csrf-token"] = c.cookies["llmpick_csrf"]
        foreign = c.post(
            "/api/sheets?filename=a.jsonl",
            content=b'{"prompt": "x"}\n',
            headers={"origin": "http://evil.test"},
        )
        assert foreign.status_code == 403, foreign.text
        own = c.post(
            "/api/sheets?filename=a.jsonl",
            content=b'{"prompt": "x"}\n',
            headers={"origin": server},
        )
        assert own.status_code == 200, own.text


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_dns_rebinding_in_a_real_browser(server: str) -> None:
    """Item 4 in Chromium: a page of evil.test, whose name now points at 127.0.0.1, gets nothing."""
    playwright = pytest.importorskip("playwright.sync_api")
    port = server.rsplit(":", 1)[1]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--host-resolver-rules=MAP evil.test 127.0.0.1"],
        )  # fmt: skip
        try:
            page = browser.new_page()
            first = page.goto(f"http://evil.test:{port}/")
            assert first is not None and first.status == 421
            # the attacker's script, same origin as far as the browser knows
            result = page.evaluate(
                """async () => {
                    const r = await fetch('/api/sheets?filename=a.jsonl',
                        {method: 'POST', body: '{"prompt": "x"}\\n'});
                    const s = await fetch('/');
                    return [r.status, s.status, (await s.text()).includes('llmpick')];
                }"""
            )
        finally:
            browser.close()
    assert result[0] == 421 and result[1] == 421, result


def test_a_run_opened_as_a_sheet_keeps_its_outputs_and_scores(
    client: httpx.Client, workdir: Path
) -> None:
    """Item 6: the run's model columns and scores come from the store, nothing regenerated."""
    from llmpick.backends.base import SamplingParams
    from llmpick.context import Context
    from llmpick.evaluate import run_eval

    data = workdir / "run.jsonl"
    data.write_text(
        '{"id": "1", "prompt": "2+2?", "answer": "4", "expected": "4"}\n'
        '{"id": "2", "prompt": "3+3?", "answer": "7", "expected": "6"}\n',
        encoding="utf-8",
    )
    params = SamplingParams.model_validate({"max_tokens": 4})
    run = run_eval(Context(), data, ["column:answer"], ["exact"], params, workdir / "llmpick.db")
    opened = client.post(f"/api/sheets/from-run/{run.run_id}")
    assert opened.status_code == 200, opened.text
    sheet = opened.json()
    assert [c["spec"] for c in sheet["columns"] if c["kind"] == "model"] == ["column:answer"]
    grid = client.get(f"/api/sheets/{sheet['id']}/grid").json()
    cells = [r["cells"][0] for r in grid["rows"]]
    assert [c["output"] for c in cells] == ["4", "7"], cells
    assert [c["score"] for c in cells] == [1.0, 0.0], cells
    progress = client.get(f"/api/sheets/{sheet['id']}/progress").json()
    assert progress["state"] == "finished" and progress["done"] == 2, progress
