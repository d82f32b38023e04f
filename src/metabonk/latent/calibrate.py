"""Temperature scaling of the IDM's action probabilities (Guo et al. 2017, "On Calibration of Modern Neural
Networks"): one scalar T, fitted by negative log-likelihood on labelled transitions the IDM never trained on, so
that the probabilities BC's soft labels imitate mean what they say. An IDM trained long on a few labels grows
confident where it is wrong (docs/demo.md: 73.9 % held-out accuracy at a mean confidence of 0.81), and its soft
labels turn back into argmax labels; T > 1 undoes that without changing a single argmax.

Written here rather than taken from a calibration package: it is one L-BFGS fit of one scalar over the IDM's own
logits, and the packages that do it (netcal, torch-uncertainty) bring far more than that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metabonk.common.errors import MetabonkError
from metabonk.latent.data import TransitionData
from metabonk.latent.idm import InverseDynamicsModel, predict_transitions

MIN_TRANSITIONS = 32
"""Fewer held-out labels than this fit T to noise: the fit refuses them."""


def raw_action_logits(idm: InverseDynamicsModel, data: TransitionData) -> tuple[torch.Tensor, torch.Tensor]:
    """The IDM's untempered action logits float32 [N, A] (eval mode) and the true actions int64 [N] of `data`."""
    return predict_transitions(idm, data)["logits"], data.actions_at(np.arange(len(data)))


def fit_temperature(logits: torch.Tensor, actions: torch.Tensor) -> float:
    """The T > 0 that minimises the mean cross-entropy of softmax(logits / T) against `actions`."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), actions)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def check_calibration_set(held: TransitionData) -> None:
    """Refuse a calibration set too small (or unlabelled) to fit T: one MetabonkError line."""
    if not held.labelled or len(held) < MIN_TRANSITIONS:
        raise MetabonkError(f"calibrating the IDM needs at least {MIN_TRANSITIONS} held-out labelled transitions, "
                            f"got {len(held)}: raise the labelled budget or the calibration fraction")


def calibrate_idm(idm: InverseDynamicsModel, held: TransitionData) -> dict[str, Any]:
    """Fit the IDM's softmax temperature on held-out labelled transitions; sets `idm.config.temperature` and
    returns the fit's figures (NLL and mean confidence before and after, accuracy, count)."""
    check_calibration_set(held)
    logits, actions = raw_action_logits(idm, held)
    t = fit_temperature(logits, actions)

    def figures(temp: float) -> tuple[float, float]:
        scaled = logits / temp
        return float(F.cross_entropy(scaled, actions)), float(scaled.softmax(-1).max(-1).values.mean())

    (nll_before, conf_before), (nll_after, conf_after) = figures(1.0), figures(t)
    idm.config.temperature = t
    return {"temperature": t, "transitions": len(held),
            "accuracy": float((logits.argmax(-1) == actions).float().mean()),
            "nll_before": nll_before, "nll_after": nll_after,
            "mean_confidence_before": conf_before, "mean_confidence_after": conf_after}
