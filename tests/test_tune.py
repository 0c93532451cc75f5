"""``llmpick tune`` end to end on the bundled SmolLM2, on CPU, through the real CLI.

One training is shared by the module: it is killed with SIGKILL after its first
checkpoint and resumed by the same command, then its folder is evaluated,
served and run through the hf backend. The task is an output format the base
cannot produce ("CASE-<ticket number>").
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from conftest import start_gateway, stop

pytestmark = [pytest.mark.slow, pytest.mark.hf]

_TEXTS = ["I was charged twice", "refund my payment", "my invoice is wrong", "I cannot log in",
          "password reset fails", "my parcel never arrived", "where is my delivery"]  # fmt: skip
_STEPS = 12


def _llmpick(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmpick", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _write_tickets(path: Path, n: int) -> None:
    rng = random.Random(0)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "system", "prompt", "expected"])
        writer.writeheader()
        for i in range(n):
            number = rng.randint(100, 999)
            writer.writerow({
                "id": f"t{i}", "system": "Reply with the case code.",
                "prompt": f"Ticket {number}: {rng.choice(_TEXTS)}", "expected": f"CASE-{number}",
            })  # fmt: skip


def _tune_args() -> list[str]:
    return [
        "tune", "smollm2-135m-instruct", "--data", "tickets.csv", "--out", "tuned",
        "--scorer", "exact", "--max-steps", str(_STEPS), "--batch", "4", "--lr", "1e-3",
        "--rank", "8", "--alpha", "16", "--max-seq-len", "96", "--checkpoint-every", "4",
        "--max-tokens", "8", "--db", "tune.db", "--no-png", "--format", "json",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train, kill -9 after the first checkpoint, rerun the same command; its JSON and folder."""
    work = tmp_path_factory.mktemp("tune")
    _write_tickets(work / "tickets.csv", 50)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpick", *_tune_args()],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pointer = work / "tuned" / "checkpoints" / "latest.json"
    deadline = time.monotonic() + 400
    while not pointer.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(pointer.read_text())["step"]
    done = _llmpick(work, *_tune_args())
    assert done.returncode == 0, done.stderr
    return {"dir": work, "report": json.loads(done.stdout), "killed_at": killed_at}


def test_resumes_after_kill_9(tuned: dict[str, Any]) -> None:
    state = tuned["report"]["training"]["state"]
    killed_at = tuned["killed_at"]
    assert 0 < killed_at < _STEPS
    assert state["resumed_at"] == [killed_at]
    assert tuned["report"]["training"]["steps_run"] == _STEPS - killed_at
    assert [s for s, _ in state["train_loss"]] == list(range(1, _STEPS + 1))
    held = [loss for _, loss in state["holdout_loss"]]
    assert held[-1] < held[0] / 5  # the held-out loss kept falling across the kill


def test_tuned_beats_base_on_held_out_rows(tuned: dict[str, Any]) -> None:
    report = tuned["report"]
    assert report["schema_version"] == 1
    assert report["p_value"] < 0.05, report["sentence"]
    assert report["tuned"]["mean"] > report["base"]["mean"]
    assert report["tuned"]["n"] == report["base"]["n"] == 10
    assert "beats smollm2-135m-instruct" in report["sentence"]
    assert report["warning"] is None
    assert (tuned["dir"] / "tuned" / "adapter.gguf").is_file()
    assert report["memory_estimate"]["total_bytes"] > 0
    assert report["training"]["peak_memory_bytes"] > report["memory_estimate"]["weights_bytes"]
    assert (tuned["dir"] / "tuned" / "tune.html").is_file()


def test_eval_of_tuned_folder_caches_and_never_reuses_base_cells(tuned: dict[str, Any]) -> None:
    work = tuned["dir"]
    args = ["eval", "tuned/holdout.jsonl", "-m", "smollm2-135m-instruct", "-m", "tuned/",
            "--scorer", "exact", "--max-tokens", "8", "--db", "eval.db",
            "--format", "json"]  # fmt: skip
    first = _llmpick(work, *args)
    assert first.returncode == 0, first.stderr
    second = _llmpick(work, *args)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["cells_cached"] == again["cells_total"] == 20
    assert again["models"]["tuned"]["mean"] > again["models"]["smollm2-135m-instruct"]["mean"]
    with sqlite3.connect(work / "eval.db") as db:
        rows = db.execute("SELECT identity, output FROM generations").fetchall()
    identities = {json.loads(i).get("adapter_sha256"): [] for i, _ in rows}
    for identity, output in rows:
        identities[json.loads(identity).get("adapter_sha256")].append(output)
    assert len(identities) == 2 and None in identities  # base cells and tuned cells, apart
    tuned_outputs = next(v for k, v in identities.items() if k is not None)
    assert len(tuned_outputs) == 10 and sum(o.startswith("CASE-") for o in tuned_outputs) >= 8
    assert not any(o.startswith("CASE-") for o in identities[None])


def test_serve_answers_an_openai_request(tuned: dict[str, Any]) -> None:
    proc, url = start_gateway(tuned["dir"], None, "-m", "tuned")
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
        answer = client.chat.completions.create(
            model="tuned",
            messages=[
                {"role": "system", "content": "Reply with the case code."},
                {"role": "user", "content": "Ticket 512: my parcel never arrived"},
            ],
            max_tokens=8,
            temperature=0,
        )
        assert (answer.choices[0].message.content or "").startswith("CASE-")
    finally:
        stop(proc)


def test_hf_backend_runs_the_peft_adapter(tuned: dict[str, Any]) -> None:
    work = tuned["dir"]
    done = _llmpick(
        work, "eval", "tuned/holdout.jsonl", "-m", "hf:tuned", "--scorer", "exact",
        "--max-tokens", "8", "--limit", "4", "--db", "hf.db", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["models"]["hf:tuned"]["mean"] >= 0.75


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([{"prompt": "hi", "label": "x"}], "no answer column"),
        ([{"prompt": "hi", "expected": "a"}, {"prompt": "yo", "expected": ""}], "empty answer"),
        ([{"prompt": "word " * 200, "expected": "a"}, {"prompt": "x", "expected": "b"}],
         "longer than --max-seq-len 96"),
    ],
)  # fmt: skip
def test_bad_dataset_is_one_line_error(
    tmp_path: Path, rows: list[dict[str, str]], needle: str
) -> None:
    with (tmp_path / "bad.jsonl").open("w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    done = _llmpick(
        tmp_path, "tune", "smollm2-135m-instruct", "--data", "bad.jsonl", "--out", "t",
        "--max-seq-len", "96", "--no-png",
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert not (tmp_path / "t" / "checkpoints").exists()
