"""Train and evaluate a world model on Arena episodes generated on the GPU with the torch-native game,
all in memory (no store, no gymnasium): the GPU-machine path behind benchmarks/results/eval-world-arena.json.

    PYTHONPATH=src python3 -m metabonk.world.arena_gpu OUT_DIR [train_seconds [ticks_per_game [batch]]]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metabonk.envs.arena.game import ArenaGame  # metabonk.envs imports without gymnasium
from metabonk.envs.arena.spec import NUM_ACTIONS


def generate(
    num_envs: int, steps: int, device: torch.device, seed: int, sticky: float = 0.8
) -> dict[str, torch.Tensor]:
    """Sticky-random play: cur/next frames uint8 [T,N,H,W,3], action/reward/terminated/done [T,N]."""
    game = ArenaGame(num_envs=num_envs, device=device, seed=seed)
    g = torch.Generator(device=device).manual_seed(seed)
    a = torch.randint(0, NUM_ACTIONS, (num_envs,), device=device, generator=g)
    cur, nxt, acts, rews, terms, dones = [], [], [], [], [], []
    for _ in range(steps):
        new = torch.randint(0, NUM_ACTIONS, (num_envs,), device=device, generator=g)
        a = torch.where(torch.rand(num_envs, device=device, generator=g) > sticky, new, a)
        cur.append(game.render())
        r, term, trunc, _ = game.step(a)
        nxt.append(game.render())
        done = term | trunc
        acts.append(a.clone()), rews.append(r.float()), terms.append(term), dones.append(done)
        if bool(done.any()):
            game.reset_done(done)
    st = torch.stack
    return {
        "cur": st(cur),
        "next": st(nxt),
        "action": st(acts),
        "reward": st(rews),
        "terminated": st(terms),
        "done": st(dones),
    }


def windows(d: dict[str, torch.Tensor], k: int, horizon: int, envs: torch.Tensor) -> torch.Tensor:
    """(t, n) starts of windows of k+horizon frames on env columns `envs` with no episode end inside
    (an end allowed only at the window's very last transition)."""
    T = d["done"].shape[0]
    L = k + horizon - 1
    done = d["done"][:, envs].float()
    c = torch.cat([done.new_zeros(1, done.shape[1]), done.cumsum(0)])
    ok = (c[L - 1 : T] - c[: T - L + 1]) == 0  # no done in [s, s+L-2]
    t, n = ok.nonzero(as_tuple=True)
    return torch.stack([t, envs[n]], 1)


def gather(d: dict[str, torch.Tensor], starts: torch.Tensor, n_frames: int) -> dict[str, torch.Tensor]:
    """obs [B,n_frames,...] (cur frames then the last next frame), action/reward/terminated [B,n_frames-1]."""
    t, n = starts[:, 0], starts[:, 1]
    idx = t[:, None] + torch.arange(n_frames - 1, device=t.device)
    obs = torch.cat([d["cur"][idx, n[:, None]], d["next"][idx[:, -1:], n[:, None]]], 1)
    return {"obs": obs, **{key: d[key][idx, n[:, None]] for key in ("action", "reward", "terminated")}}


def fused_fidelity(model: torch.nn.Module, obs: torch.Tensor, actions: torch.Tensor, horizon: int) -> dict[str, object]:
    """The same open-loop dreams with the fused Triton denoiser (bf16 and FP8): PSNR/SSIM per step, and the PSNR
    of each against the eager fp32 model's dream of the same starts and noise (how much the kernels change)."""
    from metabonk.world.evaluate import fidelity
    from metabonk.world.fused_unet import fuse_denoiser

    res: dict[str, object] = {}
    original = model.denoiser.inner  # type: ignore[union-attr]
    try:
        for precision in ("bf16", "fp8"):
            with fuse_denoiser(model, precision).tuning():  # the launches the benchmark measures
                fid = fidelity(model, obs, actions, horizon, bf16=False)
            res[f"psnr_db_fused_{precision}"] = fid["psnr"]
            res[f"ssim_fused_{precision}"] = fid["ssim"]
    except Exception as e:  # reported in the result, the rest of the evaluation stands
        res["fused_error"] = f"{type(e).__name__}: {e}"[:500]
    finally:
        model.denoiser.inner = original  # type: ignore[union-attr]
    return res


def main(out: Path, train_seconds: float = 200.0, steps: int = 450, batch: int = 128, num_envs: int = 512,
         device: str = "cuda") -> None:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from metabonk.world.config import diamond_atari_config, scale_sigmas
    from metabonk.world.denoiser import diffusion_target, frames_to_float
    from metabonk.world.evaluate import controllability, fidelity, fidelity_report, real_shifts, reward_metrics
    from metabonk.world.world_model import WorldModel

    dev = torch.device(device)
    torch.manual_seed(0)
    t0 = time.time()
    d = generate(num_envs=num_envs, steps=steps, device=dev, seed=0)
    N = d["done"].shape[1]
    held = max(N // 8, 1)
    train_envs, test_envs = torch.arange(0, N - held, device=dev), torch.arange(N - held, N, device=dev)
    cfg = diamond_atari_config(num_actions=NUM_ACTIONS)
    k, horizon = cfg.num_context, 16
    tr = windows(d, k, 1, train_envs)
    term_rows = tr[d["terminated"][tr[:, 0] + k - 1, tr[:, 1]]]
    print(
        f"generated {d['done'].numel()} transitions in {time.time() - t0:.0f}s; {len(tr)} train windows, "
        f"{len(term_rows)} terminal",
        flush=True,
    )
    g = torch.Generator(device=dev).manual_seed(1)
    probe = gather(d, tr[torch.randint(0, len(tr), (2048,), device=dev, generator=g)], k + 1)
    pair = frames_to_float(probe["obs"][:, -2:])
    ctx_sigma = torch.rand(pair.shape[0], 1, 1, 1, device=dev, generator=g) * cfg.edm.context_noise_max
    last = pair[:, 0] + ctx_sigma * torch.randn(pair[:, 0].shape, device=dev, generator=g)
    sigma_data = float(diffusion_target(pair, cfg.target, last_context=last).std().clamp(0.02, 0.5))
    scale_sigmas(cfg, sigma_data)
    cfg.auto_sigma_data = False
    print(f"target {cfg.target}: sigma_data {sigma_data:.4f}", flush=True)
    model = WorldModel(cfg).to(dev).to(memory_format=torch.channels_last)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-2)
    step, t1, hist = 0, time.time(), []
    while (elapsed := time.time() - t1) < train_seconds:
        rows = tr[torch.randint(0, len(tr), (batch,), device=dev, generator=g)]
        if len(term_rows):
            n_t = batch // 10
            rows[:n_t] = term_rows[torch.randint(0, len(term_rows), (n_t,), device=dev, generator=g)]
        b = gather(d, rows, k + 1)
        # linear warm-up, then cosine decay over the time budget
        lr = 3e-4 * min(1.0, (step + 1) / 200) * (0.55 + 0.45 * np.cos(np.pi * elapsed / train_seconds))
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            loss, metrics = model(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update_parameters(model)
        step += 1
        if step % 200 == 0:
            figures = {k: float(v) for k, v in metrics.items()}  # the forward's metrics are tensors
            hist.append({"step": step, **figures})
            print(step, f"{elapsed:.0f}s", figures, flush=True)
    model.load_state_dict(ema.module.state_dict())
    model.eval()
    te = windows(d, k, horizon, test_envs)
    te = te[torch.randperm(len(te), device=dev, generator=g)[:512]]
    ev = gather(d, te, k + horizon)
    fid = fidelity(model, ev["obs"], ev["action"], horizon)
    fid32 = fidelity(model, ev["obs"], ev["action"], horizon, bf16=False)
    fused = fused_fidelity(model, ev["obs"], ev["action"], horizon)
    moves = list(range(9))
    ctl_rows = windows(d, 4, 1, test_envs)
    ctl = gather(d, ctl_rows[torch.randperm(len(ctl_rows), device=dev, generator=g)[:2048]], 4)
    shifts = real_shifts(ctl["obs"], ctl["action"], moves, steps=3)
    con = controllability(model, ev["obs"][:128], moves, steps=3, real_shift=shifts)
    rw_rows = windows(d, k, 1, test_envs)
    rw = gather(d, rw_rows, k + 1)
    rew = reward_metrics(model, rw["obs"], rw["action"][:, -1], rw["reward"][:, -1], rw["terminated"][:, -1])
    res = {
        "train_steps": step,
        "train_seconds": train_seconds,
        "batch": batch,
        "target": cfg.target,
        "sigma_data": sigma_data,
        "ema_decay": 0.999,
        "train_windows": len(tr),
        "test_envs": len(test_envs),
        "eval_starts": len(te),
        "horizon": horizon,
        **fidelity_report(fid),
        "psnr_db_fp32": fid32["psnr"],
        "ssim_fp32": fid32["ssim"],
        **fused,
        "controllability": con,
        "reward": rew,
        "loss_history": hist,
        "data": f"{N} Arena games x {steps} ticks, sticky-random policy (p=0.8), {held} games held out",
    }
    out.mkdir(parents=True, exist_ok=True)
    from metabonk.common.results import write_result

    write_result(out / "eval-world-arena.json", res, dev)
    from metabonk.world.dream_env import DreamEnv

    env = DreamEnv(model, seed=0)
    sample = ev
    env.reset(sample["obs"][:4, :k], sample["action"][:4, :k])
    dream = [env.step(sample["action"][:4, k - 1 + t])[0] for t in range(horizon)]
    np.savez_compressed(
        out / "dream_frames.npz",
        real=sample["obs"][:4].cpu().numpy(),
        dream=torch.stack(dream, 1).cpu().numpy(),
    )
    model.save(out / "world_arena_ckpt", meta={"data": res["data"], "step": step})
    print(json.dumps({k2: v for k2, v in res.items() if k2 != "loss_history"}, indent=1), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(float(a) for a in sys.argv[2:3]), *(int(a) for a in sys.argv[3:5]))
