"""The ``judge`` scorer: a judge model grades each output 1–10 with reasons.

The judge is any backend (``--judge MODEL``); the runner passes a
:data:`~llmpick.evaluate.scorers.base.JudgeFn`. The reply is asked to end with
``Score: N``; the value is ``(N - 1) / 9`` so 1 → 0.0 and 10 → 1.0. A judge
grading its own model's outputs favours them (Zheng et al. 2023, "Judging
LLM-as-a-Judge", arXiv:2306.05685, self-enhancement bias):
:func:`self_judging` names such cases so the caller can warn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePath

from llmpick.backends.base import GenerationRequest, ModelIdentity
from llmpick.errors import ScorerError
from llmpick.evaluate.scorers.base import Cell, JudgeFn, Score, Scorer

__all__ = ["DEFAULT_RUBRIC", "judge", "parse_judge_score", "self_judging"]

DEFAULT_RUBRIC = (
    "Judge how well the response answers the question: correctness first, then "
    "completeness, clarity and concision."
)

_SYSTEM = "You are a strict, fair evaluator of AI assistant responses."

_TEMPLATE = """{rubric}

[Question]
{question}
{reference}
[Response]
{response}
[End of response]

Give your reasons in a few sentences, then on the last line write the score
from 1 (useless) to 10 (perfect) exactly as "Score: N"."""

_SCORE_PATTERNS = (
    r"(?i:score|rating)\s*[:=]?\s*\**\s*\[*\s*(\d+(?:\.\d+)?)\s*\]*(?:\s*(?:/|out of)\s*10)?",
    r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b",
)


def parse_judge_score(text: str) -> float | None:
    """Return the 1–10 score in a judge's reply (the last "Score: N"), or None."""
    for pattern in _SCORE_PATTERNS:
        for found in reversed(re.findall(pattern, text)):
            value = float(found)
            if 1.0 <= value <= 10.0:
                return value
    return None


def _reasons(text: str) -> str:
    kept = [
        line
        for line in text.strip().splitlines()
        if not re.fullmatch(r"\W*(?i:score|rating)\W*\s*[:=].*", line.strip())
    ]
    reasons = " ".join(" ".join(kept).split())
    return reasons[:1000]


def judge(
    rubric: str | None = None,
    max_tokens: int = 512,
    temperature: float = 0.0,
    judge: JudgeFn | None = None,
) -> Scorer:
    """Ask the judge model for a 1–10 grade; value = (N - 1) / 9, explanation = its reasons.

    ``judge`` is injected by :func:`~llmpick.evaluate.scorers.build_scorer`
    from ``--judge MODEL``; without one this raises ScorerError.
    """
    if judge is None:
        raise ScorerError("the judge scorer needs a judge model", "name one with --judge MODEL")
    judge_fn: JudgeFn = judge
    text_rubric = str(rubric) if rubric else DEFAULT_RUBRIC

    async def score(cell: Cell) -> Score:
        reference = f"\n[Reference answer]\n{cell.expected}\n" if cell.expected else ""
        request = GenerationRequest.from_prompt(
            _TEMPLATE.format(
                rubric=text_rubric,
                question=cell.prompt,
                reference=reference,
                response=cell.output,
            ),
            system=_SYSTEM,
            max_tokens=int(max_tokens),
            temperature=float(temperature),
            seed=0,
        )
        generation = await judge_fn(request)
        grade = parse_judge_score(generation.output)
        if grade is None:
            return Score(
                value=None,
                label="unparsed",
                explanation="judge gave no 'Score: N': "
                + " ".join(generation.output.split())[:300],
            )
        return Score(
            value=(grade - 1.0) / 9.0,
            label=f"{grade:g}/10",
            explanation=_reasons(generation.output),
        )

    return score


def _stem(name: str) -> str:
    """Strip a model name of path, extension or quantization suffix, for loose matching."""
    stem = PurePath(name.split("@")[0]).name.lower()
    stem = re.sub(r"\.gguf$", "", stem)
    stem = re.sub(r"[-_.](?:i?q\d[\w]*|f16|bf16|f32|fp16|int[48]|awq|gptq)$", "", stem)
    return stem


def _same_model(a: ModelIdentity | str, b: ModelIdentity | str) -> bool:
    if isinstance(a, ModelIdentity) and isinstance(b, ModelIdentity):
        if a.key() == b.key():
            return True
        if a.weights_sha256 and a.weights_sha256 == b.weights_sha256:
            return True
    name_a = a.model if isinstance(a, ModelIdentity) else a
    name_b = b.model if isinstance(b, ModelIdentity) else b
    return name_a == name_b or _stem(name_a) == _stem(name_b)


def self_judging(
    judge_identity: ModelIdentity | str,
    model_identities: dict[str, ModelIdentity | str] | Iterable[ModelIdentity | str],
) -> list[str]:
    """One warning per candidate model that is the judge itself (same weights or name).

    ``model_identities`` maps display names to identities (or is a plain list).
    """
    items = (
        list(model_identities.items())
        if isinstance(model_identities, dict)
        else [(m.model if isinstance(m, ModelIdentity) else m, m) for m in model_identities]
    )
    judge_name = (
        judge_identity.model if isinstance(judge_identity, ModelIdentity) else judge_identity
    )
    return [
        f"the judge ({judge_name}) is also the candidate {name}: it grades its own outputs, "
        "which favours them (self-enhancement bias); use a different judge model"
        for name, identity in items
        if _same_model(judge_identity, identity)
    ]
