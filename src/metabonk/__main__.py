"""`python -m metabonk` runs the CLI."""

from metabonk.cli import main

main()
