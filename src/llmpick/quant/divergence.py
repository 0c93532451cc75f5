"""How far a variant's next-token distributions are from the reference's.

The metrics are those of llama.cpp's ``perplexity --kl-divergence``
(``tools/perplexity/perplexity.cpp``, ``kl_divergence()`` and
``log_softmax()``; definitions in ``docs/metrics.md``), computed from the
logits of the reference and of the variant on the same token sequences:

- KLD at a position = sum over the vocabulary of ``p_ref * (log p_ref - log p_q)``;
  mean (with llama.cpp's Gaussian uncertainty), percentiles (linear
  interpolation, as llama.cpp's ``percentile``) and maximum over positions;
- same top token = fraction of positions where both argmaxes agree;
- PPL = exp(mean negative log-likelihood of the actual next token), for
  each model; ΔPPL = PPL(variant) - PPL(reference);
- Δp = p_q(next token) - p_ref(next token): mean and RMS.

Two differences from llama.cpp, both in our favour for small data: the
reference log-probabilities are kept as float32 (llama.cpp stores them as
scaled uint16 and drops terms with log p_ref <= -16), and positions are scored
from ``first`` of each sequence (llama.cpp scores the second half of each
``n_ctx`` chunk; :func:`llama_perplexity_chunks` builds those chunks when the
figures must be compared with its own tool).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

__all__ = [
    "Divergence",
    "ReferenceLogProbs",
    "TokenSequence",
    "divergence",
    "llama_perplexity_chunks",
    "load_scoring_model",
    "reference_log_probs",
]


class TokenSequence(BaseModel):
    """Tokens to score; positions ``first`` … ``len - 2`` predict the next token."""

    tokens: list[int]
    first: int = 0


class Divergence(BaseModel):
    """A variant against the reference on the same tokens (all measured)."""

    tokens_scored: int
    kld_mean: float
    kld_mean_uncertainty: float
    kld_median: float
    kld_p90: float
    kld_p99: float
    kld_max: float
    same_top_token: float
    same_top_token_uncertainty: float
    ppl_reference: float
    ppl_variant: float
    delta_ppl: float
    ln_ppl_ratio: float
    delta_p_mean: float
    delta_p_rms: float


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64, copy=False)
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def load_scoring_model(path: Path, n_ctx: int, n_threads: int | None = None) -> Any:
    """A llama.cpp model that returns the logits of every position."""
    import llama_cpp

    from llmpick.backends.llamacpp_log import install_log_capture

    install_log_capture()
    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=min(n_ctx, 512),
        n_threads=n_threads,
        n_threads_batch=n_threads,
        logits_all=True,
        verbose=False,
    )


def _logits(model: Any, seq: TokenSequence) -> np.ndarray:
    model.reset()
    model.eval(seq.tokens)
    n = len(seq.tokens)
    return np.array(model.scores[seq.first : n - 1], dtype=np.float32)


class ReferenceLogProbs:
    """The reference's log-probabilities at every scored position, on disk (memmap)."""

    def __init__(self, sequences: Sequence[TokenSequence], vocab: int, directory: Path) -> None:
        self.sequences = list(sequences)
        self.offsets = [0]
        for seq in self.sequences:
            self.offsets.append(self.offsets[-1] + max(0, len(seq.tokens) - 1 - seq.first))
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=directory, suffix=".logprobs")
        try:
            self.values = np.memmap(
                name, dtype=np.float32, mode="w+", shape=(max(1, self.offsets[-1]), vocab)
            )
        finally:
            # the mapping outlives the name: nothing is left on disk even after kill -9
            os.close(handle)
            os.unlink(name)

    def block(self, index: int) -> np.ndarray:
        """Log-probabilities of sequence ``index``'s scored positions."""
        return np.asarray(self.values[self.offsets[index] : self.offsets[index + 1]])

    def close(self) -> None:
        """Release the mapping (the file has no name left on disk)."""
        del self.values


def reference_log_probs(
    model: Any, sequences: Sequence[TokenSequence], directory: Path
) -> ReferenceLogProbs:
    """Run the reference on every sequence and keep its log-probabilities."""
    store = ReferenceLogProbs(sequences, int(model.n_vocab()), directory)
    for i, seq in enumerate(store.sequences):
        if len(seq.tokens) - 1 > seq.first:
            store.values[store.offsets[i] : store.offsets[i + 1]] = _log_softmax(
                _logits(model, seq)
            )
    return store


def _mean_unc(values: np.ndarray) -> tuple[float, float]:
    """llama.cpp's mean_and_uncertainty: mean and the standard error (0 below 11 values)."""
    n = values.size
    mean = float(values.mean())
    var = float((values.astype(np.float64) ** 2).mean() - mean * mean)
    return mean, (math.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0)


def _percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile: linear interpolation between the two nearest ranks."""
    position = fraction * (sorted_values.size - 1)
    low = int(position)
    high = min(low + 1, sorted_values.size - 1)
    weight = position - low
    return float((1 - weight) * sorted_values[low] + weight * sorted_values[high])


def divergence(model: Any, reference: ReferenceLogProbs) -> Divergence:
    """Score ``model`` (a variant) against the reference on the reference's sequences."""
    kld_parts, same_parts, nll_parts, nll_ref_parts = [], [], [], []
    for i, seq in enumerate(reference.sequences):
        if len(seq.tokens) - 1 <= seq.first:
            continue
        log_q = _log_softmax(_logits(model, seq))
        log_p = reference.block(i).astype(np.float64)
        targets = np.asarray(seq.tokens[seq.first + 1 :])
        rows = np.arange(targets.size)
        kld_parts.append((np.exp(log_p) * (log_p - log_q)).sum(axis=-1))
        same_parts.append(log_p.argmax(axis=-1) == log_q.argmax(axis=-1))
        nll_parts.append(-log_q[rows, targets])
        nll_ref_parts.append(-log_p[rows, targets])
    kld = np.concatenate(kld_parts)
    same = np.concatenate(same_parts).astype(np.float64)
    nll = np.concatenate(nll_parts)
    nll_ref = np.concatenate(nll_ref_parts)
    p_diff = np.exp(-nll) - np.exp(-nll_ref)
    ordered = np.sort(kld)
    kld_mean, kld_unc = _mean_unc(kld)
    top = float(same.mean())
    n = kld.size
    ppl = math.exp(float(nll.mean()))
    ppl_ref = math.exp(float(nll_ref.mean()))
    return Divergence(
        tokens_scored=n,
        kld_mean=kld_mean,
        kld_mean_uncertainty=kld_unc,
        kld_median=_percentile(ordered, 0.5),
        kld_p90=_percentile(ordered, 0.9),
        kld_p99=_percentile(ordered, 0.99),
        kld_max=float(ordered[-1]),
        same_top_token=top,
        same_top_token_uncertainty=math.sqrt(top * (1 - top) / (n - 1)) if n > 1 else 0.0,
        ppl_reference=ppl_ref,
        ppl_variant=ppl,
        delta_ppl=ppl - ppl_ref,
        ln_ppl_ratio=float(nll.mean() - nll_ref.mean()),
        delta_p_mean=float(p_diff.mean()),
        delta_p_rms=math.sqrt(float((p_diff**2).mean())),
    )


def llama_perplexity_chunks(model: Any, text: str, n_ctx: int) -> list[TokenSequence]:
    """The chunks llama-perplexity scores for ``text`` at context ``n_ctx``.

    As ``perplexity.cpp``: tokenize (BOS if the vocabulary asks for one), cut
    into ``len // n_ctx`` chunks of ``n_ctx`` tokens, put BOS first in each
    chunk if the vocabulary adds one, and score positions ``n_ctx // 2`` …
    ``n_ctx - 2``.
    """
    tokens = model.tokenize(text.encode(), add_bos=True, special=False)
    add_bos = str(model.metadata.get("tokenizer.ggml.add_bos_token", "true")).lower() == "true"
    chunks = []
    for start in range(0, (len(tokens) // n_ctx) * n_ctx, n_ctx):
        chunk = list(tokens[start : start + n_ctx])
        if add_bos:
            chunk[0] = int(model.token_bos())
        chunks.append(TokenSequence(tokens=chunk, first=n_ctx // 2))
    return chunks
