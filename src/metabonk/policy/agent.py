"""The System 1 agent: pixel encoder + recurrent core + intent-conditioned actor, critic, reflex, card heads.

Action mapping (docs/architecture.md): on Arena the movement head spans actions 0..17 and, while the level-up
menu is open, the card head picks action 18 + k; on other envs the movement head spans the whole Discrete(n).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical

from metabonk.common.checkpoint import Checkpointed
from metabonk.common.intents import DEFAULT_INTENT, intent_id
from metabonk.envs.torch_obs import Obs
from metabonk.policy.config import PolicyConfig
from metabonk.policy.cores import make_core
from metabonk.policy.encoder import PixelEncoder

KIND = "policy"


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class Agent(Checkpointed, nn.Module):
    """Recurrent actor-critic: `step` runs one tick carrying the hidden state, `forward_sequence` a window.
    Saved and loaded as a checkpoint of kind "policy" (`save`, `Agent.load`)."""

    KIND = KIND
    CONFIG = PolicyConfig

    @property
    def config(self) -> PolicyConfig:
        return self.cfg

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = PixelEncoder(cfg)
        self.intent_emb = nn.Embedding(cfg.num_intents, cfg.intent_dim)
        self.core = make_core(cfg.feature_dim + cfg.intent_dim, cfg)
        # Heads read the core's output beside the current frame's features (a fast feed-forward path).
        d = self.core.out_size + cfg.feature_dim + cfg.intent_dim
        self.actor = mlp(d, cfg.head_hidden, cfg.move_actions)
        # Reflex heads: per intent, a linear map from the core's output to motor primitives (move logits).
        self.reflex = nn.Parameter(torch.zeros(cfg.num_intents, self.core.out_size, cfg.move_actions))
        self.critic = mlp(d, cfg.head_hidden, 1)
        if cfg.card_head:
            self.card_query = mlp(d, cfg.head_hidden, cfg.head_hidden)
            self.card_emb = nn.Embedding(cfg.num_upgrades, cfg.head_hidden)
            self.card_slot = nn.Parameter(torch.zeros(cfg.num_cards))
        nn.init.orthogonal_(self.actor[-1].weight, cfg.actor_init_gain)
        nn.init.zeros_(self.actor[-1].bias)

    # ---- inference -------------------------------------------------------------------------------------
    def compile_for_inference(self) -> Agent:
        """Replace `step` (and so `act`) by a torch.compile'd version; returns self. A one-time cost (~30 s on
        CPU; again for each new batch size) buys fused kernels and no per-op dispatch: at batch 1 on one CPU
        thread a tick takes about half the time of eager (see docs/policy.md)."""
        self.step = torch.compile(self.step, dynamic=False)  # type: ignore[method-assign]
        return self

    def initial_state(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        return self.core.initial_state(batch, device if device is not None else self.reflex.device)

    def _intents(self, intent: torch.Tensor | int | str | None, shape: tuple[int, ...]) -> torch.Tensor:
        if intent is None:
            intent = intent_id(DEFAULT_INTENT)
        if isinstance(intent, str):
            intent = intent_id(intent)
        if isinstance(intent, int):
            return torch.full(shape, intent, dtype=torch.long, device=self.reflex.device)
        return intent.long().to(self.reflex.device).expand(shape)

    def _heads(
        self, y: torch.Tensor, feat: torch.Tensor, intent: torch.Tensor, card_options: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        e = self.intent_emb(intent)
        z = torch.cat([y, feat, e], dim=-1)
        logits = self.actor(z) + torch.einsum("...o,...oa->...a", y, self.reflex[intent])
        value = self.critic(z).squeeze(-1)
        cards = None
        if self.cfg.card_head:
            if card_options is None:
                card_options = torch.zeros(
                    *y.shape[:-1], self.cfg.num_cards, dtype=torch.long, device=y.device
                )
            opts = card_options.long().clamp(0, self.cfg.num_upgrades - 1)
            q = self.card_query(z)
            cards = torch.einsum("...h,...kh->...k", q, self.card_emb(opts)) / q.shape[-1] ** 0.5
            cards = cards + self.card_slot
        return logits, value, cards

    def step(
        self, obs: Obs, hidden: torch.Tensor, intent: torch.Tensor | int | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """One tick: obs [B,...] -> (move logits [B,A], value [B], card logits [B,3] | None, hidden)."""
        b = obs["pixels"].shape[0]
        it = self._intents(intent, (b,))
        feat = self.encoder(obs["pixels"], obs.get("state"))
        y, hidden = self.core.step(torch.cat([feat, self.intent_emb(it)], dim=-1), hidden)
        logits, value, cards = self._heads(y, feat, it, obs.get("card_options"))
        return logits, value, cards, hidden

    def forward_sequence(
        self,
        obs_BT: Obs,
        hidden: torch.Tensor | None = None,
        intent_BT: torch.Tensor | int | str | None = None,
        resets_BT: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """A window of T steps; `hidden=None` starts from zero (parallel scan where the core has one)."""
        b, t = obs_BT["pixels"].shape[:2]
        it = self._intents(intent_BT, (b, t))
        state = obs_BT.get("state")
        feat = self.encoder(obs_BT["pixels"].flatten(0, 1), None if state is None else state.flatten(0, 1))
        x = torch.cat([feat.view(b, t, -1), self.intent_emb(it)], dim=-1)
        if hidden is None and resets_BT is None:
            y, hidden_out = self.core.outputs_from_zero(x), None
        else:
            if hidden is None:
                hidden = self.initial_state(b)
            y, hidden_out = self.core.sequence(x, hidden, resets_BT)
        logits, value, cards = self._heads(y, feat.view(b, t, -1), it, obs_BT.get("card_options"))
        return logits, value, cards, hidden_out

    # ---- actions ---------------------------------------------------------------------------------------
    def to_env_action(
        self, move: torch.Tensor, card: torch.Tensor | None, menu_open: torch.Tensor | None
    ) -> torch.Tensor:
        """Movement index, or 18 + card index where the menu is open (Arena)."""
        if card is None or menu_open is None or not self.cfg.card_head:
            return move
        return torch.where(menu_open.bool(), self.cfg.move_actions + card, move)

    @staticmethod
    def dist(logits: torch.Tensor, cards: torch.Tensor | None) -> tuple[Categorical, Categorical | None]:
        """The movement head's distribution and the card head's (None without one)."""
        return Categorical(logits=logits), (Categorical(logits=cards) if cards is not None else None)

    def log_prob_entropy(
        self,
        logits: torch.Tensor,
        cards: torch.Tensor | None,
        menu_open: torch.Tensor | None,
        env_action: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-prob and entropy of env actions under the head that chose them (the card head in menus)."""
        move_d, card_d = self.dist(logits, cards)
        a = env_action.long()
        logp = move_d.log_prob(a.clamp(max=self.cfg.move_actions - 1))
        ent = move_d.entropy()
        if card_d is not None and menu_open is not None:
            m = menu_open.bool()
            card_a = (a - self.cfg.move_actions).clamp(0, self.cfg.num_cards - 1)
            logp = torch.where(m, card_d.log_prob(card_a), logp)
            ent = torch.where(m, card_d.entropy(), ent)
        return logp, ent

    @torch.no_grad()
    def act(
        self,
        obs: Obs,
        hidden: torch.Tensor,
        intent: torch.Tensor | int | str | None = None,
        menu_open: torch.Tensor | None = None,
        greedy: bool = False,
        card_override: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Pick env actions [B]; System 2 may pass `card_override` (card index; -1 = the policy chooses)."""
        logits, value, cards, hidden = self.step(obs, hidden, intent)
        move = logits.argmax(-1) if greedy else Categorical(logits=logits).sample()
        card = None
        if cards is not None:
            card = cards.argmax(-1) if greedy else Categorical(logits=cards).sample()
            if card_override is not None:
                card = torch.where(card_override >= 0, card_override.long(), card)
        action = self.to_env_action(move, card, menu_open)
        logp, _ = self.log_prob_entropy(logits, cards, menu_open, action)
        return action, hidden, {"value": value, "logp": logp}
