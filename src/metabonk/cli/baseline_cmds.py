"""`metabonk bench baselines`: the scripted expert and random play scored on the same seeds of an env
(return with IQM and rliable intervals, human-normalised on Atari; survival), as an eval JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import bench_app
from metabonk.common.errors import MetabonkError


@bench_app.command("baselines")
def bench_baselines_cmd(
    env: Annotated[str, typer.Option(help="arena | arena-hard | ale:Pong | ale:Breakout | any env (random only).")]
    = "arena",
    episodes: Annotated[int, typer.Option(help="Episodes, one per seed seed..seed+N-1.")] = 32,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    max_steps: Annotated[int, typer.Option(help="Step cap per episode (episodes cut there are counted).")]
    = 30_000,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Result file (default benchmarks/results/eval-expert-<env>[-skipK].json).")] = None,
    frame_skip: Annotated[int | None, typer.Option(help="Arena only: game ticks per env step (the game's "
                                                        "default: 1).")] = None,
) -> None:
    """Score the env's scripted expert (where it has one) and uniform random play on the same seeds."""
    import re

    import torch

    from metabonk.cli.policy_cmds import print_eval
    from metabonk.common.results import write_result
    from metabonk.envs import arena_env_kwargs
    from metabonk.policy.evaluate import evaluate_policy, has_expert

    if episodes < 1 or max_steps < 1:
        raise MetabonkError("--episodes and --max-steps must be ≥ 1")
    torch.set_num_threads(1)
    options = arena_env_kwargs(env, frame_skip)
    res = evaluate_policy(None, env, episodes=episodes, seed=seed, max_steps=max_steps, env_kwargs=options)
    res["has_expert"] = has_expert(env)
    res["env_kwargs"] = options or {}
    print_eval(res)
    name = re.sub(r"[^a-z0-9]+", "-", env.lower()).strip("-") + (f"-skip{frame_skip}" if frame_skip else "")
    path = json_path or Path("benchmarks/results") / f"eval-expert-{name}.json"
    write_result(path, res, torch.device("cpu"))
    typer.echo(f"wrote {path}")
