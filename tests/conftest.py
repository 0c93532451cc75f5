"""Shared fixtures: bundled models loaded once, a loopback llama.cpp server."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import yaml

from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.config import default_cache_dir
from llmpick.context import Context

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_idle_event_loop() -> Iterator[None]:
    """Close the loop pytest-asyncio leaves set after each async test.

    Torn down after pytest-asyncio's loop fixture, which installs a fresh unclosed
    loop as current after each async test: the next ``asyncio.run`` would drop it,
    and its socket pair would warn in whichever test comes next.
    """
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            idle = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:  # none set: nothing to close
            idle = None
    if idle is not None and not idle.is_running() and not idle.is_closed():
        idle.close()


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after every module, so a leak warns in the module that made it.

    Per test it would cost about 0.25 s each once torch is loaded.
    """
    yield
    gc.collect()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return BUNDLED_MODELS["smollm2-135m-instruct"].locate(default_cache_dir())


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    return BUNDLED_MODELS["gemma-3-270m"].locate(default_cache_dir())


@pytest.fixture()
def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    """A fresh context in an empty working directory (no llmpick.yaml)."""
    monkeypatch.chdir(tmp_path)
    return Context()


@pytest.fixture(scope="session")
def smollm2_backend(smollm2_path: Path):  # type: ignore[no-untyped-def]
    backend = Context().open_backend("smollm2-135m-instruct")
    yield backend
    asyncio.run(backend.aclose())


def start_llama_server(
    model: Path, *extra: str, n_ctx: int = 2048, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start llama-cpp-python's OpenAI-compatible server on loopback (a free port by default)."""
    port = port if port is not None else free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            "2",
            # by default a new request cuts off the one being streamed
            "--interrupt_requests",
            "False",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_for_port(proc, port, "llama_cpp.server", timeout=120)
    return proc, f"http://127.0.0.1:{port}/v1"


def wait_for_port(proc: subprocess.Popen[bytes], port: int, name: str, timeout: float) -> None:
    """Wait until ``proc`` accepts connections on 127.0.0.1:``port`` (kill it if it never does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


@pytest.fixture(scope="session")
def llama_server(smollm2_path: Path) -> Iterator[str]:
    """Base URL of a llama.cpp server (SmolLM2) on 127.0.0.1 with API key 'sekret'."""
    proc, url = start_llama_server(smollm2_path, "--api_key", "sekret")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def start_gateway(
    workdir: Path,
    config: dict[str, object] | None,
    *args: str,
    env: dict[str, str] | None = None,
    capture: bool = False,
) -> tuple[subprocess.Popen[bytes], str]:
    """``llmpick serve`` in ``workdir`` (``config`` as its llmpick.yaml) on a free loopback port.

    With ``capture`` its stdout and stderr go to ``gateway-PORT.out``/``.err`` in ``workdir``.
    """
    port = free_port()
    if config is not None:
        (workdir / "llmpick.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    out: int | IO[bytes] = subprocess.DEVNULL
    err: int | IO[bytes] = subprocess.DEVNULL
    if capture:
        out = (workdir / f"gateway-{port}.out").open("wb")
        err = (workdir / f"gateway-{port}.err").open("wb")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmpick", "serve", "--port", str(port), *args],
            cwd=workdir,
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    finally:
        for handle in (out, err):
            if not isinstance(handle, int):
                handle.close()  # the child keeps its own descriptor
    wait_for_port(proc, port, "llmpick serve", timeout=120)
    return proc, f"http://127.0.0.1:{port}"


def create_key(cwd: Path, name: str, *flags: str) -> str:
    """``llmpick keys create --name NAME FLAGS`` in ``cwd``; the key it printed once."""
    done = subprocess.run(
        [sys.executable, "-m", "llmpick", "keys", "create", "--name", name, *flags],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` s; the exit status."""
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def start_redis_server() -> tuple[subprocess.Popen[bytes], str]:
    """Start Debian's redis-server on a free loopback port, nothing saved to disk."""
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(proc, port, "redis-server", timeout=20)
    return proc, f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real redis-server on 127.0.0.1 shared by the session (flush what you use)."""
    proc, url = start_redis_server()
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
