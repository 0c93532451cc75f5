"""The fit estimator against hand-computed values and real GGUF files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from gguf import GGUFReader

from llmpick.errors import (
    ConfigError,
    ModelFileError,
    ModelNotFoundError,
    QuantizationError,
    UsageError,
)
from llmpick.fit import (
    RUNTIMES,
    LlamaCppSettings,
    fit_model,
    get_quantization,
    get_runtime,
    kv_bytes_per_element,
    kv_cache_bytes,
    llamacpp_kv_cache_bytes,
    llamacpp_n_ctx,
    resolve_shape,
    runtime_for_backend,
    shape_from_config,
    shape_from_gguf,
)
from llmpick.hardware import get_device

GIB = 1024**3

# From https://huggingface.co/Qwen/Qwen2.5-7B-Instruct/blob/main/config.json
QWEN25_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "sliding_window": 131072,
    "use_sliding_window": False,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
# From https://huggingface.co/google/gemma-3-1b-it/blob/main/config.json (text part)
GEMMA3_1B = {
    "model_type": "gemma3_text",
    "hidden_size": 1152,
    "intermediate_size": 6912,
    "num_hidden_layers": 26,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "vocab_size": 262144,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
}
# From https://huggingface.co/Qwen/Qwen3-30B-A3B/blob/main/config.json
QWEN3_30B_A3B = {
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "tie_word_embeddings": False,
}


def test_qwen25_7b_kv_at_32k_is_exact() -> None:
    shape = shape_from_config(QWEN25_7B, name="qwen2.5-7b")
    assert shape.attention_windows == ()  # use_sliding_window false: all layers full
    expected = 2 * 28 * 4 * 128 * 32768 * 2
    assert kv_cache_bytes(shape, 32768, 1, "f16") == expected
    result = fit_model(shape, context=32768, runtime="vllm", device="a100-80gb")
    assert result.kv_cache_bytes == expected
    # llama.cpp allocates the same: 32768 is already a multiple of 256.
    assert fit_model(shape, context=32768, device="a100-80gb").kv_cache_bytes == expected


def test_qwen25_7b_params_from_config() -> None:
    shape = shape_from_config(QWEN25_7B)
    # Qwen reports 7.61B parameters for Qwen2.5-7B.
    assert 7.60e9 < shape.params_total < 7.62e9


def test_llama31_8b_at_128k_is_16_gib() -> None:
    result = fit_model("meta-llama/Llama-3.1-8B-Instruct", context=131072, device="h100")
    assert result.kv_cache_bytes == 16 * GIB
    assert result.labels["kv_cache_bytes"] == "exact"


def test_sliding_window_layers_count_their_window() -> None:
    shape = shape_from_config(GEMMA3_1B)
    assert shape.sliding_layers == 26 - 4  # layers 5, 11, 17, 23 are global
    per_token_layer = 1 * 256 * 2 * 2  # kv_heads x (K + V head dims) x 2 bytes
    expected = per_token_layer * (4 * 32768 + 22 * 512)
    assert kv_cache_bytes(shape, 32768) == expected
    # Below the window every layer holds every token.
    assert kv_cache_bytes(shape, 100) == per_token_layer * 26 * 100
    vllm = fit_model(shape, context=32768, runtime="vllm", device="l4")
    assert vllm.kv_cache_bytes == expected
    # llama.cpp's default swa_full=True keeps full-size caches for sliding layers.
    assert llamacpp_kv_cache_bytes(shape, 32768) == per_token_layer * 26 * 32768
    windowed = llamacpp_kv_cache_bytes(shape, 32768, settings=LlamaCppSettings(swa_full=False))
    assert windowed == per_token_layer * (4 * 32768 + 22 * 1024)  # pad256(512 + 512)


def test_moe_uses_total_for_memory_and_active_for_speed() -> None:
    shape = shape_from_config(QWEN3_30B_A3B)
    assert shape.is_moe
    assert 30.0e9 < shape.params_total < 31.0e9  # "30.5B total"
    assert 3.2e9 < shape.params_active < 3.5e9  # "3.3B activated"
    moe = fit_model(shape, quant="Q4_K_M", context=4096, device="rtx4090")
    assert moe.weights_bytes == pytest.approx(shape.params_total * 4.84 / 8, rel=1e-6)
    dense_equivalent = shape.model_copy(
        update={
            "num_experts": None,
            "num_experts_per_tok": None,
            "params_active": shape.params_total,
        }
    )
    dense = fit_model(dense_equivalent, quant="Q4_K_M", context=4096, device="rtx4090")
    assert dense.weights_bytes == moe.weights_bytes
    assert moe.decode_tokens_per_second is not None
    assert dense.decode_tokens_per_second is not None
    assert moe.decode_tokens_per_second > 5 * dense.decode_tokens_per_second
    assert moe.time_to_first_token_s is not None and dense.time_to_first_token_s is not None
    assert moe.time_to_first_token_s < dense.time_to_first_token_s / 5


def test_roofline_arithmetic() -> None:
    shape = shape_from_config(QWEN25_7B)
    r = fit_model(
        shape, quant="bf16", context=1024, prompt_tokens=1000, device="h100-sxm", runtime="vllm"
    )
    embedding = 152064 * 3584 * 2  # untied input embedding: indexed, not read
    read = r.weights_bytes - embedding + kv_cache_bytes(shape, 1000)
    assert r.decode_tokens_per_second == pytest.approx(3350e9 * 0.7 / read, rel=1e-3)
    assert r.time_to_first_token_s == pytest.approx(
        2 * shape.params_active * 1000 / (989e12 * 0.5), rel=1e-3
    )
    assert "memory-bound" in r.basis["decode_tokens_per_second"]
    assert r.labels["decode_tokens_per_second"] == "estimated"


def test_fits_and_max_context_on_a_small_card() -> None:
    shape = shape_from_config(QWEN25_7B)
    r = fit_model(shape, quant="bf16", context=32768, device="rtx-4060-ti-16gb")
    assert r.fits is False  # 15.2 GB of bf16 weights + 1.75 GiB KV + buffers > 16 GiB
    assert r.max_context is not None and 0 < r.max_context < 32768
    assert r.max_concurrent_sequences == 0
    assert fit_model(shape, quant="fp32", context=512, device="rtx-4060-ti-16gb").max_context == 0
    q4 = fit_model(shape, quant="Q4_K_M", context=32768, device="rtx-4060-ti-16gb")
    assert q4.fits is True
    assert q4.max_concurrent_sequences is not None and q4.max_concurrent_sequences >= 1
    assert q4.max_context is not None and q4.max_context >= 32768
    assert q4.total_bytes == q4.weights_bytes + q4.kv_cache_bytes + q4.overhead_bytes


def test_quantization_table() -> None:
    assert get_quantization("q8_0").bits_per_weight == 8.5  # 34 bytes per 32 weights
    assert get_quantization("Q4-0").bits_per_weight == 4.5
    assert get_quantization("Q4_1").bits_per_weight == 5.0
    assert get_quantization("Q4_K_M").bits_per_weight == 4.84
    assert get_quantization("bf16").bits_per_weight == 16
    assert get_quantization("nf4").bits_per_weight == 4.5
    assert get_quantization("int4").name == "awq"
    assert 4.1 < get_quantization("gptq").bits_per_weight < 4.2
    assert kv_bytes_per_element("q8_0") == 34 / 32
    assert kv_bytes_per_element("f16") == 2
    with pytest.raises(QuantizationError) as info:
        get_quantization("Q4_K_X")
    assert "did you mean" in info.value.one_line() and "Q4_K_M" in info.value.one_line()
    with pytest.raises(QuantizationError):
        kv_bytes_per_element("q3")


def test_awq_keeps_embeddings_in_16_bits() -> None:
    shape = shape_from_config(QWEN25_7B)
    r = fit_model(shape, quant="awq", runtime="vllm", device="l40s")
    embed = 2 * 152064 * 3584
    expected = (shape.params_total - embed) * (4 + 20 / 128) / 8 + embed * 2
    assert r.weights_bytes == round(expected)


def test_one_runtime_list_shared_by_strategies_quants_and_constraints() -> None:
    from pydantic import ValidationError

    from llmpick.fit.quant import list_quantizations
    from llmpick.recommend import Constraints

    assert RUNTIMES[0] == "llamacpp"  # the default, listed first
    assert all(get_runtime(name).name == name for name in RUNTIMES)
    named = {r for q in list_quantizations() for r in q.runtimes}
    assert named == set(RUNTIMES)  # every format names known runtimes, every runtime loads some
    assert runtime_for_backend("hf") == "transformers"
    assert runtime_for_backend("llamacpp") == runtime_for_backend("openai") == "llamacpp"
    with pytest.raises(UsageError, match="unknown runtime"):
        get_runtime("tgi")
    assert Constraints(runtime="vllm").runtime == "vllm"
    with pytest.raises(ValidationError, match="unknown runtime"):
        Constraints(runtime="tgi")
    assert Constraints.model_json_schema()["properties"]["runtime"]["enum"] == list(RUNTIMES)


def test_llamacpp_pads_context_to_256() -> None:
    assert llamacpp_n_ctx(1000) == 1024
    assert llamacpp_n_ctx(2048) == 2048


@pytest.mark.slow
def test_gguf_weights_are_exact(smollm2_path: Path) -> None:
    shape = shape_from_gguf(smollm2_path)
    reader = GGUFReader(str(smollm2_path))
    assert shape.weights_bytes_exact == sum(int(t.n_bytes) for t in reader.tensors)
    assert shape.file_quant == "Q4_1"
    assert (shape.num_layers, shape.num_kv_heads, shape.head_dim) == (30, 3, 64)
    r = fit_model(smollm2_path.as_posix(), context=2048, device="cpu")
    assert r.weights_bytes == shape.weights_bytes_exact
    assert r.labels["weights_bytes"] == "exact"
    # llama.cpp logs "size = 45.00 MiB (2048 cells, 30 layers)" for this model.
    assert r.kv_cache_bytes == 45 * 1024**2


@pytest.mark.slow
def test_gemma3_gguf_sliding_layers(gemma_path: Path) -> None:
    shape = resolve_shape("gemma-3-270m")
    assert shape.source == "bundled"
    assert shape.sliding_layers == 15 and shape.num_layers == 18
    assert max(w or 0 for w in shape.windows()) == 512
    # llama.cpp logs 24.00 + 120.00 MiB at n_ctx 8192 (full-size SWA cache).
    assert llamacpp_kv_cache_bytes(shape, 8192) == 144 * 1024**2


def test_malformed_config(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"not a valid config\.json"):
        resolve_shape(str(bad))
    bad.write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        resolve_shape(str(bad))
    with pytest.raises(ModelFileError):
        resolve_shape(str(tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelFileError):
        resolve_shape(str(junk))


def test_unknown_model_suggests() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        resolve_shape("Llama-3.1-8B-Instruc")
    assert "Llama-3.1-8B-Instruct" in info.value.one_line()


def test_config_directory_and_device_object(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN25_7B))
    r = fit_model(str(tmp_path), quant="Q4_K_M", device=get_device("rtx3090"))
    assert r.model == tmp_path.name and r.model_source == "config"


def _llmpick(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from llmpick.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_fit_json_keys(smollm2_path: Path) -> None:
    out = _llmpick(
        "fit", "smollm2-135m-instruct", "--context", "2048", "--device", "cpu", "--format", "json"
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for key in (
        "weights_bytes",
        "kv_cache_bytes",
        "overhead_bytes",
        "total_bytes",
        "fits",
        "max_context",
        "max_concurrent_sequences",
        "decode_tokens_per_second",
        "time_to_first_token_s",
        "basis",
        "device",
    ):
        assert key in data
    assert data["kv_cache_bytes"] == 45 * 1024**2
    assert data["device"]["memory_bytes"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("fit", "no-such-model-xyz"), "unknown model"),
        (("fit", "meta-llama/Llama-3.1-8B-Instruct", "--device", "rtx9090"), "rtx4090"),
        (("fit", "meta-llama/Llama-3.1-8B-Instruct", "--quant", "Q9_K"), "unknown quantization"),
        (("fit", "meta-llama/Llama-3.1-8B-Instruct", "--runtime", "tgi"), "unknown runtime"),
    ],
)
def test_cli_fit_bad_input_is_one_line(args: tuple[str, ...], needle: str) -> None:
    out = _llmpick(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
