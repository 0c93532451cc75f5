"""Typed errors raised by the llmpick library.

Only ``llmpick.cli`` turns these into a one-line message with a hint and a
non-zero exit code; library code never prints or exits.

The hierarchy::

    LlmpickError
    ├── ConfigError                 bad llmpick.yaml, bad option, bad argument value
    │   └── UsageError              a command-line value that cannot be used
    ├── MissingDependencyError      an optional extra is not installed
    ├── ModelNotFoundError          unknown model spec, alias or catalog id
    ├── ModelFileError              missing, unreadable or corrupt weights file
    ├── BackendError                a backend failed while generating
    │   ├── EndpointUnreachableError    no server answers at the base URL
    │   ├── AuthenticationError         the server refused the API key
    │   ├── RateLimitError              retries on 429 exhausted
    │   ├── ContextLengthError          the prompt does not fit the context window
    │   ├── UnsupportedRequestError     the backend cannot do what was asked (tools, a schema)
    │   ├── UpstreamServerError         the server answered 408/409/5xx (worth retrying)
    │   ├── QueueFullError              a model's wait queue is full (gateway: 503)
    │   ├── ModelUnavailableError       no healthy instance/replica can answer (gateway: 503)
    │   └── UpstreamTimeoutError        the answer took longer than allowed (gateway: 504)
    ├── DataError                   dataset missing, unreadable, empty, wrong columns
    ├── ScorerError                 unknown scorer or bad scorer arguments
    ├── CatalogError                catalog data invalid or entry missing
    ├── HardwareError               unknown device
    ├── QuantizationError           unknown quantization
    ├── StoreError                  the SQLite store cannot be used
    └── RequestRejectedError        the gateway refuses a client request (401, 413, 429, 400…)
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "AuthenticationError",
    "BackendError",
    "CatalogError",
    "ConfigError",
    "ContextLengthError",
    "DataError",
    "EndpointUnreachableError",
    "HardwareError",
    "LlmpickError",
    "MissingDependencyError",
    "ModelFileError",
    "ModelNotFoundError",
    "ModelUnavailableError",
    "QuantizationError",
    "QueueFullError",
    "RateLimitError",
    "RequestRejectedError",
    "ScorerError",
    "StoreError",
    "UnsupportedRequestError",
    "UpstreamServerError",
    "UpstreamTimeoutError",
    "UsageError",
    "first_invalid",
]


class LlmpickError(Exception):
    """Base of every error llmpick raises on purpose.

    ``message`` says what went wrong; ``hint`` says what the user can do next.
    """

    default_hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def one_line(self) -> str:
        """The message and hint joined on one line, as the CLI prints it."""
        text = " ".join(self.message.split())
        if self.hint:
            text += f" (hint: {' '.join(self.hint.split())})"
        return text


class ConfigError(LlmpickError):
    """A configuration file or option is invalid."""


class UsageError(ConfigError):
    """A command-line value cannot be used."""


class MissingDependencyError(LlmpickError):
    """An optional dependency is missing; the hint names the extra to install."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"the optional dependency '{package}' is not installed",
            f"install it with: pip install 'llmpick[{extra}]'",
        )
        self.package = package
        self.extra = extra


class ModelNotFoundError(LlmpickError):
    """A model spec, alias or catalog id does not resolve."""

    default_hint = "run 'llmpick models' to list what can run here"


class ModelFileError(LlmpickError):
    """A weights file is missing, unreadable or corrupt."""


class BackendError(LlmpickError):
    """A backend failed to generate.

    ``retry_after_s`` is how long the server asked us to wait before trying again
    (its ``Retry-After`` header), when it said so; the model pool's retries honour it.
    """

    retry_after_s: float | None = None


class EndpointUnreachableError(BackendError):
    """Nothing answers at an OpenAI-compatible base URL."""


class AuthenticationError(BackendError):
    """The server refused the credentials."""


class RateLimitError(BackendError):
    """The server kept answering 429 after all retries."""


class ContextLengthError(BackendError):
    """The prompt (plus requested output) is longer than the context window."""


class UnsupportedRequestError(BackendError):
    """The backend cannot honour part of a request (tools, a JSON schema keyword…).

    Raised before anything is generated, so the gateway answers 400 (or routes to a
    model that can) instead of silently dropping what was asked. ``param`` names
    the request field at fault, as OpenAI's error object does.
    """

    def __init__(self, message: str, hint: str | None = None, *, param: str) -> None:
        super().__init__(message, hint)
        self.param = param


class UpstreamServerError(BackendError):
    """The server answered a transient failure status (408, 409 or 5xx)."""


class QueueFullError(BackendError):
    """A model's bounded wait queue is full; the request was not accepted."""

    default_hint = "retry later, or raise the model's queue limit / concurrency"


class ModelUnavailableError(BackendError):
    """No healthy instance or replica of a model can answer right now."""


class UpstreamTimeoutError(BackendError):
    """A generation took longer than the time allowed for it."""


class DataError(LlmpickError):
    """A dataset is missing, unreadable, empty, or lacks needed columns."""


class ScorerError(LlmpickError):
    """A scorer is unknown or got bad arguments."""


class CatalogError(LlmpickError):
    """The model catalog is invalid or lacks an entry."""


class HardwareError(LlmpickError):
    """A device name is unknown."""


class QuantizationError(LlmpickError):
    """A quantization name is unknown."""


class StoreError(LlmpickError):
    """The SQLite store cannot be opened or migrated."""


class RequestRejectedError(LlmpickError):
    """The gateway refuses a client's request: bad key, over a limit, too large.

    ``status`` is the HTTP status the gateway answers with; ``code`` and ``param``
    fill OpenAI's error shape; ``retry_after`` (seconds) becomes ``Retry-After``.
    The message says what the client can change.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint="")
        self.status = status
        self.code = code
        self.param = param
        self.retry_after = retry_after


def first_invalid(exc: ValidationError) -> tuple[str, str]:
    """The first field pydantic refused (dotted path) and why, for a one-line error."""
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]), first["msg"]
