"""Turn a vector env's step stream into finished episodes in an EpisodeStore.

Call `add(obs, actions, reward, terminated, truncated, info)` once per vector step, where `obs` is the
observation the actions were taken at and the rest is what `env.step(actions)` returned. With SAME_STEP
autoreset the last frame of a finished episode comes from `info["final_obs"]`, and the next call's `obs`
row is already the new episode's first frame. Unfinished episodes are never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.data.store import EpisodeStore


class _Buffer:
    """Steps of one sub-env's current episode."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []
        self.extra: dict[str, list[Any]] = {}
        self.step_arrays: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        return len(self.actions)


class EpisodeRecorder:
    """Buffers per-env steps and appends each finished episode to `store`."""

    def __init__(
        self,
        store: EpisodeStore,
        num_envs: int,
        keep_actions: bool = True,
        keep_state: bool = True,
        max_steps: int | None = None,
        info_keys: Sequence[str] = (),
        meta: dict[str, Any] | None = None,
        max_episodes: int | None = None,
    ) -> None:
        if num_envs < 1:
            raise MetabonkError(f"num_envs must be >= 1, got {num_envs}")
        if max_steps is not None and max_steps < 1:
            raise MetabonkError(f"max_steps must be >= 1, got {max_steps}")
        self.store = store
        self.num_envs = num_envs
        self.keep_actions = keep_actions
        self.keep_state = keep_state
        self.max_steps = max_steps
        self.info_keys = tuple(info_keys)
        self.meta = dict(meta or {})
        self.max_episodes = max_episodes
        self._buf = [_Buffer() for _ in range(num_envs)]
        self._episode_counter = [0] * num_envs
        self.written: list[int] = []
        """Store indices of the episodes written so far."""

    @property
    def episodes_written(self) -> int:
        return len(self.written)

    @property
    def done(self) -> bool:
        """True once `max_episodes` episodes are written (later episodes are dropped)."""
        return self.max_episodes is not None and len(self.written) >= self.max_episodes

    def pending_steps(self) -> int:
        """Steps buffered in unfinished episodes (lost if recording stops now)."""
        return sum(len(b) for b in self._buf)

    def add(
        self,
        obs: dict[str, np.ndarray],
        actions: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, Any],
        extra: dict[str, np.ndarray] | None = None,
    ) -> list[int]:
        """Record one vector step; returns the store indices of episodes finished by it. `extra` holds per-step
        arrays [N] stored under their own names (e.g. the commanded `intent`)."""
        pixels = np.asarray(obs["pixels"])
        if pixels.shape[0] != self.num_envs:
            raise MetabonkError(f"recorder expects {self.num_envs} envs, got obs for {pixels.shape[0]}")
        state = obs.get("state") if self.keep_state else None
        actions = np.asarray(actions).reshape(self.num_envs)
        reward = np.asarray(reward, dtype=np.float32).reshape(self.num_envs)
        terminated = np.asarray(terminated, dtype=bool).reshape(self.num_envs)
        truncated = np.asarray(truncated, dtype=bool).reshape(self.num_envs)
        done = terminated | truncated
        final = info.get("final_obs") if done.any() else None
        if done.any() and final is None:
            raise MetabonkError("an episode ended but info has no 'final_obs' (needs SAME_STEP autoreset)")
        finished: list[int | None] = []
        for i in range(self.num_envs):
            b = self._buf[i]
            if self.max_steps is not None and len(b) >= self.max_steps:
                # chunk cut at max_steps: this obs closes it (truncated) and opens the next chunk
                b.truncated[-1] = True
                finished.append(self._flush(i, pixels[i].copy(), None if state is None else state[i]))
                b = self._buf[i]
            b.frames.append(pixels[i].copy())  # envs may reuse their obs buffers in place
            if state is not None:
                b.states.append(np.array(state[i], dtype=np.float32))
            b.actions.append(int(actions[i]))
            b.rewards.append(float(reward[i]))
            b.terminated.append(bool(terminated[i]))
            b.truncated.append(bool(truncated[i]))
            for k in self.info_keys:
                b.extra.setdefault(k, []).append(np.asarray(info[k])[i])
            for k, v in (extra or {}).items():
                b.step_arrays.setdefault(k, []).append(np.asarray(v)[i])
            if done[i]:
                assert final is not None
                fstate = final.get("state") if state is not None else None
                finished.append(self._flush(i, np.asarray(final["pixels"])[i],
                                            None if fstate is None else np.asarray(fstate)[i]))
        return [f for f in finished if f is not None]

    def close_chunks(self, obs: dict[str, np.ndarray]) -> list[int]:
        """Write every unfinished episode now as a chunk marked truncated, closed by `obs` (the observation the
        next actions will be taken at; the next `add` opens the following chunk with it). The online loop calls
        this at the end of each collection phase so that every step collected so far is on disk."""
        pixels = np.asarray(obs["pixels"])
        state = obs.get("state") if self.keep_state else None
        written = []
        for i in range(self.num_envs):
            if len(self._buf[i]):
                self._buf[i].truncated[-1] = True
                idx = self._flush(i, pixels[i].copy(), None if state is None else np.asarray(state)[i])
                if idx is not None:
                    written.append(idx)
        return written

    def _flush(self, i: int, last_frame: np.ndarray, last_state: np.ndarray | None) -> int | None:
        b = self._buf[i]
        if self.done:
            self._buf[i] = _Buffer()
            return None
        ep: dict[str, np.ndarray] = {
            "obs": np.stack([*b.frames, last_frame]),
            "reward": np.asarray(b.rewards, np.float32),
            "terminated": np.asarray(b.terminated, bool),
            "truncated": np.asarray(b.truncated, bool),
        }
        if self.keep_actions:
            ep["action"] = np.asarray(b.actions, np.int64)
        if b.states and last_state is not None:
            ep["state"] = np.stack([*b.states, np.asarray(last_state, np.float32)])
        for k, vals in b.extra.items():
            ep[f"info_{k}"] = np.asarray(vals)
        for k, vals in b.step_arrays.items():
            ep[k] = np.asarray(vals)
        meta = {**self.meta, "env_index": i, "env_episode": self._episode_counter[i]}
        self._episode_counter[i] += 1
        index = self.store.append(ep, meta=meta)
        self.written.append(index)
        self._buf[i] = _Buffer()
        return index
