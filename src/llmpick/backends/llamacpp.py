"""The ``llamacpp`` backend: GGUF files through llama-cpp-python.

The chat template comes from the GGUF metadata (``tokenizer.chat_template``),
rendered with llama-cpp-python's own Jinja2 formatter. With ``parallel: 1``
generation runs token by token through ``Llama.generate`` in one worker
thread; with ``parallel`` > 1 (or ``null``: automatic, see
:func:`default_parallel`) a :class:`~llmpick.backends.llamacpp_batch.BatchScheduler`
decodes up to ``parallel`` requests together in one llama.cpp context
(continuous batching, docs/batching.md). Either way every chunk is one token
stamped when it was sampled, and usage is the engine's own count. The GGUF
comes from a path, or from the Hugging Face Hub (``hf_repo`` + file name)
through huggingface_hub, which honours
``HF_HUB_OFFLINE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from llmpick.backends.base import (
    Backend,
    BackendOptions,
    Chunk,
    GenerationRequest,
    ModelIdentity,
    Usage,
    sha256_text,
)
from llmpick.backends.gguf_files import check_gguf, file_sha256, gguf_quantization, resolve_gguf
from llmpick.backends.grammar import Grammar, grammar_sampler
from llmpick.backends.llamacpp_batch import BatchScheduler, BatchSettings, ChunkMaker
from llmpick.backends.llamacpp_defaults import default_parallel, default_threads, kv_bytes_per_slot
from llmpick.backends.llamacpp_log import LOG_LOCK, install_log_capture, log_state
from llmpick.backends.llamacpp_options import LlamaCppOptions
from llmpick.backends.llamacpp_tools import (
    Constraints,
    check_constraints,
    constraints_for,
    split_chunks,
    template_messages,
    thinking_mode,
)
from llmpick.errors import BackendError, ContextLengthError, ModelFileError

__all__ = [
    "LlamaCppBackend",
    "LlamaCppOptions",
    "default_parallel",
    "file_sha256",
    "gguf_quantization",
]

_DONE = object()


class LlamaCppBackend(Backend):
    """GGUF models in this process through llama-cpp-python."""

    name = "llamacpp"
    is_local = True
    supports_seed = True
    #: by grammar-constrained decoding (backends/grammar.py, docs/tools.md)
    supports_tools = True
    supports_response_format = True
    Options = LlamaCppOptions
    #: a server batches concurrent requests: automatic slots (docs/batching.md)
    serving_options: ClassVar[dict[str, Any]] = {"parallel": None}

    def __init__(self, model: str, options: BackendOptions | None = None) -> None:
        super().__init__(model, options)
        opts = self.options
        assert isinstance(opts, LlamaCppOptions)
        self.opts = opts
        steps, batches = default_threads()
        #: threads of one-token steps and of prompt batches (both paths use the same)
        self.n_threads = opts.n_threads or steps
        self.n_threads_batch = opts.n_threads or batches
        self.path = resolve_gguf(model, opts.hf_repo, opts.hf_revision)
        check_gguf(self.path)
        #: sequence slots; 1 = the single-sequence path through ``Llama.generate``
        self.parallel = opts.parallel or default_parallel(opts, kv_bytes_per_slot(self.path, opts))
        if opts.lora_path:
            if not Path(opts.lora_path).is_file():
                raise ModelFileError(f"LoRA adapter not found: {opts.lora_path}", "check the path")
            self.parallel = 1
        #: unset: on when batching (docs/batching.md), off on the single path as in ``Llama``
        self.flash_attn = opts.flash_attn if opts.flash_attn is not None else self.parallel > 1
        self.llm: Any = None
        self._scheduler: BatchScheduler | None = None
        with LOG_LOCK:
            log = install_log_capture()
            log_state["echo"] = opts.verbose
            try:
                if self.parallel == 1:
                    self.llm = self._load(opts)
                    self._model: Any = self.llm._model
                else:
                    self._model = self._load_model(opts)
                    self._scheduler = self._start_scheduler(opts)
            finally:
                #: llama.cpp's log while loading (KV cache and compute buffer sizes)
                self.load_log = "".join(log)
                log.clear()
        self.metadata: dict[str, str] = dict(self._model.metadata())
        self.chat_template = self.metadata.get("tokenizer.chat_template")
        self._formatter = self._make_formatter()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._identity: ModelIdentity | None = None
        self._eog_cache: list[int] | None = None

    def _load(self, opts: LlamaCppOptions) -> Any:
        from llama_cpp import Llama

        try:
            return Llama(
                model_path=str(self.path),
                n_ctx=opts.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads_batch,
                n_gpu_layers=opts.n_gpu_layers,
                n_batch=opts.n_batch,
                flash_attn=self.flash_attn,
                swa_full=opts.swa_full,
                lora_path=opts.lora_path,
                lora_scale=opts.lora_scale,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise self._load_error(exc) from exc

    def _load_error(self, exc: BaseException) -> ModelFileError:
        return ModelFileError(
            f"llama.cpp could not load {self.path}: {exc}",
            "the file may be truncated or corrupt, or its architecture unsupported "
            "by this llama-cpp-python; re-download it or upgrade llama-cpp-python",
        )

    def _load_model(self, opts: LlamaCppOptions) -> Any:
        """The weights alone (the batching scheduler makes its own context)."""
        import llama_cpp
        from llama_cpp import _internals

        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        # llama-cpp-python's convention: -1 means every layer
        params.n_gpu_layers = 0x7FFFFFFF if opts.n_gpu_layers == -1 else opts.n_gpu_layers
        try:
            return _internals.LlamaModel(path_model=str(self.path), params=params, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise self._load_error(exc) from exc

    def _start_scheduler(self, opts: LlamaCppOptions) -> BatchScheduler:
        settings = BatchSettings(
            parallel=self.parallel,
            n_ctx=opts.n_ctx,
            n_batch=opts.n_batch,
            n_threads=self.n_threads,
            n_threads_batch=self.n_threads_batch,
            n_gpu_layers=opts.n_gpu_layers,
            flash_attn=self.flash_attn,
            swa_full=opts.swa_full,
            top_k=opts.top_k,
            min_p=opts.min_p,
            repeat_penalty=opts.repeat_penalty,
            reuse_prefix=opts.reuse_prefix,
        )
        return BatchScheduler(self._model, settings, self._is_eog, self._eog_tokens)

    def _make_formatter(self) -> Any:
        if not self.chat_template:
            return None
        from llama_cpp import llama_chat_format

        model = self._model
        eos = model.token_eos()
        bos = model.token_bos()
        return llama_chat_format.Jinja2ChatFormatter(
            template=self.chat_template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def render_prompt(self, request: GenerationRequest) -> tuple[str, list[str], bool]:
        """Render the chat template.

        Returns the prompt text, the template's stop strings, and whether the
        template already added the BOS token.
        """
        messages, kwargs = template_messages(request, self.chat_template)
        if self._formatter is None:
            # A base model without a template: plain transcript, then continue.
            parts = [m["content"] for m in messages if m["role"] == "system"]
            for m in messages:
                if m["role"] == "user" or m["role"] == "assistant":
                    parts.append(m["content"])
            return "\n\n".join(parts) + "\n", [], False
        result = self._formatter(messages=messages, **kwargs)
        stops = result.stop if isinstance(result.stop, list) else [result.stop or ""]
        return result.prompt, [s for s in stops if s], bool(result.added_special)

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of ``text`` by the model's own tokenizer."""
        return list(self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        """The tokens the model reads for ``request`` (chat template applied)."""
        return self._prepare(request)[0]

    def _prepare(self, request: GenerationRequest) -> tuple[list[int], Constraints]:
        # The template's stop is the EOS token's text: already handled at token
        # level (special tokens are never detokenized into the output).
        prompt, _template_stops, added_special = self.render_prompt(request)
        kwargs = request.chat_template_kwargs or {}
        constraints = constraints_for(request, thinking_mode(self.chat_template, prompt, kwargs))
        if constraints.grammar is not None and self._scheduler is None:
            import llama_cpp

            # Llama.generate would add a null sampler for a grammar llama.cpp cannot parse
            llama_cpp.llama_sampler_free(grammar_sampler(self._model.vocab, constraints.grammar))
        return self.tokenize(prompt, add_bos=not added_special), constraints

    def check_request(self, request: GenerationRequest) -> None:
        """Tools and schemas are enforced by grammar; refuse what a grammar cannot enforce."""
        super().check_request(request)
        check_constraints(request)

    def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text`` by the model's own tokenizer."""
        return len(self.tokenize(text))

    def context_length(self) -> int | None:
        """The context window of one request (one slot): what was asked for."""
        if self.llm is None:
            return self.opts.n_ctx
        # llama.cpp may pad it up
        return int(min(self.llm.n_ctx(), self.llm.context_params.n_ctx))

    def max_concurrency(self) -> int | None:
        """The slots: requests decoded together (1 on the single-sequence path)."""
        return self.parallel

    def describe(self) -> ModelIdentity:
        """Backend, file, SHA-256, quantization and chat-template hash.

        ``parallel`` is not part of it: batched and unbatched outputs share cache
        entries (docs/batching.md measures how often greedy outputs differ).
        """
        if self._identity is None:
            cache_dir = Path(self.opts.cache_dir) if self.opts.cache_dir else None
            self._identity = ModelIdentity(
                backend=self.name,
                model=self.path.name,
                weights_sha256=file_sha256(self.path, cache_dir),
                quantization=gguf_quantization(self.metadata),
                chat_template_sha256=sha256_text(self.chat_template)
                if self.chat_template
                else None,
                n_threads=self.n_threads,
                adapter_sha256=file_sha256(Path(self.opts.lora_path), cache_dir)
                if self.opts.lora_path
                else None,
                adapter_scale=self.opts.lora_scale if self.opts.lora_path else None,
            )
        return self._identity

    def runtime_summary(self) -> str:
        """Slots, KV memory of all slots (fit's rule), threads and flash attention."""
        kv_mb = self.parallel * kv_bytes_per_slot(self.path, self.opts) / 1e6
        chosen = "automatic" if self.opts.parallel is None else "set"
        return (
            f"{self.parallel} slot(s) ({chosen}), n_ctx {self.opts.n_ctx} each, "
            f"KV cache ~{kv_mb:.0f} MB (estimated), {self.n_threads} thread(s) per step, "
            f"{self.n_threads_batch} per prompt batch, flash attention "
            f"{'on' if self.flash_attn else 'off'}"
        )

    def _generate_sync(
        self,
        request: GenerationRequest,
        cancel: threading.Event,
        tokens: list[int],
        constraints: Constraints,
    ) -> Iterator[Chunk]:
        import llama_cpp

        params = request.params
        n_ctx = self.context_length() or 0
        if len(tokens) >= n_ctx:
            raise ContextLengthError(
                f"the prompt is {len(tokens)} tokens but the context window is {n_ctx}",
                "shorten the prompt or raise n_ctx in the model's options (llmpick.yaml)",
            )
        max_tokens = min(params.max_tokens, n_ctx - len(tokens))
        self.llm.set_seed(params.seed if params.seed is not None else int(time.time_ns() % 2**31))
        logits_processor = None
        if params.ignore_eos:
            eog = self._eog_tokens()

            def _no_eos(_ids: Any, scores: np.ndarray) -> np.ndarray:
                scores[eog] = -np.inf
                return scores

            logits_processor = llama_cpp.LogitsProcessorList([_no_eos])
        maker = ChunkMaker(params.stop)
        n_out = 0
        finish = "length"
        generator = self.llm.generate(
            tokens,
            top_k=self.opts.top_k,
            top_p=params.top_p,
            min_p=self.opts.min_p,
            temp=params.temperature,
            repeat_penalty=self.opts.repeat_penalty,
            logits_processor=logits_processor,
            grammar=llama_grammar(constraints.grammar),
        )
        for token in generator:
            now = time.perf_counter()
            if cancel.is_set():
                finish = "cancelled"
                break
            if self._is_eog(token) and not params.ignore_eos:
                finish = "stop"
                break
            n_out += 1
            chunk = maker.token(self.llm.detokenize([token], special=False), now)
            if chunk is not None:
                yield chunk
            if maker.stopped:
                finish = "stop"
                break
            if n_out >= max_tokens:
                break
        generator.close()
        usage = Usage(prompt_tokens=len(tokens), completion_tokens=n_out, source="backend")
        yield maker.final(usage, finish)

    def _eog_tokens(self) -> list[int]:
        """Every end-of-generation token id (scanned once, then cached)."""
        if self._eog_cache is None:
            self._eog_cache = [t for t in range(self._model.n_vocab()) if self._is_eog(t)]
        return self._eog_cache

    def _is_eog(self, token: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self._model.vocab, token))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        """Stream one token per chunk; answer, reasoning and tool calls apart (llamacpp_tools)."""
        self.check_request(request)
        tokens, constraints = self._prepare(request)
        stream = self._generate_tokens(request, tokens, constraints)
        splitter = constraints.splitter()
        if splitter is not None:
            stream = split_chunks(stream, splitter)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    async def _generate_tokens(
        self, request: GenerationRequest, tokens: list[int], constraints: Constraints
    ) -> AsyncIterator[Chunk]:
        """One token per chunk (from the scheduler, or a worker thread)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if self._scheduler is not None:
            scheduler = self._scheduler

            def emit(item: Any) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE if item is None else item)

            seq = scheduler.submit(tokens, request.params, emit, constraints.grammar)
            try:
                async for chunk in _drain(queue):
                    yield chunk
            finally:
                scheduler.cancel(seq)
            return
        cancel = threading.Event()

        def work() -> None:
            try:
                for chunk in self._generate_sync(request, cancel, tokens, constraints):
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = loop.run_in_executor(self._executor, work)
        try:
            async for chunk in _drain(queue):
                yield chunk
        finally:
            cancel.set()
            with contextlib.suppress(BaseException):
                await asyncio.shield(future)

    def batch_stats(self) -> dict[str, int]:
        """Slots in use, KV tokens of busy and of free (cached) slots, steps and tokens so far.

        Zeros without batching.
        """
        s = self._scheduler
        if s is None:
            return dict.fromkeys(
                ("slots_in_use", "kv_cells_used", "kv_cells_cached", "steps", "tokens_decoded",
                 "tokens_reused"), 0
            )  # fmt: skip
        return {
            "slots_in_use": s.slots_in_use(),
            "kv_cells_used": s.kv_cells_used(),
            "kv_cells_cached": s.kv_cells_used(cached=True),
            "steps": s.steps,
            "tokens_decoded": s.tokens_decoded,
            "tokens_reused": s.tokens_reused,
        }

    async def aclose(self) -> None:
        """Stop the worker thread or the scheduler and free the model."""
        self._executor.shutdown(wait=True)
        if self._scheduler is not None:
            await asyncio.to_thread(self._scheduler.close)
            self._scheduler = None
            with contextlib.suppress(Exception):
                self._model.close()
        with contextlib.suppress(Exception):
            if self.llm is not None:
                self.llm.close()


def llama_grammar(grammar: Grammar | None) -> Any:
    """llama-cpp-python's grammar object for ``Llama.generate`` (None: unconstrained)."""
    if grammar is None:
        return None
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(grammar.text, verbose=False)


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[Chunk]:
    """Chunks from a worker's queue until it says done; its errors are raised here."""
    while True:
        item = await queue.get()
        if item is _DONE:
            return
        if isinstance(item, BaseException):
            if isinstance(item, BackendError):
                raise item
            raise BackendError(f"llama.cpp generation failed: {item}") from item
        yield item
