"""Shared plumbing used by every layer: errors, checkpoints, logging, devices, benchmark results."""
