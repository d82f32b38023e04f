"""Record N episodes of a policy playing an env into a new episode store (behind `metabonk record`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.common.logging import progress_bar
from metabonk.data.recorder import EpisodeRecorder
from metabonk.data.store import EpisodeStore


@dataclass
class RecordSummary:
    """Figures of one recording run."""

    episodes: int
    transitions: int
    steps: int
    mean_return: float
    mean_length: float
    seconds: float


def record_episodes(
    env_spec: str,
    out: str | Path,
    episodes: int,
    policy: str = "random",
    num_envs: int = 1,
    size: int = 64,
    seed: int = 0,
    keep_actions: bool = True,
    max_steps: int | None = None,
    device: str = "cpu",
    show_progress: bool = True,
    env_kwargs: dict[str, Any] | None = None,
) -> RecordSummary:
    """Play `policy` in `env_spec` until `episodes` episodes are finished and stored at `out`.

    `env_kwargs` go to the game (e.g. ALE's `sticky_actions`) and are kept in the store's meta."""
    import time

    from metabonk.envs import make_env, num_actions_of
    from metabonk.envs.policies import get_policy

    if episodes < 1:
        raise MetabonkError(f"--episodes must be >= 1, got {episodes}")
    env_kwargs = dict(env_kwargs or {})
    env = make_env(env_spec, num_envs=num_envs, size=size, seed=seed, device=device, **env_kwargs)
    try:
        act = get_policy(env_spec, policy, env, seed=seed)
        n_actions = num_actions_of(env)
        meta: dict[str, Any] = {"policy": policy, "seed": seed, "num_envs": num_envs, **env_kwargs}
        names = getattr(env, "action_meanings", None)
        if names is not None:
            meta["action_meanings"] = list(names)
        step_extras = getattr(act, "step_extras", None)  # e.g. the intent expert's commanded intents
        if step_extras is not None:
            from metabonk.common.intents import INTENTS

            meta["intents"] = list(INTENTS)
        obs, info = env.reset(seed=seed)
        frame_size = int(np.asarray(_np(obs["pixels"])).shape[1])  # what the game really renders
        store = EpisodeStore.create(out, env_spec, n_actions, frame_size, meta=meta)
        rec = EpisodeRecorder(store, num_envs, keep_actions=keep_actions, max_steps=max_steps,
                              meta={"env": env_spec, "policy": policy, "seed": seed},
                              max_episodes=episodes)
        steps = 0
        t0 = time.perf_counter()
        title = f"record {env_spec} ({policy})"
        with progress_bar(title, total=episodes, disable=not show_progress) as advance:
            try:
                while not rec.done:
                    actions = act(obs, info)
                    extra = step_extras() if step_extras is not None else None
                    next_obs, reward, terminated, truncated, info = env.step(actions)
                    step = (_np(reward), _np(terminated), _np(truncated))
                    new = rec.add(_to_numpy(obs), actions, *step, _info_numpy(info), extra)  # type: ignore[arg-type]
                    obs = next_obs
                    steps += num_envs
                    if new:
                        advance(len(new), status=f"{steps} steps")
            except MetabonkError as e:  # e.g. a bridge game that died: say what was kept
                err = MetabonkError(f"{e} (recording stopped; {rec.episodes_written} finished episode(s) "
                                    f"kept in {out})")
                err.exit_code = e.exit_code
                raise err from e
        seconds = time.perf_counter() - t0
    finally:
        env.close()
    lengths = [store.lengths[i] for i in rec.written]
    returns = [store.episode_meta(i)["return"] for i in rec.written]
    return RecordSummary(
        episodes=len(rec.written),
        transitions=int(sum(lengths)),
        steps=steps,
        mean_return=float(np.mean(returns)),
        mean_length=float(np.mean(lengths)),
        seconds=seconds,
    )


def _np(x: object) -> object:
    """Tensors (Arena on GPU/CPU) → numpy; everything else unchanged."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()  # type: ignore[attr-defined]
    return x


def _to_numpy(obs: dict[str, object]) -> dict[str, np.ndarray]:
    return {k: np.asarray(_np(v)) for k, v in obs.items()}


def _info_numpy(info: dict[str, object]) -> dict[str, object]:
    out = {k: _np(v) for k, v in info.items()}
    if isinstance(info.get("final_obs"), dict):
        out["final_obs"] = _to_numpy(info["final_obs"])  # type: ignore[arg-type]
    return out
