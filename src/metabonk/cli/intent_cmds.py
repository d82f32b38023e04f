"""CLI verbs of intent following: `train intents` (BC on the intent expert's demos) and `bench intents`
(per-intent behavioural signatures with 95 % intervals and a held-out intent classifier, as JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metabonk.cli.app import bench_app, train_app
from metabonk.common.errors import MetabonkError


@train_app.command("intents")
def train_intents_cmd(
    out: Annotated[Path, typer.Option("--out", help="Policy checkpoint directory (resumes if it exists).")],
    data: Annotated[Path | None, typer.Option(
        help="Intent-labelled store (default: record OUT.demos with the intent expert first).")] = None,
    episodes: Annotated[int, typer.Option(help="Demo episodes to record when --data is not given.")] = 16,
    num_envs: Annotated[int, typer.Option(help="Games recorded in parallel.")] = 8,
    size: Annotated[int, typer.Option(help="Frame size of recorded demos.")] = 64,
    steps: Annotated[int, typer.Option(help="BC gradient steps.")] = 1500,
    intents: Annotated[str, typer.Option(help="auto (stored intents) | shuffled (control) | default.")] = "auto",
    state: Annotated[bool, typer.Option(help="Feed the state vector beside the pixels.")] = True,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the demos and of training.")] = 0,
) -> None:
    """Record intent-labelled demos (the intent expert under a random schedule) and behaviour-clone a System 1
    policy conditioned on the commanded intent."""
    from rich.console import Console

    from metabonk.cli.policy_cmds import _one_cpu_thread
    from metabonk.common.checkpoint import check_out_dir
    from metabonk.data.record import record_episodes
    from metabonk.envs.arena.config import ArenaConfig
    from metabonk.envs.arena.spec import state_dim
    from metabonk.policy.bc import BCArgs, train_bc

    check_out_dir(out, data)
    _one_cpu_thread(device)
    console = Console(soft_wrap=True)
    if data is None:
        data = Path(f"{out}.demos")
        if data.exists():
            raise MetabonkError(f"{data} exists: pass it as --data, or remove it to record new demos")
        s = record_episodes("arena", data, episodes, policy="intents", num_envs=num_envs, size=size, seed=seed)
        console.print(f"recorded {s.episodes} intent-labelled episodes ({s.transitions} steps) to {data}")
    policy: dict[str, Any] = {"state_dim": state_dim(ArenaConfig())} if state else {}
    path = train_bc(BCArgs(data=str(data), out=str(out), steps=steps, seed=seed, device=device, intents=intents,
                           policy=policy))
    console.print(f"policy checkpoint written to {path} (TensorBoard: {path}.tb)")


@bench_app.command("intents")
def bench_intents_cmd(
    policy: Annotated[Path | None, typer.Argument(
        help="Policy checkpoint to command; the scripted intent expert when omitted.")] = None,
    episodes: Annotated[int, typer.Option(help="Evaluation games (seeds SEED..), one episode each.")] = 32,
    train_episodes: Annotated[int, typer.Option(help="Games (other seeds) the intent classifier is fit on.")] = 32,
    segment_s: Annotated[float, typer.Option(help="Seconds each commanded intent lasts.")] = 4.0,
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Result file (default benchmarks/results/eval-intents-<expert|policy>.json).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (the policy's)")] = "cpu",
    seed: Annotated[int, typer.Option(help="First evaluation seed; the classifier's seeds start at SEED+10000.")] = 0,
) -> None:
    """Command each intent for a few seconds at a time in real Arena games; per intent its behavioural signature
    (mean, 95 % interval over games, apart from the other intents' or not) and a classifier's held-out accuracy."""
    from rich.console import Console
    from rich.table import Table

    from metabonk.common.results import write_result
    from metabonk.policy.intent_signatures import (
        AgentIntentController,
        ExpertIntentController,
        IntentController,
        classifier_figures,
        intent_lift,
        rollout_segments,
        summarize_signatures,
    )

    if episodes < 2 or train_episodes < 2:
        raise MetabonkError(f"--episodes and --train-episodes must be ≥ 2, got {episodes}, {train_episodes}")
    if json_path is not None and json_path.is_dir():
        raise MetabonkError(f"--json {json_path} is a directory: give the JSON file's name")
    dev = None
    if policy is None:
        def controller(s: int) -> IntentController:
            return ExpertIntentController(seed=s)
        kw: dict[str, Any] = {"pixels": False}
        who = "expert"
    else:
        from metabonk.cli.policy_cmds import _one_cpu_thread
        from metabonk.common.device import resolve_device
        from metabonk.policy.agent import Agent

        _one_cpu_thread(device)
        dev = resolve_device(device)
        agent = Agent.load(policy, dev)
        if not agent.cfg.card_head:
            raise MetabonkError(f"{policy} is not an Arena policy (no card head)")

        def controller(s: int) -> IntentController:
            return AgentIntentController(agent, dev, seed=s)
        kw = {"pixels": True, "size": agent.cfg.image_size}
        who = "policy"
    test = rollout_segments(controller(seed), episodes, seed=seed, segment_s=segment_s, **kw)
    train = rollout_segments(controller(seed + 10_000), train_episodes, seed=seed + 10_000, segment_s=segment_s, **kw)
    sig = summarize_signatures(test)
    clf = classifier_figures(train, test)
    apart = sum(v["apart"] for v in sig.values())
    res = {"controller": who, "checkpoint": str(policy) if policy else None, "env": "arena", "episodes": episodes,
           "train_episodes": train_episodes, "seed": seed, "segment_s": segment_s, "segments": len(test.intent),
           "signatures": sig, "lift_sd": intent_lift(test), "classifier": clf, "intents_apart": apart,
           "targets": {"all_apart": apart == len(sig), "classifier_80": clf["accuracy"] >= 0.8}}
    table = Table(title=f"intent signatures ({who}, {episodes} games from seed {seed}, {len(test.intent)} segments)")
    for h in ("intent", "signature", "own mean [95% CI]", "best other [95% CI]", "apart", "recall"):
        table.add_column(h, justify="right")
    def fmt(r: dict[str, Any]) -> str:
        if r["mean"] is None:
            return "-"
        return f"{r['mean']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"

    for owner, v in sig.items():
        others = [n for n in v["by_intent"] if n != owner and v["by_intent"][n]["mean"] is not None]
        other = max(others, key=lambda n: v["by_intent"][n]["mean"]) if others else None
        recall = clf["recall"][owner]
        table.add_row(owner, v["signature"], fmt(v["by_intent"][owner]),
                      f"{other} {fmt(v['by_intent'][other])}" if other else "-",
                      "yes" if v["apart"] else "no", "-" if recall is None else f"{recall:.2f}")
    console = Console(soft_wrap=True)
    console.print(table)
    lo, hi = clf["accuracy_ci95"]
    console.print(f"classifier (fit on {train_episodes} other games): accuracy {clf['accuracy']:.3f} "
                  f"[{lo:.3f}, {hi:.3f}] (chance {clf['chance']:.3f}); {apart}/{len(sig)} signatures apart")
    path = json_path or Path("benchmarks/results") / f"eval-intents-{who}.json"
    write_result(path, res, dev)
    console.print(f"wrote {path}")
