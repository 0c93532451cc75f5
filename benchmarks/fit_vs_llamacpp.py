"""Check ``llmpick fit`` against what llama.cpp really allocates and uses.

For each bundled GGUF (SmolLM2-135M Q4_1, Gemma 3 270M Q4_K_M):

1. KV cache: start llama.cpp (llama_cpp.Llama, verbose) at several contexts in
   a subprocess, parse the KV sizes it logs (``llama_kv_cache: size = X MiB``,
   one line per cache; Gemma 3 logs a full-attention and a sliding-window cache)
   and compare with ``fit_model(...).kv_cache_bytes``. They must agree exactly
   (to the 0.01 MiB the log prints). Run with llama-cpp-python's default
   ``swa_full=True`` and, for Gemma 3, also ``swa_full=False`` (window + one
   micro-batch, padded to 256).
2. Peak RSS: a separate process loads the model, evaluates a prompt that fills
   90% of the context (so the attention buffers are really used), generates 4
   tokens, and reports ``ru_maxrss``. The ratio estimate / measured must lie in
   [0.9, 1.5].

Run::

    python benchmarks/fit_vs_llamacpp.py      # KV at 512..32768; RSS at 512, 2048
    python benchmarks/fit_vs_llamacpp.py --rss-contexts 512 2048 8192

Prefill of a filled 8192 context takes minutes on a small shared CPU, hence
the default RSS contexts. Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import textwrap

from llmpick.backends.bundled import BUNDLED_MODELS
from llmpick.config import default_cache_dir
from llmpick.fit import LlamaCppSettings, fit_model, llamacpp_kv_cache_bytes, resolve_shape
from llmpick.hardware import detect_cpu

MIB = 1024**2

KV_CHILD = textwrap.dedent(
    """
    import sys
    from llama_cpp import Llama
    Llama(model_path=sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=1, verbose=True,
          swa_full=sys.argv[3] == "1")
    """
)

RSS_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from llama_cpp import Llama
    path, n_ctx = sys.argv[1], int(sys.argv[2])
    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=2, verbose=False)
    n = max(1, int(n_ctx * 0.9) - 16)
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * (n // 9 + 10))
    tokens = llm.tokenize(text.encode())[:n]
    llm.eval(tokens)
    for _ in range(4):
        llm.eval([llm.sample(temp=0)])
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve, so a child
    # forked from a big parent would report the parent's peak.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    peak_kib = int(line.split()[1])
    except OSError:
        pass
    print(json.dumps({"peak_rss_bytes": peak_kib * 1024, "prompt_tokens": len(tokens)}))
    """
)

KV_LINE = re.compile(r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers")


def logged_kv(path: str, n_ctx: int, swa_full: bool) -> tuple[float, list[tuple[int, int]]]:
    """Total KV MiB llama.cpp logs, and (cells, layers) per cache."""
    proc = subprocess.run(
        [sys.executable, "-c", KV_CHILD, path, str(n_ctx), "1" if swa_full else "0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    matches = KV_LINE.findall(proc.stderr)
    if not matches:
        raise SystemExit(f"no KV size line in llama.cpp's log for {path} at {n_ctx}")
    return sum(float(m[0]) for m in matches), [(int(m[1]), int(m[2])) for m in matches]


def measured_rss(path: str, n_ctx: int) -> dict[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, path, str(n_ctx)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, int] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kv-contexts", type=int, nargs="+", default=[512, 2048, 8192, 32768])
    parser.add_argument("--rss-contexts", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--models", nargs="+", default=list(BUNDLED_MODELS))
    args = parser.parse_args()

    cpu = detect_cpu()
    failures = 0
    print("KV cache: fit vs llama.cpp's log (MiB)")
    print(f"{'model':24} {'n_ctx':>6} {'swa_full':>8} {'llama.cpp':>10} {'fit':>10}  ok")
    for name in args.models:
        path = str(BUNDLED_MODELS[name].locate(default_cache_dir()))
        shape = resolve_shape(name)
        modes = [True, False] if shape.sliding_layers else [True]
        for n_ctx in args.kv_contexts:
            for swa_full in modes:
                logged, _ = logged_kv(path, n_ctx, swa_full)
                settings = LlamaCppSettings(swa_full=swa_full)
                estimate = llamacpp_kv_cache_bytes(shape, n_ctx, 1, "f16", settings) / MIB
                ok = abs(logged - estimate) <= 0.01 * max(1, len(modes))
                failures += not ok
                print(
                    f"{name:24} {n_ctx:>6} {swa_full!s:>8} {logged:>10.2f} {estimate:>10.2f}"
                    f"  {'yes' if ok else 'NO'}"
                )
        if shape.sliding_layers:
            windowed = fit_model(shape, context=8192, runtime="transformers", device=cpu)
            print(
                f"  (for reference: {shape.sliding_layers} sliding layers at window "
                f"{max(w or 0 for w in shape.windows())} -> {windowed.kv_cache_bytes / MIB:.2f} "
                "MiB at 8192 when each layer caches only min(window, tokens))"
            )

    print("\nPeak RSS: fit total_bytes vs a llama.cpp process that fills 90% of the context")
    print(
        f"{'model':24} {'n_ctx':>6} {'prompt':>6} {'measured MiB':>12} {'estimate MiB':>12} "
        f"{'ratio':>6}  ok (0.9-1.5)"
    )
    for name in args.models:
        path = str(BUNDLED_MODELS[name].locate(default_cache_dir()))
        shape = resolve_shape(name)
        for n_ctx in args.rss_contexts:
            measured = measured_rss(path, n_ctx)
            estimate = fit_model(shape, context=n_ctx, device=cpu, runtime="llamacpp")
            ratio = estimate.total_bytes / measured["peak_rss_bytes"]
            ok = 0.9 <= ratio <= 1.5
            failures += not ok
            print(
                f"{name:24} {n_ctx:>6} {measured['prompt_tokens']:>6} "
                f"{measured['peak_rss_bytes'] / MIB:>12.1f} {estimate.total_bytes / MIB:>12.1f} "
                f"{ratio:>6.3f}  {'yes' if ok else 'NO'}"
            )
    print("\nall checks passed" if not failures else f"\n{failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
