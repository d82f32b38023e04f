"""Plans checked in the dream: System 2's top-k intents are each dreamed by the world model with System 1, and
the intent with the best predicted return runs.

    checker = DreamChecker(WorldModel.load(world_ckpt), agent, DreamCheckConfig(candidates=3, samples=4))
    check = checker.check(frames_KHWC, actions_K, [kite, flee, collect_xp])   # on System 2's worker thread
    check.chosen, check.mean, check.stderr, check.latency_s

All candidates × samples are one batch: `ImaginationActorCritic.dream` burns System 1's recurrent state in on
the same real context for every row and dreams `horizon` steps, each row following its own intent. A row's
predicted return is sum_t γ^t r_t over the dreamed steps up to and including the first dreamed termination
(the reward head's end flag); no critic bootstrap after the horizon.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metabonk.common.errors import MetabonkError
from metabonk.common.intents import INTENTS
from metabonk.planner.planner import Decision
from metabonk.policy.agent import Agent
from metabonk.train.imagination import ImaginationActorCritic, ImaginationConfig
from metabonk.world.dream_env import DreamEnv
from metabonk.world.world_model import WorldModel


@dataclass
class DreamCheckConfig:
    """How System 2's intents are checked in the dream."""

    candidates: int = 3
    """k: System 2's top-k intents (its ranking, best first) that are dreamed."""
    samples: int = 4
    """Dreams per candidate (policy actions and diffusion noise are sampled): the standard error's n."""
    horizon: int = 15
    """Dreamed steps per dream."""
    gamma: float = 0.985
    """Discount of the predicted return."""
    switch_z: float = 0.0
    """Leave System 2's top intent only for a candidate whose mean beats it by more than this many standard
    errors of the difference (0: any higher mean wins; ties keep the better-ranked candidate)."""
    seed: int | None = 0
    """Seed of the dream's diffusion noise (policy actions use torch's global generator)."""


@dataclass
class DreamCheck:
    """One check: candidate intent ids (System 2's order) and their predicted discounted returns."""

    candidates: list[int]
    mean: list[float]
    stderr: list[float]
    terminated: list[float]
    """Fraction of each candidate's dreams that ended within the horizon."""
    chosen: int
    """The intent id that runs."""
    latency_s: float
    """Wall time of the check: what it adds to System 2's decision."""
    samples: int = 1
    horizon: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def discounted_returns(rewards: torch.Tensor, terminated: torch.Tensor, gamma: float) -> torch.Tensor:
    """[N,H] rewards and end flags → [N] sum_t γ^t r_t, counting steps up to and including the first end."""
    term = terminated.float()
    alive = torch.cumprod(torch.cat([term.new_ones(term.shape[0], 1), 1 - term[:, :-1]], 1), dim=1)
    disc = gamma ** torch.arange(term.shape[1], dtype=torch.float32, device=term.device)
    return (rewards.float() * alive * disc).sum(1)


def pick(mean: list[float], stderr: list[float], switch_z: float = 0.0) -> int:
    """The candidate with the highest mean (the first of equals: System 2's better-ranked one), unless it beats
    System 2's top candidate (index 0) by no more than `switch_z` standard errors of the difference."""
    best = max(range(len(mean)), key=lambda i: (mean[i], -i))
    if best != 0 and mean[best] - mean[0] <= switch_z * math.hypot(stderr[best], stderr[0]):
        return 0
    return best


class DreamChecker:
    """Dreams candidate intents from the last k real frames with System 1 (`agent`) in `world`."""

    def __init__(self, world: WorldModel, agent: Agent, config: DreamCheckConfig | None = None,
                 kernels: str = "eager") -> None:
        self.config = cfg = config or DreamCheckConfig()
        if cfg.candidates < 1 or cfg.samples < 1 or cfg.horizon < 1:
            raise MetabonkError("dream check: candidates, samples and horizon must be ≥ 1")
        wc = world.config
        if wc.frame_size != agent.cfg.image_size:
            raise MetabonkError(f"dream check: the world model dreams {wc.frame_size}px frames but System 1 sees "
                                f"{agent.cfg.image_size}px")
        self.env = DreamEnv(world, seed=cfg.seed, kernels=kernels)
        self.num_context = wc.num_context
        ic = ImaginationConfig(horizon=cfg.horizon, gamma=cfg.gamma)
        self.ac = ImaginationActorCritic(agent, wc.num_actions, ic, self.env).to(agent.reflex.device).eval()

    @torch.no_grad()
    def check(self, frames: Any, actions: Any, candidates: list[int]) -> DreamCheck:
        """frames uint8 [k,H,W,3] (the last k real frames, oldest first), actions [k] (taken at them; the last
        is replaced by the dream's first action), candidate intent ids best first → per-candidate returns."""
        t0 = time.perf_counter()
        cfg, k = self.config, self.num_context
        if not candidates:
            raise ValueError("dream check needs at least one candidate intent")
        f = torch.as_tensor(np.asarray(frames))
        a = torch.as_tensor(np.asarray(actions), dtype=torch.long)
        if f.dtype != torch.uint8 or f.ndim != 4 or f.shape[0] != k or a.shape != (k,):
            raise MetabonkError(f"dream check needs uint8 frames [{k},H,W,3] and actions [{k}], got "
                                f"{tuple(f.shape)} {f.dtype} and {tuple(a.shape)}")
        C, S = len(candidates), cfg.samples
        n = C * S
        intent = torch.tensor(candidates, dtype=torch.long).repeat_interleave(S)  # [C*S], candidate-major
        d = self.ac.dream(f[None].repeat(n, 1, 1, 1, 1), a[None].repeat(n, 1).clamp(min=0), intent)
        g = discounted_returns(d["rewards"], d["terminated"], cfg.gamma).view(C, S).double().cpu()
        mean = g.mean(1)
        se = g.std(1) / math.sqrt(S) if S > 1 else torch.zeros(C, dtype=torch.float64)
        ended = d["terminated"].amax(1).view(C, S).double().mean(1).cpu()
        best = pick(mean.tolist(), se.tolist(), cfg.switch_z)
        return DreamCheck(list(candidates), mean.tolist(), se.tolist(), ended.tolist(), candidates[best],
                          time.perf_counter() - t0, samples=S, horizon=cfg.horizon)

    def check_decision(self, decision: Decision, frames: Any, actions: Any) -> Decision:
        """System 2's intent decision with its top `candidates` intents checked in the dream: `value` becomes
        the checked choice, `unchecked` keeps System 2's own, `dream` the predicted returns, and the check's
        time is added to `latency_s`."""
        ranking = decision.ranking or [decision.value] + [i for i in INTENTS if i != decision.value]
        names = [decision.value] + [i for i in ranking if i != decision.value]
        ids = [INTENTS.index(i) for i in names[: self.config.candidates]]
        check = self.check(frames, actions, ids)
        chosen = INTENTS[check.chosen]
        return dataclasses.replace(decision, value=chosen, index=check.chosen, unchecked=decision.value,
                                   dream=check, latency_s=decision.latency_s + check.latency_s)
