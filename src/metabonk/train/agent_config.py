"""Settings of the online loop (`metabonk train agent`) and its named presets: `tiny` (CPU tests on Scroll),
`default` (CPU), `full` (one GPU)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from metabonk.common.errors import MetabonkError
from metabonk.train.imagination import ImaginationConfig


@dataclass
class AgentLoopConfig:
    """One run of collect → world model → imagination, repeated until `env_steps` real steps."""

    env: str = "arena"
    env_steps: int = 100_000
    """Real env steps in all (summed over the parallel envs, the random warm-up included)."""
    out: str = "runs/agent"
    init: str | None = None
    """Start the policy from this checkpoint (e.g. the BC policy); None = from scratch."""
    world_init: str | None = None
    """Start the world model from this checkpoint; None = a fresh one of `world_size`."""
    preset: str = "default"
    num_envs: int = 8
    size: int = 64
    seed: int = 0
    device: str = "auto"
    start_steps: int = 2_000
    """Real steps collected before the first update (random actions when there is no `init`)."""
    collect_steps: int = 1_000
    """Real steps collected per epoch with the current policy."""
    epsilon: float = 0.01
    """Probability of a uniformly random action while collecting (DIAMOND's exploration)."""
    world_size: str = "small"
    """'tiny' | 'small' | 'diamond' (DIAMOND's Atari size)."""
    world_updates: int = 200
    """World-model (denoiser + reward/termination) updates per epoch."""
    world_batch: int = 32
    world_lr: float = 1e-4
    world_ema: float = 0.99
    """EMA of the world model's weights that the dreams sample from (0 = the raw weights)."""
    first_world_updates: int = 0
    """Extra world-model updates in the first epoch, before the first dream (0 = none)."""
    ac_updates: int = 50
    """Actor-critic updates in imagination per epoch."""
    ac_batch: int = 32
    """Dreams per actor-critic update."""
    ac_lr: float = 1e-4
    sampler_steps: int | None = 3
    """Denoising steps per dreamed frame (None = the world model's default)."""
    kernels: str = "eager"
    """DreamEnv kernels: eager | fused_bf16 | fused_fp8 (CUDA)."""
    imagination: ImaginationConfig = field(default_factory=ImaginationConfig)
    eval_episodes: int = 16
    """Real episodes (seeds) of the final evaluation (0 = none)."""
    eval_max_steps: int = 10_000
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    """PolicyConfig overrides for a fresh agent."""
    threads: int = 1
    """torch CPU threads."""
    quiet: bool = False


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "num_envs": 4, "size": 16, "start_steps": 1_000, "collect_steps": 400, "world_size": "tiny",
        "world_updates": 60, "first_world_updates": 400, "world_batch": 16, "world_lr": 2e-3,
        "ac_updates": 30, "ac_batch": 32, "ac_lr": 1e-3, "sampler_steps": 1, "eval_episodes": 16,
        "eval_max_steps": 400, "imagination": {"horizon": 10, "ent_coef": 0.01},
        "policy": {"channels": (32,), "hidden": 32, "feature_dim": 64},
    },
    "default": {"imagination": {"return_norm_floor": 0.05}},
    # one H200 within one 10-minute call: Arena at 64 px, 100k real steps, the small world model
    "full": {
        "num_envs": 16, "start_steps": 4_000, "collect_steps": 4_000, "world_updates": 300, "world_batch": 64,
        "first_world_updates": 500, "world_lr": 3e-4, "ac_updates": 40, "ac_batch": 256, "ac_lr": 3e-4,
        "sampler_steps": 2, "threads": 8, "eval_episodes": 32,
        "imagination": {"return_norm_floor": 0.05},
    },
}


def _typed(defaults: Any, key: str, value: Any) -> Any:
    """`value` as the type of `defaults.key` (an int where a float is expected becomes a float); a clear error if
    it is of another type."""
    default = getattr(defaults, key)
    if default is None or isinstance(default, (dict, list, tuple)):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not type(default):
        raise MetabonkError(f"{key} takes {type(default).__name__} values, got {value!r}")
    return value


def parse_settings(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (`train agent --set`) as loop_config overrides: VALUE is read as a Python literal
    (1e-5, 8, true/false, "text" or a bare word as text); `imagination.KEY` goes to the dream's settings."""
    import ast

    out: dict[str, Any] = {}
    imag: dict[str, Any] = {}
    imag_names = {f.name for f in dataclasses.fields(ImaginationConfig)}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MetabonkError(f"--set takes KEY=VALUE, got '{item}'")
        text = {"true": "True", "false": "False", "none": "None"}.get(raw.strip().lower(), raw.strip())
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = raw.strip()
        if key.startswith("imagination."):
            sub = key.removeprefix("imagination.")
            if sub not in imag_names:
                raise MetabonkError(f"unknown dream setting '{sub}' (choose {', '.join(sorted(imag_names))})")
            imag[sub] = _typed(ImaginationConfig(), sub, value)
        else:
            out[key] = _typed(AgentLoopConfig(), key, value) if hasattr(AgentLoopConfig, key) else value
    if imag:
        out["imagination"] = imag
    return out


def loop_config(preset: str = "default", **overrides: Any) -> AgentLoopConfig:
    """The named preset with field overrides (`imagination` may be a dict of ImaginationConfig fields)."""
    if preset not in PRESETS:
        raise MetabonkError(f"unknown preset '{preset}' (choose {', '.join(PRESETS)})")
    names = {f.name for f in dataclasses.fields(AgentLoopConfig)}
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    bad = sorted(set(values) - names)
    if bad:
        raise MetabonkError(f"unknown loop setting(s): {', '.join(bad)}")
    imag = values.pop("imagination", {})
    if isinstance(imag, dict):  # an override dict adds to the preset's imagination settings
        imag = {**PRESETS[preset].get("imagination", {}), **imag}
        imag = ImaginationConfig(**{**dataclasses.asdict(ImaginationConfig()), **imag})
    cfg = AgentLoopConfig(preset=preset, imagination=imag, **values)
    for name in ("env_steps", "num_envs", "start_steps", "collect_steps", "world_batch", "ac_batch"):
        if getattr(cfg, name) < 1:
            raise MetabonkError(f"{name} must be ≥ 1, got {getattr(cfg, name)}")
    from metabonk.world.config import WORLD_SIZES

    if cfg.world_size not in WORLD_SIZES:
        raise MetabonkError(f"world_size must be tiny, small or diamond, got '{cfg.world_size}'")
    return cfg
