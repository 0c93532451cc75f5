"""Which benchmarks speak for which task, which specialization suits it, and its speed floor.

Benchmark names are the catalog's lower-case names. A task's quality is fitted on the
task's benchmarks with the general quality as prior (:mod:`llmpick.recommend.quality`), so
a task with few reported figures (vision, tool use, writing) still ranks, with wider
intervals. ``--languages`` adds the language's own suites (C-Eval and CMMLU for Chinese).
"""

from __future__ import annotations

__all__ = [
    "GENERAL_BENCHMARKS",
    "LANGUAGE_BENCHMARKS",
    "TASKS",
    "TASK_BENCHMARKS",
    "TASK_MODALITIES",
    "TASK_SPECIALIZATION",
    "USE_CASE_FLOORS",
    "task_use_case",
]

TASK_BENCHMARKS: dict[str, tuple[str, ...]] = {
    "chat": (
        "arena-hard",
        "mt-bench",
        "alpacaeval",
        "livebench",
        "ifeval",
        "mmlu-pro",
        "mmlu-redux",
        "mmlu",
    ),
    "coding": (
        "humaneval",
        "humaneval+",
        "mbpp",
        "mbpp+",
        "livecodebench",
        "bigcodebench",
        "aider",
        "mceval",
        "mdeval",
        "multipl-e",
        "swe-bench-verified",
    ),
    "math": ("math", "math-500", "gsm8k", "aime24", "aime25", "mgsm"),
    "reasoning": ("gpqa-diamond", "gpqa", "mmlu-pro", "bbh", "aime24", "aime25", "arc-c"),
    "multilingual": ("mmmlu", "mgsm", "multilingual-mmlu", "flores", "wmt24++", "mmlu-pro"),
    "long-context": ("ruler", "longbench", "longbench-v2", "infinitebench", "niah", "mmlu-pro"),
    "extraction": ("ifeval", "mmlu-pro", "mmlu-redux", "mmlu"),
    "translation": ("wmt24++", "flores", "mmmlu", "mgsm"),
    "general": (
        "mmlu-pro",
        "mmlu-redux",
        "mmlu",
        "gpqa",
        "gpqa-diamond",
        "ifeval",
        "arena-hard",
        "livebench",
        "math",
        "humaneval",
    ),
    "vision": ("mmmu", "mathvista", "docvqa", "chartqa", "ai2d", "ocrbench"),
    "tool-use": ("bfcl", "tau-bench", "tau2-bench", "nexus", "ifeval"),
    "writing": ("creative-writing", "eq-bench", "writingbench", "arena-hard", "alpacaeval"),
}

#: the general quality every task's quality is shrunk toward: knowledge, reasoning and
#: instruction suites only (no math or code), so a narrow specialist's specialty does
#: not become its general standing
GENERAL_BENCHMARKS: tuple[str, ...] = (
    "mmlu-pro",
    "mmlu-redux",
    "mmlu",
    "gpqa",
    "gpqa-diamond",
    "ifeval",
    "arena-hard",
    "livebench",
    "mt-bench",
    "alpacaeval",
    "bbh",
    "arc-c",
)

#: language-specific suites weighed when ``--languages`` names the language
LANGUAGE_BENCHMARKS: dict[str, tuple[str, ...]] = {
    "zh": ("c-eval", "cmmlu", "alignbench"),
    "ja": ("jmmlu",),
    "ko": ("kmmlu",),
}

#: A model whose specialization matches the task gets a quality bonus.
TASK_SPECIALIZATION: dict[str, tuple[str, ...]] = {
    "coding": ("coder",),
    "math": ("math",),
    "reasoning": ("reasoning",),
    "translation": ("translation",),
    "chat": ("chat",),
    "vision": ("vision",),
}

#: the input modality a task needs (a hard filter)
TASK_MODALITIES: dict[str, tuple[str, ...]] = {"vision": ("image",)}

#: usable decode rate per use case, tokens/s per sequence: a chat reply read as it
#: streams (people read about 5-8 tokens/s), code completion that must keep up with
#: typing, and batch work where only the aggregate rate matters
USE_CASE_FLOORS: dict[str, float] = {"interactive": 8.0, "code-completion": 20.0, "batch": 0.0}

_TASK_USE_CASE = {"coding": "code-completion", "extraction": "batch", "translation": "interactive"}


def task_use_case(task: str) -> str:
    """The default use case (speed floor) of ``task``."""
    return _TASK_USE_CASE.get(task, "interactive")


TASKS: tuple[str, ...] = tuple(TASK_BENCHMARKS)
