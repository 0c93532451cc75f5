"""GGUF files for the llama.cpp backends: where they are, whether they are GGUF, what they hold.

A model is a local path or a file of a Hugging Face Hub repo (through
huggingface_hub, which honours ``HF_HUB_OFFLINE``); its SHA-256 is remembered
by (path, size, mtime) so that a cache key does not re-hash gigabytes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from llmpick.errors import ModelFileError

__all__ = ["check_gguf", "file_sha256", "gguf_quantization", "resolve_gguf"]

_GGUF_MAGIC = b"GGUF"


def file_sha256(path: Path, cache_dir: Path | None) -> str:
    """SHA-256 of a file, remembered by (path, size, mtime) in ``cache_dir``."""
    import hashlib

    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index: dict[str, str] = {}
    index_path = cache_dir / "file-hashes.json" if cache_dir else None
    if index_path and index_path.exists():
        with contextlib.suppress(OSError, ValueError):
            index = json.loads(index_path.read_text())
    if key in index:
        return index[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    if index_path:
        index[key] = value
        with contextlib.suppress(OSError):
            index_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = index_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(index))
            os.replace(tmp, index_path)
    return value


def gguf_quantization(metadata: dict[str, str]) -> str | None:
    """Quantization name (``Q4_1``, ``Q4_K_M``…) from ``general.file_type``."""
    raw = metadata.get("general.file_type")
    if raw is None:
        return None
    try:
        from gguf import LlamaFileType

        name = LlamaFileType(int(raw)).name
    except (ImportError, ValueError):
        return f"file_type={raw}"
    return name.removeprefix("MOSTLY_")


def resolve_gguf(model: str, hf_repo: str | None, hf_revision: str | None) -> Path:
    """The local path of ``model``: as given, or downloaded from ``hf_repo`` (Hub cache)."""
    if hf_repo:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError as exc:  # pragma: no cover - a core dependency
            raise ModelFileError("huggingface_hub is not installed") from exc
        try:
            return Path(hf_hub_download(hf_repo, model, revision=hf_revision))
        except Exception as exc:
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            why = (
                "HF_HUB_OFFLINE is set and the file is not in the local Hub cache"
                if offline
                else type(exc).__name__
            )
            raise ModelFileError(
                f"could not get {model} from Hugging Face repo {hf_repo}: {why}",
                "check the repo id and file name and your network, or give a local path",
            ) from exc
    return Path(model).expanduser()


def check_gguf(path: Path) -> None:
    """Raise a one-line :class:`ModelFileError` unless ``path`` is a readable GGUF file."""
    if not path.exists():
        raise ModelFileError(
            f"GGUF file not found: {path}", "check the path, or run 'llmpick models'"
        )
    if not path.is_file():
        raise ModelFileError(f"not a file: {path}", "give the path of a .gguf file")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}") from exc
    if magic != _GGUF_MAGIC:
        raise ModelFileError(
            f"{path} is not a GGUF file (bad magic bytes)",
            "the file is corrupt or in another format; re-download it",
        )
