"""Actor-critic in imagination (DIAMOND / Dreamer style): the policy learns inside the world model's DreamEnv.

Each update: sample real starts (k context frames + actions) from an episode store, burn the policy's
recurrent state in on the context, dream H steps with the current policy, compute λ-returns bootstrapped by
the critic (masked after a dreamed termination), then REINFORCE with the value baseline plus an entropy bonus,
and a value regression on the λ-returns. Optionally mixes real experience: a behaviour-cloning term on real
labelled windows keeps the policy anchored where the dream is unreliable. Logs, checkpoints, resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metabonk.common.checkpoint import load_trainer_state
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.common.logging import ScalarLogger, progress_bar
from metabonk.policy.agent import Agent
from metabonk.policy.bc import bc_loss


@dataclass
class DreamArgs:
    """Imagination actor-critic settings (defaults after DIAMOND's)."""

    world: str = ""
    """World-model checkpoint (kind "world")."""
    data: str = ""
    """Episode store the dreams start from (and the real experience mixed in)."""
    out: str = "runs/policy-dream"
    init: str | None = None
    """Start from this policy checkpoint (normally the BC policy)."""
    action_key: str = "auto"
    """Store key of the context actions: action, action_idm, or auto (action when every episode has it)."""
    updates: int = 200
    batch_size: int = 16
    """Dreams per update."""
    horizon: int = 15
    gamma: float = 0.985
    lam: float = 0.95
    lr: float = 1e-4
    ent_coef: float = 0.001
    value_coef: float = 1.0
    bc_coef: float = 0.5
    """Weight of the behaviour-cloning term on real windows (0 = dream only)."""
    bc_seq_len: int = 16
    sampler_steps: int | None = None
    """Denoising steps per dreamed frame (None = the world model's default)."""
    intent: int = 0
    seed: int = 0
    device: str = "auto"
    save_every: int = 50
    quiet: bool = False


def lambda_returns(
    rewards_BH: torch.Tensor, values_BH1: torch.Tensor, cont_BH: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """G_t = r_t + γ c_t [(1-λ) V_{t+1} + λ G_{t+1}], bootstrapped by V_H; `cont` = 0 once the dream ended."""
    H = rewards_BH.shape[1]
    out = torch.zeros_like(rewards_BH)
    nxt = values_BH1[:, H]
    for t in reversed(range(H)):
        nxt = rewards_BH[:, t] + gamma * cont_BH[:, t] * ((1 - lam) * values_BH1[:, t + 1] + lam * nxt)
        out[:, t] = nxt
    return out


def train_dream(args: DreamArgs) -> Path:
    """Train (or resume) a policy in the world model's dream; returns the checkpoint directory."""
    from metabonk.data.store import EpisodeStore
    from metabonk.world.dream_env import DreamEnv, contexts_from_store
    from metabonk.world.world_model import WorldModel

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    store = EpisodeStore.open(args.data)
    key = args.action_key if args.action_key != "auto" else ("action" if store.has_actions else "action_idm")
    world = WorldModel.load(args.world, device)
    env = DreamEnv(world, num_steps=args.sampler_steps, max_episode_steps=10**9, seed=args.seed)
    k = env.num_context

    out = Path(args.out)
    resume = load_trainer_state(out) if (out / "config.json").is_file() else None
    if resume is not None and resume.get("algo") == "dream":
        agent = Agent.load(out, device)
    else:
        resume = None
        if not args.init:
            raise MetabonkError("dream training needs --init POLICY (e.g. the BC policy) to start from")
        agent = Agent.load(args.init, device)
    if agent.cfg.image_size != env.frame_size:
        raise MetabonkError(
            f"policy sees {agent.cfg.image_size}px frames, the world model dreams {env.frame_size}px"
        )
    n_world = env.num_actions
    usable = min(agent.cfg.move_actions, n_world)
    opt = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)
    start = 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        start = int(resume["update"])
    bc_keys = ["obs", key] + (["action_idm_conf"] if key == "action_idm" else [])
    bc_eps = store.eligible_episodes(max(args.bc_seq_len, k), bc_keys)
    logger = ScalarLogger(f"{out}.tb")
    meta = {"algo": "dream", "world": str(args.world), "data": str(args.data)}

    def save(update: int) -> None:
        agent.save(
            out,
            meta={**meta, "update": update},
            trainer_state={"algo": "dream", "update": update, "optimizer": opt.state_dict()},
        )

    B, H = args.batch_size, args.horizon
    intent = torch.full((B,), args.intent, dtype=torch.long, device=device)
    mask = torch.zeros(agent.cfg.move_actions, device=device)
    mask[usable:] = float("-inf")  # moves the world model has no action for are never dreamed
    t0 = time.time()
    with progress_bar("dream", args.updates, disable=args.quiet) as advance:
        advance(start)
        for update in range(start, args.updates):
            frames, actions = contexts_from_store(store, B, k, rng, episodes=bc_eps, action_key=key)
            actions = np.minimum(actions, n_world - 1)
            pixels, _ = env.reset(frames, actions)
            ctx = torch.as_tensor(frames, device=device)
            # Burn in the recurrent state on the real context (no gradient), then dream H steps.
            with torch.no_grad():
                _, _, _, h = agent.forward_sequence(
                    {"pixels": ctx[:, :-1]}, agent.initial_state(B, device), intent[:, None]
                )
            h0 = h
            obs_list, act_list, rew_list, term_list = [pixels.clone()], [], [], []
            with torch.no_grad():
                for _ in range(H):
                    logits, _, _, h = agent.step({"pixels": obs_list[-1]}, h, intent)
                    a = torch.distributions.Categorical(logits=logits + mask).sample()
                    px, r, term, _, _ = env.step(a)
                    obs_list.append(px.clone())
                    act_list.append(a)
                    rew_list.append(r.clone())
                    term_list.append(term.clone())
            obs_BT = torch.stack(obs_list, dim=1)  # H+1 frames
            acts = torch.stack(act_list, dim=1)
            rewards = torch.stack(rew_list, dim=1)
            term = torch.stack(term_list, dim=1).float()
            alive = torch.cumprod(torch.cat([torch.ones(B, 1, device=device), 1 - term[:, :-1]], 1), dim=1)
            logits, values, _, _ = agent.forward_sequence({"pixels": obs_BT}, h0, intent[:, None])
            dist = torch.distributions.Categorical(logits=logits[:, :H] + mask)
            with torch.no_grad():
                returns = lambda_returns(rewards, values.detach(), 1 - term, args.gamma, args.lam)
                adv = returns - values[:, :H].detach()
            w = alive
            pg_loss = -(dist.log_prob(acts) * adv * w).sum() / w.sum()
            ent = (dist.entropy() * w).sum() / w.sum()
            v_loss = (((values[:, :H] - returns) ** 2) * w).sum() / w.sum()
            loss = pg_loss - args.ent_coef * ent + args.value_coef * v_loss
            metrics = {
                "losses/policy_loss": float(pg_loss.detach()),
                "losses/value_loss": float(v_loss.detach()),
                "losses/entropy": float(ent.detach()),
                "charts/dream_return": float((rewards * w).sum(1).mean()),
                "charts/dream_terminated": float(term.max(1).values.mean()),
            }
            if args.bc_coef > 0:
                raw = store.sample_windows(B, args.bc_seq_len, rng, keys=bc_keys, episodes=bc_eps)
                batch = {kk: torch.as_tensor(v, device=device) for kk, v in raw.items() if kk in bc_keys}
                l_bc, _ = bc_loss(agent, batch, key, use_confidence=True)
                loss = loss + args.bc_coef * l_bc
                metrics["losses/bc"] = float(l_bc.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), 10.0)
            opt.step()
            metrics["charts/SPS"] = (update + 1 - start) * B * H / max(time.time() - t0, 1e-9)
            logger.log(update + 1, **metrics)
            if (update + 1) % args.save_every == 0:
                save(update + 1)
            advance(1, status=f"dream return {metrics['charts/dream_return']:.3f}")
    save(args.updates)
    logger.close()
    return out
