"""Training windows for the world model: episodes loaded into memory, sampled as (k+1)-frame windows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.errors import MetabonkError

ACTION_KEYS = {"real": "action", "idm": "action_idm", "latent": "action_latent"}
MAX_BYTES = 8 * 2**30


def latent_action_labels(
    store: Any, episodes: list[int], lam_ckpt: str | Path, device: torch.device
) -> dict[int, np.ndarray]:
    """Label every transition of `episodes` with the latent-action codes of a trained LAM."""
    from metabonk.latent.lam import LatentActionModel

    lam = LatentActionModel.load(lam_ckpt, device=device)
    out = {}
    for e in episodes:
        obs = torch.from_numpy(np.asarray(store.episode(e, keys=["obs"])["obs"]))
        out[e] = lam.infer_codes(obs.to(device)).cpu().numpy().astype(np.int64)
    return out


class WindowData:
    """Episodes of a store held as torch tensors; samples windows of k steps (k+1 frames)."""

    def __init__(
        self,
        store: Any,
        episodes: list[int],
        num_context: int,
        action_source: str = "real",
        labels: dict[int, np.ndarray] | None = None,
    ) -> None:
        if action_source not in ACTION_KEYS:
            raise MetabonkError(f"--actions must be one of {sorted(ACTION_KEYS)}, got '{action_source}'")
        self.k = num_context
        self.key = ACTION_KEYS[action_source]
        self.obs: list[torch.Tensor] = []
        self.action: list[torch.Tensor] = []
        self.reward: list[torch.Tensor] = []
        self.terminated: list[torch.Tensor] = []
        self._index: list[tuple[int, int]] = []
        self._terminal: list[tuple[int, int]] = []
        self.nbytes = 0
        self.num_actions_seen = 0
        self.episodes: list[int] = []
        """Store indices of the episodes held."""
        self.extend(store, episodes, labels)
        if not self._index:
            raise MetabonkError(f"no episode with key '{self.key}' and at least {self.k} steps in {store.path}")

    def extend(self, store: Any, episodes: list[int], labels: dict[int, np.ndarray] | None = None) -> int:
        """Load more episodes of `store` (the online loop's new replay); returns how many were usable."""
        added = 0
        for e in episodes:
            keys = set(store.episode_keys(e))
            if labels is None and self.key not in keys:
                continue
            ep = store.episode(e, keys=["obs", "reward", "terminated"])
            acts = labels[e] if labels is not None else store.episode(e, keys=[self.key])[self.key]
            T = len(acts)
            if T < self.k:
                continue
            self.nbytes += ep["obs"].nbytes
            if self.nbytes > MAX_BYTES:
                raise MetabonkError(
                    f"the training episodes exceed {MAX_BYTES >> 30} GiB of frames; "
                    "use fewer episodes or a smaller frame size"
                )
            i = len(self.obs)
            self.obs.append(torch.from_numpy(np.ascontiguousarray(ep["obs"])))
            self.action.append(torch.from_numpy(np.asarray(acts, dtype=np.int64)))
            self.reward.append(torch.from_numpy(np.asarray(ep["reward"], dtype=np.float32)))
            term = np.asarray(ep["terminated"], dtype=bool)
            self.terminated.append(torch.from_numpy(term))
            for s in range(T - self.k + 1):
                self._index.append((i, s))
                if term[s + self.k - 1]:
                    self._terminal.append((i, s))
            if T:
                self.num_actions_seen = max(self.num_actions_seen, int(self.action[-1].max()) + 1)
            self.episodes.append(e)
            added += 1
        self.index = np.array(self._index, dtype=np.int64).reshape(-1, 2)
        self.terminal = np.array(self._terminal, dtype=np.int64).reshape(-1, 2)
        return added

    def __len__(self) -> int:
        return len(self.index)

    def _gather(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        k = self.k
        obs = torch.stack([self.obs[e][s : s + k + 1] for e, s in rows])
        out = {"obs": obs}
        for name in ("action", "reward", "terminated"):
            seq = getattr(self, name)
            out[name] = torch.stack([seq[e][s : s + k] for e, s in rows])
        return out

    def sample(
        self, batch: int, rng: np.random.Generator, terminal_fraction: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """`batch` random windows: obs uint8 [B,k+1,H,W,3], action/reward/terminated [B,k].
        A `terminal_fraction` of rows is drawn among windows that end an episode (a rare class)."""
        n_term = round(batch * terminal_fraction) if len(self.terminal) else 0
        rows = self.index[rng.integers(0, len(self.index), batch - n_term)]
        if n_term:
            rows = np.concatenate([rows, self.terminal[rng.integers(0, len(self.terminal), n_term)]])
        return self._gather(rows)

    def windows(self, stride: int = 1) -> list[np.ndarray]:
        """Every window start, in order, at `stride` (for evaluation)."""
        return [r for j, r in enumerate(self.index) if j % stride == 0]


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
