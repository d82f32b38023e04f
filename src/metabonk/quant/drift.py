"""Drift of a quantized model from its fp32 original, as `metabonk quantize --check` reports it.

- policy: greedy action agreement over held-out frames (both models see the same frames, each carries its own
  hidden state), and the return over `episodes` Arena seeds of each (same seeds), with the fp32 95 % interval;
- world: PSNR per dream step (16 by default) of the quantized dream against the fp32 dream *from the same noise*
  and the same start frames and actions, and each dream's PSNR against the real frames;
- lam: code agreement; idm: action agreement, both over windows of held-out frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metabonk.quant.models import Rollout, _windows, policy_logits


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).float().mean())


def policy_drift(ref: Any, quant: Any, probe: Rollout, episodes: int, seed: int, max_steps: int,
                 device: torch.device) -> dict[str, Any]:
    from metabonk.policy.evaluate import evaluate_policy

    agree = _agreement(policy_logits(ref, probe).argmax(-1), policy_logits(quant, probe).argmax(-1))
    out: dict[str, Any] = {"action_agreement": agree, "agreement_frames": int(probe.frames.shape[:2].numel())}
    if episodes > 0:
        r = evaluate_policy(ref, "arena", episodes=episodes, seed=seed, device=device, baselines=False,
                            max_steps=max_steps)["policy"]
        q = evaluate_policy(quant, "arena", episodes=episodes, seed=seed, device=device, baselines=False,
                            max_steps=max_steps)["policy"]
        lo, hi = r["return_mean_ci95"]
        out.update(episodes=episodes, max_steps=max_steps, fp32_return_mean=r["return_mean"],
                   fp32_return_ci95=[lo, hi], quant_return_mean=q["return_mean"],
                   quant_return_ci95=q["return_mean_ci95"], return_delta=q["return_mean"] - r["return_mean"],
                   return_within_fp32_ci=bool(lo <= q["return_mean"] <= hi),
                   fp32_survival_mean=r["survival_mean"], quant_survival_mean=q["survival_mean"])
    return out


def _psnr(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    from metabonk.world.evaluate import psnr

    return psnr(a, b).cpu().numpy()


@torch.no_grad()
def dream(world: Any, probe: Rollout, steps: int, seed: int) -> torch.Tensor:
    """Open-loop dream uint8 [N,steps,H,W,3] from the rollout's first k frames, driven by its actions; the
    DreamEnv's generator is seeded, so two models dreaming with the same seed draw the same noise."""
    from metabonk.world.dream_env import DreamEnv

    k = world.config.num_context
    env = DreamEnv(world, seed=seed)
    acts = probe.actions.clamp(max=world.config.num_actions - 1)
    env.reset(probe.frames[:, :k], acts[:, :k])
    out = [env.step(acts[:, k - 1 + i])[0].cpu() for i in range(steps)]
    return torch.stack(out, 1)


def world_drift(ref: Any, quant: Any, probe: Rollout, steps: int, seed: int) -> dict[str, Any]:
    k = ref.config.num_context
    steps = min(steps, probe.frames.shape[1] - k)
    d_ref, d_q = dream(ref, probe, steps, seed), dream(quant, probe, steps, seed)
    real = probe.frames[:, k: k + steps]
    vs_fp32 = [float(_psnr(d_q[:, t], d_ref[:, t]).mean()) for t in range(steps)]
    ref_real = [float(_psnr(d_ref[:, t], real[:, t]).mean()) for t in range(steps)]
    q_real = [float(_psnr(d_q[:, t], real[:, t]).mean()) for t in range(steps)]
    delta = [q - r for q, r in zip(q_real, ref_real, strict=True)]
    return {"dream_steps": steps, "dreams": int(probe.frames.shape[0]),
            "psnr_vs_fp32_dream_db": vs_fp32, "fp32_psnr_vs_real_db": ref_real, "quant_psnr_vs_real_db": q_real,
            "psnr_delta_vs_real_db": delta, "max_abs_psnr_delta_db": float(np.max(np.abs(delta))),
            "within_0p1_db_every_step": bool(np.max(np.abs(delta)) <= 0.1)}


def lam_drift(ref: Any, quant: Any, probe: Rollout) -> dict[str, Any]:
    w = _windows(probe.frames, ref.config.window)
    return {"code_agreement": _agreement(ref.infer_codes(w).cpu(), quant.infer_codes(w).cpu()),
            "windows": int(w.shape[0])}


def idm_drift(ref: Any, quant: Any, probe: Rollout) -> dict[str, Any]:
    w = _windows(probe.frames, ref.config.window)
    return {"action_agreement": _agreement(ref.predict(w)["action"].cpu(), quant.predict(w)["action"].cpu()),
            "windows": int(w.shape[0])}
