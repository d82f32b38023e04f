"""Diffusion world model (EDM denoiser + sampler), reward/termination model and the batched DreamEnv.

Import the pieces from their modules (`metabonk.world.world_model`, `metabonk.world.dream_env`, ...);
this package imports nothing heavy so GPU-only machines with just torch can use it.
"""
