"""Latent actions from unlabeled video: latent action model (VQ), inverse dynamics model, action adapter."""

from metabonk.latent.adapter import ActionAdapter, AdapterConfig, fit_adapter
from metabonk.latent.data import TransitionData, load_transitions
from metabonk.latent.idm import IDMConfig, InverseDynamicsModel
from metabonk.latent.lam import LAMConfig, LatentActionModel
from metabonk.latent.vq import VectorQuantizer, VQConfig

__all__ = [
    "ActionAdapter",
    "AdapterConfig",
    "IDMConfig",
    "InverseDynamicsModel",
    "LAMConfig",
    "LatentActionModel",
    "TransitionData",
    "VQConfig",
    "VectorQuantizer",
    "fit_adapter",
    "load_transitions",
]
