"""``llmpick quant``: build variants, measure what each loses, pick the smallest that holds.

For one local GGUF model: build the reference (:mod:`llmpick.quant.files`),
quantize each requested variant with llama.cpp, then measure on the user's
data, all side by side in one run:

- distribution: KLD, same top token and ΔPPL against the reference on the
  rows' texts (:mod:`llmpick.quant.divergence`);
- quality: the existing eval (same scorers, cache, store and statistics), the
  reference and every variant as models of one run, each variant compared
  with the reference on the same rows (paired test);
- speed and memory: the existing bench, one closed-loop point each.

The choice is the smallest variant whose quality is not distinguishable from
the reference's and whose mean KLD is within the threshold; or none.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmpick.backends.base import SamplingParams
from llmpick.backends.spec import ModelSpec
from llmpick.context import Context
from llmpick.data import sample_data_path
from llmpick.errors import QuantizationError, UsageError
from llmpick.evaluate.dataset import Dataset, load_dataset
from llmpick.quant.divergence import (
    Divergence,
    TokenSequence,
    divergence,
    load_scoring_model,
    reference_log_probs,
)
from llmpick.quant.files import (
    BuiltFile,
    build_reference,
    build_variant,
    check_free_space,
    normalize_variant,
    parameter_count,
    quant_dir,
    variant_size_bound,
)

__all__ = [
    "QuantOptions",
    "QuantReport",
    "VariantResult",
    "choose_variant",
    "run_quant",
    "source_gguf",
    "variant_specs",
]

REFERENCE = "reference"
#: default mean-KLD limit (nats); a policy choice, set it with --kld-threshold
DEFAULT_KLD_THRESHOLD = 0.1


class QuantOptions(BaseModel):
    """What ``llmpick quant`` builds and how hard it measures."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    variants: list[str]
    data: Path | None = None
    scorers: list[str] = Field(default_factory=list)
    max_tokens: int = Field(default=64, ge=1)
    seed: int = 0
    limit: int | None = Field(default=None, ge=1)
    kld_threshold: float = Field(default=DEFAULT_KLD_THRESHOLD, gt=0)
    n_ctx: int = Field(default=1024, ge=32)
    n_threads: int | None = Field(default=None, ge=1)
    db_path: Path = Path("llmpick.db")
    keep_free_bytes: int = Field(default=0, ge=0)
    evaluate: bool = True
    bench: bool = True
    bench_requests: int = Field(default=3, ge=1)
    bench_prompt_tokens: int = Field(default=64, ge=1)
    bench_max_tokens: int = Field(default=32, ge=1)
    on_event: Callable[[str], None] | None = None


class VariantResult(BaseModel):
    """One row of the table: a variant (or the reference) and what was measured on it."""

    name: str
    is_reference: bool = False
    path: str
    sha256: str
    size_bytes: int
    bits_per_weight: float
    tensor_types: dict[str, int]
    reused: bool
    divergence: Divergence | None = None
    quality_mean: float | None = None
    quality_ci95: tuple[float, float] | None = None
    quality_n: int = 0
    #: variant minus reference, mean over the shared rows
    quality_diff: float | None = None
    quality_p_value: float | None = None
    quality_significant: bool = False
    quality_sentence: str | None = None
    peak_memory_bytes: int | None = None
    decode_tokens_per_second: float | None = None


class QuantReport(BaseModel):
    """Everything ``llmpick quant`` measured; stored, printed and charted."""

    schema_version: int = 1
    id: str = ""
    model: str
    catalog_id: str | None
    source: str
    source_sha256: str
    reference_note: str
    data: dict[str, Any]
    scorer: str | None = None
    eval_run_id: str | None = None
    kld_threshold: float
    variants: list[VariantResult]
    choice: str | None
    sentence: str
    notes: list[str] = Field(default_factory=list)


def _tell(options: QuantOptions, text: str) -> None:
    if options.on_event is not None:
        options.on_event(text)


def source_gguf(context: Context, model: str) -> tuple[ModelSpec, Path]:
    """The local GGUF behind ``model`` or a :class:`QuantizationError` saying why there is none."""
    spec = context.resolve(model)
    if spec.backend != "llamacpp":
        raise QuantizationError(
            f"{spec.name} runs on the {spec.backend} backend: llmpick has no weights file to "
            "dequantize or quantize",
            "give a GGUF: a bundled model, llamacpp:PATH.gguf or llamacpp:OWNER/REPO@FILE.gguf",
        )
    path = Path(spec.model)
    if "hf_repo" in spec.options:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(spec.options["hf_repo"], spec.model))
    if not path.is_file():
        raise QuantizationError(f"no GGUF file at {path}", "check the path of llamacpp:PATH.gguf")
    return spec, path


def _texts(dataset: Dataset) -> list[str]:
    texts = []
    for row in dataset.rows:
        parts = [m.content for m in row.messages if m.content]
        if row.expected:
            parts.append(row.expected)
        texts.append("\n".join(parts))
    return texts


def _variant_spec(name: str, built: BuiltFile, n_ctx: int) -> ModelSpec:
    return ModelSpec(name=name, backend="llamacpp", model=str(built.path), options={"n_ctx": n_ctx})


def _build_all(
    path: Path, context: Context, options: QuantOptions, names: list[str]
) -> tuple[BuiltFile, list[BuiltFile]]:
    from llmpick.backends.gguf_files import file_sha256

    digest = file_sha256(path, context.settings.cache_dir)
    directory = quant_dir(context.settings.cache_dir, digest)
    n_params = parameter_count(path)
    # the whole sweep is checked before the first byte is written
    needed = sum(
        variant_size_bound(n_params, n) for n in names if not (directory / f"{n}.gguf").exists()
    )
    if not (directory / "reference-F32.gguf").exists():
        needed += n_params * 4
    check_free_space(directory, needed, options.keep_free_bytes)
    cache = context.settings.cache_dir
    _tell(options, f"reference from {path.name}")
    reference = build_reference(path, cache, options.keep_free_bytes, digest)
    built = []
    for name in names:
        _tell(options, f"quantizing {name}")
        built.append(
            build_variant(reference, name, cache, options.keep_free_bytes, options.n_threads)
        )
    return reference, built


def variant_specs(
    context: Context, specs: list[ModelSpec], variants: list[str], keep_free_bytes: int = 0
) -> list[ModelSpec]:
    """Models for the variants of every local GGUF in ``specs`` (built or reused).

    For ``choose --quant-sweep``: each variant is named ``MODEL@VARIANT`` and
    keeps the candidate's catalog id; specs that are not local GGUFs are skipped.
    """
    names = list(dict.fromkeys(normalize_variant(v) for v in variants))
    out = []
    for spec in specs:
        if spec.backend != "llamacpp" or "hf_repo" in spec.options:
            continue
        options = QuantOptions(variants=names, keep_free_bytes=keep_free_bytes)
        _, built = _build_all(Path(spec.model), context, options, names)
        for b in built:
            out.append(
                spec.model_copy(
                    update={"name": f"{spec.name}@{b.name}", "model": str(b.path), "source": "spec"}
                )
            )
    return out


def run_quant(context: Context, model: str, options: QuantOptions) -> QuantReport:
    """Build, measure and choose; returns the report (save it with :func:`save_quant`)."""
    names = list(dict.fromkeys(normalize_variant(v) for v in options.variants))
    if not names:
        raise UsageError("no variants to build", "name some with --variants Q8_0,Q4_K_M")
    spec, path = source_gguf(context, model)
    dataset = load_dataset(options.data) if options.data else _sample()
    if options.limit is not None:
        dataset = dataset.model_copy(update={"rows": dataset.rows[: options.limit]})
    reference, built = _build_all(path, context, options, names)
    n_params = parameter_count(reference.path)
    files = [(REFERENCE, reference), *((b.name, b) for b in built)]
    rows = {
        name: VariantResult(
            name=name,
            is_reference=name == REFERENCE,
            path=str(b.path),
            sha256=b.sha256,
            size_bytes=b.size_bytes,
            bits_per_weight=8 * b.size_bytes / n_params,
            tensor_types=b.tensor_types,
            reused=b.reused,
        )
        for name, b in files
    }
    _tell(options, f"KL divergence on {len(dataset.rows)} texts")
    _divergences(rows, files, dataset, options, context.settings.cache_dir)
    report_scorer, run_id = None, None
    if options.evaluate:
        report_scorer, run_id = _quality(context, rows, files, dataset, options, spec.name)
    if options.bench:
        _speed(context, rows, files, options)
    choice, sentence = choose_variant(list(rows.values()), options.kld_threshold)
    return QuantReport(
        model=spec.name,
        catalog_id=spec.catalog_id,
        source=str(path),
        source_sha256=reference.source_sha256,
        reference_note=(
            "reference = " + reference.how + "; it computes exactly the function of the "
            "source file's weights, so the losses are relative to that file"
        ),
        data={
            "source": dataset.source,
            "rows": len(dataset.rows),
            "sha256": dataset.sha256(),
            "max_tokens": options.max_tokens,
            "seed": options.seed,
        },
        scorer=report_scorer,
        eval_run_id=run_id,
        kld_threshold=options.kld_threshold,
        variants=list(rows.values()),
        choice=choice,
        sentence=sentence,
        notes=_notes(rows),
    )


def _sample() -> Dataset:
    return load_dataset(sample_data_path())


def _divergences(
    rows: dict[str, VariantResult],
    files: list[tuple[str, BuiltFile]],
    dataset: Dataset,
    options: QuantOptions,
    cache_dir: Path,
) -> None:
    ref_model = load_scoring_model(files[0][1].path, options.n_ctx, options.n_threads)
    sequences = [
        TokenSequence(tokens=ref_model.tokenize(t.encode(), add_bos=True)[: options.n_ctx])
        for t in _texts(dataset)
    ]
    sequences = [s for s in sequences if len(s.tokens) > 1]
    if not sequences:
        raise UsageError("the data has no text to measure the KL divergence on")
    store = reference_log_probs(ref_model, sequences, cache_dir / "quant" / "tmp")
    del ref_model
    try:
        for name, built in files[1:]:
            model = load_scoring_model(built.path, options.n_ctx, options.n_threads)
            rows[name].divergence = divergence(model, store)
            del model
    finally:
        store.close()


def _quality(
    context: Context,
    rows: dict[str, VariantResult],
    files: list[tuple[str, BuiltFile]],
    dataset: Dataset,
    options: QuantOptions,
    model_name: str,
) -> tuple[str | None, str]:
    from llmpick.evaluate import RunOptions, run_eval

    specs = [_variant_spec(f"{model_name}@{name}", b, options.n_ctx) for name, b in files]
    _tell(options, f"evaluating {len(specs)} models x {len(dataset.rows)} prompts")
    result = run_eval(
        context,
        dataset,
        list(specs),
        scorers=options.scorers or None,
        params=SamplingParams(max_tokens=options.max_tokens, temperature=0.0, seed=options.seed),
        db_path=options.db_path,
        options=RunOptions(on_warning=lambda text: _tell(options, f"warning: {text}")),
    )
    ref_name = specs[0].name
    for (name, _), spec in zip(files, specs, strict=True):
        summary = result.models[spec.name]
        row = rows[name]
        row.quality_mean, row.quality_ci95, row.quality_n = summary.mean, summary.ci95, summary.n
        for c in result.comparisons:
            if {c.a, c.b} != {ref_name, spec.name}:
                continue
            sign = 1.0 if c.a == spec.name else -1.0
            row.quality_diff = None if c.mean_diff is None else sign * c.mean_diff
            row.quality_p_value = c.p_value
            row.quality_significant = c.significant
            row.quality_sentence = c.sentence
    return result.scorer, result.run_id


def _speed(
    context: Context,
    rows: dict[str, VariantResult],
    files: list[tuple[str, BuiltFile]],
    options: QuantOptions,
) -> None:
    from llmpick.bench import BenchConfig, run_bench

    config = BenchConfig(
        concurrency=(1,),
        requests=options.bench_requests,
        prompt_tokens=options.bench_prompt_tokens,
        max_tokens=options.bench_max_tokens,
        seed=options.seed,
    )
    for name, built in files:
        _tell(options, f"measuring speed and memory of {name}")
        result = run_bench(context, _variant_spec(name, built, options.n_ctx), config)
        rows[name].peak_memory_bytes = result.peak_memory_bytes
        tpot = result.results[0].metrics.time_per_output_token_s.p50 if result.results else None
        rows[name].decode_tokens_per_second = 1.0 / tpot if tpot else None


def choose_variant(rows: list[VariantResult], kld_threshold: float) -> tuple[str | None, str]:
    """The smallest variant not distinguishable from the reference and within the KLD limit."""
    variants = sorted((r for r in rows if not r.is_reference), key=lambda r: r.size_bytes)
    measured_quality = any(r.quality_n for r in variants)
    fits = [
        r
        for r in variants
        if r.divergence is not None
        and r.divergence.kld_mean <= kld_threshold
        and not r.quality_significant
    ]
    what = "quality" if measured_quality else "(quality not measured)"
    if not fits:
        return None, (
            f"No variant is within mean KLD {kld_threshold:g} and not distinguishable from the "
            f"reference on {what}; keep the reference or a larger variant."
        )
    best = fits[0]
    assert best.divergence is not None
    quality = (
        f", quality {best.quality_mean:.3f} vs reference not distinguishable"
        + (
            f" (p = {best.quality_p_value:.2g}, n = {best.quality_n})"
            if best.quality_p_value
            else ""
        )
        if best.quality_mean is not None
        else "; quality not measured"
    )
    return best.name, (
        f"Choose {best.name}: the smallest variant ({best.size_bytes / 1e6:.0f} MB, "
        f"{best.bits_per_weight:.2f} bits/weight) with mean KLD {best.divergence.kld_mean:.4f} "
        f"≤ {kld_threshold:g}{quality}."
    )


def _notes(rows: dict[str, VariantResult]) -> list[str]:
    notes = [
        "bits/weight = 8 x file size / parameters (metadata included); llama.cpp falls back "
        "to other types for tensors whose rows are not a multiple of 256, so a K-quant "
        "name does not fix the bits: see each variant's tensor types"
    ]
    if any(r.decode_tokens_per_second for r in rows.values()):
        notes.append(
            f"speed and memory measured one model after another on this machine "
            f"({os.cpu_count()} CPU threads visible); compare them as ratios"
        )
    return notes
