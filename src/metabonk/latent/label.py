"""Labelling: an inverse dynamics model writes `action_idm` / `action_idm_conf` / `action_idm_probs` into a store's
episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.common.logging import progress_bar
from metabonk.latent.frames import clip_windows
from metabonk.latent.idm import InverseDynamicsModel


@torch.no_grad()
def label_clip(idm: InverseDynamicsModel, obs_THWC: np.ndarray,
               chunk: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IDM actions int64 [T], confidences float32 [T] and action probabilities float32 [T, A] for a clip of T+1
    frames."""
    windows = clip_windows(torch.as_tensor(obs_THWC, dtype=torch.uint8), idm.config.context,
                           idm.config.future)
    actions, confs, probs = [], [], []
    for start in range(0, windows.shape[0], chunk):
        out = idm.predict(windows[start:start + chunk])
        actions.append(out["action"].cpu())
        confs.append(out["confidence"].cpu())
        probs.append(out["probs"].cpu())
    return (torch.cat(actions).numpy().astype(np.int64), torch.cat(confs).numpy().astype(np.float32),
            torch.cat(probs).numpy().astype(np.float32))


def label_store(idm_path: str | Path, data: str | Path, device: str = "auto",
                quiet: bool = False) -> dict[str, Any]:
    """Label every episode of the store at `data`; ground-truth `action` is never touched."""
    from metabonk.data.store import EpisodeStore

    idm = InverseDynamicsModel.load(idm_path, resolve_device(device))
    if not Path(data).exists():
        raise MetabonkError(f"episode store {data} does not exist")
    store = EpisodeStore.open(data)
    if store.num_actions is not None and store.num_actions != idm.config.num_actions:
        raise MetabonkError(f"the IDM predicts {idm.config.num_actions} actions but {data} has "
                            f"{store.num_actions}: it was trained for another game")
    steps, conf_sum, agree, with_truth = 0, 0.0, 0, 0
    with progress_bar("label", total=len(store), disable=quiet) as advance:
        for i in range(len(store)):
            keys = store.episode_keys(i)
            obs = store.episode(i, keys=["obs"])["obs"]
            actions, confs, probs = label_clip(idm, obs)
            store.update_episode(i, {"action_idm": actions, "action_idm_conf": confs, "action_idm_probs": probs})
            steps += len(actions)
            conf_sum += float(confs.sum())
            if "action" in keys:
                truth = store.episode(i, keys=["action"])["action"]
                agree += int((truth == actions).sum())
                with_truth += len(actions)
            advance(1, status=f"{steps} steps")
    summary: dict[str, Any] = {"episodes": len(store), "steps": steps,
                               "mean_confidence": conf_sum / max(steps, 1)}
    if with_truth:
        summary["agreement_with_action"] = agree / with_truth
    return summary
