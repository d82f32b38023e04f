"""Behaviour cloning of the System 1 agent on labelled or IDM-relabelled episodes (CleanRL-style, one file).

Reads windows of T steps from an EpisodeStore; the label is the true `action` or the IDM's `action_idm`
(optionally weighted by `action_idm_conf`). Where every episode stores the commanded `intent` per step (demos
of the intent expert), the agent is conditioned on it, so the intent embedding and reflex heads learn; other
stores train on the default intent. Movement labels (< move_actions) train the movement head;
card labels (Arena actions 18..20) train the card head. Runs on the shared `metabonk.train.fit` loop: logs
losses/* and accuracy to TensorBoard, saves a "policy" checkpoint and resumes from it (trainer.pt).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metabonk.common.checkpoint import load_trainer_state
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig, config_for_env
from metabonk.train.fit import FitConfig, fit


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
    soft_labels: bool = False
    """Imitate the IDM's whole action distribution `action_idm_probs` (cross-entropy to soft targets) instead of
    its most likely action. A calibrated IDM's probabilities, averaged over the futures a state leads to, are the
    expert's policy in that state; its argmax labels are biased wherever the IDM is unsure (Pong: docs/demo.md).
    Needs a store labelled with probabilities (`metabonk label` writes them); turns `use_confidence` off."""
    intents: str = "auto"
    """'auto' (the stored per-step `intent` where every episode has it, else the default intent), 'default',
    or 'shuffled' (stored intents permuted across the batch's windows: a control that carries no intent)."""
    class_balance: float = 0.0
    """Weight each movement label by (its share of the labels)^-class_balance, normalised to mean 1 over the data
    (0 = plain cross-entropy, 1 = every action weighs the same in all; for experts that mostly idle, e.g. Pong's)."""
    steps: int = 1000
    batch_size: int = 32
    seq_len: int = 16
    lr: float = 2e-3
    lr_final: float = 1.0
    """Cosine-decay the LR to this fraction of `lr` over the run (1 = constant)."""
    ema_decay: float = 0.0
    """EMA of the weights, saved as the policy (0 = off; the last raw weights are saved)."""
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


INTENT_MODES = ("auto", "default", "shuffled")


def _fresh_agent(store: Any, args: BCArgs) -> BCAgent:
    n = store.num_actions or 18
    is_arena = store.env_spec.startswith("arena")
    cfg = config_for_env(n, is_arena, image_size=store.frame_size, **args.policy)
    return BCAgent(cfg)


def imitation_loss(agent: Agent, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of the movement head on movement labels and of the card head on card labels, over a window
    batch: obs [B,T',...] (T' ≥ T), label long [B,T], optional label_weight [B,T], state, info_card_options.
    Metrics are 0-dim tensors; card rows are weighted by a mask rather than selected, so nothing syncs."""
    cfg: PolicyConfig = agent.cfg
    y = batch["label"].long()
    T = y.shape[1]
    obs = {"pixels": batch["obs"][:, :T]}
    if "state" in batch and cfg.state_dim > 0:
        obs["state"] = batch["state"][:, :T]
    if "info_card_options" in batch:
        obs["card_options"] = batch["info_card_options"]
    intent = batch["intent"][:, :T] if "intent" in batch else None
    logits, _, cards, _ = agent.forward_sequence(obs, intent_BT=intent)
    w = batch["label_weight"].float() if "label_weight" in batch else torch.ones_like(y, dtype=torch.float32)
    is_card = y >= cfg.move_actions
    move_w = w * (~is_card).float()
    if "label_probs" in batch:  # soft targets: the movement share of the label distribution, renormalised
        target = batch["label_probs"][:, :T, : cfg.move_actions].float()
        target = target / target.sum(-1, keepdim=True).clamp_min(1e-6)
        move_ce = -(target * logits.log_softmax(-1)).sum(-1).flatten()
    else:
        move_ce = F.cross_entropy(
            logits.flatten(0, 1), y.clamp(max=cfg.move_actions - 1).flatten(), reduction="none"
        )
    loss = (move_ce * move_w.flatten()).sum() / move_w.sum().clamp(min=1e-6)
    acc = ((logits.argmax(-1) == y).float() * (~is_card).float()).sum() / (~is_card).float().sum().clamp(
        min=1
    )
    metrics = {"losses/move_ce": loss.detach(), "charts/move_accuracy": acc}
    if cards is not None:
        card_w = (w * is_card.float()).flatten()
        card_y = (y - cfg.move_actions).clamp(0, cfg.num_cards - 1)
        card_ce = F.cross_entropy(cards.flatten(0, 1), card_y.flatten(), reduction="none")
        card_loss = (card_ce * card_w).sum() / card_w.sum().clamp(min=1e-6)  # 0 in a batch without card labels
        loss = loss + card_loss
        metrics["losses/card_ce"] = card_loss.detach()
    metrics["losses/total"] = loss.detach()
    return loss, metrics


def bc_batch(raw: dict[str, torch.Tensor], label_key: str, use_confidence: bool,
             soft_labels: bool = False) -> dict[str, torch.Tensor]:
    """A store window batch as `imitation_loss` reads it: `label_key` becomes 'label', the IDM's confidence
    'label_weight' when `use_confidence`, its probabilities 'label_probs' when `soft_labels`; a stored `intent`
    conditions the agent."""
    batch = {k: v for k, v in raw.items() if k in ("obs", "state", "info_card_options", "intent")}
    batch["label"] = raw[label_key]
    if soft_labels and label_key == "action_idm" and "action_idm_probs" in raw:
        batch["label_probs"] = raw["action_idm_probs"]
    elif use_confidence and label_key == "action_idm" and "action_idm_conf" in raw:
        batch["label_weight"] = raw["action_idm_conf"]
    return batch


def class_weights(labels: np.ndarray, num_classes: int, balance: float) -> np.ndarray:
    """Per-class weights share^-balance (absent classes 0), scaled so the data's mean weight is 1."""
    counts = np.bincount(labels.clip(0, num_classes - 1), minlength=num_classes).astype(np.float64)
    share = counts / max(counts.sum(), 1.0)
    w = np.where(counts > 0, np.power(np.maximum(share, 1e-12), -balance), 0.0)
    return w / max(float((w * share).sum()), 1e-12)


def bc_loss(
    agent: Agent, batch: dict[str, torch.Tensor], label_key: str, use_confidence: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of the movement head (and card head on card labels) over a window batch."""
    return imitation_loss(agent, bc_batch(batch, label_key, use_confidence))


class BCAgent(Agent):
    """The agent whose `forward(batch)` is the imitation loss, so the shared loop trains it; its checkpoints
    are plain "policy" ones (`Agent.load` reads them)."""

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return imitation_loss(self, batch)


def train_bc(args: BCArgs) -> Path:
    """Train (or resume) a policy by behaviour cloning; returns the checkpoint directory."""
    from metabonk.data.store import EpisodeStore

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    store = EpisodeStore.open(args.data)
    label_key = _label_key(store, args.label)
    keys = ["obs", label_key]
    if args.soft_labels and label_key != "action_idm":
        raise MetabonkError("soft labels are the IDM's probabilities: use them with --label action_idm (or auto on "
                            "a store without true actions)")
    if label_key == "action_idm":
        keys.append("action_idm_probs" if args.soft_labels else "action_idm_conf")
    eps = store.eligible_episodes(args.seq_len, keys)
    if not eps:
        hint = " (label it again with `metabonk label`: it writes the probabilities)" if args.soft_labels else ""
        raise MetabonkError(f"{args.data}: no episode has ≥ {args.seq_len} steps with key(s) {keys}{hint}")
    if all("info_card_options" in store.episode_keys(e) for e in eps):
        keys.append("info_card_options")
    if args.intents not in INTENT_MODES:
        raise MetabonkError(f"unknown BC intents mode '{args.intents}' (choose {', '.join(INTENT_MODES)})")
    has_intent = all("intent" in store.episode_keys(e) for e in eps)
    if args.intents == "shuffled" and not has_intent:
        raise MetabonkError(f"{args.data}: --intents shuffled needs a store with a per-step 'intent' (record "
                            "with --policy intents)")
    if has_intent and args.intents != "default":
        keys.append("intent")

    out = Path(args.out)
    state = load_trainer_state(out) if (out / "config.json").is_file() and args.init is None else None
    resume = state is not None and state.get("algo") == "bc"  # not a PPO run's state saved at OUT
    if resume:
        agent = BCAgent.load(out, device)
    elif args.init is not None:
        agent = BCAgent.load(args.init, device)
    else:
        agent = _fresh_agent(store, args).to(device)
    if agent.cfg.state_dim > 0:
        keys.append("state")
    if agent.cfg.image_size != store.frame_size:
        raise MetabonkError(f"policy expects {agent.cfg.image_size}px frames, store has {store.frame_size}px")

    weights = None
    if args.class_balance < 0:
        raise MetabonkError(f"--class-balance must be ≥ 0, got {args.class_balance}")
    if args.class_balance > 0:
        labels = np.concatenate([np.asarray(store.episode(e, [label_key])[label_key]) for e in eps])
        moves = labels[labels < agent.cfg.move_actions].astype(np.int64)
        weights = torch.as_tensor(class_weights(moves, agent.cfg.move_actions, args.class_balance),
                                  dtype=torch.float32)

    def sample(rng: np.random.Generator) -> dict[str, torch.Tensor]:
        raw = store.sample_windows(args.batch_size, args.seq_len, rng, keys=keys, episodes=eps)
        if args.intents == "shuffled":
            raw["intent"] = raw["intent"][rng.permutation(len(raw["intent"]))]
        batch = bc_batch({k: torch.as_tensor(v) for k, v in raw.items() if k in keys}, label_key, args.use_confidence,
                         args.soft_labels)
        if weights is not None:  # card labels (≥ move_actions) keep their weight
            y = batch["label"].long()
            w = torch.where(y < len(weights), weights[y.clamp(max=len(weights) - 1)], torch.ones(()))
            batch["label_weight"] = batch.get("label_weight", torch.ones_like(w)).float() * w
        return batch

    cfg = FitConfig(steps=args.steps, lr=args.lr, lr_final=args.lr_final, ema_decay=args.ema_decay,
                    weight_decay=args.weight_decay, grad_clip=1.0,
                    log_every=args.log_every, save_every=args.save_every, seed=args.seed, device=args.device)
    fit(agent, sample, cfg, out, {"algo": "bc", "data": str(args.data), "label": label_key,
                                 "intents": args.intents if "intent" in keys else "default"}, resume=resume,
        show_progress=not args.quiet, logdir=f"{out}.tb", name="bc", trainer_extra={"algo": "bc"})
    return out
