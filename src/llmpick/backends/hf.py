"""The ``hf`` backend: Hugging Face transformers (install ``llmpick[hf]``).

Loads a Hub id, a local directory, or a GGUF file (transformers dequantizes
GGUF weights into torch tensors). Device and dtype are chosen automatically
(CUDA with bfloat16, else Apple MPS, else CPU with float32) unless set;
bitsandbytes 8-bit/4-bit loading is available where a CUDA GPU is present.

Streaming uses a transformers streamer that records each new token with the
time it was produced, so chunks carry exact token counts like llama.cpp's.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from llmpick.backends.base import (
    Backend,
    BackendOptions,
    Chunk,
    GenerationRequest,
    ModelIdentity,
    Usage,
    sha256_text,
)
from llmpick.backends.gguf_files import file_sha256
from llmpick.errors import (
    BackendError,
    ConfigError,
    ContextLengthError,
    MissingDependencyError,
    ModelFileError,
)

__all__ = ["HFBackend", "HFOptions"]

_DONE = object()


class HFOptions(BackendOptions):
    """Options of the hf backend."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    load_in_8bit: bool = Field(False, description="bitsandbytes 8-bit (CUDA only)")
    load_in_4bit: bool = Field(False, description="bitsandbytes NF4 4-bit (CUDA only)")
    revision: str | None = None
    trust_remote_code: bool = False
    cache_dir: str | None = None
    adapter: str | None = Field(
        None, description="a peft LoRA adapter directory applied on top (llmpick tune)"
    )


_ADAPTER_WEIGHTS = "adapter_model.safetensors"


def _with_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the peft LoRA adapter in ``adapter`` merged into its weights."""
    if not (adapter / _ADAPTER_WEIGHTS).is_file():
        raise ModelFileError(f"{adapter} holds no peft adapter ({_ADAPTER_WEIGHTS})")
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise MissingDependencyError("peft", "hf") from exc
    # merged: generation then costs what the base costs (same function, up to rounding)
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def _import_hf() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "transformers", "hf") from exc
    return torch, transformers


class HFBackend(Backend):
    """A model run in this process by transformers."""

    name = "hf"
    is_local = True
    supports_seed = True
    Options = HFOptions

    def __init__(self, model: str, options: BackendOptions | None = None) -> None:
        super().__init__(model, options)
        opts = self.options
        assert isinstance(opts, HFOptions)
        self.opts = opts
        torch, transformers = _import_hf()
        self.torch = torch
        self.device = self._pick_device(torch)
        dtype = self._pick_dtype(torch)
        path = Path(model).expanduser()
        kwargs: dict[str, Any] = {
            "revision": opts.revision,
            "trust_remote_code": opts.trust_remote_code,
        }
        self.gguf_path: Path | None = None
        source = model
        if path.suffix == ".gguf":
            if not path.is_file():
                raise ModelFileError(f"GGUF file not found: {path}", "check the path")
            self.gguf_path = path
            source = str(path.parent)
            kwargs["gguf_file"] = path.name
        elif path.exists() and not (path / "config.json").exists():
            raise ModelFileError(
                f"{path} has no config.json", "give a model directory, a .gguf file or a Hub id"
            )
        if opts.load_in_8bit or opts.load_in_4bit:
            if self.device != "cuda":
                raise ConfigError(
                    "bitsandbytes 8-bit/4-bit loading needs a CUDA GPU",
                    "drop load_in_8bit/load_in_4bit, or run on a machine with a GPU",
                )
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_8bit=opts.load_in_8bit,
                load_in_4bit=opts.load_in_4bit,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
            )
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
            kwargs.pop("quantization_config", None) if self.gguf_path else None
            self.hf_model = transformers.AutoModelForCausalLM.from_pretrained(
                source, dtype=dtype, **kwargs
            )
        except OSError as exc:
            raise ModelFileError(
                f"transformers could not load '{model}': {str(exc).splitlines()[0]}",
                "check the Hub id or path; offline, the model must be in the local Hub cache",
            ) from exc
        except (ValueError, RuntimeError, KeyError) as exc:
            raise ModelFileError(
                f"transformers could not load '{model}': {str(exc).splitlines()[0]}",
                "the weights may be corrupt or the architecture unsupported by this transformers",
            ) from exc
        if opts.adapter:
            self.hf_model = _with_adapter(self.hf_model, Path(opts.adapter))
        if "quantization_config" not in kwargs:
            self.hf_model.to(self.device)
        self.hf_model.eval()
        self.dtype_name = str(dtype).removeprefix("torch.")
        self.chat_template: str | None = getattr(self.tokenizer, "chat_template", None)
        self._lock = asyncio.Lock()
        self._identity: ModelIdentity | None = None

    def _pick_device(self, torch: Any) -> str:
        if self.opts.device != "auto":
            return self.opts.device
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"

    def _pick_dtype(self, torch: Any) -> Any:
        if self.opts.dtype != "auto":
            return getattr(torch, self.opts.dtype)
        return torch.bfloat16 if self.device == "cuda" else torch.float32

    def context_length(self) -> int | None:
        """``max_position_embeddings`` from the model config."""
        value = getattr(self.hf_model.config, "max_position_embeddings", None)
        return int(value) if value else None

    def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text`` by the model's tokenizer."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def describe(self) -> ModelIdentity:
        """Backend, model, revision or GGUF hash, dtype/quantization, template hash."""
        if self._identity is None:
            weights = None
            quant = self.dtype_name
            cache = Path(self.opts.cache_dir) if self.opts.cache_dir else None
            if self.gguf_path is not None:
                weights = file_sha256(self.gguf_path, cache)
                quant = f"gguf-dequantized-{self.dtype_name}"
            elif self.opts.load_in_4bit:
                quant = "bnb-nf4"
            elif self.opts.load_in_8bit:
                quant = "bnb-int8"
            adapter = Path(self.opts.adapter) / _ADAPTER_WEIGHTS if self.opts.adapter else None
            self._identity = ModelIdentity(
                backend=self.name,
                model=self.gguf_path.name if self.gguf_path else self.model,
                adapter_sha256=file_sha256(adapter, cache) if adapter else None,
                adapter_scale=1.0 if adapter else None,
                weights_sha256=weights,
                revision=getattr(self.hf_model.config, "_commit_hash", None) or self.opts.revision,
                quantization=quant,
                chat_template_sha256=sha256_text(self.chat_template)
                if self.chat_template
                else None,
            )
        return self._identity

    def _prompt_ids(self, request: GenerationRequest) -> Any:
        messages = [m.model_dump() for m in request.messages]
        if self.chat_template:
            ids = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
        else:
            text = "\n\n".join(m["content"] for m in messages) + "\n"
            ids = self.tokenizer(text, return_tensors="pt")["input_ids"]
        return ids.to(self.device)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Stream tokens from ``model.generate`` running in a worker thread."""
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        params = request.params
        input_ids = self._prompt_ids(request)
        n_prompt = int(input_ids.shape[-1])
        limit = self.context_length()
        if limit is not None and n_prompt >= limit:
            raise ContextLengthError(
                f"the prompt is {n_prompt} tokens but the context window is {limit}",
                "shorten the prompt",
            )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        class _Stream(BaseStreamer):
            def __init__(self) -> None:
                self.prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # the first call carries the prompt
                    self.prompt_seen = True
                    return
                ids = [int(t) for t in value.reshape(-1).tolist()]
                loop.call_soon_threadsafe(queue.put_nowait, (ids, time.perf_counter()))

            def end(self) -> None:
                pass

        class _Cancel(StoppingCriteria):
            def __call__(self, *_args: Any, **_kw: Any) -> bool:
                return cancel.is_set()

        gen_kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": self.torch.ones_like(input_ids),
            "max_new_tokens": params.max_tokens,
            "do_sample": params.temperature > 0,
            "streamer": _Stream(),
            "stopping_criteria": StoppingCriteriaList([_Cancel()]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if params.temperature > 0:
            gen_kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            gen_kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            gen_kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        if params.ignore_eos:
            gen_kwargs["min_new_tokens"] = params.max_tokens

        def work() -> None:
            try:
                if params.seed is not None:
                    self.torch.manual_seed(params.seed)
                with self.torch.inference_mode():
                    self.hf_model.generate(**gen_kwargs)
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        eos = set(self._eos_ids())
        async with self._lock:
            thread = threading.Thread(target=work, name="hf-generate", daemon=True)
            thread.start()
            out_ids: list[int] = []
            stops = [x for x in params.stop if x]
            # Hold back text that could be the start of a stop string.
            holdback = max((len(x) for x in stops), default=1) - 1
            sent = 0  # characters already yielded
            pending_tokens = 0
            stop_hit = False
            finish = "length"
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise BackendError(f"transformers generation failed: {item}") from item
                    ids, stamp = item
                    ids = [t for t in ids if t not in eos] if not params.ignore_eos else ids
                    if len(ids) < len(item[0]):
                        finish = "stop"
                    if not ids:
                        continue
                    out_ids.extend(ids)
                    pending_tokens += len(ids)
                    text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
                    # Hold back a trailing replacement char: an incomplete UTF-8 sequence.
                    stable = text[:-1] if text.endswith("\ufffd") else text
                    hits = [i for x in stops if (i := stable.find(x, max(0, sent - holdback))) >= 0]
                    if hits:
                        cut = min(hits)
                        if cut > sent:
                            yield Chunk(text=stable[sent:cut], time_s=stamp, tokens=pending_tokens)
                            pending_tokens = 0
                        sent, stop_hit, finish = cut, True, "stop"
                        cancel.set()
                        break
                    safe = len(stable) - holdback
                    if safe > sent:
                        yield Chunk(text=stable[sent:safe], time_s=stamp, tokens=pending_tokens)
                        sent, pending_tokens = safe, 0
            finally:
                cancel.set()
                await asyncio.to_thread(thread.join)
        tail = "" if stop_hit else self.tokenizer.decode(out_ids, skip_special_tokens=True)[sent:]
        yield Chunk(
            text=tail,
            time_s=time.perf_counter(),
            tokens=pending_tokens,
            final=True,
            usage=Usage(prompt_tokens=n_prompt, completion_tokens=len(out_ids), source="backend"),
            finish_reason=finish,
        )

    def _eos_ids(self) -> list[int]:
        ids = self.hf_model.generation_config.eos_token_id
        if ids is None:
            ids = self.tokenizer.eos_token_id
        if ids is None:
            return []
        return list(ids) if isinstance(ids, list | tuple) else [int(ids)]

    async def aclose(self) -> None:
        """Drop the model and free accelerator memory."""
        del self.hf_model
        if self.device == "cuda":
            with contextlib.suppress(Exception):
                self.torch.cuda.empty_cache()
