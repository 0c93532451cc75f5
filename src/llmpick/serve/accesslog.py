"""The gateway's private access log: one JSON line per request, no prompt text.

Each line carries the time, key name (never the key), route, model, status, token
counts and timings, and an HMAC-SHA256 of the prompt and of the output under a
server secret. Equal prompts give equal digests, so they can be correlated, but a
digest cannot be reversed by hashing guesses without the secret (a plain SHA-256
of a short prompt can). Raw text is written only when ``log_text=True`` (the
``--log-text`` opt-in of ``llmpick serve``).

Lines are appended with one ``write`` on an ``O_APPEND`` descriptor, so several
gateway processes can share one file without interleaving within a line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llmpick.errors import ConfigError

__all__ = ["SCHEMA_VERSION", "AccessLog", "AccessLogLine", "load_or_create_secret"]

#: Version of the line format (bumped when a field changes meaning).
SCHEMA_VERSION = 1

#: Environment variable holding the HMAC secret (shared by gateway replicas).
SECRET_ENV = "LLMPICK_LOG_SECRET"


class AccessLogLine(BaseModel):
    """One request as logged: timing and counts, digests instead of text."""

    schema_version: int = SCHEMA_VERSION
    time: str
    request_id: str
    key_name: str | None = None
    endpoint: str
    route: str | None = None
    category: str | None = None
    model: str | None = None
    status: int
    error_type: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    time_to_first_token_s: float | None = None
    total_s: float | None = None
    stream: bool = False
    fallback_from: str | None = None
    prompt_hmac: str
    output_hmac: str
    prompt: str | None = None
    output: str | None = None


def load_or_create_secret(path: Path | None = None) -> bytes:
    """The HMAC secret: ``$LLMPICK_LOG_SECRET``, else the file at ``path`` (created 0600).

    Replicas that should correlate prompts share the secret (the env variable or
    the same file); without one a random secret for this process is used.
    """
    env = os.environ.get(SECRET_ENV)
    if env:
        if len(env) < 16:
            raise ConfigError(f"{SECRET_ENV} is too short", "use at least 16 random characters")
        return env.encode()
    if path is None:
        return secrets.token_bytes(32)
    if path.exists():
        data = path.read_bytes().strip()
        if len(data) < 16:
            raise ConfigError(f"log secret file {path} is too short", "delete it to make a new one")
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


# what a request record may fill in; the rest is the log's own
_RECORD_FIELDS = set(AccessLogLine.model_fields) - {
    "schema_version", "time", "prompt_hmac", "output_hmac", "prompt", "output"
}  # fmt: skip


class AccessLog:
    """Appends :class:`AccessLogLine` JSON lines to a file."""

    def __init__(self, path: Path, secret: bytes, *, log_text: bool = False) -> None:
        self.path = path
        self._secret = secret
        self.log_text = log_text
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def digest(self, text: str) -> str:
        """HMAC-SHA256 of ``text`` under the server secret (hex)."""
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    def write(self, fields: dict[str, Any], prompt_text: str, output_text: str) -> AccessLogLine:
        """Log one request: ``fields`` are the record's timing and counts."""
        line = AccessLogLine(
            time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            **{k: v for k, v in fields.items() if k in _RECORD_FIELDS},
            prompt_hmac=self.digest(prompt_text),
            output_hmac=self.digest(output_text),
            prompt=prompt_text if self.log_text else None,
            output=output_text if self.log_text else None,
        )
        data = line.model_dump(exclude_none=not self.log_text)
        os.write(self._fd, (json.dumps(data, ensure_ascii=False) + "\n").encode())
        return line

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)
