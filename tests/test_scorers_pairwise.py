"""Pairwise judging: both orders, flips as ties, Bradley–Terry ranking with intervals.

The logic tests use scripted judges (plain functions of the prompt, standing in
for a model with a known bias); one slow test drives a real bundled model.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import numpy as np
import pytest

from llmpick.backends.base import Generation, GenerationRequest, Usage, collect
from llmpick.evaluate.scorers.pairwise import bradley_terry, pairwise_compare, parse_verdict


def _generation(text: str) -> Generation:
    return Generation(output=text, usage=Usage(), start_s=0.0, first_token_s=0.0, end_s=0.0)


def _responses(prompt: str) -> tuple[str, str]:
    first = re.search(r"A's response\]\n(.*?)\n\[The end of assistant A", prompt, re.DOTALL)
    second = re.search(r"B's response\]\n(.*?)\n\[The end of assistant B", prompt, re.DOTALL)
    assert first and second
    return first.group(1), second.group(1)


async def longer_wins(request: GenerationRequest) -> Generation:
    """A consistent judge: the longer answer wins, equal lengths tie."""
    a, b = _responses(request.messages[-1].content)
    verdict = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "C"
    return _generation(f"Comparing lengths.\n[[{verdict}]]")


async def always_first(request: GenerationRequest) -> Generation:
    """A fully position-biased judge."""
    return _generation("Assistant A is better.\n[[A]]")


ROWS = {f"r{i}": f"question {i}" for i in range(12)}
OUTPUTS = {
    "long": {r: "a long and detailed answer" for r in ROWS},
    "medium": {r: "medium answer" for r in ROWS},
    "short": {r: "short" for r in ROWS},
}


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("... [[A]]", "A"),
        ("[[B]]", "B"),
        ("[[C]]", "tie"),
        ("First I thought [[A]] but actually [[B]]", "B"),
        ("Verdict: tie", "tie"),
        ("verdict - A", "A"),
        ("no idea", None),
    ],
)
def test_parse_verdict(text: str, verdict: str | None) -> None:
    assert parse_verdict(text) == verdict


def test_bradley_terry_two_players_by_hand() -> None:
    # 3 wins to 1, plus a virtual tie: p_a / p_b = 3.5 / 1.5
    strengths = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]))
    half = 0.5 * math.log(3.5 / 1.5)
    assert strengths == pytest.approx([half, -half])
    assert bradley_terry(np.zeros((2, 2))) == pytest.approx([0.0, 0.0])


def test_bradley_terry_satisfies_the_likelihood_equations() -> None:
    wins = np.array([[0, 7, 9], [3, 0, 6], [1, 4, 0]], dtype=float)
    s = bradley_terry(wins, prior=0.0)
    p = np.exp(s)
    games = wins + wins.T
    expected_wins = (games * p[:, None] / (p[:, None] + p[None, :])).sum(axis=1)
    assert expected_wins == pytest.approx(wins.sum(axis=1), rel=1e-6)
    assert s.mean() == pytest.approx(0.0, abs=1e-12)


def test_consistent_judge_ranks_and_counts_wins() -> None:
    result = asyncio.run(pairwise_compare(longer_wins, ROWS, OUTPUTS, n_boot=200))
    assert result.ranking == ["long", "medium", "short"]
    assert result.judge_calls == 3 * 12 * 2
    pair = next(p for p in result.pairs if (p.a, p.b) == ("long", "short"))
    assert (pair.n, pair.wins_a, pair.wins_b, pair.ties, pair.flips) == (12, 12, 0, 0, 0)
    low, high = result.ci95["long"]
    assert low - 1e-6 <= result.strengths["long"] <= high + 1e-6
    assert result.strengths["long"] > result.strengths["medium"] > result.strengths["short"]


def test_position_bias_becomes_ties() -> None:
    result = asyncio.run(pairwise_compare(always_first, ROWS, OUTPUTS, n_boot=100))
    for pair in result.pairs:
        assert (pair.wins_a, pair.wins_b, pair.ties, pair.flips) == (0, 0, 12, 12)
    assert all(abs(s) < 1e-9 for s in result.strengths.values())


def test_only_rows_both_models_answered_are_compared() -> None:
    outputs = {"x": {"r0": "aaaa", "r1": "aa"}, "y": {"r0": "a"}}
    rows = [{"id": "r0", "prompt": "q0"}, {"id": "r1", "prompt": "q1"}]
    result = asyncio.run(pairwise_compare(longer_wins, rows, outputs, n_boot=10))
    assert result.pairs[0].n == 1 and result.n_rows == 1
    assert all(math.isnan(v) for v in result.ci95["x"])  # one row: no interval


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pairwise_with_a_real_bundled_judge(smollm2_backend: Any) -> None:
    async def judge(request: GenerationRequest) -> Generation:
        request = request.model_copy(
            update={"params": request.params.model_copy(update={"max_tokens": 32})}
        )
        return await collect(smollm2_backend, request)

    rows = {"r0": "What is 2 + 2?", "r1": "Name the capital of France."}
    outputs = {"good": {"r0": "4", "r1": "Paris"}, "bad": {"r0": "7", "r1": "Berlin"}}
    result = asyncio.run(pairwise_compare(judge, rows, outputs, concurrency=1, n_boot=50))
    pair = result.pairs[0]
    assert pair.n == 2 and pair.wins_a + pair.wins_b + pair.ties == 2
    assert result.judge_calls == 4
    assert sorted(result.ranking) == ["bad", "good"]
