"""Fine-tune and prove it: a LoRA adapter trained on your rows, tested against its base.

::

    from llmpick.tune import TuneOptions, run_tune
    options = TuneOptions(data=Path("tickets.csv"), out=Path("tuned"), scorers=["exact"])
    report = run_tune(context, "smollm2-135m-instruct", options)
    report.proof.sentence   # "tuned beats smollm2-135m-instruct on 9 of 10 held-out rows, …"

- :mod:`llmpick.tune.options`: LoRA and training settings, their defaults and why.
- :mod:`llmpick.tune.data`: rows as ``eval`` reads them, checked, split, tokenized.
- :mod:`llmpick.tune.train`: peft LoRA on transformers, checkpointed and resumable.
- :mod:`llmpick.tune.gguf_export`: the adapter in llama.cpp's GGUF LoRA format.
- :mod:`llmpick.tune.proof`: base vs tuned on the held-out rows through ``eval``.
- :mod:`llmpick.tune.report`: ``tune.json``, ``tune.html`` and the training curve PNG.
- :mod:`llmpick.tune.run`: the whole command.

The output folder is a model spec: ``-m tuned/`` (see :mod:`llmpick.backends.tuned`).
"""

from llmpick.tune.options import LoraSettings, TrainSettings, TuneOptions
from llmpick.tune.proof import ModelScore, Proof
from llmpick.tune.run import TuneReport, run_tune

__all__ = [
    "LoraSettings",
    "ModelScore",
    "Proof",
    "TrainSettings",
    "TuneOptions",
    "TuneReport",
    "run_tune",
]
