"""Scoring policies on niches: first-episode returns over fixed seeds (the shared validation world),
death causes, and normalised scores (0 = the round's start policy, 100 = the niche's own specialist).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from metabonk.hive.niches import Niche, death_causes
from metabonk.hive.toy import EPISODE_STEPS
from metabonk.policy.agent import Agent
from metabonk.policy.evaluate import AgentController, bootstrap_ci


@dataclass
class NicheScore:
    """One policy on one niche: the return of each seed's first episode and how it ended."""

    returns: np.ndarray
    causes: list[str] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    def summary(self) -> dict[str, Any]:
        lo, hi = bootstrap_ci(self.returns)
        counts = {c: self.causes.count(c) for c in sorted(set(self.causes))}
        return {"mean": self.mean, "ci95": [lo, hi], "episodes": len(self.returns), "causes": counts}


def max_steps_for(niche: Niche) -> int:
    """A step cap that a whole stage, menus included, fits in."""
    return 2 * niche.arena_config().stage_steps + 200 if niche.kind == "arena" else EPISODE_STEPS


@torch.no_grad()
def score(agent: Agent, niche: Niche, episodes: int, seed: int) -> NicheScore:
    """Run one episode per seed seed..seed+episodes-1 of `niche` (sampled actions, the policy's own
    distribution) and return the profile returns and death causes."""
    env = niche.make_env(episodes, seed)
    ctrl = AgentController(agent, "cpu", greedy=False, seed=seed)
    try:
        obs, info = env.reset(seed=seed)
        ctrl.reset(env)
        finished = np.zeros(episodes, bool)
        returns = np.zeros(episodes)
        running = np.zeros(episodes)
        final_state = np.zeros_like(np.asarray(obs["state"]))
        terminated = np.zeros(episodes, bool)
        for _ in range(max_steps_for(niche)):
            obs, reward, term, trunc, info = env.step(ctrl.act(obs, info))
            running += np.asarray(reward, np.float64)
            done = np.asarray(term) | np.asarray(trunc)
            new = done & ~finished
            if new.any():
                returns[new] = running[new]
                ends = info.get("final_obs", obs)["state"]
                final_state[new] = np.asarray(ends)[new]
                terminated[new] = np.asarray(term)[new]
            finished |= done
            running[done] = 0.0
            ctrl.episode_done(done)
            if finished.all():
                break
        returns[~finished] = running[~finished]
        return NicheScore(returns, death_causes(niche, final_state, terminated))
    finally:
        env.close()


def resolution(start_returns: np.ndarray) -> float:
    """The smallest gain over the start policy that its own seeds can tell apart: the 95 % half-width
    (1.96 standard errors) of its mean, floored at 1e-6."""
    x = np.asarray(start_returns, np.float64)
    return max(1.96 * float(x.std(ddof=1)) / np.sqrt(len(x)) if len(x) > 1 else 0.0, 1e-6)


def normalised(value: float, start: float, specialist: float, floor: float = 1e-6) -> float:
    """100 * (value - start) / (specialist - start). The gap is floored at `floor` (`resolution` of the
    start's returns), so a specialist that learned nothing measurable does not blow the scale up."""
    return 100.0 * (value - start) / max(specialist - start, floor)
