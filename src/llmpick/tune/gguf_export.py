"""The peft adapter as a llama.cpp GGUF LoRA adapter, written with the ``gguf`` package.

The format is the one llama.cpp's ``convert_lora_to_gguf.py`` writes
(https://github.com/ggml-org/llama.cpp/blob/master/convert_lora_to_gguf.py):
``general.type = "adapter"``, ``adapter.type = "lora"``,
``adapter.lora.alpha`` (float32), ``general.architecture`` as in the base
GGUF, and per adapted weight two tensors named after the base tensor
(``blk.0.attn_q.weight.lora_a`` with shape (rank, in), ``….lora_b`` with
shape (out, rank)). llama.cpp scales the product by ``alpha / rank``, as peft
does, so scale 1 applies the adapter as trained.

For the ``llama`` architecture llama.cpp's converter permutes the rows of the
query and key projections (``LlamaModel.permute`` in convert_hf_to_gguf.py;
transformers undoes it when it loads such a GGUF); a LoRA's ``B`` holds those
rows, so it gets the same permutation. Architectures not listed in
:data:`SUPPORTED_ARCHS` are not exported (the adapter still runs through the
``hf`` backend).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from llmpick.errors import ModelFileError

__all__ = ["SUPPORTED_ARCHS", "gguf_architecture", "write_gguf_lora"]

#: GGUF architectures whose adapted tensors map 1:1 (llama with the q/k row permutation)
SUPPORTED_ARCHS = {"llama", "qwen2", "qwen3"}
_PERMUTED = {"llama"}


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF file."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ModelFileError(f"{path} has no general.architecture")
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def _permute(weights: Any, n_head: int) -> Any:
    # convert_hf_to_gguf.py LlamaModel.permute: pairs of rows per head interleaved
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def lora_tensors(
    state: dict[str, Any], arch: str, n_layers: int, n_head: int, n_kv_head: int
) -> dict[str, np.ndarray]:
    """GGUF tensor name -> float32 array for every ``lora_A``/``lora_B`` of a peft state dict."""
    import gguf

    arch_enum = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}[arch]
    names = gguf.get_tensor_name_map(arch_enum, n_layers)
    out: dict[str, np.ndarray] = {}
    for key, tensor in state.items():
        hf_name = key.removeprefix("base_model.model.")
        part = "lora_a" if ".lora_A." in hf_name else "lora_b" if ".lora_B." in hf_name else None
        if part is None:
            raise ModelFileError(f"unexpected tensor {key} in the adapter: not a LoRA A or B")
        base = hf_name.replace(".lora_A.weight", ".weight").replace(".lora_B.weight", ".weight")
        mapped = names.get_name(base, try_suffixes=(".weight",))
        if mapped is None:
            raise ModelFileError(f"no llama.cpp tensor for {base} in architecture {arch}")
        array = tensor.detach().float().cpu().numpy()
        if part == "lora_b" and arch in _PERMUTED:
            if base.endswith("q_proj.weight"):
                array = _permute(array, n_head)
            elif base.endswith("k_proj.weight"):
                array = _permute(array, n_kv_head)
        out[f"{mapped}.{part}"] = np.ascontiguousarray(array, dtype=np.float32)
    return out


def write_gguf_lora(
    path: Path, state: dict[str, Any], base_gguf: Path, config: Any, alpha: float
) -> str | None:
    """Write the adapter to ``path``; returns why not (None when written)."""
    import gguf

    arch = gguf_architecture(base_gguf)
    if arch not in SUPPORTED_ARCHS:
        return (
            f"no GGUF LoRA for architecture {arch} (exported: {', '.join(sorted(SUPPORTED_ARCHS))})"
            "; the adapter runs through the hf backend"
        )
    n_head = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_head)
    tensors = lora_tensors(state, arch, int(config.num_hidden_layers), n_head, n_kv)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)
    return None
