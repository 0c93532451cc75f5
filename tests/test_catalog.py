"""The catalog: schema, sources, lookups and the known traps."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmpick.catalog import Catalog, ModelCard, load_catalog
from llmpick.catalog.schema import Architecture, Benchmark, Context, Params
from llmpick.errors import CatalogError, ModelNotFoundError

DATA = Path(__file__).parents[1] / "src" / "llmpick" / "catalog" / "data"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_every_data_file_loads_and_is_one_family_per_file(catalog: Catalog) -> None:
    files = sorted(p.name for p in DATA.glob("*.yaml"))
    for name in ("llama.yaml", "qwen.yaml", "qwen3.yaml", "gemma.yaml", "gpt-oss.yaml"):
        assert name in files
    assert Catalog.from_files(DATA.glob("*.yaml")).cards == catalog.cards
    assert len(catalog) >= 50


def test_ids_aliases_and_old_ids_are_unique(catalog: Catalog) -> None:
    seen: set[str] = set()
    for card in catalog.cards:
        for name in card.names:
            assert name.lower() not in seen, name
            seen.add(name.lower())


def _numbers_without_source(card: ModelCard) -> list[str]:
    missing = []
    groups = [
        card.params,
        card.architecture,
        card.context,
        card.max_output_tokens,
        card.training_tokens,
        *card.benchmarks,
        *card.prices,
    ]
    for group in groups:
        if group is not None and not getattr(group, "source", "").strip():
            missing.append(type(group).__name__)
    if not card.license.url:
        missing.append("license")
    return missing


def test_every_number_carries_a_source(catalog: Catalog) -> None:
    for card in catalog.cards:
        assert _numbers_without_source(card) == [], card.id
        assert "config.json" in card.architecture.source, card.id
        for b in card.benchmarks:
            assert 0 <= b.value <= 100
            assert b.name == b.name.lower()


def test_schema_rejects_a_benchmark_without_source() -> None:
    with pytest.raises(ValidationError):
        Benchmark.model_validate({"name": "mmlu", "value": 70.0})
    with pytest.raises(ValidationError):
        Benchmark.model_validate({"name": "mmlu", "value": 70.0, "source": ""})
    with pytest.raises(ValidationError):
        Context.model_validate({"native": 32768, "max": 131072})


def test_schema_rejects_unknown_fields_and_bad_values(catalog: Catalog) -> None:
    raw = catalog.get("qwen2.5-7b-instruct").model_dump()
    with pytest.raises(ValidationError):
        ModelCard.model_validate({**raw, "colour": "blue"})
    with pytest.raises(ValidationError):
        ModelCard.model_validate({**raw, "languages": ["english"]})
    with pytest.raises(ValidationError):
        Params.model_validate({"total": 10, "active": 20, "source": "https://example.org/x"})
    with pytest.raises(ValidationError):  # max above native needs the method
        Context.model_validate({"native": 32768, "max": 131072, "source": "https://example.org/x"})


def test_bad_yaml_file_is_a_catalog_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("models:\n  - id: a/b\n    family: x\n")
    with pytest.raises(CatalogError, match=r"bad\.yaml: model 'a/b'"):
        Catalog.from_files([tmp_path / "bad.yaml"])
    (tmp_path / "bad.yaml").write_text("models: [\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        Catalog.from_files([tmp_path / "bad.yaml"])


def test_duplicate_alias_is_a_catalog_error(catalog: Catalog) -> None:
    card = catalog.get("qwen2.5-7b-instruct")
    twin = card.model_copy(update={"id": "someone/else", "old_ids": []})
    with pytest.raises(CatalogError, match="used by both"):
        Catalog([card, twin])


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("META-LLAMA/llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("llama-3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct"),
        ("Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct"),
        ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("gemma-3-270m", "google/gemma-3-270m"),
    ],
)
def test_lookup(catalog: Catalog, name: str, expected: str) -> None:
    assert catalog.get(name).id == expected
    assert name in catalog


def test_unknown_model_suggests_close_matches(catalog: Catalog) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        catalog.get("qwen2.5-7b-instrct")
    assert "Qwen/Qwen2.5-7B-Instruct" in info.value.hint
    assert info.value.hint.count(",") <= 2  # at most three suggestions
    assert "\n" not in info.value.one_line()


def test_bundled_models_are_in_the_catalog(catalog: Catalog) -> None:
    from llmpick.backends.bundled import BUNDLED_MODELS

    for bundled in BUNDLED_MODELS.values():
        assert catalog.get(bundled.catalog_id).id == bundled.catalog_id


def test_trap_qwen25_7b_context(catalog: Catalog) -> None:
    card = catalog.get("Qwen/Qwen2.5-7B-Instruct")
    assert (card.context.native, card.context.max) == (32768, 131072)
    assert card.context.extension is not None and "YaRN" in card.context.extension
    a = card.architecture
    assert (a.num_hidden_layers, a.num_key_value_heads, a.head_dim) == (28, 4, 128)
    # The issue's exact KV figure: 2 x 28 x 4 x 128 x 32768 x 2 bytes.
    assert a.kv_cache_bytes_per_token(2) * 32768 == 2 * 28 * 4 * 128 * 32768 * 2


def test_trap_llama31_8b_architecture_and_official_scores(catalog: Catalog) -> None:
    card = catalog.get("llama-3.1-8b-instruct")
    a = card.architecture
    assert (a.num_hidden_layers, a.num_key_value_heads, a.head_dim) == (32, 8, 128)
    assert a.kv_cache_bytes_per_token(2) * 131072 == 16 * 1024**3  # 16 GiB at 128K
    official = {b.value for b in card.scores("mmlu") if b.origin == "maker"}
    quoted = {b.value for b in card.scores("mmlu") if b.origin == "third-party"}
    assert 69.4 in official and 77.5 in quoted


def test_trap_moe_active_below_total(catalog: Catalog) -> None:
    moe = [c for c in catalog.cards if c.architecture.is_moe]
    assert {c.id for c in moe} >= {
        "Qwen/Qwen3-30B-A3B",
        "Qwen/Qwen3-235B-A22B",
        "Qwen/Qwen2-57B-A14B-Instruct",
        "Qwen/Qwen3-Coder-480B-A35B-Instruct",
        "openai/gpt-oss-20b",
        "openai/gpt-oss-120b",
    }
    for card in moe:
        assert card.params.active is not None
        assert card.params.active < card.params.total
    for card in catalog.cards:
        if not card.architecture.is_moe:
            assert card.params.active is None


def test_sliding_window_layouts(catalog: Catalog) -> None:
    gemma = catalog.get("google/gemma-3-27b-it").architecture.attention_windows()
    assert len(gemma) == 62 and gemma[:6] == [1024] * 5 + [None]
    oss = catalog.get("openai/gpt-oss-20b").architecture.attention_windows()
    assert oss[:4] == [128, None, 128, None]
    assert set(
        catalog.get("mistralai/Mistral-7B-Instruct-v0.1").architecture.attention_windows()
    ) == {4096}
    assert set(catalog.get("qwen2.5-7b-instruct").architecture.attention_windows()) == {None}
    small = catalog.get("google/gemma-3-270m").architecture
    assert small.sliding_window == 512 and small.num_hidden_layers == 18


def test_architecture_validation() -> None:
    base = dict(
        model_type="x",
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=3,
        head_dim=8,
        hidden_size=32,
        intermediate_size=64,
        vocab_size=10,
        tie_word_embeddings=False,
        max_position_embeddings=128,
        source="https://example.org/c",
    )
    with pytest.raises(ValidationError, match="multiple"):
        Architecture.model_validate(base)
    with pytest.raises(ValidationError, match="layer_types"):
        Architecture.model_validate(
            {
                **base,
                "num_key_value_heads": 2,
                "sliding_window": 4,
                "layer_types": ["full_attention"],
            }
        )


def test_licenses(catalog: Catalog) -> None:
    llama = catalog.get("llama-3.1-8b-instruct").license
    assert llama.commercial_use and not llama.permissive
    assert any("700M" in r for r in llama.restrictions)
    assert catalog.get("qwen2.5-7b-instruct").license.permissive
    assert not catalog.get("qwen2.5-3b-instruct").license.commercial_use
    assert not catalog.get("qwen2.5-72b-instruct").license.permissive
    assert not catalog.get("command-a-translate").license.commercial_use


def test_search(catalog: Catalog) -> None:
    coders = catalog.search(specialization="coder", permissive=True, max_params=40_000_000_000)
    assert "Qwen/Qwen2.5-Coder-32B-Instruct" in {c.id for c in coders}
    assert all(c.context.max >= 100_000 for c in catalog.search(min_context=100_000))
    assert all("zh" in c.languages for c in catalog.search(language="zh"))


def test_dates_are_dates(catalog: Catalog) -> None:
    for card in catalog.cards:
        assert card.release_date is None or isinstance(card.release_date, dt.date)


def test_issue14_findings_corrected(catalog: Catalog) -> None:
    # Qwen2 report, Table 1: 4.5T tokens for 57B-A14B (7T is the dense models' figure).
    tokens = catalog.get("Qwen/Qwen2-57B-A14B-Instruct").training_tokens
    assert tokens is not None and tokens.value == 4_500_000_000_000
    # Meta Llama 3 licence: 1.b.v and the "Llama 3" naming / "Built with Meta Llama 3" clause.
    terms = " ".join(catalog.get("Meta-Llama-3-8B-Instruct").license.restrictions)
    assert "improve any other large language model" in terms
    assert '"Llama 3"' in terms and "Built with Meta Llama 3" in terms
    # Context is the total window; the input cap is its own field.
    translate = catalog.get("command-a-translate").context
    assert (translate.max, translate.max_input_tokens) == (16384, 8192)
    # A date is the revision of the source holding the value (October 2024 card for 48.0).
    math = next(b for b in catalog.get("llama-3.2-3b-instruct").scores("math"))
    assert (math.value, str(math.date)) == (48.0, "2024-10-24")
