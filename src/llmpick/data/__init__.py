"""The bundled sample dataset (``sample.jsonl``) that ``llmpick choose`` runs by default.

It sits here, below ``choose`` and ``quant``, so both read it without importing each other.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["sample_data_path"]


def sample_data_path() -> Path:
    """Path of the bundled sample dataset (40 rows, mixed tasks and languages)."""
    return Path(str(resources.files("llmpick.data").joinpath("sample.jsonl")))
