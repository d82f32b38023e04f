"""One Ray actor per specialist: it trains in its niche and scores candidates on its validation niche.

Policies cross as safetensors bytes (`metabonk.hive.transport`); Ray does the scheduling and moves the
bytes through its object store. The worker class is plain Python, wrapped by `ray.remote` in `spawn`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from metabonk.hive.evaluate import score
from metabonk.hive.niches import Niche
from metabonk.hive.specialist import TrainBudget, get_trainer
from metabonk.hive.tau import time_constants
from metabonk.hive.transport import agent_from


class SpecialistWorker:
    """A specialist's home: its training niche (the DungeonMaster may change it) and its fixed validation
    niche (the shared validation world's share that this worker scores)."""

    def __init__(self, name: str, train_niche: dict[str, Any], val_niche: dict[str, Any], trainer: str,
                 threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.name = name
        self.train_niche = Niche.from_dict(train_niche)
        self.val_niche = Niche.from_dict(val_niche)
        self.trainer = get_trainer(trainer)

    def set_train_niche(self, niche: dict[str, Any]) -> dict[str, Any]:
        self.train_niche = Niche.from_dict(niche)
        return self.train_niche.to_dict()

    def train(self, config: dict[str, Any], start: bytes, budget: dict[str, Any], seed: int
              ) -> tuple[bytes, dict[str, Any]]:
        data, metrics = self.trainer(config, start, self.train_niche, TrainBudget(**budget), seed)
        return data, {**metrics, "niche": self.train_niche.to_dict()}

    def evaluate(self, config: dict[str, Any], candidates: dict[str, bytes], episodes: int, seed: int
                 ) -> dict[str, dict[str, Any]]:
        """Every candidate on this worker's validation niche, same seeds: returns and death causes."""
        out = {}
        for name, data in candidates.items():
            s = score(agent_from(config, data), self.val_niche, episodes, seed)
            out[name] = {"returns": s.returns.tolist(), "causes": s.causes}
        return out

    def time_constants(self, config: dict[str, Any], data: bytes, episodes: int, seed: int) -> dict[str, Any] | None:
        return time_constants(agent_from(config, data), self.val_niche, episodes, seed)

    def validate(self, niche: dict[str, Any], episodes: int, seed: int) -> dict[str, Any]:
        from metabonk.hive.dungeon_master import real_rollout_verdict

        return asdict(real_rollout_verdict(Niche.from_dict(niche), episodes, seed))


def spawn(name: str, train_niche: Niche, val_niche: Niche, trainer: str, num_cpus: float) -> Any:
    """Start the Ray actor of one specialist (needs ray.init first)."""
    import ray

    cls = ray.remote(num_cpus=num_cpus)(SpecialistWorker)
    return cls.remote(name, train_niche.to_dict(), val_niche.to_dict(), trainer)
