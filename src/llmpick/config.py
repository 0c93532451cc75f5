"""Settings and the ``llmpick.yaml`` config file.

``llmpick.yaml`` (in the working directory, or given with ``--config``) names
models so they can be used as ``-m NAME``::

    models:
      qwen-local:
        backend: openai
        model: qwen2.5:7b
        base_url: http://127.0.0.1:11434/v1
        api_key_env: OLLAMA_API_KEY     # optional
        catalog_id: Qwen/Qwen2.5-7B-Instruct
        options: {timeout_s: 60}
      qwen-vllm:                        # replicas of one model: least-outstanding choice,
        backend: openai                 # a failing one cools down, retried once elsewhere
        model: Qwen/Qwen2.5-7B-Instruct
        base_urls: [http://10.0.0.11:8000/v1, http://10.0.0.12:8000/v1]
      tiny:
        backend: llamacpp
        model: ./models/tiny.gguf
        options: {n_ctx: 4096, n_threads: 2}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from llmpick.errors import ConfigError, first_invalid

__all__ = ["ConfigFile", "ModelConfig", "Settings", "default_cache_dir", "load_config"]

CONFIG_FILENAME = "llmpick.yaml"


class ModelConfig(BaseModel):
    """One named model in ``llmpick.yaml``."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    model: str
    base_url: str | None = None
    #: several servers with the same weights (replicas); exclusive with base_url
    base_urls: list[str] | None = None
    api_key_env: str | None = None
    catalog_id: str | None = None
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_kind_of_url(self) -> ModelConfig:
        if self.base_url is not None and self.base_urls is not None:
            raise ValueError("give base_url or base_urls, not both")
        if self.base_urls is not None and not self.base_urls:
            raise ValueError("base_urls is empty")
        return self


class ConfigFile(BaseModel):
    """The whole ``llmpick.yaml``."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, ModelConfig] = {}
    #: ``llmpick serve`` settings, checked as :class:`llmpick.serve.gateway.GatewayConfig`
    #: (host, port, models, routes_from, pool, security…); CLI flags override them
    serve: dict[str, Any] = {}


def load_config(path: Path | None = None) -> tuple[ConfigFile, Path | None]:
    """Read ``path`` (or ``./llmpick.yaml`` if present); empty config if neither."""
    if path is None:
        candidate = Path.cwd() / CONFIG_FILENAME
        if not candidate.exists():
            return ConfigFile(), None
        path = candidate
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist", "check the --config path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"cannot read config file {path}: {str(exc).splitlines()[0]}",
            "fix the YAML syntax",
        ) from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must be a mapping", "start it with 'models:'")
    try:
        return ConfigFile.model_validate(raw), path
    except ValidationError as exc:
        where, why = first_invalid(exc)
        raise ConfigError(
            f"config file {path}: {where}: {why}",
            "each model needs 'backend' and 'model'; allowed keys: backend, model, "
            "base_url, base_urls, api_key_env, catalog_id, options",
        ) from exc


def default_cache_dir() -> Path:
    """Where llmpick keeps assembled models and hashes (``LLMPICK_CACHE_DIR`` overrides)."""
    env = os.environ.get("LLMPICK_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llmpick"))


class Settings:
    """Per-invocation settings; build a fresh one in each test."""

    def __init__(self, config_path: Path | None = None, cache_dir: Path | None = None) -> None:
        self.config, self.config_path = load_config(config_path)
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
