"""Real-env collection for the online loop: the current policy acts (with DIAMOND's ε-exploration) in a vector
env, every transition goes to the crash-safe episode store, and finished episodes' returns feed the learning
curve. At the end of each phase unfinished episodes are written as truncated chunks, so every collected step is
on disk before the loop checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from metabonk.data.recorder import EpisodeRecorder
from metabonk.data.store import EpisodeStore
from metabonk.envs import num_actions_of
from metabonk.envs.torch_obs import obs_to_torch
from metabonk.policy.agent import Agent


@dataclass
class CollectResult:
    """What one collection phase did."""

    steps: int
    episodes_written: list[int] = field(default_factory=list)
    """Store indices of the episodes (and truncated chunks) written."""
    returns: list[float] = field(default_factory=list)
    """Returns of the real episodes that ended during the phase."""
    lengths: list[int] = field(default_factory=list)


class Collector:
    """Keeps the env, the policy's recurrent state and the recorder across the loop's collection phases."""

    def __init__(
        self,
        env: Any,
        agent: Agent,
        store: EpisodeStore,
        device: torch.device,
        epsilon: float = 0.01,
        seed: int = 0,
        intent: int = 0,
    ) -> None:
        self.env, self.agent, self.store, self.device = env, agent, store, device
        self.epsilon = epsilon
        self.num_envs = env.num_envs
        self.num_actions = num_actions_of(env)
        self.rng = np.random.default_rng([seed, 7])
        self.intent = torch.full((self.num_envs,), intent, dtype=torch.long, device=device)
        self.recorder = EpisodeRecorder(store, self.num_envs, meta={"source": "online"})
        self.obs, self.info = env.reset(seed=seed)
        self.hidden = agent.initial_state(self.num_envs, device)

    @torch.no_grad()
    def _policy_actions(self) -> np.ndarray:
        t_obs = obs_to_torch(self.obs, self.info, self.device)
        menu = self.info.get("menu_open")
        menu_t = None if menu is None else torch.as_tensor(np.asarray(menu), device=self.device)
        action, self.hidden, _ = self.agent.act(t_obs, self.hidden, self.intent, menu_t)
        a = action.cpu().numpy().astype(np.int64)
        explore = self.rng.random(self.num_envs) < self.epsilon
        if explore.any():
            a[explore] = self.rng.integers(0, self.num_actions, int(explore.sum()))
        return a

    def collect(self, steps: int, random_actions: bool = False) -> CollectResult:
        """Step every env until `steps` transitions (summed over envs, rounded up to whole vector steps)."""
        res = CollectResult(steps=0)
        self.agent.eval()
        while res.steps < steps:
            if random_actions:
                a = self.rng.integers(0, self.num_actions, self.num_envs)
            else:
                a = self._policy_actions()
            obs, reward, term, trunc, info = self.env.step(a)
            res.episodes_written += self.recorder.add(self.obs, a, reward, term, trunc, info)
            done = np.asarray(term) | np.asarray(trunc)
            if done.any():
                for i in np.flatnonzero(done):
                    res.returns.append(float(info["episode_return"][i]))
                    res.lengths.append(int(info["episode_length"][i]))
                keep = torch.as_tensor(~done, device=self.device, dtype=self.hidden.dtype).unsqueeze(-1)
                self.hidden = self.hidden * keep
            self.obs, self.info = obs, info
            res.steps += self.num_envs
        res.episodes_written += self.recorder.close_chunks(self.obs)
        return res
