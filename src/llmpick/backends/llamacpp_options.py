"""The llamacpp backend's options, below the backend and its defaults (which both read them)."""

from __future__ import annotations

from pydantic import Field

from llmpick.backends.base import BackendOptions

__all__ = ["LlamaCppOptions"]


class LlamaCppOptions(BackendOptions):
    """Options of the llamacpp backend."""

    n_ctx: int = Field(
        4096,
        ge=16,
        description="context window in tokens, per slot: llama.cpp allocates parallel x n_ctx",
    )
    parallel: int | None = Field(
        1,
        ge=1,
        le=256,
        description="sequence slots decoded together (continuous batching); 1 (default) = one "
        "request at a time; null = automatic: 8, fewer "
        "if the KV cache of all slots would pass a quarter of the available memory",
    )
    n_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for one-token steps and prompt batches; default: the "
        "physical cores this process may run on (affinity-aware) for steps, every allowed "
        "logical core for prompt batches (llama-cpp-python's own default is half the cores "
        "for steps, which is one thread on a 2-core machine)",
    )
    n_gpu_layers: int = Field(0, description="layers offloaded to the GPU; -1 = all")
    n_batch: int = Field(512, ge=1, description="prompt tokens evaluated per batch")
    flash_attn: bool | None = Field(
        None,
        description="flash attention; null (default) = on with parallel > 1, where it skips "
        "the KV cells other slots hold (llama.cpp's server does the same), off with "
        "parallel 1 (llama-cpp-python's Llama default)",
    )
    reuse_prefix: bool = Field(
        True,
        description="with parallel > 1: a request reads only the part of its prompt that no "
        "slot's KV cache holds yet (the single path does the same through Llama.generate)",
    )
    swa_full: bool = Field(
        True,
        description="full-size cache for sliding-window layers (llama.cpp's default); "
        "False keeps them at their window and saves memory on Gemma 2/3 and gpt-oss",
    )
    # llama-cpp-python's create_completion defaults, so results match its own.
    top_k: int = Field(40, ge=0)
    min_p: float = Field(0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, gt=0.0)
    lora_path: str | None = Field(
        None,
        description="a GGUF LoRA adapter applied on top (llmpick tune); runs with parallel 1, "
        "the batching scheduler does not apply adapters",
    )
    lora_scale: float = Field(1.0, description="the adapter's scale (1 = as trained)")
    hf_repo: str | None = Field(None, description="Hub repo holding the GGUF named by model")
    hf_revision: str | None = None
    cache_dir: str | None = Field(None, description="where file hashes are remembered")
    verbose: bool = Field(False, description="echo llama.cpp's own log to stderr")
