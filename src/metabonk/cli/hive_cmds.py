"""CLI verbs of the hive: `hive run` (federated specialist rounds on Ray) and `merge` (merge checkpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import app
from metabonk.common.errors import MetabonkError

hive_app = typer.Typer(help="Hive Mind: specialists on Ray, merged and voted on a shared validation world.",
                       no_args_is_help=True)
app.add_typer(hive_app, name="hive")


def _names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


@hive_app.command("run")
def hive_run(
    specialists: Annotated[str, typer.Option(help="Comma-separated: killer,scout,tank,survivor (Arena) or "
                                                  "left,right (the toy task).")] = "killer,scout,tank,survivor",
    rounds: Annotated[int, typer.Option(help="Federated rounds (train, merge, vote, redistribute).")] = 1,
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster (default: start a local Ray).")] = None,
    num_cpus: Annotated[int, typer.Option(help="CPUs of the local Ray.")] = 2,
    steps: Annotated[int, typer.Option(help="PPO env steps per specialist per round.")] = 4096,
    num_envs: Annotated[int, typer.Option(help="PPO parallel envs.")] = 16,
    num_steps: Annotated[int, typer.Option(help="PPO rollout length.")] = 16,
    lr: Annotated[float, typer.Option(help="PPO learning rate.")] = 1e-3,
    episodes: Annotated[int, typer.Option(help="Validation seeds per niche.")] = 32,
    methods: Annotated[str, typer.Option(help="Merge methods voted on (soup is the reference).")]
        = "task-arith,ties,dare,ram,soup,ema",
    trainer: Annotated[str, typer.Option(help="Specialist trainer: ppo | dream (needs the online dream loop).")]
        = "ppo",
    dm: Annotated[str, typer.Option(help="DungeonMaster route: rule | llm | off.")] = "rule",
    dm_validate: Annotated[str, typer.Option(help="Proposal check: real (short rollout) | dream.")] = "real",
    llm_url: Annotated[str | None, typer.Option(help="--dm llm: OpenAI-compatible URL (default: embedded SmolLM2).")]
        = None,
    out: Annotated[Path, typer.Option(help="Run directory: report.md, hive.json, hive.png, promoted/.")]
        = Path("runs/hive"),
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the JSON here "
                                                                  "(e.g. benchmarks/results/hive-arena-cpu.json).")]
        = None,
    seed: Annotated[int, typer.Option(help="Seed of the start policy and of training.")] = 0,
    orchestrator: Annotated[str | None, typer.Option(help="Report the rounds' figures and the report to this "
                                                     "orchestrator URL (token from $METABONK_TOKEN).")] = None,
) -> None:
    """Train specialists in their niches on Ray, merge them every way, vote, redistribute the winner."""
    from metabonk.hive.federated import HiveConfig, run_hive
    from metabonk.hive.report import write_report
    from metabonk.hive.specialist import TrainBudget
    from metabonk.hive.transport import agent_from

    if steps < num_envs * num_steps:
        raise MetabonkError(f"--steps must be ≥ num_envs * num_steps = {num_envs * num_steps}")
    cfg = HiveConfig(
        specialists=_names(specialists), rounds=rounds, methods=_names(methods),
        budget=TrainBudget(total_steps=steps, num_envs=num_envs, num_steps=num_steps, lr=lr),
        episodes=episodes, seed=seed, trainer=trainer, dm=dm, dm_validate=dm_validate, llm_url=llm_url,
        ray_address=ray_address, num_cpus=num_cpus,
    )
    from metabonk.serve.hooks import reported_run

    with reported_run(orchestrator, f"hive {','.join(cfg.specialists)}", "hive",
                      {"specialists": cfg.specialists, "rounds": rounds, "trainer": trainer, "seed": seed},
                      "hive", out) as reporter:
        doc = run_hive(cfg)
        promoted = doc.pop("promoted_state")
        agent_from(doc["policy_config"], promoted).save(out / "promoted",
                                                         meta={"hive": doc["rounds"][-1]["promoted"]})
        paths = write_report(doc, out, json_path)
        if reporter is not None:
            for i, r in enumerate(doc["rounds"]):
                for key, value in r["targets"].items():
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        reporter.metric(f"hive/{key}", i, float(value))
    t = doc["rounds"][-1]["targets"]
    typer.echo(f"promoted {t['promoted']}: {t['gap_over_soup_points']:+.1f} points over the soup; "
               f"report {paths['report']}")


@app.command("merge")
def merge_cmd(
    checkpoints: Annotated[list[Path], typer.Argument(help="Specialist checkpoints (policy dirs or .safetensors).")],
    base: Annotated[Path, typer.Option(help="The checkpoint every specialist started from.")],
    out: Annotated[Path, typer.Option(help="Where to write the merge (a dir when --base is one, else a file).")],
    method: Annotated[str, typer.Option(help="ties | dare | ram | task-arith | soup | ema")] = "ties",
    scale: Annotated[float, typer.Option(help="lambda on the merged task vector.")] = 1.0,
    density: Annotated[float, typer.Option(help="TIES: fraction of each task vector kept.")] = 0.2,
    drop: Annotated[float, typer.Option(help="DARE: drop probability.")] = 0.5,
    seed: Annotated[int, typer.Option(help="DARE's masks.")] = 0,
) -> None:
    """Merge same-init policy checkpoints into one (plain safetensors state dicts)."""
    from metabonk.hive.merge import MergeOptions, merge
    from metabonk.hive.transport import read_state, write_state

    if not 0.0 < density <= 1.0:
        raise MetabonkError(f"--density must be in (0, 1], got {density}")
    merged = merge(method, read_state(base), [read_state(c) for c in checkpoints],
                   MergeOptions(scale=scale, density=density, drop=drop, seed=seed))
    meta = {"merge": method, "base": str(base), "specialists": ",".join(str(c) for c in checkpoints)}
    typer.echo(f"wrote {write_state(out, merged, base, meta)}")
