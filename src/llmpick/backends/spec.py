"""Model specs: what ``-m`` accepts, resolved to a backend and its options.

Accepted forms, first match wins:

- a name defined in ``llmpick.yaml``;
- a bundled alias (``smollm2-135m-instruct``, ``gemma-3-270m``);
- ``llamacpp:PATH.gguf`` or ``llamacpp:OWNER/REPO@FILE.gguf`` (from the Hub);
- ``hf:REPO_OR_PATH`` (a Hub id, a local directory, or a ``.gguf`` file);
- ``openai:MODEL@BASE_URL``;
- ``column:NAME`` (outputs read from a dataset column);
- a folder written by ``llmpick tune`` (``tuned/``, or ``hf:tuned/`` / ``llamacpp:tuned/``
  to choose the backend; :mod:`llmpick.backends.tuned`);
- ``BACKEND:MODEL`` for any other registered backend (plugins).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmpick.backends.bundled import BUNDLED_MODELS, bundled_model
from llmpick.backends.tuned import is_tuned_dir, tuned_spec_parts
from llmpick.config import ConfigFile
from llmpick.errors import ModelNotFoundError

__all__ = ["ModelSpec", "resolve_spec"]


class ModelSpec(BaseModel):
    """A resolved model: display name, backend, model string and options."""

    model_config = ConfigDict(extra="forbid")

    name: str
    backend: str
    model: str
    options: dict[str, Any] = {}
    catalog_id: str | None = None
    source: str = "spec"  # "bundled", "config" or "spec"


def resolve_spec(
    spec: str, config: ConfigFile, cache_dir: Path, backend_names: list[str]
) -> ModelSpec:
    """Turn a ``-m`` value into a :class:`ModelSpec`.

    Raises :class:`ModelNotFoundError` with close matches when nothing fits.
    """
    spec = spec.strip()
    if not spec:
        raise ModelNotFoundError("empty model spec")
    if spec in config.models:
        entry = config.models[spec]
        options = dict(entry.options)
        if entry.base_url is not None:
            options["base_url"] = entry.base_url
        if entry.base_urls is not None:
            options["base_urls"] = list(entry.base_urls)
        if entry.api_key_env is not None:
            options["api_key_env"] = entry.api_key_env
        return ModelSpec(
            name=spec,
            backend=entry.backend,
            model=entry.model,
            options=options,
            catalog_id=entry.catalog_id,
            source="config",
        )
    bundled = bundled_model(spec)
    if bundled is not None:
        return ModelSpec(
            name=bundled.name,
            backend="llamacpp",
            model=str(bundled.locate(cache_dir)),
            catalog_id=bundled.catalog_id,
            source="bundled",
        )
    backend, sep, rest = spec.partition(":")
    tuned = _tuned(spec, backend if sep and backend in ("hf", "llamacpp") else None, rest)
    if tuned is not None:
        return tuned
    if sep and backend in backend_names and rest:
        if backend == "openai":
            model, at, base_url = rest.rpartition("@")
            if not at or not model or not base_url:
                raise ModelNotFoundError(
                    f"openai spec '{spec}' needs a model and a base URL",
                    "write it as openai:MODEL@http://HOST:PORT/v1",
                )
            return ModelSpec(
                name=spec, backend="openai", model=model, options={"base_url": base_url}
            )
        if backend == "llamacpp" and "@" in rest and not Path(rest).exists():
            repo, _, filename = rest.partition("@")
            return ModelSpec(
                name=spec,
                backend="llamacpp",
                model=filename,
                options={"hf_repo": repo},
            )
        return ModelSpec(name=spec, backend=backend, model=rest)
    names = list(config.models) + list(BUNDLED_MODELS)
    close = difflib.get_close_matches(spec, names, n=3, cutoff=0.5)
    hint = (
        (f"did you mean {', '.join(close)}? " if close else "")
        + "use a bundled alias, a name from llmpick.yaml, or BACKEND:MODEL with backend one of "
        + (", ".join(backend_names))
    )
    if sep and backend not in backend_names:
        raise ModelNotFoundError(f"unknown backend '{backend}' in model spec '{spec}'", hint)
    raise ModelNotFoundError(f"unknown model '{spec}'", hint)


def _tuned(spec: str, backend: str | None, rest: str) -> ModelSpec | None:
    """A ``llmpick tune`` folder (optionally after ``hf:``/``llamacpp:``), else None."""
    folder = Path(rest if backend else spec).expanduser()
    if not is_tuned_dir(folder):
        return None
    chosen, model, options = tuned_spec_parts(folder, backend)
    return ModelSpec(name=spec.rstrip("/") or spec, backend=chosen, model=model, options=options)
