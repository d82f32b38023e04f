"""Transitions for the latent models: episodes held in memory, train/held-out split, window sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.errors import MetabonkError
from metabonk.envs.arena.spec import menu_open_of
from metabonk.latent.frames import movement_map


@dataclass
class TransitionData:
    """Episodes (frames uint8 [T+1,H,W,3], actions int64 [T] or None) and an index of usable (episode, t).

    `active[e][t]` says whether a move at step t could take effect (Arena: the level-up menu was closed);
    the *effective* movement of a step is its action's movement class when active, else stand (0).
    """

    frames: list[torch.Tensor]
    actions: list[torch.Tensor | None]
    index: np.ndarray
    env: str = "unknown"
    num_actions: int = 0
    active: list[np.ndarray | None] | None = None

    @classmethod
    def from_episodes(cls, episodes: list[dict[str, Any]], env: str = "unknown",
                      num_actions: int = 0) -> TransitionData:
        """Build from dicts with 'obs' (uint8 [T+1,H,W,3]) and optional 'action' (int [T])."""
        frames, actions, rows, active = [], [], [], []
        for e, ep in enumerate(episodes):
            obs = torch.as_tensor(np.asarray(ep["obs"]), dtype=torch.uint8)
            act = ep.get("action")
            state = ep.get("state")
            menu_open = (menu_open_of(np.asarray(state)[:-1])
                         if env.startswith("arena") and state is not None else None)
            active.append(None if menu_open is None else ~menu_open)
            frames.append(obs)
            actions.append(None if act is None else torch.as_tensor(np.asarray(act), dtype=torch.int64))
            steps = obs.shape[0] - 1
            rows.extend((e, t) for t in range(steps))
        if not rows:
            raise MetabonkError("no transitions: the episodes hold fewer than 2 frames each")
        if num_actions <= 0:
            seen = [int(a.max()) + 1 for a in actions if a is not None and a.numel()]
            num_actions = max(seen) if seen else 0
        return cls(frames, actions, np.asarray(rows, dtype=np.int64), env, num_actions, active)

    @property
    def frame_size(self) -> int:
        return int(self.frames[0].shape[1])

    @property
    def labelled(self) -> bool:
        return all(a is not None for a in self.actions)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def movement_classes(self) -> np.ndarray:
        return movement_map(self.env, self.num_actions)

    def windows(self, rows: np.ndarray, context: int, future: int = 0) -> torch.Tensor:
        """Frames uint8 [B, context+2+future, H, W, 3], x_{t-context} .. x_{t+1+future}, for the given index rows
        (the episode's first / last frame repeated beyond its ends)."""
        out = []
        offsets = np.arange(-context, 2 + future)
        for e, t in self.index[rows]:
            idx = np.clip(t + offsets, 0, self.frames[e].shape[0] - 1)
            out.append(self.frames[e][torch.from_numpy(idx)])
        return torch.stack(out)

    def actions_at(self, rows: np.ndarray) -> torch.Tensor:
        """Ground-truth actions int64 [B] for the given index rows."""
        out = []
        for e, t in self.index[rows]:
            act = self.actions[e]
            if act is None:
                raise MetabonkError("this data has no action labels (video); a labelled store is needed here")
            out.append(act[t])
        return torch.stack(out)

    def movement_at(self, rows: np.ndarray) -> torch.Tensor:
        """Effective movement class int64 [B]: the action's class, or stand where moves had no effect."""
        move = torch.from_numpy(self.movement_classes())[self.actions_at(rows)]
        if self.active is None:
            return move
        act = [True if self.active[e] is None else bool(self.active[e][t]) for e, t in self.index[rows]]
        return torch.where(torch.tensor(act), move, torch.zeros_like(move))

    def sample(self, batch: int, rng: np.random.Generator, context: int,
               with_actions: bool = False, future: int = 0) -> dict[str, torch.Tensor]:
        rows = rng.integers(0, len(self), size=batch)
        out = {"frames": self.windows(rows, context, future)}
        if with_actions:
            out["action"] = self.actions_at(rows)
            out["movement"] = self.movement_at(rows)
        return out

    def subset(self, rows: np.ndarray) -> TransitionData:
        """The same episodes restricted to some index rows (e.g. the first K labelled transitions)."""
        return TransitionData(self.frames, self.actions, self.index[rows], self.env, self.num_actions,
                              self.active)

    def previous(self) -> tuple[np.ndarray, TransitionData]:
        """(rows with t > 0, the transitions one step before each of them): for probes of consecutive codes."""
        rows = np.nonzero(self.index[:, 1] > 0)[0]
        before = self.index[rows] - np.array([0, 1], dtype=self.index.dtype)
        return rows, TransitionData(self.frames, self.actions, before, self.env, self.num_actions, self.active)

    def take(self, count: int, seed: int = 0) -> TransitionData:
        """A random subset of `count` transitions (all of them when count >= len)."""
        if count <= 0 or count >= len(self):
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size=count, replace=False))
        return self.subset(rows)

    def split(self, holdout: float = 0.2) -> tuple[TransitionData, TransitionData]:
        """(train, held-out): whole episodes when there are >= 5, else the last part of every episode."""
        ep = self.index[:, 0]
        n_eps = len(self.frames)
        if n_eps < 5:
            return self.tail_split(holdout)
        held = ep >= n_eps - max(1, round(n_eps * holdout))
        return self.subset(np.nonzero(~held)[0]), self.subset(np.nonzero(held)[0])

    def tail_split(self, holdout: float = 0.2) -> tuple[TransitionData, TransitionData]:
        """(train, held-out): the last `holdout` of every episode held out, so both parts span every episode
        (e.g. a labelled set of a few chunks, each from another phase of the game)."""
        ep, t = self.index[:, 0], self.index[:, 1]
        lengths = np.array([self.frames[e].shape[0] - 1 for e in ep])
        held = t >= np.floor(lengths * (1 - holdout))
        return self.subset(np.nonzero(~held)[0]), self.subset(np.nonzero(held)[0])


def load_transitions(path: str | Path, max_episodes: int = 0) -> TransitionData:
    """Read an episode store directory into memory (frames, and actions where recorded)."""
    from metabonk.data.store import EpisodeStore

    path = Path(path)
    if not path.exists():
        raise MetabonkError(f"episode store {path} does not exist")
    store = EpisodeStore.open(path)
    n = len(store)
    if max_episodes > 0:
        n = min(n, max_episodes)
    if n == 0:
        raise MetabonkError(f"episode store {path} holds no finished episodes")
    episodes = [store.episode(i, keys=[k for k in ("obs", "action", "state") if k in store.episode_keys(i)])
                for i in range(n)]
    return TransitionData.from_episodes(episodes, env=store.env_spec or "unknown",
                                        num_actions=int(store.num_actions or 0))
