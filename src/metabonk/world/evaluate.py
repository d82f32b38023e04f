"""Evaluation of a world model on held-out episodes: open-loop PSNR/SSIM per step vs copy-last-frame,
controllability (different actions → different, correctly shifted frames), reward error, termination F1."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from metabonk.world.denoiser import frames_to_float
from metabonk.world.dream_env import DreamEnv
from metabonk.world.world_model import WorldModel


def psnr(pred_u8: torch.Tensor, true_u8: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of uint8 images [N,H,W,C] (peak 255)."""
    mse = (pred_u8.float() - true_u8.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def ssim(pred_u8: torch.Tensor, true_u8: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-sample mean SSIM of uint8 images [N,H,W,C] (uniform window, standard constants)."""
    x, y = pred_u8.float().movedim(-1, 1) / 255, true_u8.float().movedim(-1, 1) / 255
    c1, c2 = 0.01**2, 0.03**2
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.pad(t, (pad,) * 4, mode="reflect"), window, stride=1)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def global_shift(a_u8: torch.Tensor, b_u8: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """The integer (dx, dy) that best maps frames a onto b (b ≈ a shifted), float [N,2].
    The border is ignored."""
    a, b = a_u8.float().movedim(-1, 1), b_u8.float().movedim(-1, 1)
    H = a.shape[-1]
    m = radius + 1
    best, arg = None, None
    shifts = [(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    for dx, dy in shifts:
        err = (torch.roll(a, (dy, dx), dims=(2, 3)) - b)[..., m : H - m, m : H - m].pow(2).flatten(1).mean(1)
        best = err if best is None else torch.minimum(best, err)
        arg = err.new_full(err.shape, 0) if arg is None else arg
        arg = torch.where(err <= best, err.new_full(err.shape, shifts.index((dx, dy))), arg)
    table = torch.tensor(shifts, dtype=torch.float32, device=a.device)
    return table[arg.long()]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(0, 1)


def _diff(x: torch.Tensor, y: torch.Tensor) -> float:
    return (x.float() - y.float()).abs().mean().item()


def _dream(
    env: DreamEnv, frames: torch.Tensor, actions: torch.Tensor, horizon: int
) -> tuple[torch.Tensor, ...]:
    """Open loop: start from frames[:, :k], apply actions[:, k-1 : k-1+horizon]. → dreams, rewards, ends."""
    k = env.num_context
    env.reset(frames[:, :k], actions[:, :k])
    outs, rewards, ends = [], [], []
    for t in range(horizon):
        px, r, _, _, info = env.step(actions[:, k - 1 + t])
        outs.append(px)
        rewards.append(r)
        ends.append(info["termination_prob"])
    return torch.stack(outs, 1), torch.stack(rewards, 1), torch.stack(ends, 1)


def mse_u8(pred_u8: torch.Tensor, true_u8: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error of uint8 images [N,H,W,C], in [0,1] units."""
    return ((pred_u8.float() - true_u8.float()) / 255.0).pow(2).flatten(1).mean(1)


def psnr_of_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB (peak 1) of a mean squared error in [0,1] units."""
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def fidelity(
    model: WorldModel,
    frames: torch.Tensor,
    actions: torch.Tensor,
    horizon: int,
    seed: int = 0,
    batch: int = 256,
    bf16: bool | None = None,
    dream_kw: dict[str, Any] | None = None,
) -> dict[str, list[float]]:
    """PSNR/SSIM per dream step vs the real frames and vs copy-last-frame. frames uint8 [N,k+horizon,H,W,3],
    actions [N,k-1+horizon] (store convention). `bf16`: dream under bf16 autocast (default: on CUDA).
    `dream_kw`: more DreamEnv arguments (num_steps, hard_fraction, hard_select).

    `psnr` is the PSNR of the mean squared error over all starts at each step. `psnr_item_mean` is the mean of
    per-start PSNRs; it is reported too, but it is a poor judge of copy-last-frame: a start whose next frame is
    unchanged (a paused level-up menu, a player standing still) scores 100 dB (the clamp) for copying, so a few
    such starts outweigh everything else."""
    k = model.config.num_context
    env = DreamEnv(model, seed=seed, bf16=bf16, **(dream_kw or {}))
    acc: dict[str, list[torch.Tensor]] = {
        "mse": [], "ssim": [], "copy_mse": [], "copy_ssim": [], "psnr_item": [], "copy_psnr_item": []
    }
    for i in range(0, frames.shape[0], batch):
        f, a = frames[i : i + batch].to(model.device), actions[i : i + batch].to(model.device)
        dreams = _dream(env, f, a, horizon)[0]
        real = f[:, k : k + horizon]
        last = f[:, k - 1 : k].expand_as(real)
        n = real.shape[0]
        acc["mse"].append(mse_u8(_flat(dreams), _flat(real)).view(n, horizon))
        acc["copy_mse"].append(mse_u8(_flat(last), _flat(real)).view(n, horizon))
        acc["ssim"].append(ssim(_flat(dreams), _flat(real)).view(n, horizon))
        acc["copy_ssim"].append(ssim(_flat(last), _flat(real)).view(n, horizon))
        acc["psnr_item"].append(psnr(_flat(dreams), _flat(real)).view(n, horizon))
        acc["copy_psnr_item"].append(psnr(_flat(last), _flat(real)).view(n, horizon))
    m = {key: torch.cat(v).mean(0) for key, v in acc.items()}
    return {
        "psnr": psnr_of_mse(m["mse"]).tolist(),
        "copy_psnr": psnr_of_mse(m["copy_mse"]).tolist(),
        "ssim": m["ssim"].tolist(),
        "copy_ssim": m["copy_ssim"].tolist(),
        "psnr_item_mean": m["psnr_item"].tolist(),
        "copy_psnr_item_mean": m["copy_psnr_item"].tolist(),
    }


def fidelity_report(fid: dict[str, list[float]]) -> dict[str, Any]:
    """The result-file fields of a `fidelity` run: per-step PSNR/SSIM of the dream and of copy-last-frame, and
    at how many steps the dream's PSNR is above copy-last's."""
    above = [a > b for a, b in zip(fid["psnr"], fid["copy_psnr"], strict=True)]
    return {
        "psnr_db": fid["psnr"],
        "copy_last_psnr_db": fid["copy_psnr"],
        "psnr_item_mean_db": fid["psnr_item_mean"],
        "copy_last_psnr_item_mean_db": fid["copy_psnr_item_mean"],
        "ssim": fid["ssim"],
        "copy_last_ssim": fid["copy_ssim"],
        "psnr_above_copy_steps": int(sum(above)),
        "psnr_above_copy_every_step": all(above),
    }


@torch.no_grad()
def controllability(
    model: WorldModel,
    frames: torch.Tensor,
    moves: list[int],
    steps: int = 3,
    real_shift: dict[int, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """From the same starts, dream `steps` steps under each move action (same noise). Reports how much frames
    differ between actions vs between two noise draws of one action, and whether each action's dreamed view
    shift points the same way as in the real data (cosine of mean shifts)."""
    k = model.config.num_context
    f = frames[:, :k].to(model.device)
    N = f.shape[0]
    finals = {}
    for a in moves:
        env = DreamEnv(model, seed=seed)
        acts = torch.full((N, k), a, dtype=torch.long, device=model.device)
        finals[a] = _dream(
            env,
            torch.cat([f, f[:, -1:].expand(N, steps, *f.shape[2:])], 1),
            torch.cat([acts, acts[:, :1].expand(N, steps)], 1),
            steps,
        )[0][:, -1]
    env = DreamEnv(model, seed=seed + 1)
    a0 = moves[0]
    acts = torch.full((N, k + steps), a0, dtype=torch.long, device=model.device)
    redraw = _dream(env, torch.cat([f, f[:, -1:].expand(N, steps, *f.shape[2:])], 1), acts, steps)[0][:, -1]
    between = float(np.mean([_diff(finals[a], finals[b]) for a in moves for b in moves if a < b]))
    within = _diff(finals[a0], redraw)
    out: dict[str, Any] = {
        "between_action_diff": between,
        "same_action_redraw_diff": within,
        "ratio": between / max(within, 1e-6),
        "steps": steps,
    }
    if real_shift is not None:
        cos = {}
        for a in moves:
            if a not in real_shift or np.linalg.norm(real_shift[a]) < 1e-3:
                continue
            s = global_shift(f[:, -1], finals[a]).mean(0).cpu().numpy()
            r = real_shift[a]
            cos[a] = float(s @ r / (np.linalg.norm(s) * np.linalg.norm(r) + 1e-9))
        out["direction_cosine"] = cos
        out["direction_cosine_mean"] = float(np.mean(list(cos.values()))) if cos else 0.0
    return out


def real_shifts(
    obs_u8: torch.Tensor, actions: torch.Tensor, moves: list[int], steps: int = 3
) -> dict[int, np.ndarray]:
    """Mean view shift over `steps` in real windows where one move action was held. obs [N,steps+1,...]."""
    held = (actions[:, :steps] == actions[:, :1]).all(1)
    out = {}
    shift = global_shift(obs_u8[:, 0], obs_u8[:, steps])
    for a in moves:
        sel = held & (actions[:, 0] == a)
        if int(sel.sum()) >= 2:
            out[a] = shift[sel].mean(0).cpu().numpy()
    return out


@torch.no_grad()
def reward_metrics(
    model: WorldModel,
    obs: torch.Tensor,
    actions: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
    batch: int = 512,
) -> dict[str, float]:
    """Teacher-forced reward MAE (vs predicting the mean) and termination precision/recall/F1 on real windows
    obs uint8 [N,k+1,...], actions/reward/terminated of the last transition [N]."""
    preds, logits = [], []
    for i in range(0, obs.shape[0], batch):
        x = frames_to_float(obs[i : i + batch].to(model.device))
        r, lg = model.reward_model.predict(x, actions[i : i + batch].to(model.device))
        preds.append(r.float().cpu())
        logits.append(lg.float().cpu())
    r_pred, end = torch.cat(preds), torch.cat(logits) > 0
    r_true, t_true = reward.float().cpu(), terminated.bool().cpu()
    tp = int((end & t_true).sum())
    prec = tp / max(int(end.sum()), 1)
    rec = tp / max(int(t_true.sum()), 1)
    return {
        "reward_mae": float((r_pred - r_true).abs().mean()),
        "reward_mae_mean_baseline": float((r_true.mean() - r_true).abs().mean()),
        "termination_precision": prec,
        "termination_recall": rec,
        "termination_f1": 2 * prec * rec / max(prec + rec, 1e-9),
        "termination_positives": int(t_true.sum()),
    }
