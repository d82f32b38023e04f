"""Specialist trainers: start policy + niche + budget -> fine-tuned policy. Pluggable by name.

A trainer is any function `(config, start_bytes, niche, budget, seed) -> (bytes, metrics)` over
safetensors bytes, so a Ray actor can run it anywhere. `ppo` fine-tunes with the project's recurrent PPO
(metabonk.policy.ppo) in the niche's real env under its reward profile; `dream` with the online dream loop
(metabonk.train.online) in the same env and profile, most of its learning in the loop's world model.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from metabonk.common.errors import MetabonkError
from metabonk.hive.niches import Niche
from metabonk.hive.transport import agent_from, read_state, state_bytes


@dataclass
class TrainBudget:
    """How much each specialist trains per round (PPO's knobs; CleanRL names)."""

    total_steps: int = 4096
    num_envs: int = 16
    num_steps: int = 16
    num_minibatches: int = 4
    update_epochs: int = 4
    lr: float = 1e-3
    ent_coef: float = 0.01
    gamma: float = 0.99


Trainer = Callable[[dict[str, Any], bytes, Niche, TrainBudget, int], tuple[bytes, dict[str, Any]]]


def ppo_specialist(
    config: dict[str, Any], start: bytes, niche: Niche, budget: TrainBudget, seed: int
) -> tuple[bytes, dict[str, Any]]:
    """Fine-tune the start policy with recurrent PPO in `niche` (its env, its reward profile)."""
    from metabonk.policy.ppo import PPOArgs, train_ppo

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="hive-ppo-") as tmp:
        init = Path(tmp) / "init"
        agent_from(config, start).save(init, meta={"hive": "start"})
        args = PPOArgs(
            env=niche.env_name,
            out=str(Path(tmp) / "out"),
            total_steps=budget.total_steps,
            num_envs=budget.num_envs,
            num_steps=budget.num_steps,
            size=niche.size,
            lr=budget.lr,
            gamma=budget.gamma,
            num_minibatches=budget.num_minibatches,
            update_epochs=budget.update_epochs,
            ent_coef=budget.ent_coef,
            seed=seed,
            device="cpu",
            init=str(init),
            save_every_updates=10**9,
            quiet=True,
        )
        out = train_ppo(args, envs=niche.make_env(budget.num_envs, seed))
        data = state_bytes(read_state(out))
    return data, {"trainer": "ppo", "env_steps": budget.total_steps, "train_s": time.time() - t0, **asdict(budget)}


def dream_specialist(
    config: dict[str, Any], start: bytes, niche: Niche, budget: TrainBudget, seed: int
) -> tuple[bytes, dict[str, Any]]:
    """Fine-tune the start policy with the online dream loop (metabonk.train.online) in `niche`'s real env
    under its reward profile: `budget.total_steps` real steps, the rest learned in the loop's world model."""
    from metabonk.train.agent_config import loop_config
    from metabonk.train.online import AgentLoop

    if niche.kind != "arena":
        raise MetabonkError("the dream trainer needs pixel niches (arena); toy niches train with --trainer ppo")
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="hive-dream-") as tmp:
        init = Path(tmp) / "init"
        agent_from(config, start).save(init, meta={"hive": "start"})
        steps = max(budget.total_steps, 2 * budget.num_envs)
        cfg = loop_config("default", env=niche.env_name, out=str(Path(tmp) / "run"), init=str(init), seed=seed,
                          env_steps=steps, num_envs=budget.num_envs, size=niche.size, start_steps=steps // 2,
                          collect_steps=steps - steps // 2, world_size="tiny", device="cpu", quiet=True,
                          eval_episodes=0, world_updates=max(10, steps // 20), ac_updates=max(4, steps // 100),
                          ac_batch=16, sampler_steps=1)
        loop = AgentLoop(cfg, env=niche.make_env(budget.num_envs, seed))
        state = loop.run()
        data = state_bytes(read_state(Path(cfg.out) / "agent"))
    return data, {"trainer": "dream", "env_steps": loop.env_steps, "epochs": state["epoch"],
                  "train_s": time.time() - t0, **asdict(budget)}


TRAINERS: dict[str, Trainer] = {"ppo": ppo_specialist, "dream": dream_specialist}


def get_trainer(name: str) -> Trainer:
    if name not in TRAINERS:
        raise MetabonkError(f"unknown specialist trainer '{name}' (choose {', '.join(TRAINERS)})")
    return TRAINERS[name]
