"""Policy registry for recording and baselines: `get_policy(spec, name, env)` → `(obs, info) -> int64 [N]`.

"random" works for every env; "scripted" is the env's expert: the Arena ScriptedExpert on "arena" and its
named configurations (e.g. "arena-hard"), the RAM-reading ball trackers on "ale:Pong" and "ale:Breakout"
(metabonk.envs.ale_experts); elsewhere it is an error. "disturbed" (ALE only) is that expert broken by short
random bursts (video for behaviour cloning, ale_experts.Disturbed). "intents" (Arena only) is the intent expert under a
random intent schedule; its `step_extras()` give the commanded intent per step, which recording stores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv

from metabonk.common.errors import MetabonkError
from metabonk.envs import num_actions_of

Policy = Callable[[dict[str, np.ndarray], dict[str, Any]], np.ndarray]
POLICIES: tuple[str, ...] = ("random", "scripted", "disturbed", "intents")


class UniformRandomPolicy:
    """Uniformly random flat actions, one per env, from a seeded generator."""

    def __init__(self, num_envs: int, num_actions: int, seed: int = 0) -> None:
        self.num_envs = num_envs
        self.num_actions = num_actions
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        n = int(np.asarray(obs["pixels"]).shape[0]) if "pixels" in obs else self.num_envs
        return self.rng.integers(0, self.num_actions, size=n, dtype=np.int64)


def _as_int64(policy: Any) -> Policy:
    """Wrap a policy so it always returns a numpy int64 [N] array (A's may return tensors)."""

    def act(obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        a = policy(obs, info)
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        return np.asarray(a, dtype=np.int64).reshape(-1)

    return act


def _arena_policy(name: str, env: VectorEnv, seed: int) -> Policy:
    from metabonk.envs.arena.policies import RandomPolicy, ScriptedExpert

    if name == "intents":
        from metabonk.envs.arena.intent_expert import ScheduledIntentExpert

        return ScheduledIntentExpert(env.num_envs, config=getattr(env, "config", None), seed=seed)
    if name == "scripted":
        # the expert reads the state layout of the env's own config (e.g. overridden enemy slots)
        return _as_int64(ScriptedExpert(config=getattr(env, "config", None)))
    return _as_int64(RandomPolicy(seed=seed, num_actions=num_actions_of(env)))


def _is_arena(spec: str) -> bool:
    from metabonk.envs import ARENA_CONFIGS

    return spec in ARENA_CONFIGS


def has_scripted(spec: str) -> bool:
    """Whether env `spec` has a scripted expert ('scripted' policy)."""
    from metabonk.envs.ale_experts import ALE_EXPERTS

    return _is_arena(spec) or (spec.startswith("ale:") and spec[4:].strip().lower() in ALE_EXPERTS)


def get_policy(spec: str, name: str, env: VectorEnv, seed: int = 0) -> Policy:
    """The policy `name` for env `spec` acting in `env`; unknown or unsupported names are a MetabonkError."""
    if name not in POLICIES:
        raise MetabonkError(f"unknown policy '{name}'; valid: {', '.join(POLICIES)}")
    if name == "disturbed" and not spec.startswith("ale:"):
        raise MetabonkError(f"the disturbed expert plays ALE games only (ale:Pong, ale:Breakout), not '{spec}'")
    if _is_arena(spec):
        return _arena_policy(name, env, seed)
    if name == "intents":
        raise MetabonkError(f"the intent expert plays Arena only (arena, arena-hard), not '{spec}'")
    if name in ("scripted", "disturbed"):
        if not has_scripted(spec):
            raise MetabonkError(f"no scripted policy for env '{spec}' (arena, arena-hard, ale:Pong and "
                                "ale:Breakout have one); use --policy random")
        from metabonk.envs.ale_experts import DISTURB_RATE, ale_expert

        meanings = getattr(env, "action_meanings", None)
        if meanings is None:
            raise MetabonkError(f"env '{spec}' does not name its actions; the ALE expert needs them")
        disturb = DISTURB_RATE if name == "disturbed" else 0.0
        return _as_int64(ale_expert(spec, meanings, disturb=disturb, seed=seed))
    return UniformRandomPolicy(env.num_envs, num_actions_of(env), seed)


__all__ = ["POLICIES", "Policy", "UniformRandomPolicy", "get_policy", "has_scripted"]
