"""Our KLD / same-top / PPL figures next to llama.cpp's own ``llama-perplexity --kl-divergence``.

Builds (or reuses) the SmolLM2 reference and one variant in the cache dir,
runs llama.cpp's tool on a text (base logits, then the variant), computes
our figures on the same chunks (:func:`llama_perplexity_chunks`) and prints
both with their ratio. ``llama-perplexity`` is built from the llama.cpp that
llama-cpp-python vendors (never committed)::

    pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all: -d /tmp/lcpp
    cd /tmp/lcpp && tar xzf llama_cpp_python-0.3.36.tar.gz
    cd llama_cpp_python-0.3.36/vendor/llama.cpp && cmake -B build -DLLAMA_CURL=OFF
    cmake --build build --target llama-perplexity -j2
    python benchmarks/quant_vs_llama_perplexity.py build/bin/llama-perplexity --variant Q4_K_M
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from llmpick.backends.bundled import bundled_model
from llmpick.config import default_cache_dir
from llmpick.quant.divergence import (
    divergence,
    llama_perplexity_chunks,
    load_scoring_model,
    reference_log_probs,
)
from llmpick.quant.files import build_reference, build_variant

_PATTERNS = {
    "kld_mean": r"Mean\s+KLD:\s+([-\d.]+)",
    "kld_p99": r"99\.0%\s+KLD:\s+([-\d.]+)",
    "kld_median": r"Median\s+KLD:\s+([-\d.]+)",
    "same_top_token": r"Same top p:\s+([-\d.]+)",
    "ppl_variant": r"Mean PPL\(Q\)\s+:\s+([-\d.]+)",
    "ppl_reference": r"Mean PPL\(base\)\s+:\s+([-\d.]+)",
    "delta_ppl": r"Mean PPL\(Q\)-PPL\(base\)\s+:\s+([-\d.]+)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", type=Path, help="path to llama-perplexity")
    parser.add_argument("--variant", default="Q4_K_M")
    parser.add_argument("--text", type=Path, default=Path(__file__).parents[1] / "README.md")
    parser.add_argument("--chars", type=int, default=6000)
    parser.add_argument("--n-ctx", type=int, default=128)
    parser.add_argument("--chunks", type=int, default=8)
    args = parser.parse_args()

    cache = default_cache_dir()
    source = bundled_model("smollm2-135m-instruct").locate(cache)  # type: ignore[union-attr]
    reference = build_reference(source, cache)
    variant = build_variant(reference, args.variant, cache)
    text = args.text.read_text()[: args.chars]
    with tempfile.TemporaryDirectory() as tmp:
        text_file, kld_file = Path(tmp) / "text.txt", Path(tmp) / "base.kld"
        text_file.write_text(text)
        common = ["-c", str(args.n_ctx), "-t", "2", "--kl-divergence-base", str(kld_file)]
        subprocess.run(
            [str(args.binary), "-m", str(reference.path), "-f", str(text_file), "--chunks",
             str(args.chunks), *common],
            check=True, capture_output=True,
        )  # fmt: skip
        out = subprocess.run(
            [str(args.binary), "-m", str(variant.path), *common, "--kl-divergence"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    log = out.stdout + out.stderr
    theirs = {k: float(re.search(p, log).group(1)) for k, p in _PATTERNS.items()}  # type: ignore[union-attr]
    theirs["same_top_token"] /= 100

    ref_model = load_scoring_model(reference.path, args.n_ctx, 2)
    chunks = llama_perplexity_chunks(ref_model, text, args.n_ctx)[: args.chunks]
    logprobs = reference_log_probs(ref_model, chunks, Path(tempfile.gettempdir()))
    ours = divergence(load_scoring_model(variant.path, args.n_ctx, 2), logprobs).model_dump()
    logprobs.close()
    print(f"{args.variant} vs F32 reference of SmolLM2, {len(chunks)} chunks of {args.n_ctx}, "
          f"{ours['tokens_scored']} tokens scored")  # fmt: skip
    print(f"{'metric':<16}{'llmpick':>12}{'llama.cpp':>12}{'ratio':>8}")
    for key, value in theirs.items():
        mine = ours[key]
        ratio = mine / value if value else float("nan")
        print(f"{key:<16}{mine:>12.6f}{value:>12.6f}{ratio:>8.3f}")


if __name__ == "__main__":
    main()
