"""Continuous batching for the ``llamacpp`` backend: many sequences share one llama.cpp context.

One llama.cpp context holds ``parallel`` sequence slots (``n_seq_max``) in one
unified KV cache of ``parallel x pad256(n_ctx)`` cells (``kv_unified=True``);
the scheduler keeps each slot within ``n_ctx`` tokens, the rule ``fit`` uses
for ``batch`` sequences. A scheduler
thread repeats one *step*:

1. admit waiting requests into free slots (continuous batching: a request
   joins between two steps, it never waits for the others to finish);
2. build one ``llama_batch`` from the next token of every decoding sequence,
   then prompt chunks of admitted sequences, up to ``n_batch`` tokens in all
   (a long prompt is spread over several steps, so the running sequences keep
   getting one token per step while it is read);
3. call ``llama_decode`` once;
4. sample the next token of every sequence that produced logits, each with its
   own sampler chain (temperature, top_p, seed; greedy at temperature 0), and
   hand the text to the caller's stream, stamped when it was sampled;
5. end sequences on end-of-generation, a stop string or ``max_tokens`` and
   free their slot; a cancelled stream (client gone) is freed at the start of
   the next step.

A free slot keeps the KV cells of its last sequence: a new request whose
prompt starts with the same tokens (a chat template's system prompt, a shared
instruction) reads only the rest. It takes the free slot holding the longest
common prefix, or borrows that prefix from any other slot with
``llama_memory_seq_cp`` (in a unified cache the cells are shared, not copied),
and drops the slot's cells past it with ``llama_memory_seq_rm`` — what
``Llama.generate`` does for one sequence and llama.cpp's server per slot.

Only the scheduling is ours; decoding, sampling and the KV cache are llama.cpp's
(through llama-cpp-python's low-level bindings).
"""

from __future__ import annotations

import codecs
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import llama_cpp
from llama_cpp import _internals as internals

from llmpick.backends.base import Chunk, SamplingParams, Usage
from llmpick.backends.grammar import Grammar, grammar_sampler
from llmpick.errors import BackendError, ContextLengthError

__all__ = ["BatchScheduler", "BatchSettings", "ChunkMaker", "common_prefix", "sampler_chain"]

#: llama-cpp-python's ``last_n_tokens_size``: the window of the repeat penalty
_PENALTY_LAST_N = 64

Emit = Callable[[Any], None]


class ChunkMaker:
    """Turns sampled tokens into chunks, holding back text that could start a stop string."""

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.longest_stop = max((len(s) for s in self.stops), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._emitted = ""  # text already sent (its tail matters for stop strings)
        self._pending = ""  # decoded text held back while it could start a stop string
        self._pending_tokens = 0
        self.stopped = False

    def token(self, piece: bytes, now: float) -> Chunk | None:
        """Add one token's bytes; return the chunk to send now, if any (sets ``stopped``)."""
        self._pending_tokens += 1
        self._pending += self._decoder.decode(piece)
        if not self.stops:
            return self._flush(len(self._pending), now)
        tail = self._emitted[-self.longest_stop :]
        window = tail + self._pending
        hit = min((i for s in self.stops if (i := window.find(s)) >= 0), default=-1)
        if hit >= 0:
            self.stopped = True
            cut = hit - len(tail)
            return self._flush(cut, now) if cut > 0 else None
        safe = len(self._pending) - (self.longest_stop - 1)
        return self._flush(safe, now) if safe > 0 else None

    def _flush(self, upto: int, now: float) -> Chunk:
        text = self._pending[:upto]
        chunk = Chunk(text=text, time_s=now, tokens=self._pending_tokens)
        self._emitted += text
        self._pending = self._pending[upto:]
        self._pending_tokens = 0
        return chunk

    def final(self, usage: Usage, finish: str) -> Chunk:
        """The last chunk: what was held back (unless a stop string cut it) and the usage."""
        tail = "" if self.stopped else self._pending + self._decoder.decode(b"", final=True)
        return Chunk(
            text=tail,
            time_s=time.perf_counter(),
            tokens=0 if self.stopped else self._pending_tokens,
            final=True,
            usage=usage,
            finish_reason=finish,
        )


@dataclass(frozen=True)
class BatchSettings:
    """How the batching context is built and how sequences are sampled."""

    parallel: int
    #: tokens per slot (prompt + output); the context is ``parallel x n_ctx``
    n_ctx: int
    #: tokens per ``llama_decode`` call (decode tokens first, then prompt chunks)
    n_batch: int = 512
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_gpu_layers: int = 0
    flash_attn: bool = False
    swa_full: bool = True
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    #: reuse a cached common prefix of the prompt (see the module's docstring)
    reuse_prefix: bool = True


def sampler_chain(
    n_vocab: int,
    params: SamplingParams,
    settings: BatchSettings,
    seed: int,
    banned: list[int],
    grammar: tuple[Any, Grammar] | None = None,
) -> internals.LlamaSampler:
    """The sampler chain llama-cpp-python's ``Llama`` builds, for one sequence.

    Same order as ``Llama._init_sampler`` (penalties, then greedy at temperature
    0, else top-k, typical 1.0, top-p, min-p, temperature, seeded draw), so a
    seeded request samples the same way batched or not. ``banned`` tokens (the
    end-of-generation ones under ``ignore_eos``) get a logit bias of -inf.
    ``grammar`` (the model's vocab and a grammar) constrains the draw, after the
    penalties as in ``Llama``: one grammar sampler per sequence, its own parse state.
    """
    chain = internals.LlamaSampler()
    if banned:
        chain.add_logit_bias(n_vocab, {t: float("-inf") for t in banned})
    chain.add_penalties(n_vocab, _PENALTY_LAST_N, settings.repeat_penalty, 0.0, 0.0)
    if grammar is not None:
        llama_cpp.llama_sampler_chain_add(chain.sampler, grammar_sampler(*grammar))
    if params.temperature == 0.0:
        chain.add_greedy()
    else:
        chain.add_top_k(settings.top_k)
        chain.add_typical(1.0, 1)
        chain.add_top_p(params.top_p, 1)
        chain.add_min_p(settings.min_p, 1)
        chain.add_temp(params.temperature)
        chain.add_dist(seed)
    return chain


@dataclass(eq=False)
class _Sequence:
    """One request in the scheduler: its prompt, slot, sampler and output state."""

    prompt: list[int]
    params: SamplingParams
    max_tokens: int
    emit: Emit
    sampler: internals.LlamaSampler
    maker: ChunkMaker
    slot: int = -1
    fed: int = 0  # tokens already in the KV cache
    next_token: int | None = None  # sampled, to be fed in the next step
    n_out: int = 0
    reused: int = 0  # prompt tokens found in the KV cache, not read again
    logits_index: int = -1
    cancelled: bool = False
    done: bool = False


class BatchScheduler:
    """One llama.cpp context with ``parallel`` slots, filled by a scheduler thread."""

    def __init__(
        self,
        model: internals.LlamaModel,
        settings: BatchSettings,
        is_eog: Callable[[int], bool],
        eog_tokens: Callable[[], list[int]],
    ) -> None:
        self.model = model
        self.settings = settings
        self._is_eog = is_eog
        self._eog_tokens = eog_tokens
        self.n_batch = max(settings.n_batch, settings.parallel)
        self.ctx = self._new_context()
        self._memory = llama_cpp.llama_get_memory(self.ctx)
        # a recurrent state cannot be cut at a position nor shared in part
        self._reuse = settings.reuse_prefix and not (
            llama_cpp.llama_model_is_recurrent(model.model)
            or llama_cpp.llama_model_is_hybrid(model.model)
        )
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self._lock = threading.Condition()
        self._step_lock = threading.Lock()  # held while llama.cpp decodes
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._active: list[_Sequence] = []
        self._free_slots = list(range(settings.parallel - 1, -1, -1))
        #: the tokens in each slot's KV cells, position by position (kept after a
        #: sequence ends, for the next prompt that starts the same way)
        self._cached: list[list[int]] = [[] for _ in range(settings.parallel)]
        self._closed = False
        #: decode steps run, tokens they carried and prompt tokens reused from the
        #: cache instead (for tests and benchmarks)
        self.steps = 0
        self.tokens_decoded = 0
        self.tokens_reused = 0
        self._thread = threading.Thread(target=self._loop, name="llamacpp-batch", daemon=True)
        self._thread.start()

    def _new_context(self) -> Any:
        s = self.settings
        params = llama_cpp.llama_context_default_params()
        # pad256(n_ctx) cells per slot, as fit.memory counts it
        params.n_ctx = -(-s.n_ctx // 256) * 256 * s.parallel
        params.n_batch = self.n_batch
        params.n_ubatch = min(512, self.n_batch)
        params.n_seq_max = s.parallel
        # one shared cache: prompt chunks and decode tokens of different slots go
        # through llama.cpp in one micro-batch (split streams need equal tokens per
        # sequence in a micro-batch, which reads a prompt one token per step)
        params.kv_unified = True
        params.swa_full = s.swa_full
        params.no_perf = True
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if s.flash_attn
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        if s.n_threads is not None:
            params.n_threads = s.n_threads
        if s.n_threads_batch is not None:
            params.n_threads_batch = s.n_threads_batch
        ctx = llama_cpp.llama_init_from_model(self.model.model, params)
        if ctx is None:
            raise BackendError(
                f"llama.cpp could not create a context of {s.parallel} x {s.n_ctx} tokens",
                "lower parallel or n_ctx in the model's options",
            )
        return ctx

    # ------------------------------------------------------------ callers' side

    def submit(
        self,
        prompt: list[int],
        params: SamplingParams,
        emit: Emit,
        grammar: Grammar | None = None,
    ) -> _Sequence:
        """Queue a request; its chunks (then None) go to ``emit`` from the scheduler thread.

        Raises :class:`ContextLengthError` at once when the prompt does not fit
        in one slot; the other requests are not affected.
        """
        n_ctx = self.settings.n_ctx
        if len(prompt) >= n_ctx:
            raise ContextLengthError(
                f"the prompt is {len(prompt)} tokens but a slot's context window is {n_ctx}",
                "shorten the prompt or raise n_ctx in the model's options (llmpick.yaml); "
                "n_ctx is per slot (parallel x n_ctx tokens in all)",
            )
        seed = params.seed if params.seed is not None else time.time_ns() % 2**31
        banned = self._eog_tokens() if params.ignore_eos else []
        constrained = (self.model.vocab, grammar) if grammar is not None else None
        n_vocab = self.model.n_vocab()
        seq = _Sequence(
            prompt=list(prompt),
            params=params,
            max_tokens=min(params.max_tokens, n_ctx - len(prompt)),
            emit=emit,
            sampler=sampler_chain(n_vocab, params, self.settings, seed, banned, constrained),
            maker=ChunkMaker(params.stop),
        )
        with self._lock:
            if self._closed:
                raise BackendError("the model is closed")
            self._waiting.append(seq)
            self._lock.notify()
        return seq

    def cancel(self, seq: _Sequence) -> None:
        """Stop a sequence; its slot and KV cells are freed before the next step."""
        with self._lock:
            seq.cancelled = True
            self._lock.notify()

    def slots_in_use(self) -> int:
        """Slots held by a sequence now."""
        with self._lock:
            return self.settings.parallel - len(self._free_slots)

    def kv_cells_used(self, cached: bool = False) -> int:
        """Tokens in the KV cache of busy slots (``cached``: of free slots), as llama.cpp has them.

        A prefix shared by two slots counts once per slot.
        """
        with self._lock:
            free = set(self._free_slots)
        slots = [s for s in range(self.settings.parallel) if (s in free) == cached]
        with self._step_lock:
            return sum(llama_cpp.llama_memory_seq_pos_max(self._memory, s) + 1 for s in slots)

    def close(self) -> None:
        """End every sequence, stop the thread and free the context."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self.ctx)

    # ------------------------------------------------------------ scheduler thread

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._closed or self._has_work())
                if self._closed:
                    break
                with self._step_lock:  # admission cuts and shares cached cells
                    self._reap_cancelled()
                    self._admit()
            if not self._active:
                continue
            try:
                with self._step_lock:
                    self._step()
            except Exception as exc:  # a failed decode ends the sequences in it, not the thread
                error = exc if isinstance(exc, BackendError) else BackendError(str(exc))
                with self._step_lock, self._lock:
                    for seq in list(self._active):
                        self._forget(seq.slot)  # what the cache holds for it is unknown
                        self._finish(seq, error=error)
        with self._lock:
            closed = BackendError("the model was closed during generation")
            for seq in [*self._active, *self._waiting]:
                self._finish(seq, error=closed)
            self._waiting.clear()

    def _has_work(self) -> bool:
        return bool(self._active or self._waiting)

    def _reap_cancelled(self) -> None:
        for seq in [s for s in self._active if s.cancelled]:
            self._finish(seq, finish="cancelled")
        for seq in [s for s in self._waiting if s.cancelled]:
            self._waiting.remove(seq)
            seq.sampler.close()

    def _admit(self) -> None:
        while self._waiting and self._free_slots:
            seq = self._waiting.popleft()
            self._place(seq)
            self._active.append(seq)

    def _place(self, seq: _Sequence) -> None:
        """Give ``seq`` a free slot, with the longest cached prefix of its prompt in it."""
        # at least the prompt's last token is read again: its logits are needed
        limit = len(seq.prompt) - 1 if self._reuse else 0
        match = [min(common_prefix(cached, seq.prompt), limit) for cached in self._cached]
        free = self._free_slots
        slot = free.pop(max(range(len(free)), key=lambda i: match[free[i]]))
        keep = match[slot]
        donor = max(range(len(match)), key=match.__getitem__)
        shared = match[donor]
        memory = self._memory
        if shared > keep:  # another slot holds more of it: share its cells
            llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)
            llama_cpp.llama_memory_seq_cp(memory, donor, slot, 0, shared)
            keep = shared
        elif not llama_cpp.llama_memory_seq_rm(memory, slot, keep, -1):
            llama_cpp.llama_memory_seq_rm(memory, slot, -1, -1)  # could not cut: start afresh
            keep = 0
        self._cached[slot] = seq.prompt[:keep]
        seq.slot = slot
        seq.fed = seq.reused = keep
        self.tokens_reused += keep

    def _step(self) -> None:
        batch = self._batch
        n = 0
        for seq in self._active:
            seq.logits_index = -1
            if seq.next_token is not None:
                n = self._add(n, seq.next_token, seq, logits=True)
                seq.next_token = None
        for seq in self._active:
            if n >= self.n_batch:
                break
            todo = len(seq.prompt) - seq.fed
            if todo <= 0:
                continue
            for _ in range(min(todo, self.n_batch - n)):
                last = seq.fed + 1 == len(seq.prompt)
                n = self._add(n, seq.prompt[seq.fed], seq, logits=last)
        batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.ctx, batch)
        if rc != 0:
            raise BackendError(f"llama_decode failed (code {rc}) on a batch of {n} tokens")
        self.steps += 1
        self.tokens_decoded += n
        now = time.perf_counter()
        for seq in list(self._active):
            if seq.logits_index >= 0:
                token = llama_cpp.llama_sampler_sample(
                    seq.sampler.sampler, self.ctx, seq.logits_index
                )
                self._accept(seq, int(token), now)

    def _add(self, n: int, token: int, seq: _Sequence, logits: bool) -> int:
        batch = self._batch
        batch.token[n] = token
        batch.pos[n] = seq.fed
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq.slot
        batch.logits[n] = 1 if logits else 0
        if logits:
            seq.logits_index = n
        seq.fed += 1
        self._cached[seq.slot].append(token)
        return n + 1

    def _accept(self, seq: _Sequence, token: int, now: float) -> None:
        if self._is_eog(token) and not seq.params.ignore_eos:
            with self._lock:
                self._finish(seq, finish="stop")
            return
        seq.n_out += 1
        chunk = seq.maker.token(self.model.detokenize([token], special=False), now)
        if chunk is not None:
            self._send(seq, chunk)
        if seq.maker.stopped:
            finish = "stop"
        elif seq.n_out >= seq.max_tokens:
            finish = "length"
        else:
            seq.next_token = token
            return
        with self._lock:
            self._finish(seq, finish=finish)

    def _send(self, seq: _Sequence, item: Any) -> None:
        try:
            seq.emit(item)
        except RuntimeError:  # the caller's event loop is gone: nobody is listening
            seq.cancelled = True

    def _finish(
        self, seq: _Sequence, finish: str = "stop", error: BaseException | None = None
    ) -> None:
        """End ``seq`` (lock held): free its slot (its cells stay cached), send the last chunk."""
        if seq.done:
            return
        seq.done = True
        if seq in self._active:
            self._active.remove(seq)
        if seq.slot >= 0:
            self._free_slots.append(seq.slot)
            seq.slot = -1
        seq.sampler.close()
        if error is not None:
            self._send(seq, error)
        elif not seq.cancelled:
            usage = Usage(prompt_tokens=len(seq.prompt), completion_tokens=seq.n_out)
            self._send(seq, seq.maker.final(usage, finish))
        self._send(seq, None)

    def _forget(self, slot: int) -> None:
        """Drop what a slot caches (its cells and the record of them)."""
        if slot >= 0:
            llama_cpp.llama_memory_seq_rm(self._memory, slot, -1, -1)
            self._cached[slot] = []


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
