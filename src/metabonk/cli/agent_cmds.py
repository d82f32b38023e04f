"""CLI verbs of the online loop: `train agent` (collect → world model → imagination) and `bench loop`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import bench_app, train_app


@train_app.command("agent")
def train_agent_cmd(
    out: Annotated[Path, typer.Option("--out", help="Run folder (resumes if it holds a run of this loop).")],
    env: Annotated[str, typer.Option(help="Real env: arena | arena-hard | ale:<Game> | scroll.")] = "arena",
    env_steps: Annotated[int, typer.Option(help="Real env steps in all (summed over envs).")] = 100_000,
    init: Annotated[Path | None, typer.Option(help="Start the policy from this checkpoint (e.g. BC).")] = None,
    world_init: Annotated[Path | None, typer.Option(help="Start the world model from this checkpoint.")] = None,
    preset: Annotated[str, typer.Option(help="tiny | default | full (sizes and update counts).")] = "default",
    num_envs: Annotated[int | None, typer.Option(help="Parallel real envs (preset's if omitted).")] = None,
    size: Annotated[int | None, typer.Option(help="Frame size in pixels (preset's if omitted).")] = None,
    world_updates: Annotated[int | None, typer.Option(help="World-model updates per epoch.")] = None,
    ac_updates: Annotated[int | None, typer.Option(help="Actor-critic updates in imagination per epoch.")] = None,
    collect_steps: Annotated[int | None, typer.Option(help="Real steps collected per epoch.")] = None,
    kernels: Annotated[str, typer.Option(help="Dream kernels: eager | fused_bf16 | fused_fp8 (CUDA).")] = "eager",
    sampler_steps: Annotated[int | None, typer.Option(help="Denoising steps per dreamed frame (preset's if "
                                                           "omitted).")] = None,
    frame_skip: Annotated[int | None, typer.Option(help="Arena only: game ticks per env step (action repeat; "
                                                        "1 = every tick, 4 = DIAMOND's Atari rate).")] = None,
    anchor: Annotated[float | None, typer.Option(help="With --init: weight of KL(policy ‖ the --init policy) on "
                                                     "the dreamed states (0 = off).")] = None,
    eval_episodes: Annotated[int | None, typer.Option(help="Seeds of the final evaluation (0 = none).")] = None,
    settings: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE: any setting of the loop (train.agent_config.AgentLoopConfig, e.g. ac_lr=1e-5, "
                      "ac_batch=8) or of its dream as imagination.KEY (e.g. imagination.horizon=8); repeatable, "
                      "after the options above.")] = None,
    compare_ppo: Annotated[bool, typer.Option(help="Also train PPO from scratch at the same real steps and "
                                                   "evaluate it on the same seeds.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    orchestrator: Annotated[str | None, typer.Option(help="Report progress, live curves and the report to this "
                                                     "orchestrator URL (token from $METABONK_TOKEN).")] = None,
) -> None:
    """Train an agent in its own dreams: epochs of real collection, world-model updates and actor-critic
    training in imagination, then an evaluation against random (and the expert on Arena) with a report.
    Killed runs resume from the last epoch. One process per GPU; DDP is not implemented for this verb."""
    from rich.console import Console

    from metabonk.envs import arena_env_kwargs
    from metabonk.train.agent_config import loop_config, parse_settings
    from metabonk.train.online import train_agent
    from metabonk.train.report import evaluate_and_report

    extra = parse_settings(settings or [])
    imagination = {**({} if anchor is None else {"anchor_coef": anchor}), **extra.pop("imagination", {})}
    options = dict(env=env, env_steps=env_steps, out=str(out), init=str(init) if init else None,
                   world_init=str(world_init) if world_init else None, num_envs=num_envs, size=size,
                   world_updates=world_updates, ac_updates=ac_updates, collect_steps=collect_steps,
                   kernels=kernels, sampler_steps=sampler_steps, eval_episodes=eval_episodes, device=device,
                   seed=seed, env_kwargs=arena_env_kwargs(env, frame_skip), imagination=imagination or None)
    cfg = loop_config(preset, **{**options, **extra})  # --set comes last: it wins
    from metabonk.serve.hooks import reported_run

    with reported_run(orchestrator, f"train agent {env} {preset}", "train",
                      {"env": env, "preset": preset, "env_steps": env_steps, "seed": seed, "device": device},
                      "loop", out):
        run = train_agent(cfg)
        report = evaluate_and_report(cfg, run, compare_ppo=compare_ppo)
    Console(soft_wrap=True).print(f"agent in {run / 'agent'}; report {report}")


@bench_app.command("loop")
def bench_loop_cmd(
    env: Annotated[str, typer.Option(help="Real env.")] = "scroll",
    preset: Annotated[str, typer.Option(help="tiny | default | full")] = "tiny",
    epochs: Annotated[int, typer.Option(help="Epochs to time (after one warm-up epoch).")] = 2,
    kernels: Annotated[str, typer.Option(help="eager | fused_bf16 | fused_fp8")] = "eager",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default benchmarks/results/"
                                                                   "loop-<env>-<device>.json).")] = None,
) -> None:
    """Real env steps/s and imagined frames/s of the whole loop, and the share of time in each part."""
    from metabonk.bench.loop import bench_loop

    bench_loop(env=env, preset=preset, epochs=epochs, kernels=kernels, device=device, json_path=json_path)
