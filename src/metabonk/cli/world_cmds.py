"""CLI verbs of the world area: train world, dream, eval world, play dream, bench world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metabonk.cli.app import EvalOptions, app, bench_app, play_app, register_eval, train_app
from metabonk.common.errors import MetabonkError


@train_app.command("world")
def train_world_cmd(
    data: Annotated[Path, typer.Option(help="Episode store to train on.")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write (and resume from).")],
    steps: Annotated[int, typer.Option(help="Total optimizer steps.")] = 20_000,
    batch: Annotated[int, typer.Option(help="Windows per step (global under torchrun).")] = 32,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-4,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    actions: Annotated[str, typer.Option(help="real | idm | latent (latent needs --lam).")] = "real",
    lam: Annotated[Path | None, typer.Option(help="LAM checkpoint for --actions latent.")] = None,
    size: Annotated[str, typer.Option(help="diamond (4.6M U-Net) | small (the CPU demo's) | tiny")] = "diamond",
    target: Annotated[str, typer.Option(help="What the diffusion models: delta (x_t+1 - x_t, the dream adds it "
                                             "to the last frame) | frame (x_t+1, as DIAMOND).")] = "delta",
    context_noise: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Largest training noise on the context frames (default 0.1; 0 = none).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Continue from OUT if it exists.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    bf16: Annotated[bool, typer.Option("--bf16", help="bfloat16 autocast of the forward (GPU speed; weights "
                                                      "stay fp32).")] = False,
) -> None:
    """Train the diffusion world model + reward/termination model on an episode store.

    DDP: `torchrun --nproc-per-node N -m metabonk train world ...` trains on N GPUs (or N CPU processes, gloo);
    --batch is then the global batch, split evenly over the ranks; rank 0 writes the checkpoint.
    """
    from metabonk.common.checkpoint import check_out_dir
    from metabonk.world.config import diamond_atari_config, sized_world_config, tiny_config
    from metabonk.world.train import TrainConfig, train_world

    check_out_dir(out, data, lam)
    if size not in ("diamond", "small", "tiny"):
        raise MetabonkError(f"--size must be diamond, small or tiny, got '{size}'")
    if target not in ("delta", "frame"):
        raise MetabonkError(f"--target must be delta or frame, got '{target}'")
    if size == "diamond":
        cfg = diamond_atari_config()
    elif size == "small":  # frame size and actions come from the store
        cfg = sized_world_config("small", frame_size=64, num_actions=1)
    else:
        cfg = tiny_config(num_context=4)
    cfg.target = target  # a resumed run keeps its checkpoint's target (and context noise)
    if context_noise is not None:
        cfg.edm.context_noise_max = context_noise
    tc = TrainConfig(
        steps=steps,
        batch=batch,
        lr=lr,
        device=device,
        action_source=actions,
        lam=str(lam) if lam else None,
        seed=seed,
        bf16=bf16,
    )
    train_world(data, out, tc, cfg, resume=resume)


@app.command("dream")
def dream_cmd(
    ckpt: Annotated[Path, typer.Argument(help="World model checkpoint.")],
    data: Annotated[Path, typer.Option(help="Episode store holding the real trajectory.")],
    out: Annotated[Path, typer.Option(help="GIF to write (real | dream).")],
    steps: Annotated[int, typer.Option(help="Dream steps.")] = 64,
    episode: Annotated[int, typer.Option(help="Episode index in the store.")] = 0,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    kernels: Annotated[str, typer.Option(help="eager | fused_bf16 | fused_fp8 (Triton kernels, CUDA only).")] =
        "eager",
) -> None:
    """Dream beside a real trajectory with the same actions and write a side-by-side GIF."""
    from metabonk.common.device import resolve_device
    from metabonk.data.store import EpisodeStore
    from metabonk.world.data import ACTION_KEYS
    from metabonk.world.dream_env import KERNELS
    from metabonk.world.dream_gif import dream_beside_real, write_side_by_side_gif
    from metabonk.world.evaluate import psnr
    from metabonk.world.world_model import WorldModel

    if kernels not in KERNELS:
        raise MetabonkError(f"--kernels must be one of {', '.join(KERNELS)}, got '{kernels}'")
    model = WorldModel.load(ckpt, device=resolve_device(device))
    key = ACTION_KEYS[model.config.action_source]
    ep = EpisodeStore.open(data).episode(episode, keys=["obs", key])
    import torch

    real, dream = dream_beside_real(model, ep["obs"], ep[key], steps, seed=seed, kernels=kernels)
    write_side_by_side_gif(real, dream, out)
    p = psnr(torch.from_numpy(dream), torch.from_numpy(real))
    typer.echo(
        f"wrote {out}: {len(dream)} steps, PSNR step 1 {float(p[0]):.1f} dB, mean {float(p.mean()):.1f} dB"
    )


def eval_world(ckpt: Path, opts: EvalOptions) -> None:
    """`metabonk eval world CKPT --data DIR [--json FILE]`."""
    from metabonk.common.device import resolve_device
    from metabonk.common.results import write_result
    from metabonk.world.eval_store import evaluate_checkpoint

    if opts.data is None:
        raise MetabonkError("eval world needs --data DIR (an episode store)")
    device = resolve_device(opts.device)
    res = evaluate_checkpoint(str(ckpt), str(opts.data), device, seed=opts.seed)
    _print_eval(res)
    if opts.json_path is not None:
        write_result(opts.json_path, res, device)


def _print_eval(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"world model, {res['horizon']}-step open-loop dream ({res['eval_starts']} starts)")
    for col in ("step", "PSNR dB", "copy-last PSNR", "SSIM", "copy-last SSIM"):
        t.add_column(col)
    for i in range(res["horizon"]):
        t.add_row(
            str(i + 1),
            f"{res['psnr_db'][i]:.2f}",
            f"{res['copy_last_psnr_db'][i]:.2f}",
            f"{res['ssim'][i]:.3f}",
            f"{res['copy_last_ssim'][i]:.3f}",
        )
    c = Console()
    c.print(t)
    con = res["controllability"]
    c.print(
        f"controllability: between-action diff {con['between_action_diff']:.2f} vs redraw "
        f"{con['same_action_redraw_diff']:.2f}; direction cosine {con.get('direction_cosine_mean', 0):.2f}"
    )
    c.print(
        f"reward MAE {res['reward_mae']:.4f} (mean baseline {res['reward_mae_mean_baseline']:.4f}); "
        f"termination F1 {res['termination_f1']:.2f} on {res['termination_positives']} ends"
    )


register_eval("world", eval_world)


@play_app.command("dream")
def play_dream_cmd(
    ckpt: Annotated[Path, typer.Argument(help="World model checkpoint.")],
    human: Annotated[bool, typer.Option("--human", help="Steer with the keyboard.")] = False,
    data: Annotated[Path | None, typer.Option(help="Store to take the start frames from.")] = None,
    episode: Annotated[int, typer.Option(help="Episode giving the start frames.")] = 0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many steps.")] = 10_000,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
) -> None:
    """Play inside the dream: arrows/WASD move, space dashes, 1-3 pick cards, Esc quits."""
    import numpy as np

    from metabonk.common.device import resolve_device
    from metabonk.world.human import play_dream
    from metabonk.world.world_model import WorldModel

    if not human:
        raise MetabonkError("play dream is interactive: pass --human")
    model = WorldModel.load(ckpt, device=resolve_device(device))
    k, s = model.config.num_context, model.config.frame_size
    if data is not None:
        from metabonk.data.store import EpisodeStore

        ep = EpisodeStore.open(data).episode(episode, keys=["obs", "action"])
        frames, acts = ep["obs"][:k], ep["action"][:k]
    else:
        frames, acts = np.full((k, s, s, 3), 64, np.uint8), np.zeros(k, np.int64)
    res = play_dream(model, frames, acts, max_steps=max_steps)
    typer.echo(f"dreamed {res['steps']} steps, predicted return {res['predicted_return']:.2f}")


@bench_app.command("world")
def bench_world_cmd(
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Result file (default benchmarks/results/world-<device>.json)."),
    ] = None,
    batch: Annotated[int, typer.Option(help="The large batch.")] = 1024,
    variants: Annotated[str, typer.Option(help="Comma-separated: eager_fp32, bf16_cl, bf16_cl_graph, "
                                          "bf16_cl_compile, bf16_cl_compile_cdt, bf16_cl_autotune (slow to "
                                          "compile); a _gn suffix uses F.group_norm instead of the channelwise "
                                          "group norm; fused_bf16, fused_fp8: the fused Triton kernels. All but "
                                          "eager_fp32 need CUDA.")] =
        "eager_fp32,bf16_cl,bf16_cl_graph,bf16_cl_compile",
) -> None:
    """Dream frames/s at batch 1 and a large batch: eager fp32 vs bf16 / CUDA graph / torch.compile."""
    from rich.console import Console
    from rich.table import Table

    from metabonk.bench.world import VARIANTS, run_bench
    from metabonk.common.device import device_label, resolve_device
    from metabonk.common.results import write_result

    dev = resolve_device(device)
    batches = (1, batch) if dev.type == "cuda" else (1, 16)
    chosen = tuple(v.strip() for v in variants.split(",") if v.strip())
    if not chosen or set(chosen) - set(VARIANTS):
        raise MetabonkError(f"--variants must name some of {', '.join(sorted(VARIANTS))}; got '{variants}'")
    res = run_bench(dev, batches=batches, variants=chosen, repeats=20 if dev.type == "cuda" else 3,
                    log=lambda s: None)
    t = Table(
        title=f"world model dream speed ({res['denoiser_params'] / 1e6:.2f}M params, "
        f"{res['flops_per_frame'] / 1e9:.1f} GFLOP/frame)"
    )
    for col in ("variant", "batch", "frames/s", "ms/batch", "TFLOP/s"):
        t.add_column(col)
    for r in res["rows"]:
        if "error" in r:
            t.add_row(r["variant"], str(r["batch"]), "failed", r["error"][:40], "")
            continue
        t.add_row(
            r["variant"],
            str(r["batch"]),
            f"{r['frames_per_s']:.1f}",
            f"{r['ms_per_batch']:.2f}",
            f"{r['tflops']:.2f}",
        )
    Console().print(t)
    path = json_path or Path("benchmarks/results") / f"world-{device_label(dev)}.json"
    write_result(path, res, dev)
    typer.echo(f"wrote {path}")


@bench_app.command("adaptive")
def bench_adaptive_cmd(
    ckpt: Annotated[Path, typer.Argument(help="World-model checkpoint directory.")],
    data: Annotated[Path, typer.Option(help="Episode store; the checkpoint's training episodes are left out.")],
    num_steps: Annotated[int, typer.Option(help="The full schedule's Euler steps.", min=2, max=64)] = 3,
    fractions: Annotated[str, typer.Option(help="Comma-separated shares of hard frames.")] = "0.1,0.25,0.5",
    horizon: Annotated[int, typer.Option(help="Open-loop dream steps scored.", min=1, max=256)] = 8,
    starts: Annotated[int, typer.Option(help="Held-out starts scored.", min=1, max=100_000)] = 256,
    batch: Annotated[int, typer.Option(help="Batch of the speed figure.", min=1, max=65_536)] = 256,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the starts and the dreams' noise.", min=0)] = 0,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default "
                                                   "benchmarks/results/adaptive-<device>.json).")] = None,
) -> None:
    """Adaptive compute in the dream: frames/s and open-loop PSNR for 1 step, the full schedule, and the full
    schedule on only the hardest share of frames (beside the same share picked at random), in one run."""
    import numpy as np

    from metabonk.bench.adaptive import default_json, print_table, run_adaptive_bench
    from metabonk.common.device import resolve_device
    from metabonk.common.results import write_result
    from metabonk.data.store import EpisodeStore
    from metabonk.world.eval_store import held_out_episodes, open_loop_windows
    from metabonk.world.world_model import WorldModel, read_meta

    try:
        shares = tuple(float(f) for f in fractions.split(",") if f.strip())
    except ValueError:
        raise MetabonkError(f"--fractions must be comma-separated numbers, got '{fractions}'") from None
    if not shares or any(not 0.0 < f < 1.0 for f in shares):
        raise MetabonkError(f"--fractions must be shares strictly between 0 and 1, got '{fractions}'")
    dev = resolve_device(device)
    model = WorldModel.load(ckpt, device=dev)
    store = EpisodeStore.open(data)
    eps = held_out_episodes(model, read_meta(ckpt), store)
    frames, actions = open_loop_windows(model, store, eps, horizon, starts, np.random.default_rng(seed))
    res = run_adaptive_bench(model, frames, actions, num_steps=num_steps, fractions=shares, horizon=horizon,
                             batch=batch, seed=seed, log=lambda s: None)
    res |= {"checkpoint": str(ckpt), "data": str(data), "eval_episodes": len(eps)}
    print_table(res)
    typer.echo(f"wrote {write_result(json_path or default_json(dev), res, dev)}")
