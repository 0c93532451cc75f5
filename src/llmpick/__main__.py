"""``python -m llmpick`` runs the CLI."""

from llmpick.cli import main

main()
