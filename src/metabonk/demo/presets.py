"""Sizes of the demo pipeline: `tiny` (tests, ~1-2 min), `default` (≤ 20 min on 2 CPU cores), `full` (GPU)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from metabonk.common.errors import MetabonkError


@dataclass
class DemoPreset:
    """Every size and step count of one demo run."""

    name: str = "default"
    frame_size: int = 64
    num_envs: int = 8
    """Games recorded (and evaluated) in parallel."""
    video_episodes: int = 24
    """Unlabelled episodes of the video policy (scripted expert on Arena, random elsewhere)."""
    video_max_steps: int | None = None
    """Cut recorded episodes into chunks of at most this many steps (None = whole episodes)."""
    video_policy: str = "scripted"
    """Who plays the recorded video and labelled set where the env has a scripted expert: 'scripted', or
    'disturbed' (ALE: the expert broken by short random bursts, envs.ale_experts.Disturbed)."""
    labelled_steps: int = 1600
    """Labelled transitions for the IDM (the demo checks they are ≤ 5 % of all recorded transitions)."""
    lam_steps: int = 150
    lam_batch: int = 16
    lam_width: int = 16
    idm_steps: int = 800
    latent_batch: int = 32
    """IDM batch."""
    idm_width: int = 32
    idm_context: int = 1
    """Past frames the IDM sees besides x_t (latent.idm.IDMConfig.context)."""
    idm_future: int = 0
    """Frames after x_{t+1} the IDM sees (IDMConfig.future; 0 = causal)."""
    idm_object_shift: int = 0
    """Object-motion features of the IDM (IDMConfig.object_shift; 0 = off): for a small object whose motion is
    the action (Pong's paddle)."""
    idm_object_pool: str = "cells"
    """Pooling of those features (IDMConfig.object_pool): "cells" or "stripes" (whole columns and rows; ALE)."""
    idm_calibration: float = 0.0
    """Fraction of the labelled transitions (the tail of every chunk) kept out of the IDM's training to fit its
    softmax temperature (latent.calibrate; 0 = off): soft labels from a long-trained IDM stay calibrated."""
    world_steps: int = 150
    world_batch: int = 8
    world_size: str = "small"
    """'tiny' | 'small' | 'diamond' (DIAMOND's Atari size)."""
    world_channels: tuple[int, ...] = (16, 32, 32, 64)
    """U-Net channels of the 'small' world model."""
    world_context_noise: float | None = None
    """Largest training noise on the world model's context frames (EDMConfig.context_noise_max; None = its 0.1)."""
    bc_steps: int = 2500
    bc_batch: int = 16
    bc_seq_len: int = 8
    bc_lr: float = 2e-3
    bc_lr_final: float = 1.0
    """BC's learning rate is cosine-decayed to this fraction of `bc_lr` (1 = constant)."""
    bc_ema: float = 0.0
    """EMA decay of BC's weights, the average being the BC policy (0 = the last weights)."""
    bc_class_balance: float = 0.0
    """BC's class balance (policy.bc.BCArgs.class_balance): 0 on Arena, 0.5 on ALE (the tracker idles ~half its
    steps)."""
    bc_soft_labels: bool = False
    """BC imitates the IDM's action probabilities, not its argmax (policy.bc.BCArgs.soft_labels; on for ALE)."""
    dream_updates: int = 8
    """Actor-critic updates in imagination per epoch of the online loop."""
    dream_batch: int = 8
    dream_env_steps: int = 4000
    """Real env steps the online loop collects with the BC-started policy (its whole budget)."""
    dream_collect_steps: int = 1000
    """Real steps per epoch of the online loop."""
    dream_world_updates: int = 50
    """World-model updates per epoch of the online loop."""
    dream_horizon: int = 8
    dream_anchor: float = 0.0
    """Weight of KL(policy ‖ BC policy) in the dream (train.imagination.ImaginationConfig.anchor_coef)."""
    dream_ac_lr: float | None = None
    """Actor-critic learning rate of the dream stage (None = the online loop's preset, 1e-4)."""
    dream_sampler_steps: int | None = 1
    ppo_steps: int = 0
    """PPO-from-scratch baseline at this many real env steps (0 = skip; -1 = as many as recorded)."""
    eval_episodes: int = 32
    eval_max_steps: int = 10_000
    eval_greedy: bool = False
    """Score the trained agents by their most likely action instead of a sampled one."""
    gif_steps: int = 300
    dream_gif_steps: int = 32
    policy: dict[str, Any] = field(default_factory=dict)
    """PolicyConfig overrides (e.g. {"core": "mamba"})."""
    arena: dict[str, Any] = field(default_factory=dict)
    """ArenaConfig overrides for every Arena env of the run."""
    threads: int = 1
    """torch CPU threads (shared 2-core machines run fastest on one; OpenMP spin-waits cost more)."""

    def replace(self, **kw: Any) -> DemoPreset:
        return dataclasses.replace(self, **kw)


PRESETS: dict[str, DemoPreset] = {
    "tiny": DemoPreset(
        name="tiny", frame_size=32, num_envs=2, video_episodes=6, video_max_steps=120, labelled_steps=30,
        lam_steps=20, lam_batch=8, idm_steps=40, latent_batch=16, idm_width=16, world_steps=30, world_batch=8,
        world_size="tiny",
        bc_steps=40, bc_batch=8, bc_seq_len=8, dream_updates=2, dream_batch=4, dream_horizon=4,
        dream_env_steps=120, dream_collect_steps=60, dream_world_updates=3,
        dream_sampler_steps=1, eval_episodes=4, eval_max_steps=150, gif_steps=40, dream_gif_steps=8,
        policy={"channels": (16, 32), "hidden": 32, "feature_dim": 64},
    ),
    "default": DemoPreset(),
    # Sized to finish in one ~9-minute call on one H100 (the lent GPUs allow 10 minutes a command).
    "full": DemoPreset(
        name="full", num_envs=32, video_episodes=64, labelled_steps=4000, lam_steps=800, lam_batch=64,
        lam_width=32, idm_steps=2000, latent_batch=64, world_steps=1500, world_batch=32,
        world_size="diamond", bc_steps=3000, bc_batch=64, bc_seq_len=16, bc_lr=1e-3, dream_updates=40,
        dream_batch=256, dream_horizon=15, dream_sampler_steps=2, dream_env_steps=40_000, dream_collect_steps=5_000,
        dream_world_updates=300, ppo_steps=-1, threads=8,
    ),
}
"""`ppo_steps=-1` means: PPO from scratch at the same number of real env steps as the recording used."""


# ALE games last far longer than Arena's stage: the scripted Pong expert's game runs ~28k agent steps, so 24 whole
# episodes would be ~680k frames. On ALE the video is recorded in chunks of 1,000 steps (the games go on across
# chunks, so every phase of play is seen) and the real-game evaluation is capped at 5,000 steps (~5.5 minutes of
# play at 60 Hz with ALE's frame skip of 4), the same cap for every agent. What BC on Pong needed (docs/demo.md):
# pixels with the flat background subtracted (the ball and paddles cover ~1 % of a 64×64 frame), an actor output
# layer not scaled down for PPO, video of the expert with short random bursts (it shows recoveries), more BC
# steps, greedy play of the clone, and an IDM that sees the paddle's motion (object-motion features, two past
# frames and one after x_{t+1}: the press shows in the paddle's acceleration, partly a step late under sticky
# actions), whose action probabilities BC imitates (soft labels), with class balance 0.5; the dream fine-tune is
# anchored to the BC policy (unanchored, the full preset's loop took its BC from 0.69 to −9.22 in 25k real steps on an
# H100: benchmarks/results/demo-full-ale-pong-h100/). (Stripe pooling, 1,600 IDM steps and 10,000 BC steps together
# scored 0.32: that IDM was confidently wrong on held-out frames, docs/demo.md. The full preset's longer IDM fits a
# softmax temperature.)
ALE_POLICY: dict[str, Any] = {"pixel_norm": "background", "actor_init_gain": 1.0}
ALE_CLONE: dict[str, Any] = {"policy": ALE_POLICY, "video_policy": "disturbed", "eval_greedy": True,
                             "idm_context": 2, "idm_future": 1, "idm_object_shift": 6, "bc_soft_labels": True,
                             "bc_class_balance": 0.5}
ALE_OVERRIDES: dict[str, dict[str, Any]] = {
    "tiny": ALE_CLONE,
    # BC as the full preset sizes it, its LR cosine-decayed to 5 % and its weights averaged (3,000 steps of 64 × 16,
    # bc_lr_final 0.05, bc_ema 0.999): median 0.76 vs 0.59 for 10,000 constant-LR steps of 16 × 8, five BC seeds on one
    # run's labels. The dream fine-tunes it at an actor-critic LR of 3e-5: at the loop's 1e-4 this sharper clone fell
    # from 0.79 to 0.17 (its world model dreams Pong worse than copying the last frame; 3e-5: 0.77, 1e-5: 0.75,
    # 3e-6: 0.81, within noise of BC): benchmarks/results/bc-recipes-pong-cpu/, dream-lr-pong-cpu/.
    # The world model trains 1,500 steps with no noise on its context frames: Pong's frames change by a few ball and
    # paddle pixels (RMS 0.027 in [-1, 1]), and the delta target x_{t+1} - noisy x_t was mostly the context noise
    # (σ up to 0.1) for the model to reproduce; at 1,500 steps that model dreamed 16 steps at 24.4 dB, without the
    # noise 30.1 (copy-last 34.0): benchmarks/results/world-context-noise-pong-cpu/.
    "default": {**ALE_CLONE, "video_episodes": 40, "video_max_steps": 1000, "eval_max_steps": 5000, "bc_steps": 3_000,
                "bc_batch": 64, "bc_seq_len": 16, "bc_lr": 1e-3, "bc_lr_final": 0.05, "bc_ema": 0.999,
                "dream_anchor": 1.0, "dream_ac_lr": 3e-5, "world_steps": 1_500, "world_context_noise": 0.0},
    "full": {**ALE_CLONE, "video_episodes": 96, "video_max_steps": 1000, "eval_max_steps": 5000,
             "idm_calibration": 0.1, "dream_anchor": 1.0},
}


def preset_for_env(preset: DemoPreset, env: str) -> DemoPreset:
    """`preset` as run on `env`: ALE games get ALE_OVERRIDES for the preset's name (their `policy` merged into
    the preset's); other envs run it as is."""
    if not env.startswith("ale:"):
        return preset
    over = dict(ALE_OVERRIDES.get(preset.name, {}))
    if "policy" in over:
        over["policy"] = {**preset.policy, **over["policy"]}
    return preset.replace(**over)


def get_preset(name: str, **overrides: Any) -> DemoPreset:
    """The named preset, with field overrides; unknown names are a MetabonkError."""
    if name not in PRESETS:
        raise MetabonkError(f"unknown demo preset '{name}' (choose {', '.join(PRESETS)})")
    names = {f.name for f in dataclasses.fields(DemoPreset)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise MetabonkError(f"unknown preset field(s): {', '.join(bad)}")
    return PRESETS[name].replace(**overrides)


def with_frame_skip(name: str, env: str, frame_skip: int | None) -> DemoPreset:
    """The named preset as run on `env`, every Arena env of the run at `frame_skip` ticks per step (None: the
    preset's own setting)."""
    from metabonk.envs import arena_env_kwargs

    p = preset_for_env(get_preset(name), env)
    options = arena_env_kwargs(env, frame_skip)
    return p if options is None else p.replace(arena={**p.arena, **options})
