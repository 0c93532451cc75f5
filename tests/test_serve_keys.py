"""Gateway API keys: shown once, stored as a hash, 401 for missing/unknown/expired/revoked."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from llmpick.cli import app
from llmpick.errors import RequestRejectedError, UsageError
from llmpick.serve.keys import REDIS_KEYS, KeyStore, parse_expiry
from llmpick.store import open_store


def test_key_is_stored_only_as_its_hash_and_verifies(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        keys = KeyStore(store)
        key, secret = keys.create("team-a", rpm=20, tpm=1000, models=["auto"])
        assert secret.startswith(f"lp-{key.id}-") and len(secret) > 40
        assert keys.verify(secret).name == "team-a"
        assert keys.verify(secret).models == ["auto"]
        dump = "\n".join(store.db.iterdump())
        assert secret not in dump
        assert hashlib.sha256(secret.encode()).hexdigest() in dump


@pytest.mark.parametrize("case", ["missing", "unknown", "tampered", "expired", "revoked"])
def test_unusable_keys_get_401_saying_why(tmp_path: Path, case: str) -> None:
    with open_store(tmp_path / "s.db") as store:
        keys = KeyStore(store)
        _key, secret = keys.create("k")
        token: str | None = {
            "missing": None,
            "unknown": "sk-not-ours",
            "tampered": secret[:-1] + ("A" if secret[-1] != "A" else "B"),
        }.get(case, secret)
        if case == "expired":
            past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
            store.db.execute("UPDATE api_keys SET expires_at = ?", (past,))
        if case == "revoked":
            assert keys.revoke("k").state() == "revoked"
        with pytest.raises(RequestRejectedError) as info:
            keys.verify(token)
        assert info.value.status == 401
        assert {"missing": "missing", "expired": "expired", "revoked": "revoked"}.get(
            case, "invalid"
        ) in info.value.code
        assert keys.has_keys()  # revoking the last key does not open the gateway


def test_usage_adds_up_per_key(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        keys = KeyStore(store)
        key, _ = keys.create("k")
        keys.add_usage(key.id, prompt_tokens=10, completion_tokens=3)
        keys.add_usage(key.id, prompt_tokens=5, completion_tokens=2)
        usage = keys.usage(key.id)
        assert (usage.requests, usage.prompt_tokens, usage.completion_tokens) == (2, 15, 5)


def test_parse_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("2026-02-01", now) == datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(UsageError):
        parse_expiry("2025-01-01", now)
    with pytest.raises(UsageError):
        parse_expiry("soon", now)


def test_keys_cli_shows_the_key_once(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    runner = CliRunner()
    created = runner.invoke(
        app, ["keys", "create", "--name", "ci", "--rpm", "5", "--models", "auto,a", "--db", db]
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("lp-")
    listed = runner.invoke(app, ["keys", "list", "--format", "json", "--db", db])
    assert listed.exit_code == 0 and secret not in listed.stdout
    assert '"state": "active"' in listed.stdout and '"auto"' in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", "ci", "--db", db])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    duplicate = runner.invoke(app, ["keys", "create", "--name", "ci", "--db", db])
    assert duplicate.exit_code != 0


def test_keys_cli_copies_keys_to_redis_for_replicas(tmp_path: Path, redis_url: str) -> None:
    db = str(tmp_path / "s.db")
    runner = CliRunner()
    name = f"r-{uuid.uuid4().hex[:6]}"
    created = runner.invoke(
        app, ["keys", "create", "--name", name, "--db", db, "--redis", redis_url]
    )
    assert created.exit_code == 0, created.output
    client = redis.Redis.from_url(redis_url)
    try:
        key_id = created.stdout.strip().split("-")[1]
        shared = json.loads(client.hget(REDIS_KEYS, key_id))  # type: ignore[arg-type]
        assert shared["key"]["name"] == name and len(shared["sha256"]) == 64
        assert created.stdout.strip() not in json.dumps(shared)
        synced = runner.invoke(app, ["keys", "sync", "--redis", redis_url, "--db", db])
        assert synced.exit_code == 0 and "copied 1 keys" in synced.stdout
    finally:
        client.hdel(REDIS_KEYS, key_id)
        client.close()
