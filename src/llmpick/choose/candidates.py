"""Which candidates ``choose`` runs here: the shortlist's local copies, bundled and user models."""

from __future__ import annotations

from typing import Any

from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.backends.pool import ModelPool
from llmpick.backends.spec import ModelSpec
from llmpick.choose.models import CandidateStatus, ChooseOptions
from llmpick.context import Context
from llmpick.errors import LlmpickError
from llmpick.recommend import Recommendation

#: device kinds vLLM serves on (a CUDA or ROCm GPU); elsewhere advice is GGUF + llama.cpp
_VLLM_KINDS = ("gpu",)


def _how_to_run(card: Any, quant: str | None, device_kind: str = "cpu") -> list[str]:
    """Ways to make a catalog model runnable on this device (a -m spec, llmpick.yaml snippets).

    On a CPU, a Mac or an unknown device: a GGUF through llama.cpp (the card's GGUF repo,
    else the conversion steps); vLLM is offered only for a GPU device.
    """
    slug = card.id.split("/")[-1].lower()
    ways = []
    gguf = card.hub_gguf
    if gguf is None and device_kind not in _VLLM_KINDS:
        target = quant if quant and quant.upper().startswith(("Q", "IQ")) else "Q4_K_M"
        ways.append(
            f"no GGUF repository is known for {card.id}: convert it with llama.cpp "
            f"(python convert_hf_to_gguf.py <download of {card.id}> --outfile {slug}-f16.gguf; "
            f"llama-quantize {slug}-f16.gguf {slug}-{target.lower()}.gguf {target}), then "
            f"llmpick choose -m llamacpp:{slug}-{target.lower()}.gguf"
        )
    if gguf is not None:
        ways.append(f"llmpick choose -m llamacpp:{gguf.repo}@{gguf.filename}  (downloads the GGUF)")
        ways.append(
            "llmpick.yaml:\n"
            f"models:\n  {slug}:\n    backend: llamacpp\n    model: {gguf.filename}\n"
            f"    options: {{hf_repo: {gguf.repo}}}\n    catalog_id: {card.id}"
        )
        ways.append(
            f"Ollama: ollama pull hf.co/{gguf.repo}:{gguf.quant}, then in llmpick.yaml:\n"
            f"models:\n  {slug}:\n    backend: openai\n    model: hf.co/{gguf.repo}:{gguf.quant}\n"
            f"    base_url: http://127.0.0.1:11434/v1\n    catalog_id: {card.id}"
        )
    if device_kind not in _VLLM_KINDS:
        return ways
    ways.append(
        f"vLLM: vllm serve {card.id}"
        + (f" (this shortlist assumed {quant})" if quant else "")
        + ", then in llmpick.yaml:\n"
        f"models:\n  {slug}:\n    backend: openai\n    model: {card.id}\n"
        f"    base_url: http://127.0.0.1:8000/v1\n    catalog_id: {card.id}"
    )
    return ways


def _candidates(
    context: Context, options: ChooseOptions, rec: Recommendation, catalog: Any
) -> tuple[list[CandidateStatus], list[ModelSpec]]:
    statuses: list[CandidateStatus] = []
    specs: list[ModelSpec] = []

    def add(spec: ModelSpec, origin: Any, catalog_id: str | None, in_shortlist: bool) -> None:
        if any(s.name == spec.name for s in specs):
            return
        specs.append(spec)
        statuses.append(
            CandidateStatus(
                name=spec.name,
                catalog_id=catalog_id,
                origin=origin,
                in_shortlist=in_shortlist,
                status="evaluated",
            )
        )

    config_models = context.settings.config.models
    for cand in rec.candidates:
        wanted = cand.id.lower()
        local = [n for n, m in config_models.items() if (m.catalog_id or "").lower() == wanted]
        local += [b.name for b in BUNDLED_MODELS.values() if b.catalog_id.lower() == wanted]
        for name in local:
            origin = "config" if name in config_models else "bundled"
            add(context.resolve(name), origin, cand.id, True)
        if not local:
            statuses.append(
                CandidateStatus(
                    name=cand.id,
                    catalog_id=cand.id,
                    origin="shortlist",
                    in_shortlist=True,
                    status="not-runnable",
                    how_to_run=_how_to_run(
                        catalog.get(cand.id), cand.quant, str(rec.device.get("kind", "cpu"))
                    ),
                )
            )
    for text in options.models:
        spec = context.resolve(text)  # an unknown model is bad input: it raises
        add(spec, "user", spec.catalog_id, False)
    if not specs:
        for bundled in BUNDLED_MODELS.values():
            add(context.resolve(bundled.name), "bundled", bundled.catalog_id, False)
    if options.quant_sweep:
        from llmpick.quant import variant_specs

        for spec in variant_specs(context, list(specs), options.quant_sweep):
            add(spec, "quant-sweep", spec.catalog_id, False)
    return statuses, specs


def _probe(pool: ModelPool, spec: ModelSpec) -> dict[str, Any]:
    """Load the model into the pool (its only load); return its identity."""
    import asyncio

    model = asyncio.run(pool.open(spec))
    identity: dict[str, Any] = model.identity().model_dump(mode="json")
    return identity


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, LlmpickError):
        return exc.one_line()
    return f"{type(exc).__name__}: {exc}".strip()
