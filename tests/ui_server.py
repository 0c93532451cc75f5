"""Start ``llmpick ui`` (or ``serve --ui``) as a real server process on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def start_ui(
    db: Path, port: int, cwd: Path, *, serve: tuple[str, ...] | None = None
) -> subprocess.Popen[bytes]:
    """Run ``llmpick ui --port PORT --db DB`` and wait until it answers.

    With ``serve`` (model flags), run ``llmpick serve --ui`` with them instead:
    the gateway with the workbench at ``/ui``.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = ["ui"] if serve is None else ["serve", "--ui", *serve]
    process = subprocess.Popen(
        [sys.executable, "-m", "llmpick", *command, "--port", str(port), "--db", str(db)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    probe = f"http://127.0.0.1:{port}/" if serve is None else f"http://127.0.0.1:{port}/health"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llmpick exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(probe, timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("llmpick did not start in 60 s")


def stop_ui(process: subprocess.Popen[bytes], hard: bool = False) -> None:
    """Stop the server: SIGKILL when ``hard`` (a crash), else SIGTERM."""
    if process.poll() is None:
        process.kill() if hard else process.terminate()
        process.wait(timeout=30)
    if process.stderr is not None:
        process.stderr.close()
