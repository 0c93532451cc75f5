"""llmpick quant on the bundled SmolLM2: variants, divergence, quality, the choice, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.context import Context
from llmpick.errors import QuantizationError
from llmpick.quant import (
    QuantOptions,
    QuantReport,
    build_reference,
    build_variant,
    lookup_measured_loss,
    measured_quant_loss,
    run_quant,
    save_quant,
    variant_specs,
    write_quant_report,
)
from llmpick.quant.divergence import (
    TokenSequence,
    divergence,
    load_scoring_model,
    reference_log_probs,
)
from llmpick.store import open_store

pytestmark = pytest.mark.slow

ROWS = """prompt,expected
What is the capital of France? Answer in one word.,Paris
What is 2 + 3? Answer with a number.,5
Name the largest planet in the solar system.,Jupiter
"""


@pytest.fixture(scope="session")
def quant_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Context, Path]:
    root = tmp_path_factory.mktemp("quant")
    (root / "rows.csv").write_text(ROWS)
    return Context(cache_dir=root / "cache"), root


@pytest.fixture(scope="session")
def sweep(quant_env: tuple[Context, Path]) -> QuantReport:
    """Q8_0, Q4_K_M and Q2_K built once for the session, in a temporary cache dir."""
    context, root = quant_env
    options = QuantOptions(
        variants=["Q8_0", "q4_k_m", "Q2_K"],
        data=root / "rows.csv",
        scorers=["contains"],
        max_tokens=12,
        n_ctx=256,
        db_path=root / "llmpick.db",
        bench_requests=2,
        bench_prompt_tokens=16,
        bench_max_tokens=8,
    )
    return run_quant(context, "smollm2-135m-instruct", options)


def test_fewer_bits_are_smaller_and_lose_more(sweep: QuantReport) -> None:
    ref, q8, q4, q2 = sweep.variants
    assert ref.is_reference and [v.name for v in (q8, q4, q2)] == ["Q8_0", "Q4_K_M", "Q2_K"]
    assert "F32" in sweep.reference_note and "exactly the function" in sweep.reference_note
    assert ref.tensor_types == {"F32": 272}
    assert ref.size_bytes > q8.size_bytes > q4.size_bytes > q2.size_bytes
    d8, d4, d2 = (v.divergence for v in (q8, q4, q2))
    assert d8 is not None and d4 is not None and d2 is not None
    assert 0 < d8.kld_mean < d4.kld_mean < d2.kld_mean
    assert d8.same_top_token > d4.same_top_token > d2.same_top_token
    assert d2.delta_ppl > d8.delta_ppl
    for v in sweep.variants:
        assert v.quality_n == 3 and v.quality_ci95 is not None
        assert v.peak_memory_bytes and v.decode_tokens_per_second
        if not v.is_reference:
            assert v.quality_sentence and v.quality_p_value is not None
    assert sweep.choice in {"Q8_0", "Q4_K_M", "Q2_K"}
    assert sweep.sentence.startswith(f"Choose {sweep.choice}:")
    print(
        "\n"
        + "\n".join(
            f"{v.name}: {v.size_bytes} B, {v.bits_per_weight:.2f} bpw, "
            f"KLD {v.divergence.kld_mean:.5f} (p99 {v.divergence.kld_p99:.4f}), "
            f"top-1 {v.divergence.same_top_token:.4f}, dPPL {v.divergence.delta_ppl:+.3f}, "
            f"quality {v.quality_mean} {v.quality_ci95}"
            for v in sweep.variants
            if v.divergence
        )
        + f"\n{sweep.sentence}"
    )


def test_a_tight_threshold_leaves_no_choice(sweep: QuantReport) -> None:
    from llmpick.quant import choose_variant

    choice, sentence = choose_variant(sweep.variants, kld_threshold=1e-9)
    assert choice is None and sentence.startswith("No variant")


def test_variants_are_reused_and_stored(
    sweep: QuantReport, quant_env: tuple[Context, Path]
) -> None:
    context, root = quant_env
    source = BUNDLED_MODELS["smollm2-135m-instruct"].locate(context.settings.cache_dir)
    reference = build_reference(source, context.settings.cache_dir)
    again = build_variant(reference, "Q2_K", context.settings.cache_dir)
    assert reference.reused and again.reused
    assert again.sha256 == sweep.variants[3].sha256
    # choose --quant-sweep: the variants join the candidates under the same catalog id
    (spec,) = variant_specs(context, [context.resolve("smollm2-135m-instruct")], ["q2_k"])
    assert spec.name == "smollm2-135m-instruct@Q2_K" and spec.model == str(again.path)
    assert spec.catalog_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with open_store(root / "llmpick.db") as store:
        save_quant(store, sweep)
        loss = measured_quant_loss(store, "HuggingFaceTB/SmolLM2-135M-Instruct", "q4-k-m")
        assert measured_quant_loss(store, "HuggingFaceTB/SmolLM2-135M-Instruct", "IQ1_S") is None
    assert loss is not None and loss.basis == "measured" and loss.quant == "Q4_K_M"
    assert "rows.csv" in loss.data and sweep.id in loss.source
    # what fit reads: by bundled name too, and nothing (no store created) without a store
    assert lookup_measured_loss(root / "llmpick.db", "smollm2-135m-instruct", "Q2_K")
    assert lookup_measured_loss(root / "none.db", "smollm2-135m-instruct", "Q2_K") is None
    assert not (root / "none.db").exists()


def test_report_has_table_chart_and_png(sweep: QuantReport, tmp_path: Path) -> None:
    paths = write_quant_report(sweep, tmp_path / "out")
    page = paths["html"].read_text()
    assert sweep.sentence in page and "size vs quality" in page and "<table>" in page
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reference_against_itself_diverges_by_nothing(sweep: QuantReport, tmp_path: Path) -> None:
    path = Path(sweep.variants[0].path)
    model = load_scoring_model(path, 128, 2)
    seqs = [
        TokenSequence(tokens=model.tokenize(b"The sky is blue because of Rayleigh scattering."))
    ]
    logprobs = reference_log_probs(model, seqs, tmp_path)
    same = divergence(model, logprobs)
    logprobs.close()
    assert abs(same.kld_mean) < 1e-6 and same.same_top_token == 1.0
    assert abs(same.ln_ppl_ratio) < 1e-6


def test_unknown_variant_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    context = Context(cache_dir=tmp_path / "cache")
    with pytest.raises(QuantizationError, match="no quantization type 'Q4_K_XL'") as info:
        run_quant(context, "smollm2-135m-instruct", QuantOptions(variants=["Q8_0", "Q4_K_XL"]))
    assert "Q4_K_M" in info.value.hint
    assert not (tmp_path / "cache" / "quant").exists()


def test_not_enough_disk_space_is_refused_before_writing(tmp_path: Path) -> None:
    context = Context(cache_dir=tmp_path / "cache")
    options = QuantOptions(variants=["Q8_0"], keep_free_bytes=10**18, db_path=tmp_path / "db")
    with pytest.raises(QuantizationError, match="not enough disk space"):
        run_quant(context, "smollm2-135m-instruct", options)
    assert not list((tmp_path / "cache").rglob("*.gguf"))


def _undecodable_gguf(path: Path) -> Path:
    import gguf

    writer = gguf.GGUFWriter(path, "llama")
    # one Q8_K block (256 weights in 292 bytes): a type the gguf package cannot decode
    writer.add_tensor(
        "blk.0.attn_q.weight",
        np.zeros((1, 292), np.uint8),
        raw_dtype=gguf.GGMLQuantizationType.Q8_K,
    )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_quantized_source_without_dequantizer_is_refused(tmp_path: Path) -> None:
    source = _undecodable_gguf(tmp_path / "odd.gguf")
    context = Context(cache_dir=tmp_path / "cache")
    with pytest.raises(QuantizationError, match="Q8_K, which the gguf package cannot dequantize"):
        run_quant(context, f"llamacpp:{source}", QuantOptions(variants=["Q4_0"]))
    assert not list((tmp_path / "cache").rglob("*.gguf"))


def test_a_failed_quantization_leaves_no_partial_file(tmp_path: Path) -> None:
    from llmpick.quant import BuiltFile

    broken = _undecodable_gguf(tmp_path / "odd.gguf")
    reference = BuiltFile(
        name="reference", path=broken, sha256="0" * 64, size_bytes=1, source_sha256="f" * 64, how=""
    )
    with pytest.raises(QuantizationError, match="failed to quantize"):
        build_variant(reference, "Q8_0", tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "gguf" in p.name]


def test_cli_one_line_error_for_an_unknown_variant(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llmpick", "quant", "smollm2-135m-instruct", "--variants", "Q9_X"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "LLMPICK_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "60"},
    )
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: llama.cpp has no quantization type")


def test_recommend_and_choose_rank_with_the_measured_loss(
    sweep: QuantReport, quant_env: tuple[Context, Path]
) -> None:
    from llmpick.quant import loss_lookup
    from llmpick.recommend import Constraints, recommend

    _, root = quant_env
    db = root / "ranked.db"
    with open_store(db) as store:
        save_quant(store, sweep)
        expected = measured_quant_loss(store, "HuggingFaceTB/SmolLM2-135M-Instruct", "Q2_K")
    assert expected is not None
    constraints = Constraints(task="chat", device="cpu", quant="Q2_K", max_params_b=1, top=20)
    default = {c.id: c for c in recommend(constraints).candidates}
    measured = {c.id: c for c in recommend(constraints, losses=loss_lookup(db)).candidates}
    smol = measured.pop("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert smol.quant_quality_loss == pytest.approx(expected.quality_loss)
    assert any(r.startswith("quantization Q2_K") and sweep.id in r for r in smol.reasons), (
        smol.reasons
    )
    assert not any(sweep.id in r for c in default.values() for r in c.reasons)
    # models nobody measured keep the sourced default
    assert measured and all(
        c.quant_quality_loss == default[i].quant_quality_loss for i, c in measured.items()
    )
