"""`metabonk eval world`: the full evaluation of a world checkpoint on held-out episodes of a store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.errors import MetabonkError
from metabonk.world.data import ACTION_KEYS, WindowData
from metabonk.world.evaluate import controllability, fidelity, fidelity_report, real_shifts, reward_metrics
from metabonk.world.world_model import WorldModel, read_meta


def held_out_episodes(model: WorldModel, ckpt_meta: dict[str, Any], store: Any) -> list[int]:
    """The store's episodes the checkpoint did not train on (all of them when it is not the training store)."""
    data = ckpt_meta.get("data")
    same = data is not None and Path(data).resolve() == Path(store.path).resolve()
    train_eps = set(ckpt_meta.get("train_episodes", [])) if same else set()
    eps = [e for e in range(len(store)) if e not in train_eps]
    if not eps:
        raise MetabonkError(f"every episode of {store.path} was used for training; nothing held out")
    if model.config.action_source == "latent":
        raise MetabonkError(
            "evaluating latent-action world models needs the LAM labels; evaluate with real data"
        )
    return eps


def open_loop_windows(
    model: WorldModel, store: Any, eps: list[int], horizon: int, max_starts: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `max_starts` random windows of episodes `eps` for `fidelity`: frames uint8 [N,k+horizon,H,W,3] and
    the actions taken at them [N,k-1+horizon]."""
    long = WindowData(store, eps, model.config.num_context + horizon - 1, model.config.action_source)
    w = long._gather(long.index[rng.permutation(len(long.index))[:max_starts]])
    return w["obs"], w["action"]


def evaluate_on_store(
    model: WorldModel,
    ckpt_meta: dict[str, Any],
    store: Any,
    horizon: int = 16,
    max_starts: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Fidelity over `horizon` open-loop steps, controllability and reward/termination metrics on the episodes
    the checkpoint did not train on (all episodes when the store is not the training store)."""
    eps = held_out_episodes(model, ckpt_meta, store)
    key = ACTION_KEYS.get(model.config.action_source, "action")
    k = model.config.num_context
    rng = np.random.default_rng(seed)
    frames, actions = open_loop_windows(model, store, eps, horizon, max_starts, rng)
    fid = fidelity(model, frames, actions, horizon, seed=seed)
    short = WindowData(store, eps, k, model.config.action_source)
    all_rows = short.index
    sw = short._gather(all_rows)
    rew = reward_metrics(model, sw["obs"], sw["action"][:, -1], sw["reward"][:, -1], sw["terminated"][:, -1])
    moves = [a for a in range(min(9, model.config.num_actions))]
    three = WindowData(store, eps, 3, model.config.action_source)
    tw = three._gather(three.index[rng.permutation(len(three.index))[:4096]])
    shifts = real_shifts(tw["obs"], tw["action"], moves, steps=3)
    con = controllability(model, frames[: min(64, len(frames))], moves, steps=3, real_shift=shifts, seed=seed)
    return {
        "horizon": horizon,
        "eval_starts": len(frames),
        "eval_episodes": len(eps),
        "action_key": key,
        **fidelity_report(fid),
        "controllability": con,
        **rew,
    }


def evaluate_checkpoint(
    ckpt: str, data: str, device: torch.device, seed: int = 0, horizon: int = 16
) -> dict[str, Any]:
    from metabonk.data.store import EpisodeStore

    model = WorldModel.load(ckpt, device=device)
    return evaluate_on_store(model, read_meta(ckpt), EpisodeStore.open(data), horizon=horizon, seed=seed)
