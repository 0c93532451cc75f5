"""The bundled sample dataset (``sample.csv``) that ``llmpick choose`` runs by default."""
