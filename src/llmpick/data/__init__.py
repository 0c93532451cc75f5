"""The bundled sample dataset (``sample.jsonl``) that ``llmpick choose`` runs by default."""
