"""API keys of the gateway: created once, stored as a SHA-256, checked in constant time.

A key reads ``lp-<id>-<secret>``: ``id`` (12 hex characters) finds the row,
``secret`` (32 random bytes, URL-safe base64) is the part only the client knows.
The store keeps ``sha256(key)``; a SHA-256 of 256 random bits cannot be reversed
by guessing, so no slow password hash is needed. The comparison of digests uses
:func:`hmac.compare_digest`, so its time does not depend on where they differ.

Usage counters (requests, prompt and completion tokens per key and minute) live
in the ``key_usage`` table beside the keys (migration ``_m006_keys_and_usage``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
from datetime import UTC, datetime, timedelta

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel

from llmpick.errors import RequestRejectedError, UsageError
from llmpick.store import Store

__all__ = [
    "REDIS_KEYS",
    "ApiKey",
    "KeyStore",
    "KeyUsage",
    "SharedKeys",
    "check_token",
    "key_id_of",
    "parse_expiry",
]

#: Redis hash of the keys shared by gateway replicas: id -> {"key": ApiKey, "sha256": …}
REDIS_KEYS = "llmpick:keys"

_KEY_RE = re.compile(r"^lp-([0-9a-f]{12})-([A-Za-z0-9_-]{20,})$")
_DURATION_RE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ApiKey(BaseModel):
    """A key as stored (never its secret)."""

    id: str
    name: str
    rpm: int | None = None
    tpm: int | None = None
    models: list[str] | None = None
    created_at: str
    expires_at: str | None = None
    revoked_at: str | None = None

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at:
            return "revoked"
        if self.expires_at and datetime.fromisoformat(self.expires_at) <= (now or _now()):
            return "expired"
        return "active"


class KeyUsage(BaseModel):
    """Totals of one key over a time span."""

    key_id: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``30d``, ``12h``, ``2w``, ``90m`` or an ISO date/time (UTC if no zone) -> when it ends."""
    now = now or _now()
    match = _DURATION_RE.match(text.strip().lower())
    if match:
        return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"cannot read expiry '{text}'", "give a duration (30d, 12h) or a date (2027-01-31)"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise UsageError(f"expiry {text} is in the past", "give a future date or a duration")
    return when


class KeyStore:
    """Keys and their usage in the llmpick store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        name: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        models: list[str] | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; return it and its secret (shown once, never stored)."""
        if not name.strip():
            raise UsageError("a key needs a name", "e.g. llmpick keys create --name team-a")
        for label, value in (("--rpm", rpm), ("--tpm", tpm)):
            if value is not None and value < 1:
                raise UsageError(f"{label} must be at least 1, got {value}")
        key_id = secrets.token_hex(6)
        secret = f"lp-{key_id}-{secrets.token_urlsafe(32)}"
        record = ApiKey(
            id=key_id,
            name=name.strip(),
            rpm=rpm,
            tpm=tpm,
            models=models or None,
            created_at=_now().isoformat(timespec="seconds"),
            expires_at=expires_at.isoformat(timespec="seconds") if expires_at else None,
        )
        try:
            self.store.db.execute(
                "INSERT INTO api_keys (id, name, key_sha256, rpm, tpm, models, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.name,
                    _sha256(secret),
                    rpm,
                    tpm,
                    json.dumps(record.models) if record.models else None,
                    record.created_at,
                    record.expires_at,
                ),
            )
        except sqlite3.IntegrityError:
            raise UsageError(
                f"a key named '{record.name}' already exists", "choose another --name"
            ) from None
        return record, secret

    def list(self) -> list[ApiKey]:
        """Every key, oldest first."""
        rows = self.store.db.execute("SELECT * FROM api_keys ORDER BY created_at, name")
        return [self._key(r) for r in rows]

    def has_keys(self) -> bool:
        """Whether any key was ever created (then every ``/v1`` request needs a valid one).

        Revoked and expired keys count: revoking the last key must not open the gateway.
        """
        return self.store.db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone() is not None

    def revoke(self, name_or_id: str) -> ApiKey:
        """Revoke a key by name or id (idempotent); return it."""
        row = self.store.db.execute(
            "SELECT * FROM api_keys WHERE name = ? OR id = ?", (name_or_id, name_or_id)
        ).fetchone()
        if row is None:
            raise UsageError(f"no key named '{name_or_id}'", "run 'llmpick keys list'")
        if row["revoked_at"] is None:
            self.store.db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ?",
                (_now().isoformat(timespec="seconds"), row["id"]),
            )
        return self.get(row["id"])

    def get(self, key_id: str) -> ApiKey:
        """The key with this id."""
        row = self.store.db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            raise UsageError(f"no key with id '{key_id}'", "run 'llmpick keys list'")
        return self._key(row)

    def find(self, name: str) -> ApiKey | None:
        """The key with this name, if any."""
        row = self.store.db.execute("SELECT * FROM api_keys WHERE name = ?", (name,)).fetchone()
        return self._key(row) if row is not None else None

    def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key with this id and its stored SHA-256, if any."""
        row = self.store.db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return (self._key(row), row["key_sha256"]) if row is not None else None

    def verify(self, token: str | None) -> ApiKey:
        """The active key ``token`` is, or a 401 :class:`RequestRejectedError` saying why."""
        key_id = key_id_of(token)
        return check_token(token, self.lookup(key_id) if key_id else None)

    def sync_to_redis(self, redis_url: str) -> int:
        """Copy every key (hash, limits, state; never a secret) to Redis; return how many.

        Gateway replicas started with ``--redis`` read keys from there, so a key
        created or revoked on one machine holds on every replica.
        """
        client = redis.Redis.from_url(redis_url)
        try:
            rows = self.store.db.execute("SELECT * FROM api_keys").fetchall()
            mapping = {r["id"]: _shared_value(self._key(r), r["key_sha256"]) for r in rows}
            if mapping:
                client.hset(REDIS_KEYS, mapping=mapping)
        except redis.RedisError as exc:
            raise UsageError(f"cannot write keys to {redis_url}: {exc}", "check --redis") from exc
        finally:
            client.close()
        return len(mapping)

    # -- usage -------------------------------------------------------------------------

    def add_usage(
        self, key_id: str, *, requests: int = 1, prompt_tokens: int = 0, completion_tokens: int = 0
    ) -> None:
        """Add one request's counts to this minute's row of the key."""
        minute = _now().strftime("%Y-%m-%dT%H:%M")
        self.store.db.execute(
            "INSERT INTO key_usage (key_id, minute, requests, prompt_tokens, completion_tokens)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (key_id, minute) DO UPDATE SET"
            " requests = requests + excluded.requests,"
            " prompt_tokens = prompt_tokens + excluded.prompt_tokens,"
            " completion_tokens = completion_tokens + excluded.completion_tokens",
            (key_id, minute, requests, prompt_tokens, completion_tokens),
        )

    def usage(self, key_id: str, since: datetime | None = None) -> KeyUsage:
        """Totals of a key (since a time, or ever)."""
        start = since.strftime("%Y-%m-%dT%H:%M") if since else ""
        row = self.store.db.execute(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(prompt_tokens), 0),"
            " COALESCE(SUM(completion_tokens), 0) FROM key_usage WHERE key_id = ? AND minute >= ?",
            (key_id, start),
        ).fetchone()
        return KeyUsage(
            key_id=key_id, requests=row[0], prompt_tokens=row[1], completion_tokens=row[2]
        )

    @staticmethod
    def _key(row: sqlite3.Row) -> ApiKey:
        return ApiKey(
            id=row["id"],
            name=row["name"],
            rpm=row["rpm"],
            tpm=row["tpm"],
            models=json.loads(row["models"]) if row["models"] else None,
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
        )


def key_id_of(token: str | None) -> str | None:
    """The id part of a well-formed key, else None."""
    match = _KEY_RE.match(token or "")
    return match.group(1) if match else None


def check_token(token: str | None, found: tuple[ApiKey, str] | None) -> ApiKey:
    """Check ``token`` against the key its id found (key, SHA-256), or raise a 401."""
    if not token:
        raise _unauthorized(
            "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key"
        )
    # compare against a digest either way, so a wrong id costs the same time
    stored = found[1] if found is not None else "0" * 64
    if not hmac.compare_digest(stored, _sha256(token)) or found is None:
        raise _unauthorized(
            "invalid API key: check the key, or create one with 'llmpick keys create'",
            "invalid_api_key",
        )
    key = found[0]
    state = key.state()
    if state != "active":
        raise _unauthorized(
            f"API key '{key.name}' is {state}: ask for a new key", f"{state}_api_key"
        )
    return key


class SharedKeys:
    """Keys as gateway replicas read them from Redis (written by ``llmpick keys --redis``)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def lookup(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key with this id and its SHA-256, if Redis has it."""
        raw = await self.client.hget(REDIS_KEYS, key_id)  # type: ignore[misc]
        return _from_shared(raw) if raw else None

    async def has_keys(self) -> bool:
        """Whether Redis holds any key (revoked and expired ones count)."""
        return bool(await self.client.hlen(REDIS_KEYS))  # type: ignore[misc]

    async def verify(self, token: str | None) -> ApiKey:
        """Like :meth:`KeyStore.verify`, against the keys in Redis."""
        key_id = key_id_of(token)
        return check_token(token, await self.lookup(key_id) if key_id else None)


def _shared_value(key: ApiKey, sha256: str) -> str:
    return json.dumps({"key": key.model_dump(), "sha256": sha256})


def _from_shared(raw: bytes | str) -> tuple[ApiKey, str]:
    data = json.loads(raw)
    return ApiKey.model_validate(data["key"]), str(data["sha256"])


def _unauthorized(message: str, code: str) -> RequestRejectedError:
    return RequestRejectedError(401, message, code=code)
