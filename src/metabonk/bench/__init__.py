"""Benchmarks behind `metabonk bench <what>`: each prints a table and writes JSON to benchmarks/results/."""
