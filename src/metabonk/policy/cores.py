"""Recurrent cores of System 1: CfC (ncps liquid network) and Mamba, with one flat hidden-state tensor.

Both cores expose the same three calls so the agent, the trainers and CUDA graphs never care which is inside:
``initial_state(batch, device) -> h_BS``, ``step(x_BF, h_BS) -> (y_BO, h_BS)`` and
``sequence(x_BTF, h_BS, resets_BT) -> (y_BTO, h_BS)``. ``resets_BT[:, t]`` zeroes the hidden state before
step t (an episode began there), so one rollout buffer can span several episodes.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from metabonk.policy.config import PolicyConfig


def _mask(h_BS: torch.Tensor, reset_B: torch.Tensor | None) -> torch.Tensor:
    if reset_B is None:
        return h_BS
    return h_BS * (~reset_B.bool()).to(h_BS.dtype).unsqueeze(-1)


class RecurrentCore(nn.Module):
    """Shared sequence logic: a step loop with resets; subclasses may add a fast path without resets."""

    state_size: int
    out_size: int

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.zeros(batch, self.state_size, device=device)

    def step(self, x_BF: torch.Tensor, h_BS: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise TypeError(f"{type(self).__name__} must define step()")

    def sequence(
        self, x_BTF: torch.Tensor, h_BS: torch.Tensor, resets_BT: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ys = []
        for t in range(x_BTF.shape[1]):
            h_BS = _mask(h_BS, None if resets_BT is None else resets_BT[:, t])
            y, h_BS = self.step(x_BTF[:, t], h_BS)
            ys.append(y)
        return torch.stack(ys, dim=1), h_BS

    def outputs_from_zero(self, x_BTF: torch.Tensor) -> torch.Tensor:
        """Outputs of a window that starts from a zero state and has no resets inside (fast path for BC)."""
        h = self.initial_state(x_BTF.shape[0], x_BTF.device)
        return self.sequence(x_BTF, h)[0]


class CfCCore(RecurrentCore):
    """Closed-form continuous-time liquid network (ncps.torch.CfC); hidden = the CfC units."""

    def __init__(self, in_size: int, cfg: PolicyConfig) -> None:
        super().__init__()
        from ncps.torch import CfC

        self.rnn = CfC(in_size, cfg.hidden, batch_first=True, backbone_units=cfg.hidden, backbone_layers=1)
        self.state_size = cfg.hidden
        self.out_size = cfg.hidden

    def step(self, x_BF: torch.Tensor, h_BS: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.rnn.rnn_cell(x_BF, h_BS, 1.0)
        return y, h

    def sequence(
        self, x_BTF: torch.Tensor, h_BS: torch.Tensor, resets_BT: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if resets_BT is None or not bool(resets_BT[:, 1:].any()):
            h0 = _mask(h_BS, None if resets_BT is None else resets_BT[:, 0])
            return self.rnn(x_BTF, h0)
        return super().sequence(x_BTF, h_BS, resets_BT)


class MambaCore(RecurrentCore):
    """Selective state-space model (mambapy; its scan runs on mamba_ssm's CUDA kernel when that is installed).

    The flat hidden state packs, per layer, the SSM state h [ED, N] and the conv input cache [ED, d_conv-1].
    """

    def __init__(self, in_size: int, cfg: PolicyConfig) -> None:
        super().__init__()
        from mambapy.mamba import Mamba, MambaConfig

        use_cuda = torch.cuda.is_available() and importlib.util.find_spec("mamba_ssm") is not None
        self.mcfg = MambaConfig(
            d_model=cfg.hidden, n_layers=cfg.mamba_layers, d_state=cfg.mamba_d_state, use_cuda=use_cuda
        )
        self.inp = nn.Linear(in_size, cfg.hidden)
        self.mamba = Mamba(self.mcfg)
        self.norm = nn.LayerNorm(cfg.hidden)
        ed, n, k = self.mcfg.d_inner, self.mcfg.d_state, self.mcfg.d_conv - 1
        self._layer_sizes = (ed * n, ed * k)
        self._shapes = ((ed, n), (ed, k))
        self.state_size = cfg.mamba_layers * sum(self._layer_sizes)
        self.out_size = cfg.hidden

    def _unpack(self, h_BS: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        b = h_BS.shape[0]
        caches = []
        for chunk in h_BS.split(sum(self._layer_sizes), dim=1):
            hs, xs = chunk.split(self._layer_sizes, dim=1)
            caches.append((hs.reshape(b, *self._shapes[0]), xs.reshape(b, *self._shapes[1])))
        return caches

    @staticmethod
    def _pack(caches: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        return torch.cat([t.flatten(1) for c in caches for t in c], dim=1)

    def step(self, x_BF: torch.Tensor, h_BS: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, caches = self.mamba.step(self.inp(x_BF), self._unpack(h_BS))
        return self.norm(y), self._pack(caches)

    def outputs_from_zero(self, x_BTF: torch.Tensor) -> torch.Tensor:
        """Parallel scan (pscan or mamba_ssm) over a window starting from a zero state: the BC fast path."""
        return self.norm(self.mamba(self.inp(x_BTF)))


def make_core(in_size: int, cfg: PolicyConfig) -> RecurrentCore:
    """The core named by `cfg.core`."""
    return CfCCore(in_size, cfg) if cfg.core == "cfc" else MambaCore(in_size, cfg)
