"""The per-invocation context: settings plus plugin registries.

Nothing here runs at import time. The CLI builds one ``Context`` per command;
tests build their own, so no state leaks between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmpick.backends.base import Backend
from llmpick.backends.pool import ModelPool, PoolOptions
from llmpick.backends.replicas import ReplicaSet
from llmpick.backends.spec import ModelSpec, resolve_spec
from llmpick.config import Settings
from llmpick.errors import ConfigError, LlmpickError, ModelNotFoundError, ScorerError
from llmpick.registry import Registry

__all__ = ["Context"]

BACKEND_GROUP = "llmpick.backends"
SCORER_GROUP = "llmpick.scorers"


def _backend_error(message: str, hint: str) -> LlmpickError:
    return ModelNotFoundError(message, hint)


def _scorer_error(message: str, hint: str) -> LlmpickError:
    return ScorerError(message, hint)


class Context:
    """Settings, the backend registry and the scorer registry for one run."""

    def __init__(
        self,
        config_path: Path | None = None,
        cache_dir: Path | None = None,
        load_entry_points: bool = True,
    ) -> None:
        self.settings = Settings(config_path=config_path, cache_dir=cache_dir)
        self.backends: Registry[type[Backend]] = Registry(
            BACKEND_GROUP, "backend", _backend_error, load_entry_points
        )
        self.scorers: Registry[Any] = Registry(
            SCORER_GROUP, "scorer", _scorer_error, load_entry_points
        )

    def resolve(self, spec: str) -> ModelSpec:
        """Resolve a ``-m`` value."""
        return resolve_spec(
            spec, self.settings.config, self.settings.cache_dir, self.backends.names()
        )

    def open_backend(self, spec: str | ModelSpec) -> Backend:
        """Resolve ``spec`` and construct its backend (loading the model)."""
        resolved = self.resolve(spec) if isinstance(spec, str) else spec
        urls = resolved.options.get("base_urls")
        if urls:
            # replicas: one backend per URL, behind the least-outstanding strategy
            cooldown = float(resolved.options.get("replica_cooldown_s", 10.0))
            # failing over to another replica is the retry; keep the client's own
            # retries for when the user asked for them
            retries = {} if "max_retries" in resolved.options else {"max_retries": 0}
            if "max_retries" not in self.backends.get(resolved.backend).Options.model_fields:
                retries = {}
            return ReplicaSet(
                [self._open_one(resolved, {"base_url": url, **retries}) for url in urls],
                cooldown_s=cooldown,
            )
        return self._open_one(resolved, {})

    def _open_one(self, resolved: ModelSpec, overrides: dict[str, Any]) -> Backend:
        cls = self.backends.get(resolved.backend)
        raw = {**resolved.options, **overrides}
        raw.pop("base_urls", None)
        raw.pop("replica_cooldown_s", None)
        try:
            options = cls.Options.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            allowed = ", ".join(cls.Options.model_fields)
            raise ConfigError(
                f"bad option '{field}' for backend {resolved.backend}: {first['msg']}",
                f"options for {resolved.backend}: {allowed or 'none'}",
            ) from exc
        if resolved.backend == "llamacpp" and resolved.source != "config":
            options = options.model_copy(update={"cache_dir": str(self.settings.cache_dir)})
        return cls(resolved.model, options)

    def pool(self, options: PoolOptions | None = None) -> ModelPool:
        """A new model pool opening models through this context (close it when done)."""
        return ModelPool(self, options)
