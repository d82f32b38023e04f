"""Evaluation in the real env: returns (the primary figure: mean, IQM, rliable 95 % intervals, human-normalised
on Atari) and survival times over fixed seeds, for a policy and for the random and scripted-expert baselines
on the very same seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from metabonk.common.errors import MetabonkError
from metabonk.envs.torch_obs import obs_to_torch
from metabonk.policy.agent import Agent


class Controller(Protocol):
    """Anything that picks a batch of env actions from a batch of observations."""

    def reset(self, env: Any) -> None: ...

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray: ...

    def episode_done(self, done: np.ndarray) -> None: ...


class AgentController:
    """Drives the env with an Agent, carrying its hidden state and resetting it where an episode ends."""

    def __init__(
        self,
        agent: Agent,
        device: torch.device | str = "cpu",
        greedy: bool = False,
        seed: int = 0,
        intent: int | str | None = None,
    ) -> None:
        self.agent = agent.eval()
        self.device = torch.device(device)
        self.greedy = greedy
        self.intent = intent
        self.seed = seed
        self.hidden = torch.zeros(0)

    def reset(self, env: Any) -> None:
        torch.manual_seed(self.seed)
        self.hidden = self.agent.initial_state(env.num_envs, self.device)

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        t_obs = obs_to_torch(obs, info, self.device)
        menu = (
            torch.as_tensor(np.asarray(info["menu_open"]), device=self.device)
            if "menu_open" in info
            else None
        )
        action, self.hidden, _ = self.agent.act(t_obs, self.hidden, self.intent, menu, greedy=self.greedy)
        return action.cpu().numpy().astype(np.int64)

    def episode_done(self, done: np.ndarray) -> None:
        keep = torch.as_tensor(~done, device=self.device, dtype=self.hidden.dtype).unsqueeze(-1)
        self.hidden = self.hidden * keep


class BaselineController:
    """A baseline from the env registry (metabonk.envs.policies): 'random' anywhere, 'scripted' where the
    env has an expert."""

    def __init__(self, env_spec: str, name: str, seed: int = 0) -> None:
        self.env_spec, self.name, self.seed = env_spec, name, seed
        self.fn: Any = None

    def reset(self, env: Any) -> None:
        from metabonk.envs.policies import get_policy

        self.fn = get_policy(self.env_spec, self.name, env, seed=self.seed)

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        return np.asarray(self.fn(obs, info), dtype=np.int64)

    def episode_done(self, done: np.ndarray) -> None:
        return None


@dataclass
class EpisodeStats:
    """First-episode return and length of each seed."""

    returns: np.ndarray
    lengths: np.ndarray
    truncated_at_cap: np.ndarray


def run_episodes(
    env_spec: str,
    controller: Controller,
    episodes: int,
    seed: int = 0,
    size: int = 64,
    max_steps: int = 10_000,
    env_kwargs: dict[str, Any] | None = None,
) -> EpisodeStats:
    """One episode per seed seed..seed+episodes-1, in one vector env; stops once every env has ended once."""
    from metabonk.envs import make_env

    env = make_env(env_spec, num_envs=episodes, size=size, seed=seed, **(env_kwargs or {}))
    try:
        obs, info = env.reset(seed=seed)
        controller.reset(env)
        finished = np.zeros(episodes, bool)
        returns = np.zeros(episodes, np.float64)
        lengths = np.zeros(episodes, np.int64)
        run_ret = np.zeros(episodes, np.float64)
        for t in range(max_steps):
            actions = controller.act(obs, info)
            obs, reward, term, trunc, info = env.step(actions)
            run_ret += np.asarray(reward, np.float64)
            done = np.asarray(term) | np.asarray(trunc)
            new = done & ~finished
            returns[new] = run_ret[new]
            lengths[new] = t + 1
            finished |= done
            run_ret[done] = 0.0
            controller.episode_done(done)
            if finished.all():
                break
        capped = ~finished
        returns[capped] = run_ret[capped]
        lengths[capped] = max_steps
        return EpisodeStats(returns, lengths, capped)
    finally:
        env.close()


def bootstrap_ci(x: np.ndarray, stat: Any = np.mean, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of `stat` over the values `x`."""
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float(stat(x)), float(stat(x))
    rng = np.random.default_rng(seed)
    boots = np.array([stat(x[rng.integers(0, len(x), len(x))]) for _ in range(n)])
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def summarize(stats: EpisodeStats, env_spec: str | None = None) -> dict[str, Any]:
    """Mean/median return and survival time with 95 % bootstrap intervals; for the return (the primary
    figure) also its std, IQM and interval (rliable) and, on Atari, the human-normalised score `hns_*`."""
    from metabonk.policy.rl_metrics import score_summary

    out: dict[str, Any] = {"episodes": len(stats.returns)}
    for name, x in (("return", stats.returns), ("survival", stats.lengths.astype(np.float64))):
        out[f"{name}_mean"] = float(np.mean(x))
        out[f"{name}_mean_ci95"] = bootstrap_ci(x, np.mean)
        out[f"{name}_median"] = float(np.median(x))
        out[f"{name}_median_ci95"] = bootstrap_ci(x, np.median)
    rl = score_summary(stats.returns, env_spec)
    out.update(return_std=rl["std"], return_iqm=rl["iqm"], return_iqm_ci95=rl["iqm_ci95"])
    out.update({k: v for k, v in rl.items() if k.startswith("hns_")})
    out["returns"] = [float(r) for r in stats.returns]
    out["hit_step_cap"] = int(stats.truncated_at_cap.sum())
    return out


def has_expert(env_spec: str) -> bool:
    """Whether the env registry ships a scripted expert for `env_spec` (Arena and its configurations,
    ALE Pong and Breakout)."""
    from metabonk.envs.policies import has_scripted

    return has_scripted(env_spec)


def baseline_controllers(env_spec: str, seed: int) -> dict[str, Controller]:
    """'random' for every env, plus 'expert' (the scripted expert) where the env has one."""
    out: dict[str, Controller] = {"random": BaselineController(env_spec, "random", seed)}
    if has_expert(env_spec):
        out["expert"] = BaselineController(env_spec, "scripted", seed)
    return out


def evaluate_policy(
    agent: Agent | None,
    env_spec: str = "arena",
    episodes: int = 32,
    seed: int = 0,
    device: str | torch.device = "cpu",
    baselines: bool = True,
    greedy: bool = False,
    max_steps: int = 10_000,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores of `agent` (and of the baselines on the same seeds) plus survival ratios."""
    if episodes < 1:
        raise MetabonkError(f"--episodes must be ≥ 1, got {episodes}")
    size = agent.cfg.image_size if agent is not None else 64
    res: dict[str, Any] = {"env": env_spec, "episodes": episodes, "seed": seed, "max_steps": max_steps,
                           "greedy": greedy}
    if agent is not None:
        ctrl = AgentController(agent, device, greedy=greedy, seed=seed)
        stats = run_episodes(env_spec, ctrl, episodes, seed, size, max_steps, env_kwargs)
        res["policy"] = summarize(stats, env_spec)
    if baselines:
        for name, c in baseline_controllers(env_spec, seed).items():
            res[name] = summarize(run_episodes(env_spec, c, episodes, seed, size, max_steps, env_kwargs), env_spec)
    if "policy" in res:
        p = res["policy"]["survival_mean"]
        for name in ("random", "expert"):
            if name in res:
                res[f"survival_vs_{name}"] = p / max(res[name]["survival_mean"], 1e-9)
    for name in ("policy", "expert"):
        if name in res:
            add_expert_normalized(res[name], res)
    return res


def add_expert_normalized(scores: dict[str, Any], baselines: dict[str, Any]) -> None:
    """Set scores["expert_normalized_return"] = (score - random) / (expert - random) from the "random" and
    "expert" summaries in `baselines` (1.0 plays as well as the scripted expert, 0.0 at random level); nothing
    where either is missing or they score the same."""
    if "random" not in baselines or "expert" not in baselines:
        return
    span = baselines["expert"]["return_mean"] - baselines["random"]["return_mean"]
    if abs(span) > 1e-9:
        scores["expert_normalized_return"] = (scores["return_mean"] - baselines["random"]["return_mean"]) / span
