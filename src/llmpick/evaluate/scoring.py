"""Scoring cells during a run and in ``llmpick rescore``.

Scorers come from :mod:`llmpick.evaluate.scorers` (one registry). A scorer may
be synchronous (``code_exec`` runs a sandboxed subprocess) or async (``judge``);
each call runs in a worker thread, a bounded number at a time, and a returned
awaitable is awaited on the event loop. Judge generations go through the store
like any other generation, so a rescore or a re-run does not pay for them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from llmpick.backends.base import Generation, GenerationRequest, Usage, sha256_text
from llmpick.backends.pool import PooledModel
from llmpick.context import Context
from llmpick.errors import LlmpickError, ScorerError
from llmpick.evaluate.scorers.base import Cell, JudgeFn, Score, Scorer, ScorerSpec
from llmpick.store import GenerationRecord, Store

__all__ = [
    "PAIRWISE",
    "BuiltScorer",
    "CachedJudge",
    "cache_key",
    "pairwise_spec",
    "parse_scorers",
    "run_scorer",
    "scorer_key",
]

#: the scorer name that compares models instead of scoring cells
PAIRWISE = "pairwise"


def scorer_key(spec: ScorerSpec) -> str:
    """Return a stable text key for a scorer and its arguments (``name`` or ``name:{json}``)."""
    if not spec.args:
        return spec.name
    return f"{spec.name}:{json.dumps(spec.args, sort_keys=True, separators=(',', ':'))}"


def cache_key(
    identity_key: str,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    repeat: int,
    row_sha256: str | None = None,
    request_fields: dict[str, Any] | None = None,
) -> str:
    """Return the generation cache key: backend identity + rendered messages + sampling + repeat.

    ``row_sha256`` is added for backends that read their output from the row
    (``column``), whose output depends on more than the messages;
    ``request_fields`` (a row's tools, tool_choice, response_format) when it has any,
    so a plain row keeps the key it always had.
    """
    payload = {
        "identity": identity_key,
        "messages": messages,
        "params": params,
        "repeat": repeat,
        "row": row_sha256,
    }
    if request_fields:
        payload["request"] = request_fields
    return sha256_text(json.dumps(payload, sort_keys=True, ensure_ascii=False))


def parse_scorers(texts: list[str] | None) -> list[ScorerSpec]:
    """Parse ``--scorer NAME[:ARG=VAL,…]`` values (strings or specs)."""
    from llmpick.evaluate.scorers import parse_scorer_spec

    specs: list[ScorerSpec] = []
    for text in texts or []:
        spec = text if isinstance(text, ScorerSpec) else parse_scorer_spec(text)
        if any(scorer_key(s) == scorer_key(spec) for s in specs):
            raise ScorerError(f"scorer '{text}' is given twice")
        specs.append(spec)
    return specs


class BuiltScorer:
    """A scorer callable with the spec it was built from."""

    def __init__(self, spec: ScorerSpec, fn: Scorer) -> None:
        self.spec = spec
        self.key = scorer_key(spec)
        self.fn = fn


async def run_scorer(scorer: BuiltScorer, cell: Cell, slots: asyncio.Semaphore) -> Score:
    """Score one cell; sync scorers run in a thread, at most ``slots`` at a time.

    Library errors (a judge that cannot be reached) pass through; anything else
    a scorer raises becomes a :class:`ScorerError` naming the scorer and row.
    """
    async with slots:
        try:
            result: Any = await asyncio.to_thread(scorer.fn, cell)
        except LlmpickError:
            raise
        except Exception as exc:
            raise ScorerError(
                f"scorer {scorer.key} failed on row {cell.row_id} ({cell.model}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if isinstance(result, Awaitable):
        try:
            result = await result
        except LlmpickError:
            raise
        except Exception as exc:
            raise ScorerError(
                f"scorer {scorer.key} failed on row {cell.row_id} ({cell.model}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(result, Score):
        raise ScorerError(f"scorer {scorer.key} returned {type(result).__name__}, not a Score")
    return result


class CachedJudge:
    """A :data:`JudgeFn` over a pooled model, cached in the store like model generations.

    ``lock`` is entered around each generation (a run keeps in-process models from
    running side by side); the pool limits and retries the requests themselves.
    """

    def __init__(
        self,
        model: PooledModel,
        store: Store,
        lock: Callable[[], contextlib.AbstractAsyncContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self.model = model
        self.backend = model.backend
        self.store = store
        self.identity = model.identity()
        self.identity_key = self.identity.key()
        self._lock = lock
        self.calls = 0
        self.cached = 0

    async def __call__(self, request: GenerationRequest) -> Generation:
        """Generate for ``request`` on the judge, or return the stored answer."""
        messages = [m.model_dump(mode="json") for m in request.messages]
        params = request.params.model_dump(mode="json")
        key = cache_key(self.identity_key, messages, params, 0)
        hit = self.store.get_generation(key)
        if hit is not None:
            self.cached += 1
            return Generation(
                output=hit.output,
                usage=Usage(
                    prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens or 0
                ),
                start_s=0.0,
                first_token_s=hit.time_to_first_token_s,
                end_s=hit.latency_s,
                finish_reason=hit.finish_reason,
            )
        async with self._lock():
            generation = await self.model.generate(request)
        self.calls += 1
        self.store.put_generation(
            GenerationRecord(
                cache_key=key,
                identity_key=self.identity_key,
                identity=self.identity.model_dump(mode="json"),
                messages=messages,
                params=params,
                repeat=0,
                output=generation.output,
                prompt_tokens=generation.usage.prompt_tokens,
                completion_tokens=generation.usage.completion_tokens,
                time_to_first_token_s=generation.time_to_first_token_s,
                latency_s=generation.total_s,
                finish_reason=generation.finish_reason,
            )
        )
        return generation


def pairwise_spec(specs: list[ScorerSpec], has_judge: bool) -> ScorerSpec | None:
    """Return the ``pairwise`` spec among ``specs``, checked before any model runs."""
    import inspect

    from llmpick.evaluate.scorers import pairwise_compare

    found = [s for s in specs if s.name == PAIRWISE]
    if not found:
        return None
    if not has_judge:
        raise ScorerError("the pairwise scorer needs a judge", "add --judge MODEL")
    allowed = {"rubric", "max_tokens"}
    try:
        inspect.signature(pairwise_compare).bind(None, {}, {}, **found[0].args)
        if set(found[0].args) - allowed:
            raise TypeError(f"unexpected arguments {sorted(set(found[0].args) - allowed)}")
    except TypeError as exc:
        raise ScorerError(
            f"bad arguments for scorer 'pairwise': {exc}", "pairwise accepts: rubric, max_tokens"
        ) from exc
    return found[0]


def build_scorers(
    context: Context, specs: list[ScorerSpec], judge: JudgeFn | None
) -> list[BuiltScorer]:
    """Build the per-cell scorers (everything but ``pairwise``)."""
    from llmpick.evaluate.scorers import build_scorer

    return [
        BuiltScorer(spec, build_scorer(context, spec, judge=judge))
        for spec in specs
        if spec.name != PAIRWISE
    ]
