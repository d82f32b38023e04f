"""Behaviour cloning of the System 1 agent on labelled or IDM-relabelled episodes (CleanRL-style, one file).

Reads windows of T steps from an EpisodeStore; the label is the true `action` or the IDM's `action_idm`
(optionally weighted by `action_idm_conf`). Movement labels (< move_actions) train the movement head;
card labels (Arena actions 18..20) train the card head. Logs losses/* and accuracy to TensorBoard, saves a
"policy" checkpoint and resumes from it (weights + optimizer + step in trainer.pt).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metabonk.common.checkpoint import load_trainer_state
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.common.logging import ScalarLogger, progress_bar
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig, config_for_env


@dataclass
class BCArgs:
    """Behaviour-cloning settings."""

    data: str = ""
    """Episode store directory to imitate."""
    out: str = "runs/policy-bc"
    """Checkpoint directory (kind "policy"); TensorBoard logs go to OUT.tb/."""
    label: str = "auto"
    """'action' (true labels), 'action_idm' (IDM labels) or 'auto' (true labels if every episode has them)."""
    use_confidence: bool = True
    """Weight each IDM-labelled step by its confidence `action_idm_conf`."""
    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "auto"
    init: str | None = None
    """Start from this policy checkpoint instead of a fresh one (or of OUT when resuming)."""
    save_every: int = 500
    log_every: int = 25
    quiet: bool = False
    policy: dict[str, Any] = field(default_factory=dict)
    """PolicyConfig overrides for a fresh agent (e.g. {"core": "mamba"})."""


def _label_key(store: Any, label: str) -> str:
    if label == "auto":
        return "action" if store.has_actions else "action_idm"
    if label not in ("action", "action_idm"):
        raise MetabonkError(f"unknown BC label '{label}' (choose action, action_idm or auto)")
    return label


def _fresh_agent(store: Any, args: BCArgs) -> Agent:
    n = store.num_actions or 18
    is_arena = store.env_spec.startswith("arena")
    cfg = config_for_env(n, is_arena, image_size=store.frame_size, **args.policy)
    return Agent(cfg)


def bc_loss(
    agent: Agent, batch: dict[str, torch.Tensor], label_key: str, use_confidence: bool
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of the movement head (and card head on card labels) over a window batch."""
    cfg: PolicyConfig = agent.cfg
    T = batch[label_key].shape[1]
    obs = {"pixels": batch["obs"][:, :T]}
    if "state" in batch and cfg.state_dim > 0:
        obs["state"] = batch["state"][:, :T]
    if "info_card_options" in batch:
        obs["card_options"] = batch["info_card_options"]
    logits, _, cards, _ = agent.forward_sequence(obs)
    y = batch[label_key].long()
    w = torch.ones_like(y, dtype=torch.float32)
    if use_confidence and label_key == "action_idm" and "action_idm_conf" in batch:
        w = batch["action_idm_conf"].float()
    is_card = y >= cfg.move_actions
    move_w = w * (~is_card).float()
    move_ce = F.cross_entropy(
        logits.flatten(0, 1), y.clamp(max=cfg.move_actions - 1).flatten(), reduction="none"
    )
    loss = (move_ce * move_w.flatten()).sum() / move_w.sum().clamp(min=1e-6)
    acc = ((logits.argmax(-1) == y).float() * (~is_card).float()).sum() / (~is_card).float().sum().clamp(
        min=1
    )
    metrics = {"losses/move_ce": float(loss.detach()), "charts/move_accuracy": float(acc)}
    if cards is not None and bool(is_card.any()):
        card_y = (y - cfg.move_actions).clamp(0, cfg.num_cards - 1)
        card_ce = F.cross_entropy(cards[is_card], card_y[is_card], reduction="none")
        card_loss = (card_ce * w[is_card]).sum() / w[is_card].sum().clamp(min=1e-6)
        loss = loss + card_loss
        metrics["losses/card_ce"] = float(card_loss.detach())
    metrics["losses/total"] = float(loss.detach())
    return loss, metrics


def train_bc(args: BCArgs) -> Path:
    """Train (or resume) a policy by behaviour cloning; returns the checkpoint directory."""
    from metabonk.data.store import EpisodeStore

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    store = EpisodeStore.open(args.data)
    label_key = _label_key(store, args.label)
    keys = ["obs", label_key]
    if label_key == "action_idm":
        keys.append("action_idm_conf")
    eps = store.eligible_episodes(args.seq_len, keys)
    if not eps:
        raise MetabonkError(f"{args.data}: no episode has ≥ {args.seq_len} steps with key(s) {keys}")
    if all("info_card_options" in store.episode_keys(e) for e in eps):
        keys.append("info_card_options")

    out = Path(args.out)
    resume = load_trainer_state(out) if (out / "config.json").is_file() and args.init is None else None
    if resume is not None and resume.get("algo") == "bc":
        agent = Agent.load(out, device)
    elif args.init is not None:
        agent, resume = Agent.load(args.init, device), None
    else:
        agent, resume = _fresh_agent(store, args).to(device), None
    if agent.cfg.state_dim > 0:
        keys.append("state")
    if agent.cfg.image_size != store.frame_size:
        raise MetabonkError(f"policy expects {agent.cfg.image_size}px frames, store has {store.frame_size}px")
    opt = torch.optim.AdamW(agent.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    start = 0
    if resume is not None:
        opt.load_state_dict(resume["optimizer"])
        start = int(resume["step"])
    logger = ScalarLogger(f"{out}.tb")
    meta = {"algo": "bc", "data": str(args.data), "label": label_key}

    def save(step: int) -> None:
        agent.save(
            out,
            meta={**meta, "step": step},
            trainer_state={"algo": "bc", "step": step, "optimizer": opt.state_dict()},
        )

    agent.train()
    t0, last = time.time(), start
    with progress_bar("bc", args.steps, disable=args.quiet) as advance:
        advance(start)
        for step in range(start, args.steps):
            raw = store.sample_windows(args.batch_size, args.seq_len, rng, keys=keys, episodes=eps)
            batch = {k: torch.as_tensor(v, device=device) for k, v in raw.items() if k in keys}
            loss, metrics = bc_loss(agent, batch, label_key, args.use_confidence)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), 1.0)
            opt.step()
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                sps = (step + 1 - last) * args.batch_size * args.seq_len / max(time.time() - t0, 1e-9)
                logger.log(step + 1, **metrics, **{"charts/SPS": sps})
                t0, last = time.time(), step + 1
                advance(
                    0, status=f"loss {metrics['losses/total']:.3f} acc {metrics['charts/move_accuracy']:.2f}"
                )
            if (step + 1) % args.save_every == 0:
                save(step + 1)
            advance(1)
    save(args.steps)
    logger.close()
    return out
