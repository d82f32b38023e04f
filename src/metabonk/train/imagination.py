"""Actor-critic in imagination (DIAMOND / DreamerV3 style) as one trainable module: `forward(batch)` dreams.

`batch` holds real starts — k context frames and the actions taken at them. The module burns the policy's
recurrent state in on the context frames, dreams `horizon` steps in the world model with the current policy
(no gradient through the dream), computes λ-returns bootstrapped by the critic and cut at a dreamed
termination, and returns REINFORCE-with-baseline + entropy + value-regression loss with tensor metrics, so the
shared `fit`/`Fitter` drives it like any other model.

Returns are normalised as in DreamerV3: advantages are divided by max(1, S), S a running estimate of the
5th-95th percentile range of the λ-returns, so one entropy weight works for games whose rewards differ in scale
(Arena's per-tick rewards are ~0.01, Atari's ±1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metabonk.policy.agent import Agent
from metabonk.policy.dream_ac import lambda_returns


@dataclass
class ImaginationConfig:
    """How the actor-critic learns in the dream (defaults after DIAMOND's config/trainer.yaml)."""

    horizon: int = 15
    """Dreamed steps per start."""
    gamma: float = 0.985
    lam: float = 0.95
    ent_coef: float = 0.001
    value_coef: float = 1.0
    return_norm_decay: float = 0.99
    """EMA decay of the λ-return percentile range used to scale advantages (DreamerV3)."""
    return_norm_floor: float = 1.0
    """Advantages are divided by max(floor, range): small returns are not blown up. Lower it for games whose
    whole return is far below 1 (Arena's per-tick rewards)."""
    intent: int = 0
    anchor_coef: float = 0.0
    """Weight of KL(π ‖ π_start) on the dreamed states, where π_start is the policy the run started from (e.g. the
    BC policy of `--init`): a fine-tune stays near what it imitated wherever the dream gives it no reason to move,
    instead of drifting on the world model's errors. 0 = off (always off from scratch: there is no π_start)."""


class ImaginationActorCritic(nn.Module):
    """The agent plus its dream: `forward({"frames": uint8 [B,k,H,W,3], "actions": long [B,k]})`."""

    def __init__(self, agent: Agent, world_actions: int, cfg: ImaginationConfig, dream_env: Any = None,
                 start: Agent | None = None) -> None:
        super().__init__()
        self.agent = agent
        self.env = dream_env
        """The DreamEnv the agent learns in (not a submodule: the world model trains elsewhere); set it before
        `forward`, e.g. anew each epoch of the online loop."""
        # π_start for the anchor: frozen, and kept out of the module tree (not trained, not saved with the agent)
        self.__dict__["start"] = start.eval().requires_grad_(False) if start is not None else None
        self.cfg = cfg
        usable = min(agent.cfg.move_actions, world_actions)
        self.usable = usable
        mask = torch.zeros(agent.cfg.move_actions)
        mask[usable:] = float("-inf")  # moves the world model has no action for are never dreamed
        self.register_buffer("action_mask", mask, persistent=False)
        self.register_buffer("return_range", torch.ones(()))

    @torch.no_grad()
    def dream(
        self, frames: torch.Tensor, actions: torch.Tensor, intent: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Dream `horizon` steps from real starts with the current policy (sampling its actions), each row
        following its own intent id (`intent` long [B]; default: `cfg.intent` for every row)."""
        agent, B = self.agent, frames.shape[0]
        device = self.action_mask.device
        if intent is None:
            intent = torch.full((B,), self.cfg.intent, dtype=torch.long, device=device)
        elif intent.shape != (B,):
            raise ValueError(f"dream needs one intent per start, [{B}], got {tuple(intent.shape)}")
        else:
            intent = intent.to(device=device, dtype=torch.long)
        pixels, _ = self.env.reset(frames, actions.clamp(max=self.env.num_actions - 1))
        ctx = frames.to(device)
        # Burn the recurrent state in on the real context before the first dreamed decision.
        _, _, _, h0 = agent.forward_sequence({"pixels": ctx[:, :-1]}, agent.initial_state(B, device),
                                             intent[:, None])
        h = h0
        obs, acts, rews, terms = [pixels], [], [], []
        for _ in range(self.cfg.horizon):
            logits, _, _, h = agent.step({"pixels": obs[-1]}, h, intent)
            a = torch.distributions.Categorical(logits=logits + self.action_mask).sample()
            px, r, term, _, _ = self.env.step(a)
            obs.append(px.clone())
            acts.append(a)
            rews.append(r.clone())
            terms.append(term.clone())
        return {
            "obs": torch.stack(obs, dim=1),  # [B,H+1,H,W,3]
            "actions": torch.stack(acts, dim=1),
            "rewards": torch.stack(rews, dim=1).float(),
            "terminated": torch.stack(terms, dim=1).float(),
            "h0": h0,
            "intent": intent,
        }

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg, agent = self.cfg, self.agent
        d = self.dream(batch["frames"], batch["actions"])
        H = cfg.horizon
        term = d["terminated"]
        B = term.shape[0]
        # a step counts while no earlier dreamed step ended the episode
        alive = torch.cumprod(torch.cat([term.new_ones(B, 1), 1 - term[:, :-1]], 1), dim=1)
        logits, values, _, _ = agent.forward_sequence({"pixels": d["obs"]}, d["h0"], d["intent"][:, None])
        dist = torch.distributions.Categorical(logits=logits[:, :H] + self.action_mask)
        with torch.no_grad():
            returns = lambda_returns(d["rewards"], values.detach(), 1 - term, cfg.gamma, cfg.lam)
            if self.training:
                lo, hi = torch.quantile(returns.flatten().float(), torch.tensor([0.05, 0.95], device=returns.device))
                self.return_range.lerp_(hi - lo, 1 - cfg.return_norm_decay)
            scale = self.return_range.clamp(min=cfg.return_norm_floor)
            adv = (returns - values[:, :H].detach()) / scale
        w = alive / alive.sum()
        pg_loss = -(dist.log_prob(d["actions"]) * adv * w).sum()
        entropy = (dist.entropy() * w).sum()
        v_loss = (((values[:, :H] - returns) ** 2) * w).sum()
        loss = pg_loss - cfg.ent_coef * entropy + cfg.value_coef * v_loss
        anchor: dict[str, torch.Tensor] = {}
        if cfg.anchor_coef > 0 and self.start is not None:
            kl = (self._kl_to_start(batch["frames"], d, logits[:, :H]) * w).sum()
            loss = loss + cfg.anchor_coef * kl
            anchor["imagination/kl_to_start"] = kl.detach()
        metrics = {
            "imagination/policy_loss": pg_loss.detach(),
            "imagination/value_loss": v_loss.detach(),
            "imagination/entropy": entropy.detach(),
            "imagination/return": (d["rewards"] * alive).sum(1).mean(),
            "imagination/terminated": term.amax(1).mean(),
            "imagination/return_range": self.return_range.clone(),
            **anchor,
        }
        return loss, metrics

    def _kl_to_start(self, frames: torch.Tensor, d: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
        """KL(π ‖ π_start) [B, H] at each dreamed decision over the dreamable moves, π_start burnt in on the same
        real context. From log-softmaxes, not `kl_divergence` of two Categoricals: a sharp π_start's probabilities
        underflow to 0, where that gives +inf and no gradient (a BC clone with an EMA of its weights did)."""
        start, H, B, u = self.start, self.cfg.horizon, frames.shape[0], self.usable
        with torch.no_grad():
            ctx = frames.to(self.action_mask.device)
            _, _, _, h = start.forward_sequence({"pixels": ctx[:, :-1]}, start.initial_state(B, ctx.device),
                                                d["intent"][:, None])
            ref, _, _, _ = start.forward_sequence({"pixels": d["obs"]}, h, d["intent"][:, None])
            log_ref = torch.log_softmax(ref[:, :H, :u].float(), -1)
        log_p = torch.log_softmax(logits[..., :u].float(), -1)
        return (log_p.exp() * (log_p - log_ref)).sum(-1)
