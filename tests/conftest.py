"""Test-wide settings: one intra-op thread keeps small-model steps fast and timings stable on 2 shared cores."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Triton kernels (the fused world model) run on CPU through Triton's interpreter; it must be chosen before triton is
# first imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

import torch

torch.set_num_threads(1)
