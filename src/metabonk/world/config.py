"""Config dataclasses of the world model: U-Net shape, EDM noise settings, sampler, reward head."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from metabonk.envs.arena.spec import NUM_ACTIONS


@dataclass
class UNetConfig:
    """A DIAMOND-style U-Net: one level per entry of `channels`, `depths` res-blocks per level."""

    channels: tuple[int, ...] = (64, 64, 64, 64)
    """Feature channels at each resolution level (DIAMOND Atari: 64 at 4 levels)."""
    depths: tuple[int, ...] = (2, 2, 2, 2)
    """Residual blocks per level on the way down (the way up has one more, for the skip)."""
    cond_channels: int = 256
    """Width of the conditioning vector (noise level + actions) fed to every adaptive group norm."""
    num_groups: int = 32
    """Group-norm groups (reduced automatically when a level has fewer channels)."""


@dataclass
class EDMConfig:
    """EDM (Karras et al. 2022) preconditioning and training-noise distribution."""

    sigma_data: float = 0.5
    """Std of the data (frames scaled to [-1, 1])."""
    loc: float = -0.4
    """Mean of log σ during training (log-normal)."""
    scale: float = 1.2
    """Std of log σ during training."""
    sigma_min_train: float = 2e-3
    sigma_max_train: float = 20.0
    sigma_offset_noise: float = 0.3
    """Per-channel constant noise added in training (helps brightness shifts), as in DIAMOND."""
    context_noise_max: float = 0.1
    """Training-time Gaussian noise (std up to this) on the context frames: robustness to own dreams."""


@dataclass
class SamplerConfig:
    """Karras σ schedule and solver used when dreaming."""

    num_steps: int = 3
    order: int = 1
    """1 = Euler, 2 = Heun."""
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0


@dataclass
class WorldConfig:
    """The whole world model: frame format, action vocabulary, denoiser, sampler, reward model."""

    frame_size: int = 64
    img_channels: int = 3
    num_context: int = 4
    """k: frames (and actions) the denoiser is conditioned on."""
    num_actions: int = NUM_ACTIONS
    """Real discrete actions or latent-action codes; the model does not care which (Arena's by default)."""
    target: str = "delta"
    """What the diffusion models: 'delta' = x_{t+1} - x_t (the dream adds it to the last frame, so "nothing
    changes" is the zero of the model and copy-last-frame is where it starts), or 'frame' = x_{t+1} (DIAMOND)."""
    auto_sigma_data: bool = True
    """At the start of training, set EDM's σ_data (and the σ ranges, scaled with it) to the measured std of the
    target on the training data; EDM's preconditioning assumes σ_data is that std."""
    action_source: str = "real"
    """Which store key the actions came from: 'real' (action), 'idm' (action_idm) or 'latent' (LAM codes)."""
    unet: UNetConfig = field(default_factory=UNetConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    reward_channels: tuple[int, ...] = (32, 64, 64)
    """Conv widths of the reward/termination model (one stride-2 conv each)."""
    reward_hidden: int = 256
    reward_loss_weight: float = 1.0
    """Weight of the reward+termination loss beside the denoising loss."""
    termination_pos_weight: float = 4.0
    """BCE weight of the (rare) episode-end class."""
    reward_scale: float = 1.0
    """Rewards are regressed in units of this (the head predicts r / reward_scale; `predict` returns env units):
    set with σ_data to the RMS of the non-zero training rewards (`world.train.reward_unit`), so that a game whose
    rewards are ~0.01 (Arena) does not leave the reward loss 10^4 times smaller than the termination loss it
    shares the encoder with."""


def scale_sigmas(config: WorldConfig, std: float) -> None:
    """Set σ_data = `std` and scale every σ of EDM training and of the sampler by std / DIAMOND's 0.5, so the
    noise levels keep DIAMOND's relation to the data (sampler steps and order are kept)."""
    ref_edm, ref_s = EDMConfig(), SamplerConfig()
    r = std / ref_edm.sigma_data
    e, s = config.edm, config.sampler
    config.edm = EDMConfig(
        sigma_data=std,
        loc=ref_edm.loc + math.log(r),
        scale=e.scale,
        sigma_min_train=ref_edm.sigma_min_train * r,
        sigma_max_train=ref_edm.sigma_max_train * r,
        sigma_offset_noise=ref_edm.sigma_offset_noise * r,
        context_noise_max=e.context_noise_max,
    )
    config.sampler = SamplerConfig(s.num_steps, s.order, ref_s.sigma_min * r, ref_s.sigma_max * r, s.rho)


def tiny_config(frame_size: int = 16, num_actions: int = 9, num_context: int = 2) -> WorldConfig:
    """A small model for CPU tests and quick experiments."""
    return WorldConfig(
        frame_size=frame_size,
        num_context=num_context,
        num_actions=num_actions,
        unet=UNetConfig(channels=(32, 32, 64), depths=(1, 1, 1), cond_channels=64, num_groups=8),
        reward_channels=(16, 32),
        reward_hidden=64,
    )


def diamond_atari_config(num_actions: int = 18) -> WorldConfig:
    """DIAMOND's Atari size: 64x64, 4 context frames, channels 64 at 4 levels, depths 2 (≈4.4M params)."""
    return WorldConfig(frame_size=64, num_context=4, num_actions=num_actions)


WORLD_SIZES: tuple[str, ...] = ("tiny", "small", "diamond")


def sized_world_config(size: str, frame_size: int, num_actions: int,
                       channels: tuple[int, ...] = (16, 32, 32, 64),
                       tiny_channels: tuple[int, ...] | None = None) -> WorldConfig:
    """A world model by size name, as the demo and the online loop build one: "tiny" (`tiny_config`, optionally
    with other U-Net channels), "small" (4 context frames, a U-Net of `channels`, one block a level) or "diamond"
    (`diamond_atari_config` at `frame_size`)."""
    if size == "tiny":
        wc = tiny_config(frame_size=frame_size, num_actions=num_actions, num_context=2)
        if tiny_channels is not None:
            wc.unet = UNetConfig(channels=tiny_channels, depths=(1,) * len(tiny_channels), cond_channels=64,
                                 num_groups=8)
        return wc
    if size == "diamond":
        wc = diamond_atari_config(num_actions)
        wc.frame_size = frame_size
        return wc
    if size != "small":
        raise ValueError(f"unknown world size '{size}' (known: {', '.join(WORLD_SIZES)})")
    return WorldConfig(frame_size=frame_size, num_context=4, num_actions=num_actions,
                       unet=UNetConfig(channels=channels, depths=(1,) * len(channels), cond_channels=128,
                                       num_groups=8),
                       reward_channels=(16, 32, 32), reward_hidden=128)
