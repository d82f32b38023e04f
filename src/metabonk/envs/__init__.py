"""The environment registry: `make_env(spec, ...)` builds any game behind one vector-env contract.

Specs: "arena" (or "arena-hard", its harder configuration), "ale:<Game>" (e.g. "ale:Pong"), "crafter",
"bridge://HOST:PORT". Every env returns obs `{"pixels": uint8 [N,H,W,3], "state": float32 [N,D]}`,
takes int64 actions `[N]` from one flat `Discrete(n)`, autoresets SAME_STEP with `info["final_obs"]`, and
reports `info["episode_return"]` and `info["episode_length"]` (see docs/architecture.md). Game modules are
imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metabonk.common.errors import MetabonkError

if TYPE_CHECKING:  # gymnasium is imported by the env modules themselves: the Arena game and spec need only torch
    from gymnasium.vector import VectorEnv

ENV_SPECS: tuple[str, ...] = (
    "arena", "arena-hard", "ale:<Game> (e.g. ale:Pong)", "crafter", "scroll", "bridge://HOST:PORT"
)
MAX_SIZE = 256
ARENA_CONFIGS: tuple[str, ...] = ("arena", "arena-hard")
"""Arena's named configurations (arena.config.NAMED_CONFIGS): the default stage and a harder, longer one."""


def _parse_bridge(spec: str) -> tuple[str, int]:
    rest = spec[len("bridge://"):]
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetabonkError(f"bad bridge spec '{spec}': expected bridge://HOST:PORT, e.g. bridge://127.0.0.1:7777")
    return host, int(port)


def make_env(
    spec: str, num_envs: int = 1, size: int = 64, seed: int = 0, device: str = "cpu", **kw: Any
) -> VectorEnv:
    """Build `num_envs` copies of the game named by `spec` at size×size pixels; extra `kw` go to the game."""
    if not isinstance(spec, str) or not spec:
        raise MetabonkError(f"env spec must be a non-empty string; valid: {', '.join(ENV_SPECS)}")
    if num_envs < 1:
        raise MetabonkError(f"num_envs must be >= 1, got {num_envs}")
    if not 8 <= size <= MAX_SIZE:
        raise MetabonkError(f"size must be in [8, {MAX_SIZE}], got {size}")
    if spec in ARENA_CONFIGS:
        from metabonk.envs.arena import make_arena_env
        from metabonk.envs.arena.config import named_config_overrides

        kw = {**named_config_overrides(spec), **kw}
        return make_arena_env(num_envs=num_envs, size=size, seed=seed, device=device, **kw)
    if spec.startswith("ale:"):
        from metabonk.envs.ale import make_ale_env

        return make_ale_env(spec[4:], num_envs=num_envs, size=size, seed=seed, **kw)
    if spec == "scroll":
        from metabonk.envs.scroll import make_scroll_env

        return make_scroll_env(num_envs=num_envs, size=size, seed=seed, **kw)
    if spec == "crafter":
        from metabonk.envs.crafter_env import make_crafter_env

        return make_crafter_env(num_envs=num_envs, size=size, seed=seed, **kw)
    if spec.startswith("bridge://"):
        from metabonk.envs.bridge.client import BridgeVectorEnv

        host, port = _parse_bridge(spec)
        return BridgeVectorEnv(host, port, size=size, seed=seed, num_envs=num_envs, **kw)
    raise MetabonkError(f"unknown env spec '{spec}'; valid: {', '.join(ENV_SPECS)}")


def arena_env_kwargs(env: str, frame_skip: int | None) -> dict[str, Any] | None:
    """The game options of a `--frame-skip` CLI option: Arena and its configurations only; None leaves the
    game's default."""
    if frame_skip is None:
        return None
    if env not in ARENA_CONFIGS:
        raise MetabonkError(f"--frame-skip is an Arena option; {env} has its own (ALE: frameskip 4)")
    return {"frame_skip": frame_skip}


def num_actions_of(env: VectorEnv) -> int:
    """Size n of the env's flat Discrete(n) action space."""
    space = env.single_action_space
    n = getattr(space, "n", None)
    if n is None:
        raise MetabonkError(f"env action space {space} is not a flat Discrete(n)")
    return int(n)


__all__ = ["ARENA_CONFIGS", "ENV_SPECS", "arena_env_kwargs", "make_env", "num_actions_of"]
