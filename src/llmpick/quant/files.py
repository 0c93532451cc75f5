"""Build the reference GGUF and the quantized variants, in the cache directory.

- :func:`build_reference`: the highest-precision GGUF available. A float GGUF
  (F32/F16/BF16) is its own reference. A quantized GGUF is dequantized tensor
  by tensor to F32 with the ``gguf`` package: F32 holds every value a ggml
  block decodes to exactly (a block stores ``d * q (+ m)`` with f16 scales),
  so the reference has exactly the bundled file's weights. It measures what
  a variant loses *against the file you have*, not against the original
  training checkpoint.
- :func:`build_variant`: llama.cpp's own quantizer
  (``llama_model_quantize`` through llama-cpp-python) from the reference.

Files live under ``CACHE/quant/<source sha256[:16]>/`` with a
``manifest.json`` holding the SHA-256 of the source and of every file built;
a file is reused when its hash matches the manifest. Before writing, the
free space is checked against a size bound; files are written under a
temporary name and renamed when complete, so an interrupted or failed build
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from llmpick.backends.gguf_files import file_sha256
from llmpick.backends.llamacpp_log import install_log_capture
from llmpick.errors import ModelFileError, QuantizationError

__all__ = [
    "FLOAT_TYPES",
    "QUANTIZER_SOURCE",
    "BuiltFile",
    "build_reference",
    "build_variant",
    "check_free_space",
    "normalize_variant",
    "parameter_count",
    "quant_dir",
    "tensor_types",
    "variant_names",
    "variant_size_bound",
]

QUANTIZER_SOURCE = "llama.cpp llama_model_quantize via llama-cpp-python"
FLOAT_TYPES = ("F32", "F16", "BF16")
_MANIFEST = "manifest.json"
_METADATA_BYTES = 16 << 20  # vocabulary, merges, chat template: a few MB
# bits per weight of the largest type llama.cpp may pick for a tensor of a
# variant (K-quant fallbacks such as Q5_0/IQ4_NL for rows not divisible by 256,
# Q6_K/Q8_0 for the output tensor); an upper bound for the free-space check
_FALLBACK_BPW = 5.5


class BuiltFile(BaseModel):
    """A GGUF built (or reused) in the cache directory."""

    name: str
    path: Path
    sha256: str
    size_bytes: int
    source_sha256: str
    how: str
    reused: bool = False
    tensor_types: dict[str, int] = Field(default_factory=dict)


def _ftypes() -> dict[str, int]:
    import llama_cpp

    prefix = "LLAMA_FTYPE_MOSTLY_"
    return {
        n.removeprefix(prefix): int(getattr(llama_cpp, n))
        for n in dir(llama_cpp)
        if n.startswith(prefix) and n.removeprefix(prefix) not in FLOAT_TYPES
    }


def variant_names() -> list[str]:
    """Quantization types this llama.cpp build can produce (``Q4_K_M``, ``Q8_0``…)."""
    return sorted(_ftypes())


def normalize_variant(name: str) -> str:
    """Canonical name of a variant, or :class:`QuantizationError` listing the known ones."""
    import difflib

    key = name.strip().upper().replace("-", "_")
    known = _ftypes()
    if key in known:
        return key
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = (
        (f"did you mean {', '.join(close)}? " if close else "")
        + "llama.cpp knows: "
        + ", ".join(sorted(known))
    )
    raise QuantizationError(f"llama.cpp has no quantization type '{name}'", hint)


def quant_dir(cache_dir: Path, source_sha256: str) -> Path:
    """Where the reference and variants of one source file live."""
    return cache_dir / "quant" / source_sha256[:16]


def _read_manifest(directory: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((directory / _MANIFEST).read_text())
        if isinstance(data, dict):
            return data
    return {}


def _write_manifest(directory: Path, entry: BuiltFile) -> None:
    manifest = _read_manifest(directory)
    manifest.setdefault("schema_version", 1)
    manifest.setdefault("files", {})[entry.name] = entry.model_dump(
        mode="json", exclude={"reused", "path"}
    ) | {"file": entry.path.name}
    tmp = directory / f".{_MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, directory / _MANIFEST)


def _reuse(directory: Path, name: str, path: Path, cache_dir: Path) -> BuiltFile | None:
    entry = _read_manifest(directory).get("files", {}).get(name)
    if not entry or not path.exists():
        return None
    if file_sha256(path, cache_dir) != entry.get("sha256"):
        return None  # changed or truncated behind our back: rebuild
    return BuiltFile.model_validate({**entry, "path": path, "reused": True})


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it on success, delete it otherwise."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_free_space(directory: Path, needed_bytes: int, keep_free_bytes: int = 0) -> None:
    """Raise :class:`QuantizationError` if ``directory`` lacks room for ``needed_bytes``."""
    directory.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free - needed_bytes < keep_free_bytes:
        raise QuantizationError(
            f"not enough disk space in {directory}: the files need up to "
            f"{needed_bytes / 1e9:.2f} GB and {free / 1e9:.2f} GB are free"
            + (f" (keeping {keep_free_bytes / 1e9:.2f} GB free)" if keep_free_bytes else ""),
            "free some space, build fewer variants, or set LLMPICK_CACHE_DIR to a larger disk",
        )


def _reader(path: Path) -> Any:
    import gguf

    try:
        return gguf.GGUFReader(path)
    except (OSError, ValueError, IndexError) as exc:
        raise ModelFileError(f"cannot read {path} as GGUF: {exc}") from exc


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each ggml type the GGUF at ``path`` holds."""
    counts: dict[str, int] = {}
    for tensor in _reader(path).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return counts


def parameter_count(path: Path) -> int:
    """Number of weights in the GGUF at ``path``."""
    return sum(int(t.n_elements) for t in _reader(path).tensors)


def variant_size_bound(n_params: int, variant: str) -> int:
    """An upper bound on a variant's file size (for the free-space check)."""
    from llmpick.fit.quant import get_quantization

    try:
        bpw = get_quantization(variant).bits_per_weight
    except QuantizationError:
        bpw = 8.5
    return int(n_params * max(bpw, _FALLBACK_BPW) / 8) + _METADATA_BYTES


def _undecodable(reader: Any) -> list[str]:
    from gguf.quants import _type_traits

    names = {t.tensor_type.name for t in reader.tensors}
    return sorted(
        n
        for n in names
        if n not in FLOAT_TYPES
        and n not in ("F64", "I8", "I16", "I32", "I64")
        and not any(t.name == n for t in _type_traits)
    )


def build_reference(
    source: Path, cache_dir: Path, keep_free_bytes: int = 0, source_sha256: str | None = None
) -> BuiltFile:
    """The float GGUF variants are built from: ``source`` itself or its F32 dequantization."""
    reader = _reader(source)
    digest = source_sha256 or file_sha256(source, cache_dir)
    types = tensor_types(source)
    if set(types) <= {*FLOAT_TYPES, "F64", "I32"}:
        return BuiltFile(
            name="reference",
            path=source,
            sha256=digest,
            size_bytes=source.stat().st_size,
            source_sha256=digest,
            how="the source file itself (already floating point)",
            tensor_types=types,
        )
    missing = _undecodable(reader)
    if missing:
        raise QuantizationError(
            f"{source.name} is quantized with {', '.join(missing)}, which the gguf package "
            "cannot dequantize, so no reference can be built from it",
            "give an F16/F32/BF16 GGUF of the model, or one quantized with a type gguf can "
            "decode (Q4_0…Q8_0, K-quants, IQ-quants)",
        )
    directory = quant_dir(cache_dir, digest)
    path = directory / "reference-F32.gguf"
    reused = _reuse(directory, "reference", path, cache_dir)
    if reused is not None:
        return reused
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    check_free_space(directory, n_params * 4 + _METADATA_BYTES, keep_free_bytes)
    with _atomic(path) as tmp:
        _write_dequantized(reader, tmp)
    built = BuiltFile(
        name="reference",
        path=path,
        sha256=file_sha256(path, cache_dir),
        size_bytes=path.stat().st_size,
        source_sha256=digest,
        how=f"dequantized to F32 with the gguf package from {source.name} "
        f"({', '.join(f'{k}x{v}' for k, v in sorted(types.items()))}): exactly the weights "
        "the source file holds",
        tensor_types=tensor_types(path),
    )
    _write_manifest(directory, built)
    return built


def _write_dequantized(reader: Any, target: Path) -> None:
    import gguf
    import numpy as np
    from gguf.quants import dequantize

    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(target, arch)
    try:
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            value = field.contents()
            if field.name == gguf.Keys.General.FILE_TYPE:
                value = int(gguf.LlamaFileType.ALL_F32)
            vtype = field.types[0]
            sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, value, vtype, sub_type=sub_type)
        # numpy order: the GGUF shape reversed (ggml lists the fastest axis first)
        shapes = [tuple(reversed([int(x) for x in t.shape])) for t in reader.tensors]
        for tensor, shape in zip(reader.tensors, shapes, strict=True):
            writer.add_tensor_info(
                tensor.name,
                shape,
                np.dtype(np.float32),
                int(tensor.n_elements) * 4,
                gguf.GGMLQuantizationType.F32,
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for tensor, shape in zip(reader.tensors, shapes, strict=True):
            values = dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
            writer.write_tensor_data(values.reshape(shape))
    finally:
        writer.close()


def build_variant(
    reference: BuiltFile,
    variant: str,
    cache_dir: Path,
    keep_free_bytes: int = 0,
    n_threads: int | None = None,
) -> BuiltFile:
    """Quantize ``reference`` to ``variant`` with llama.cpp's quantizer (reused if built)."""
    import llama_cpp

    name = normalize_variant(variant)
    directory = quant_dir(cache_dir, reference.source_sha256)
    path = directory / f"{name}.gguf"
    reused = _reuse(directory, name, path, cache_dir)
    if reused is not None and reused.how.endswith(reference.sha256[:16]):
        return reused
    check_free_space(
        directory, variant_size_bound(parameter_count(reference.path), name), keep_free_bytes
    )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = _ftypes()[name]
    params.nthread = n_threads or 0
    install_log_capture()  # llama.cpp logs every tensor it quantizes
    with _atomic(path) as tmp:
        code = llama_cpp.llama_model_quantize(
            str(reference.path).encode(), str(tmp).encode(), params
        )
        if code != 0 or not tmp.exists():
            raise QuantizationError(
                f"llama.cpp failed to quantize {reference.path.name} to {name} (code {code})",
                "run with a float reference GGUF; see llama.cpp's log with LLMPICK_VERBOSE=1",
            )
    built = BuiltFile(
        name=name,
        path=path,
        sha256=file_sha256(path, cache_dir),
        size_bytes=path.stat().st_size,
        source_sha256=reference.source_sha256,
        how=f"{QUANTIZER_SOURCE} (ftype {name}) from reference {reference.sha256[:16]}",
        tensor_types=tensor_types(path),
    )
    _write_manifest(directory, built)
    return built
