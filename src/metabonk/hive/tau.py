"""Liquid time constants: what each specialist's CfC core learned about how fast to forget, per niche.

ncps' CfC cell (default mode) interpolates between two heads with a gate sigmoid(t_a(x) * t + t_b(x)),
where t_a and t_b are linear maps of the backbone features x and t is the elapsed time (1 tick here).
The gate crosses its range over a time of about 1 / |t_a(x)|: that is each unit's input-dependent time
constant. We read t_a with a forward hook while the policy plays the niche, and report per unit the median
over visited inputs of 1 / |t_a| in ticks (capped at TAU_CAP).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metabonk.hive.evaluate import score
from metabonk.hive.niches import Niche
from metabonk.policy.agent import Agent

TAU_CAP = 1000.0


def time_constants(agent: Agent, niche: Niche, episodes: int, seed: int) -> dict[str, Any] | None:
    """Per-unit median time constants (ticks) of a CfC policy playing `niche`; None for other cores."""
    cell = getattr(getattr(agent.core, "rnn", None), "rnn_cell", None)
    time_a = getattr(cell, "time_a", None)
    if time_a is None:
        return None
    seen: list[torch.Tensor] = []
    handle = time_a.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().reshape(-1, out.shape[-1])))
    try:
        score(agent, niche, episodes, seed)
    finally:
        handle.remove()
    t_a = torch.cat(seen).abs().clamp(min=1.0 / TAU_CAP)
    tau = (1.0 / t_a).median(dim=0).values.numpy().astype(np.float64)
    return {
        "units": len(tau),
        "tau_ticks": [round(float(t), 4) for t in tau],
        "median_ticks": float(np.median(tau)),
        "mean_log10": float(np.mean(np.log10(tau))),
    }


def tau_divergence(a: list[float], b: list[float]) -> float:
    """Mean |log10 tau_a - log10 tau_b| over units: 0 = same time constants, 1 = a factor 10 apart."""
    return float(np.mean(np.abs(np.log10(np.asarray(a)) - np.log10(np.asarray(b)))))
