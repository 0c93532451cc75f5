"""Which benchmarks speak for which task, and which specialization suits it.

Benchmark names are the catalog's lower-case names. A task's score uses every
listed benchmark a model reports; a model reporting none of them is ranked on a
weak size prior with low confidence.
"""

from __future__ import annotations

__all__ = ["TASKS", "TASK_BENCHMARKS", "TASK_SPECIALIZATION"]

TASK_BENCHMARKS: dict[str, tuple[str, ...]] = {
    "chat": ("arena-hard", "mt-bench", "alpacaeval", "ifeval", "mmlu-pro", "mmlu-redux", "mmlu"),
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
    "multilingual": ("mmmlu", "mgsm", "multilingual-mmlu", "flores", "mmlu-pro", "mmlu"),
    "long-context": ("ruler", "longbench", "infinitebench", "mmlu-pro"),
    "extraction": ("ifeval", "mmlu-pro", "mmlu-redux", "mmlu"),
    "translation": ("wmt24++", "flores", "mmmlu", "mgsm"),
    "general": ("mmlu-pro", "mmlu-redux", "mmlu", "gpqa", "ifeval", "math", "humaneval"),
}

#: A model whose specialization matches the task gets a quality bonus.
TASK_SPECIALIZATION: dict[str, tuple[str, ...]] = {
    "coding": ("coder",),
    "math": ("math",),
    "reasoning": ("reasoning",),
    "translation": ("translation",),
    "chat": ("chat",),
}

TASKS: tuple[str, ...] = tuple(TASK_BENCHMARKS)
