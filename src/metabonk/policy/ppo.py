"""Recurrent PPO in the real vectorised env (CleanRL's ppo_atari_lstm, for our Agent): the baseline that
every learned-from-video result is compared with at an equal number of real env steps.

Reads top to bottom: make env and agent, collect a rollout carrying the recurrent state, GAE, clipped
policy/value update over whole-env sequence minibatches, log, checkpoint (resumable).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.checkpoint import load_trainer_state
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.common.logging import ScalarLogger, progress_bar
from metabonk.envs.torch_obs import obs_to_torch
from metabonk.policy.agent import Agent
from metabonk.policy.config import config_for_env


@dataclass
class PPOArgs:
    """PPO settings (CleanRL names)."""

    env: str = "arena"
    out: str = "runs/policy-ppo"
    """Checkpoint directory (kind "policy"); TensorBoard logs go to OUT.tb/."""
    total_steps: int = 100_000
    """Real env steps (summed over the parallel envs)."""
    num_envs: int = 8
    num_steps: int = 64
    """Rollout length per env per update."""
    size: int = 64
    lr: float = 2.5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    intent: int = 0
    """Intent id the policy is conditioned on during training (metabonk.common.intents)."""
    seed: int = 0
    device: str = "auto"
    init: str | None = None
    """Fine-tune this policy checkpoint (e.g. a BC policy) instead of starting fresh."""
    save_every_updates: int = 20
    quiet: bool = False
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    """PolicyConfig overrides for a fresh agent (e.g. {"core": "mamba"})."""


def train_ppo(args: PPOArgs, envs: Any = None) -> Path:
    """Train (or resume) a policy with PPO in the real env (or in `envs`, any vector env honouring the env
    contract); returns the checkpoint directory."""
    from metabonk.envs import make_env

    if args.num_envs % args.num_minibatches != 0:
        raise MetabonkError("num_envs must be divisible by num_minibatches (minibatches are whole envs)")
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if envs is None:
        envs = make_env(args.env, num_envs=args.num_envs, size=args.size, seed=args.seed, **args.env_kwargs)
    if envs.num_envs != args.num_envs:
        raise MetabonkError(f"env has {envs.num_envs} copies but num_envs={args.num_envs}")
    n_actions = int(envs.single_action_space.n)
    is_arena = args.env.startswith("arena")

    out = Path(args.out)
    resume = load_trainer_state(out) if (out / "config.json").is_file() and args.init is None else None
    if resume is not None and resume.get("algo") == "ppo":
        agent = Agent.load(out, device)
    else:
        resume = None
        agent = (
            Agent.load(args.init, device)
            if args.init
            else Agent(config_for_env(n_actions, is_arena, image_size=args.size, **args.policy)).to(device)
        )
    if agent.cfg.env_actions != n_actions:
        raise MetabonkError(f"policy drives {agent.cfg.env_actions} actions but {args.env} has {n_actions}")
    opt = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)
    global_step = 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        global_step = int(resume["global_step"])
    logger = ScalarLogger(f"{out}.tb")
    meta = {"algo": "ppo", "env": args.env}

    def save() -> None:
        agent.save(
            out,
            meta={**meta, "global_step": global_step},
            trainer_state={"algo": "ppo", "global_step": global_step, "optimizer": opt.state_dict()},
        )

    N, T = args.num_envs, args.num_steps
    batch_steps = N * T
    num_updates = max(1, (args.total_steps - global_step) // batch_steps)
    obs, info = envs.reset(seed=args.seed)
    hidden = agent.initial_state(N, device)
    next_first = torch.ones(N, dtype=torch.bool, device=device)
    intent = torch.full((N,), args.intent, dtype=torch.long, device=device)
    t0 = time.time()
    with progress_bar("ppo", num_updates, disable=args.quiet) as advance:
        for update in range(num_updates):
            buf: dict[str, list[torch.Tensor]] = {
                k: []
                for k in ("pixels", "state", "cards", "menu", "actions", "logp", "values", "rewards", "first")
            }
            hidden0 = hidden.clone()
            for _ in range(T):
                t_obs = obs_to_torch(obs, info, device)
                menu = torch.as_tensor(np.asarray(info.get("menu_open", np.zeros(N, bool))), device=device)
                hidden = hidden * (~next_first).float().unsqueeze(-1)
                with torch.no_grad():
                    action, hidden, ex = agent.act(t_obs, hidden, intent, menu)
                buf["pixels"].append(t_obs["pixels"])
                buf["state"].append(t_obs.get("state", torch.zeros(N, 0, device=device)))
                buf["cards"].append(
                    t_obs.get("card_options", torch.zeros(N, 3, dtype=torch.long, device=device))
                )
                buf["menu"].append(menu)
                buf["actions"].append(action)
                buf["logp"].append(ex["logp"])
                buf["values"].append(ex["value"])
                buf["first"].append(next_first)
                obs, reward, term, trunc, info = envs.step(action.cpu().numpy())
                buf["rewards"].append(torch.as_tensor(reward, dtype=torch.float32, device=device))
                done = np.asarray(term) | np.asarray(trunc)
                next_first = torch.as_tensor(done, device=device)
                global_step += N
                if done.any() and "episode_return" in info:
                    for i in np.flatnonzero(done):
                        logger.log(
                            global_step,
                            **{
                                "charts/episodic_return": float(info["episode_return"][i]),
                                "charts/episodic_length": float(info["episode_length"][i]),
                            },
                        )
            b = {k: torch.stack(v, dim=1) for k, v in buf.items()}  # [N, T, ...]
            with torch.no_grad():
                _, next_value, _, _ = agent.step(
                    obs_to_torch(obs, info, device), hidden * (~next_first).float().unsqueeze(-1), intent
                )
            # GAE: first[t+1] marks that step t ended its episode.
            adv = torch.zeros(N, T, device=device)
            last = torch.zeros(N, device=device)
            for t in reversed(range(T)):
                nonterminal = (~(next_first if t == T - 1 else b["first"][:, t + 1])).float()
                nv = next_value if t == T - 1 else b["values"][:, t + 1]
                delta = b["rewards"][:, t] + args.gamma * nv * nonterminal - b["values"][:, t]
                last = delta + args.gamma * args.gae_lambda * nonterminal * last
                adv[:, t] = last
            returns = adv + b["values"]

            env_idx = np.arange(N)
            per_mb = N // args.num_minibatches
            for _ in range(args.update_epochs):
                np.random.shuffle(env_idx)
                for s in range(0, N, per_mb):
                    mb = torch.as_tensor(env_idx[s : s + per_mb], device=device)
                    o = {"pixels": b["pixels"][mb], "card_options": b["cards"][mb]}
                    if agent.cfg.state_dim > 0:
                        o["state"] = b["state"][mb]
                    logits, value, cards, _ = agent.forward_sequence(
                        o, hidden0[mb], intent[mb].unsqueeze(1), resets_BT=b["first"][mb]
                    )
                    logp, ent = agent.log_prob_entropy(logits, cards, b["menu"][mb], b["actions"][mb])
                    ratio = (logp - b["logp"][mb]).exp()
                    a = adv[mb]
                    a = (a - a.mean()) / (a.std() + 1e-8)
                    pg_loss = torch.max(
                        -a * ratio, -a * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)
                    ).mean()
                    v_loss = 0.5 * ((value - returns[mb]) ** 2).mean()
                    ent_loss = ent.mean()
                    loss = pg_loss - args.ent_coef * ent_loss + args.vf_coef * v_loss
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    opt.step()
                    with torch.no_grad():
                        approx_kl = ((ratio - 1) - (logp - b["logp"][mb])).mean()
            sps = (
                global_step / max(time.time() - t0, 1e-9)
                if update == 0
                else batch_steps * (update + 1) / max(time.time() - t0, 1e-9)
            )
            logger.log(
                global_step,
                **{
                    "losses/policy_loss": float(pg_loss.detach()),
                    "losses/value_loss": float(v_loss.detach()),
                    "losses/entropy": float(ent_loss.detach()),
                    "losses/approx_kl": float(approx_kl),
                    "charts/SPS": sps,
                },
            )
            if (update + 1) % args.save_every_updates == 0:
                save()
            ret = logger.last.get("charts/episodic_return", float("nan"))
            advance(1, status=f"step {global_step} return {ret:.2f}")
    save()
    logger.close()
    envs.close()
    return out
