"""What a workbench page may name: the operator's models, and generations under admission.

A column's model spec comes from a web page, so it is data: it selects one of
the models the operator declared (the gateway's served models, the names in
``llmpick.yaml``, the bundled models), never a spec the server would resolve.
Otherwise ``openai:x@http://ANY-HOST/`` would make the server send requests
where the page says, ``llamacpp:/path`` would tell whether a file exists, and
``hf:`` would download and load models into the server. ``column:NAME`` specs
(answers read from the sheet's own data) are data too and always allowed. The
operator lifts the rule with ``--ui-allow-any-model``.

Scorer arguments from the page may not name files (``schema_file=``).

With keys, workbench generations also go through the gateway's admission
(:class:`Admission`: the logged-in key's models, RPM and TPM), through
:class:`AdmittedPool`, a view of the shared model pool that admits each
generation before it reaches the model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any, Protocol

from fastapi import HTTPException

from llmpick.backends.base import Chunk, Generation, GenerationRequest
from llmpick.backends.pool import ModelPool, PooledModel
from llmpick.backends.spec import ModelSpec
from llmpick.errors import BackendError, RateLimitError, RequestRejectedError
from llmpick.evaluate.scorers.base import ScorerSpec
from llmpick.textsize import conservative_tokens

__all__ = ["Admission", "AdmittedPool", "ModelCapabilities"]


class Admission(Protocol):
    """The gateway's admission for one logged-in key (``llmpick serve --ui``)."""

    def may_use(self, model: str) -> bool:
        """Whether the key may use ``model`` at all."""
        ...

    async def admit(self, model: str, prompt_tokens: int, max_tokens: int | None) -> None:
        """Count one generation against the key, or raise ``RequestRejectedError``."""
        ...

    async def settle(self, reserved: int, used: int) -> None:
        """Give back what an admitted generation reserved and did not use."""
        ...


_DATA_BACKENDS = ("column:",)


class ModelCapabilities:
    """The model names a page may pick, or any spec when the operator said so."""

    def __init__(self, names: Iterable[str], *, allow_any: bool = False) -> None:
        self.names = list(dict.fromkeys(names))
        self.allow_any = allow_any

    def allows(self, spec: str) -> bool:
        """Whether ``spec`` is one of the declared names (or a data-only spec)."""
        return self.allow_any or spec in self.names or spec.startswith(_DATA_BACKENDS)

    def check(self, spec: str, what: str = "model") -> str:
        """``spec`` when allowed, else 403 — before anything is resolved, read or fetched."""
        if not self.allows(spec):
            raise HTTPException(
                403,
                f"the workbench may use only the models the operator declared, not this {what}:"
                f" pick one of {', '.join(self.names) or 'none'} (the operator can serve more"
                " with -m, name them in llmpick.yaml, or start with --ui-allow-any-model)",
            )
        return spec

    def check_scorer(self, spec: ScorerSpec) -> None:
        """403 for a scorer argument that names a file on the server."""
        if self.allow_any:
            return
        for name in spec.args:
            if name.endswith(("_file", "_path", "_dir")) or name in ("file", "path"):
                raise HTTPException(
                    403, f"scorer argument '{name}' names a file: from the page give it inline"
                )


class _AdmittedModel:
    """A pooled model whose every generation is admitted first."""

    def __init__(self, model: PooledModel, admit: Admission) -> None:
        self._model = model
        self._admit = admit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    async def _check(self, request: GenerationRequest) -> int:
        """Admit the request; the tokens it reserved."""
        text = "\n".join(m.content for m in request.messages)
        counted = self._model.count_tokens(text)
        prompt = counted if counted is not None else conservative_tokens(text)
        try:
            await self._admit.admit(self._model.name, prompt, request.params.max_tokens)
        except RequestRejectedError as exc:
            # as the runner knows them: a 429 is waited out and retried, others fail the cell
            error = RateLimitError if exc.status == 429 else BackendError
            raised = error(f"refused by the gateway ({exc.status}): {exc.message}")
            raised.retry_after_s = exc.retry_after
            raise raised from None
        return prompt + (request.params.max_tokens or 0)

    async def generate(self, request: GenerationRequest, **kwargs: Any) -> Generation:
        """Admit, generate, then settle the reservation to the tokens used."""
        reserved = await self._check(request)
        used = 0
        try:
            generation = await self._model.generate(request, **kwargs)
            usage = generation.usage
            used = (usage.prompt_tokens or 0) + usage.completion_tokens
            return generation
        finally:
            await self._admit.settle(reserved, used)

    async def stream(self, request: GenerationRequest, **kwargs: Any) -> AsyncIterator[Chunk]:
        """Admit, then stream."""
        await self._check(request)
        async for chunk in self._model.stream(request, **kwargs):
            yield chunk


class AdmittedPool:
    """The shared pool as one workbench job sees it: checked names, admitted generations."""

    def __init__(
        self, pool: ModelPool, capabilities: ModelCapabilities, admit: Admission | None
    ) -> None:
        self._pool = pool
        self._capabilities = capabilities
        self._admit = admit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    async def open(self, spec: str | ModelSpec, *, name: str | None = None) -> Any:
        """The pool's model for an allowed ``spec``, admitting its generations."""
        self._capabilities.check(spec if isinstance(spec, str) else spec.name)
        model = await self._pool.open(spec, name=name)
        return model if self._admit is None else _AdmittedModel(model, self._admit)
