"""Training rows: read as ``eval`` reads them, checked, split once and for good, tokenized.

A row is a prompt (the messages ``eval`` would send) and its answer: the
``expected``/``answer``/``reference`` column, or the last message when a
``messages`` row ends with the assistant's turn. Problems are found before any
training and reported on one line each (:class:`~llmpick.errors.DataError`):
no answer column, empty prompts or answers, rows longer than the maximum
sequence length.

The held-out split is drawn with the seed and written to ``split.json`` in the
output folder; a later run (a resume) reads it back instead of drawing again,
and refuses data that changed under it.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmpick.backends.base import Message
from llmpick.errors import DataError
from llmpick.evaluate.dataset import EXPECTED_COLUMNS, Dataset, Row, build_rows, read_records

__all__ = [
    "EncodedExample",
    "Example",
    "Split",
    "encode_examples",
    "load_examples",
    "load_or_make_split",
    "write_heldout",
]


class Example(BaseModel):
    """One training row: the prompt's messages and the answer the model should give."""

    model_config = ConfigDict(extra="forbid")

    id: str
    messages: list[Message]
    answer: str
    data: dict[str, Any]


class EncodedExample(BaseModel):
    """Token ids of prompt + answer, and the labels (-100 outside the answer)."""

    id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def answer_tokens(self) -> int:
        """Tokens the loss is computed on."""
        return sum(1 for t in self.labels if t != -100)


class Split(BaseModel):
    """Which row ids train and which are held out; stored in ``split.json``."""

    model_config = ConfigDict(extra="forbid")

    seed: int
    source: str
    data_sha256: str
    holdout_source: str | None = None
    train_ids: list[str]
    holdout_ids: list[str]


def load_examples(path: Path) -> tuple[list[Example], str]:
    """Read and check ``path``; the examples and a hash of their content."""
    records = read_records(path)
    _, rows, expected_col = build_rows(records, source=str(path))
    examples: list[Example] = []
    empty: list[str] = []
    for row in rows:
        messages, answer = _prompt_and_answer(row, expected_col, path)
        if answer is None or not answer.strip():
            empty.append(row.id)
            continue
        examples.append(Example(id=row.id, messages=messages, answer=answer, data=row.data))
    if empty:
        raise DataError(
            f"{path}: {len(empty)} row(s) have an empty answer (rows {_ids(empty)})",
            "fill in the answer or drop those rows; nothing was trained",
        )
    digest = Dataset(name=path.stem, source=str(path), columns=[], rows=rows).sha256()
    return examples, digest


def _prompt_and_answer(
    row: Row, expected_col: str | None, path: Path
) -> tuple[list[Message], str | None]:
    if expected_col is not None and row.messages[-1].role != "assistant":
        return row.messages, row.expected
    if row.messages[-1].role == "assistant":
        if len(row.messages) < 2:
            raise DataError(f"{path}, row {row.id}: the messages hold only an assistant turn")
        return row.messages[:-1], row.messages[-1].content
    raise DataError(
        f"{path} has no answer column (looked for {', '.join(EXPECTED_COLUMNS)}) "
        "and its messages do not end with an assistant turn",
        "add an 'expected' column with the answer each row should get",
    )


def _ids(ids: list[str], most: int = 5) -> str:
    shown = ", ".join(ids[:most])
    return shown + (f" and {len(ids) - most} more" if len(ids) > most else "")


def load_or_make_split(
    out: Path,
    examples: list[Example],
    data_sha256: str,
    source: str,
    holdout: float,
    seed: int,
    heldout: list[Example] | None = None,
    heldout_source: str | None = None,
) -> Split:
    """The split stored in ``out/split.json``, or a new seeded one (then stored)."""
    file = out / "split.json"
    if file.exists():
        stored = Split.model_validate_json(file.read_text(encoding="utf-8"))
        if stored.data_sha256 != data_sha256 or stored.seed != seed:
            raise DataError(
                f"{source} (or --seed) changed since {out} was started: its split "
                "no longer matches",
                "use a new --out, or pass --restart to train from scratch",
            )
        return stored
    if heldout is not None:
        split = Split(
            seed=seed, source=source, data_sha256=data_sha256, holdout_source=heldout_source,
            train_ids=[e.id for e in examples], holdout_ids=[e.id for e in heldout],
        )  # fmt: skip
    else:
        ids = [e.id for e in examples]
        random.Random(seed).shuffle(ids)
        n_holdout = max(1, round(len(ids) * holdout))
        if len(ids) - n_holdout < 1:
            raise DataError(
                f"{source} has {len(ids)} row(s): too few to hold {n_holdout} out and train",
                "add rows, lower --holdout or give --eval-data",
            )
        order = {e.id: i for i, e in enumerate(examples)}
        split = Split(
            seed=seed, source=source, data_sha256=data_sha256,
            train_ids=sorted(ids[n_holdout:], key=order.__getitem__),
            holdout_ids=sorted(ids[:n_holdout], key=order.__getitem__),
        )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".split.{os.getpid()}.tmp")
    tmp.write_text(split.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp, file)
    return split


def encode_examples(
    examples: list[Example], tokenizer: Any, max_seq_len: int, source: str
) -> list[EncodedExample]:
    """Tokenize through the chat template; the loss covers only the assistant's turn.

    The prompt is rendered with the generation prompt (what the model reads
    before answering), the whole conversation with the answer as the
    assistant's turn; labels are the tokens past the prompt (the answer and the
    template's end of turn, so the model learns to stop).
    """
    encoded: list[EncodedExample] = []
    too_long: list[tuple[str, int]] = []
    for example in examples:
        prompt_ids, full_ids = _render(tokenizer, example)
        if len(full_ids) > max_seq_len:
            too_long.append((example.id, len(full_ids)))
            continue
        labels = [-100] * len(prompt_ids) + full_ids[len(prompt_ids) :]
        encoded.append(EncodedExample(id=example.id, input_ids=full_ids, labels=labels))
    if too_long:
        longest = max(n for _, n in too_long)
        raise DataError(
            f"{source}: {len(too_long)} row(s) are longer than --max-seq-len {max_seq_len} "
            f"tokens (rows {_ids([i for i, _ in too_long])}; longest {longest})",
            f"raise --max-seq-len to at least {longest}, or shorten those rows",
        )
    return encoded


def _render(tokenizer: Any, example: Example) -> tuple[list[int], list[int]]:
    messages = [m.model_dump() for m in example.messages]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            [*messages, {"role": "assistant", "content": example.answer}], tokenize=False
        )
        if full.startswith(prompt):
            prompt_ids = _ids_of(tokenizer, prompt)
            answer_ids = _ids_of(tokenizer, full[len(prompt) :])
            return prompt_ids, prompt_ids + answer_ids
    # no template (a base model), or one whose prompt is not a prefix of the conversation:
    # the plain transcript the backends send such models, then the answer and EOS
    text = "\n\n".join(m["content"] for m in messages) + "\n"
    prompt_ids = _ids_of(tokenizer, text)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return prompt_ids, prompt_ids + _ids_of(tokenizer, example.answer) + eos


def _ids_of(tokenizer: Any, text: str) -> list[int]:
    # special=True semantics: the template's markers are single special tokens
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def write_heldout(path: Path, examples: list[Example]) -> None:
    """The held-out rows as JSONL: the proof's dataset (``llmpick eval FILE`` re-runs it).

    Each row keeps its columns (scorers may read them), with the prompt as
    ``messages`` and the answer as ``expected``.
    """
    lines = [
        json.dumps(
            {
                **e.data,
                "id": e.id,
                "messages": [m.model_dump() for m in e.messages],
                "expected": e.answer,
            },
            ensure_ascii=False,
            default=str,
        )
        for e in examples
    ]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
