"""CLI verbs of the arena area: `play arena` (a person or a policy in a window) and `bench env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import bench_app, play_app
from metabonk.common.errors import MetabonkError


@play_app.command("arena")
def play_arena_cmd(
    human: Annotated[
        bool, typer.Option("--human", help="You play: WASD/arrows move, space dash, 1/2/3 cards.")
    ] = False,
    policy: Annotated[
        str, typer.Option(help="Without --human, watch this policy: expert | random.")
    ] = "expert",
    record: Annotated[
        Path | None, typer.Option(help="Save each episode as a labelled demo in this episode store.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Game seed.")] = 0,
    size: Annotated[int, typer.Option(help="Frame size in pixels (16..256).")] = 64,
    max_steps: Annotated[int, typer.Option(help="Stop after this many ticks.")] = 10_000,
    fps: Annotated[float, typer.Option(help="Ticks per second (1000: about as fast as the game runs).")] = 30.0,
    scale: Annotated[int, typer.Option(help="Window pixels per frame pixel.")] = 8,
) -> None:
    """Play the Arena in a window (SDL_VIDEODRIVER=dummy runs it headless), optionally recording a demo."""
    from rich.console import Console

    from metabonk.envs.arena import ArenaConfig, RandomPolicy, ScriptedExpert
    from metabonk.envs.arena.human import play_session

    cfg = ArenaConfig(frame_size=size)
    pol = None
    if not human:
        if policy == "expert":
            pol = ScriptedExpert(cfg)
        elif policy == "random":
            pol = RandomPolicy(seed)
        else:
            raise MetabonkError(f"unknown policy '{policy}' (expert | random), or pass --human")
    res = play_session(
        cfg, seed=seed, max_steps=max_steps, policy=pol, record_dir=record, fps=fps, scale=scale
    )
    con = Console(soft_wrap=True)
    for i, (ret, length) in enumerate(zip(res.returns, res.lengths, strict=True)):
        con.print(f"episode {i}: return {ret:.2f}, length {length}")
    if record is not None:
        con.print(f"wrote {res.episodes_written} episode(s) to {record}")


@bench_app.command("env")
def bench_env_cmd(
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "cpu",
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Result file (default benchmarks/results/env-<device>.json)."),
    ] = None,
    batches: Annotated[str, typer.Option(help="Comma-separated Arena batch sizes.")] = "1,64,1024",
    seconds: Annotated[float, typer.Option(help="Seconds per measurement.")] = 1.0,
    repeats: Annotated[int, typer.Option(help="Repeats per measurement (the median is reported).")] = 3,
    references: Annotated[bool, typer.Option(help="Also time ALE Pong and Crafter in the same run.")] = True,
) -> None:
    """Steps/s of make_env("arena")'s vector env and of the bare game kernel (with and without pixels) vs ALE Pong
    and Crafter in the same run, with ratios (headline: batch 1024, 64x64 pixels vs Pong, target 10x)."""
    from metabonk.bench.env import run_env_bench

    try:
        sizes = [int(b) for b in batches.split(",") if b.strip()]
    except ValueError as e:
        raise MetabonkError(f"--batches must be comma-separated integers, got '{batches}'") from e
    run_env_bench(
        device=device,
        batches=sizes,
        seconds=seconds,
        repeats=repeats,
        references=references,
        json_path=json_path,
    )
