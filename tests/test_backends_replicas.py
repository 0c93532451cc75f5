"""Replicas of one model (``base_urls``): least outstanding, passive health, failover
before the first token, against real llama.cpp servers on loopback."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import free_port, start_llama_server
from llmpick.backends.base import GenerationRequest
from llmpick.backends.replicas import ReplicaSet
from llmpick.context import Context
from llmpick.errors import BackendError, ConfigError

pytestmark = [pytest.mark.slow, pytest.mark.network]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(10)


@pytest.fixture(scope="module")
def upstream(smollm2_path: Path) -> Iterator[str]:
    """One more llama.cpp server (SmolLM2) without a key, shared by this module."""
    proc, url = start_llama_server(smollm2_path, n_ctx=512)
    yield url
    _stop(proc)


def _context(tmp_path: Path, urls: list[str], **options: object) -> Context:
    config = {"models": {"tiny": {"backend": "openai", "model": "smollm2", "base_urls": urls}}}
    config["models"]["tiny"]["options"] = options  # type: ignore[index]
    path = tmp_path / "llmpick.yaml"
    path.write_text(yaml.safe_dump(config))
    return Context(config_path=path)


def _request(max_tokens: int = 4) -> GenerationRequest:
    return GenerationRequest.from_prompt("Say hi.", max_tokens=max_tokens, seed=1)


def test_base_url_and_base_urls_are_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "llmpick.yaml"
    path.write_text("models:\n  m: {backend: openai, model: x, base_url: a, base_urls: [b]}\n")
    with pytest.raises(ConfigError, match="not both"):
        Context(config_path=path)


async def test_a_dead_replica_cools_down_and_requests_fail_over_through_the_pool(
    tmp_path: Path, upstream: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    context = _context(tmp_path, [dead, upstream], replica_cooldown_s=60)
    async with context.pool() as pool:
        model = await pool.open("tiny")
        backend = model.backend
        assert isinstance(backend, ReplicaSet)
        for _ in range(3):
            assert (await model.generate(_request())).usage.completion_tokens > 0
        assert model.health().state == "ready"
        dead_state, live_state = backend.states()
        assert (dead_state.healthy, dead_state.failures, dead_state.served) == (False, 1, 0)
        assert 0 < dead_state.cooldown_left_s <= 60 and "connect" in (dead_state.last_error or "")
        assert (live_state.healthy, live_state.served, live_state.outstanding) == (True, 3, 0)
        assert backend.describe().base_url == f"{dead},{upstream}"
        # an active check probes every replica: one answering is enough
        assert (await model.check()).state == "ready"
        assert backend.states()[0].failures == 2


async def test_least_outstanding_spreads_load_and_a_killed_replica_loses_no_unstarted_request(
    tmp_path: Path, upstream: str, smollm2_path: Path
) -> None:
    victim, victim_url = start_llama_server(smollm2_path, n_ctx=512)
    backend = _context(tmp_path, [upstream, victim_url]).open_backend("tiny")
    assert isinstance(backend, ReplicaSet)
    first_token = asyncio.Event()
    outcomes: list[tuple[bool, str | None]] = []  # (streamed anything, error)

    async def one() -> None:
        streamed = False
        try:
            async for chunk in backend.generate(_request(max_tokens=24)):
                if chunk.text:
                    streamed = True
                    first_token.set()
            outcomes.append((streamed, None))
        except BackendError as exc:
            outcomes.append((streamed, exc.message))

    try:
        tasks = [asyncio.create_task(one()) for _ in range(10)]
        await asyncio.sleep(0)
        # least outstanding: the ten requests are split between the two replicas
        assert sorted(s.outstanding for s in backend.states()) == [5, 5]
        await first_token.wait()
        _stop(victim)
        await asyncio.gather(*tasks)
    finally:
        await backend.aclose()
        if victim.poll() is None:
            _stop(victim)
    assert len(outcomes) == 10
    # a request fails only if the replica died after it had streamed output
    assert all(streamed for streamed, error in outcomes if error is not None), outcomes
    assert sum(error is None for _, error in outcomes) >= 5
    assert backend.states()[1].failures >= 1 and backend.states()[1].last_error
