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


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(s) for s in _names(text)]
    except ValueError as e:
        raise MetabonkError(f"{flag} takes comma-separated numbers, got '{text}'") from e


def _layer_scales(items: list[str]) -> dict[str, float]:
    """`--layer-scale encoder.state_proj=2` items -> {"encoder.state_proj": 2.0}."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise MetabonkError(f"--layer-scale takes PREFIX=LAMBDA (e.g. core=0.5), got '{item}'")
    return out


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
    test_episodes: Annotated[int, typer.Option(help="Held-out seeds per niche (from --test-seed) that every "
                                                    "candidate is scored on after the vote; the targets are "
                                                    "judged there (0 = none).")] = 32,
    test_seed: Annotated[int, typer.Option(help="First held-out seed (validation seeds start at 10000).")] = 20_000,
    methods: Annotated[str, typer.Option(help="Merge methods voted on (soup is the reference).")]
        = "task-arith,ties,dare,ram,soup,ema",
    scales: Annotated[str, typer.Option(help="λ grid: task-arith, ties, dare and ram are each a candidate at "
                                             "every value (e.g. 0.5,1,1.5,2), chosen by the vote.")] = "1",
    layer_sweeps: Annotated[int, typer.Option(help="Sweeps of the per-layer λ search over task arithmetic on the "
                                                   "validation seeds (0 = off).")] = 0,
    layer_grid: Annotated[str, typer.Option(help="Values each layer's λ may take in that search.")]
        = "0.5,1,1.5,2",
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
        scales=_floats(scales, "--scales"), layer_sweeps=layer_sweeps, layer_grid=_floats(layer_grid, "--layer-grid"),
        episodes=episodes, test_episodes=test_episodes, test_seed=test_seed, seed=seed, trainer=trainer, dm=dm,
        dm_validate=dm_validate, llm_url=llm_url,
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
    own = ", ".join(f"{n} {v:.1f}" for n, v in t["own_niche_normalised"].items())
    typer.echo(f"promoted {t['promoted']} ({t['split']} seeds): {t['gap_over_soup_points']:+.1f} points over the "
               f"soup, own niche {own} % of the specialist's gain; report {paths['report']}")


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
    layer_scale: Annotated[list[str] | None, typer.Option(help="Per-layer λ, PREFIX=LAMBDA, repeatable (e.g. "
                                                          "--layer-scale core=0.5): the longest matching "
                                                          "tensor-name prefix wins, others use --scale.")] = None,
) -> None:
    """Merge same-init policy checkpoints into one (plain safetensors state dicts)."""
    from metabonk.hive.merge import MergeOptions, merge
    from metabonk.hive.transport import read_state, write_state

    if not 0.0 < density <= 1.0:
        raise MetabonkError(f"--density must be in (0, 1], got {density}")
    merged = merge(method, read_state(base), [read_state(c) for c in checkpoints],
                   MergeOptions(scale=scale, density=density, drop=drop, seed=seed,
                                layer_scales=_layer_scales(layer_scale or [])))
    meta = {"merge": method, "base": str(base), "specialists": ",".join(str(c) for c in checkpoints)}
    typer.echo(f"wrote {write_state(out, merged, base, meta)}")
