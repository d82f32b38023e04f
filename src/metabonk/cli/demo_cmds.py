"""CLI verb of the demo area: `metabonk demo` (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import app


@app.command("demo")
def demo_cmd(
    preset: Annotated[str, typer.Option(help="tiny (~2 min) | default (≤ 20 min, 2 CPU cores) | full (GPU)")]
    = "default",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    env: Annotated[str, typer.Option(help="arena | ale:<Game> (e.g. ale:Pong)")] = "arena",
    name: Annotated[str | None, typer.Option(help="Run folder name under --root "
                                             "(default demo-<preset>-<env>).")] = None,
    stage: Annotated[str | None, typer.Option(help="Re-run this one stage alone: record, latent, world, bc, "
                                              "dream, ppo, eval, report.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start the whole run again.")] = False,
    root: Annotated[Path, typer.Option(help="Folder of the runs.")] = Path("runs"),
    seed: Annotated[int, typer.Option(help="Seed of the whole run.")] = 0,
    frame_skip: Annotated[int | None, typer.Option(help="Arena only: game ticks per env step for every stage "
                                                        "(action repeat; the preset's if omitted).")] = None,
    orchestrator: Annotated[str | None, typer.Option(help="Report stages, live curves and the report to this "
                                                     "orchestrator URL (token from $METABONK_TOKEN).")] = None,
    publish: Annotated[bool, typer.Option("--publish", help="Also write the scores to benchmarks/results/"
                                          "eval-demo-<env>-<preset>.json (a tracked result).")] = False,
) -> None:
    """From video to a playing agent: record, latent actions + IDM, world model, policy (BC + dream), eval,
    report. Finished stages are skipped on a re-run (resume)."""
    from rich.console import Console

    from metabonk.demo.pipeline import run_demo
    from metabonk.demo.presets import with_frame_skip

    run_preset = with_frame_skip(preset, env, frame_skip)
    if frame_skip is not None and name is None:
        name = f"demo-{preset}-{env}-skip{frame_skip}"
    hook = None
    if orchestrator is not None:
        from metabonk.demo.pipeline import stage_names
        from metabonk.demo.presets import get_preset
        from metabonk.serve.hooks import DemoReporter

        hook = DemoReporter(orchestrator, name or f"demo {preset} {env}", stage_names(get_preset(preset)),
                            {"preset": preset, "env": env, "seed": seed, "device": device})
    report = None
    try:
        report = run_demo(preset=run_preset, device=device, env=env, name=name, stage=stage, force=force, root=root,
                          seed=seed, on_stage=hook, publish=publish)
    finally:
        if hook is not None:
            hook.finish(report.parent if report is not None else None, ok=report is not None)
    Console(soft_wrap=True).print(f"report: {report}")
