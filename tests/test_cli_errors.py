"""Bad input: one line on stderr with a hint, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port

pytestmark = pytest.mark.slow


def llmpick(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmpick", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={**os.environ, "COLUMNS": "60", **(env or {})},
    )


def assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: ") and "hint:" in lines[0]
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unknown_model(tmp_path: Path) -> None:
    assert_one_line_error(llmpick("run", "-m", "smollm", "hi", cwd=tmp_path), "unknown model")


def test_missing_gguf(tmp_path: Path) -> None:
    out = llmpick("run", "-m", f"llamacpp:{tmp_path}/none.gguf", "hi", cwd=tmp_path)
    assert_one_line_error(out, "not found")


def test_corrupt_gguf(tmp_path: Path, smollm2_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    with smollm2_path.open("rb") as src:
        bad.write_bytes(src.read(2_000_000))
    assert_one_line_error(
        llmpick("run", "-m", f"llamacpp:{bad}", "hi", cwd=tmp_path), "could not load"
    )


def test_unreachable_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    out = llmpick("run", "-m", f"openai:m@{url}", "hi", cwd=tmp_path)
    assert_one_line_error(out, "cannot connect")


def test_wrong_api_key(tmp_path: Path, llama_server: str) -> None:
    (tmp_path / "llmpick.yaml").write_text(
        f"models:\n  srv:\n    backend: openai\n    model: smol\n    base_url: {llama_server}\n"
        "    api_key_env: SRV_KEY\n    options: {max_retries: 0}\n"
    )
    out = llmpick("run", "-m", "srv", "hi", cwd=tmp_path, env={"SRV_KEY": "wrong"})
    assert_one_line_error(out, "refused the API key")


def test_prompt_longer_than_context(tmp_path: Path) -> None:
    prompt = "word " * 5000
    out = llmpick("run", "-m", "smollm2-135m-instruct", prompt, cwd=tmp_path)
    assert_one_line_error(out, "context window is 4096")


def test_bad_option_value(tmp_path: Path) -> None:
    out = llmpick("run", "--temperature", "7", "hi", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
