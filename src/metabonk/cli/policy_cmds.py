"""CLI verbs of the policy area: `train policy`, `eval` of "policy" checkpoints, `bench policy`,
`play agent` (System 1 with System 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metabonk.cli.app import EvalOptions, bench_app, play_app, register_eval, train_app
from metabonk.common.errors import MetabonkError


def _one_cpu_thread(device: str) -> None:
    """Small recurrent models on a (shared) CPU run several times faster on one torch thread."""
    import torch

    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        torch.set_num_threads(1)


@train_app.command("policy")
def train_policy_cmd(
    out: Annotated[Path, typer.Option("--out", help="Policy checkpoint directory (resumes if it exists).")],
    algo: Annotated[str, typer.Option(help="bc | ppo | dream")] = "bc",
    data: Annotated[Path | None, typer.Option(help="Episode store (bc: imitated; dream: starts).")] = None,
    world: Annotated[Path | None, typer.Option(help="World-model checkpoint (dream).")] = None,
    env: Annotated[str, typer.Option(help="Real env for PPO: arena | ale:<Game>.")] = "arena",
    core: Annotated[str, typer.Option(help="Recurrent core of a fresh policy: cfc | mamba.")] = "cfc",
    steps: Annotated[int, typer.Option(help="bc: grad steps; ppo: env steps; dream: updates.")] = 1000,
    init: Annotated[Path | None, typer.Option(help="Start from this policy checkpoint.")] = None,
    label: Annotated[str, typer.Option(help="bc/dream labels: auto | action | action_idm.")] = "auto",
    class_balance: Annotated[float, typer.Option(help="bc: weigh each action by its share^-X (0 = plain CE; "
                                                      "for experts that mostly idle).")] = 0.0,
    soft_labels: Annotated[bool, typer.Option(help="bc: imitate the IDM's action probabilities "
                                                   "(action_idm_probs), not its argmax.")] = False,
    lr: Annotated[float | None, typer.Option(help="bc: peak learning rate (default 2e-3).")] = None,
    lr_final: Annotated[float, typer.Option(help="bc: cosine-decay the LR to this fraction of its start "
                                                 "(1 = constant).")] = 1.0,
    ema: Annotated[float, typer.Option(help="bc: EMA decay of the weights saved as the policy (0 = off).")] = 0.0,
    num_envs: Annotated[int, typer.Option(help="PPO: parallel envs.")] = 8,
    batch: Annotated[int | None, typer.Option(help="bc: sequences per step (default 32).")] = None,
    seq_len: Annotated[int | None, typer.Option(help="bc: steps per sequence (default 16).")] = None,
    pixel_norm: Annotated[str | None, typer.Option(help="Fresh policy: unit | background (subtract each "
                                                        "frame's median colour; ALE).")] = None,
    actor_init_gain: Annotated[float | None, typer.Option(help="Fresh policy: init gain of the actor's "
                                                               "output layer (default 0.01, PPO's).")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Train a System 1 policy by behaviour cloning, PPO in the real env, or actor-critic in the dream."""
    from rich.console import Console

    from metabonk.common.checkpoint import check_out_dir

    check_out_dir(out, data, world, init)
    _one_cpu_thread(device)
    policy: dict[str, Any] = {"core": core}
    shape = {k: v for k, v in {"pixel_norm": pixel_norm, "actor_init_gain": actor_init_gain}.items() if v is not None}
    policy.update(shape)
    if algo != "bc" and (batch is not None or seq_len is not None or soft_labels or lr is not None
                         or lr_final != 1.0 or ema != 0.0):
        raise MetabonkError("--batch, --seq-len, --soft-labels, --lr, --lr-final and --ema are for --algo bc")
    if algo == "dream" and shape:
        raise MetabonkError("--pixel-norm and --actor-init-gain shape a fresh policy; --algo dream starts from --init")
    if algo == "bc":
        from metabonk.policy.bc import BCArgs, train_bc

        if data is None:
            raise MetabonkError("--algo bc needs --data DIR (an episode store with action or action_idm)")
        sizes = {k: v for k, v in {"batch_size": batch, "seq_len": seq_len, "lr": lr}.items() if v is not None}
        path = train_bc(BCArgs(data=str(data), out=str(out), label=label, steps=steps, seed=seed,
                               class_balance=class_balance, soft_labels=soft_labels, lr_final=lr_final,
                               ema_decay=ema, device=device,
                               init=str(init) if init else None, policy=policy, **sizes))
    elif algo == "ppo":
        from metabonk.policy.ppo import PPOArgs, train_ppo

        path = train_ppo(PPOArgs(env=env, out=str(out), total_steps=steps, num_envs=num_envs, seed=seed,
                                 device=device, init=str(init) if init else None, policy=policy))
    elif algo == "dream":
        from metabonk.policy.dream_ac import DreamArgs, train_dream

        if data is None or world is None or init is None:
            raise MetabonkError("--algo dream needs --world CKPT, --data DIR and --init POLICY")
        path = train_dream(DreamArgs(world=str(world), data=str(data), out=str(out), init=str(init),
                                     action_key=label, updates=steps, seed=seed, device=device))
    else:
        raise MetabonkError(f"unknown --algo '{algo}' (choose bc, ppo or dream)")
    Console(soft_wrap=True).print(f"policy checkpoint written to {path} (TensorBoard: {path}.tb)")


def print_eval(res: dict[str, Any]) -> None:
    """A rich table of an evaluation: return (mean, IQM, 95 % intervals; human-normalised on Atari) first,
    then mean/median survival."""
    from rich.console import Console
    from rich.table import Table

    def ci(r: dict[str, Any], key: str, fmt: str) -> str:
        lo, hi = r[f"{key}_ci95"]
        return f"{r[key]:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"

    hns = any("hns_mean" in res[n] for n in ("policy", "random", "expert") if n in res)
    table = Table(title=f"{res['env']}: {res['episodes']} seeds from {res['seed']}")
    heads = ["agent", "return mean [95% CI]", "return IQM [95% CI]"]
    heads += ["HNS IQM [95% CI]"] if hns else []
    heads += ["survival mean [95% CI]", "survival median [95% CI]"]
    for h in heads:
        table.add_column(h, justify="right")
    for name in ("policy", "random", "expert"):
        if name in res:
            r = res[name]
            row = [name, ci(r, "return_mean", ".2f"), ci(r, "return_iqm", ".2f")]
            row += [ci(r, "hns_iqm", ".3f") if "hns_iqm" in r else "-"] if hns else []
            row += [ci(r, "survival_mean", ".0f"), ci(r, "survival_median", ".0f")]
            table.add_row(*row)
    console = Console(soft_wrap=True)
    console.print(table)
    for name in ("random", "expert"):
        if f"survival_vs_{name}" in res:
            console.print(f"policy survival / {name}: {res[f'survival_vs_{name}']:.2f}×")
    if "expert_normalized_return" in res.get("policy", {}):
        console.print(f"policy return, (policy − random) / (expert − random): "
                      f"{res['policy']['expert_normalized_return']:.2f}")


def eval_policy(ckpt: Path, opts: EvalOptions) -> None:
    """`metabonk eval CKPT` of a policy: vs random (and the scripted expert on Arena), same seeds."""
    from metabonk.common.device import resolve_device
    from metabonk.common.results import write_result
    from metabonk.policy.agent import Agent
    from metabonk.policy.evaluate import evaluate_policy

    _one_cpu_thread(opts.device)
    device = resolve_device(opts.device)
    agent = Agent.load(ckpt, device)
    from metabonk.envs import arena_env_kwargs

    res = evaluate_policy(agent, opts.env, episodes=opts.episodes, seed=opts.seed, device=device,
                          greedy=opts.greedy, max_steps=opts.max_steps or 10_000,
                          env_kwargs=arena_env_kwargs(opts.env, opts.frame_skip))
    res["checkpoint"] = str(ckpt)
    print_eval(res)
    if opts.json_path is not None:
        write_result(opts.json_path, res, device)


register_eval("policy", eval_policy)


@bench_app.command("policy")
def bench_policy_cmd(
    device: Annotated[str, typer.Option(help="cpu | cuda")] = "cpu",
    json_path: Annotated[Path | None, typer.Option(
        "--json", help="Result file (default benchmarks/results/policy-<device>.json).")] = None,
    cores: Annotated[str, typer.Option(help="Comma-separated cores to measure.")] = "cfc,mamba",
    latency_steps: Annotated[int, typer.Option(help="Timed ticks at batch 1.")] = 1000,
    big_batch: Annotated[int, typer.Option(help="Batch of the throughput figure.")] = 4096,
    compile_step: Annotated[bool, typer.Option("--compile/--no-compile", help="On CPU, also time a "
                                               "torch.compile'd agent (~30 s to compile per batch size).")] = True,
) -> None:
    """System 1 step latency p50/p99 at batch 1 and throughput at a large batch, for both cores."""
    from metabonk.bench.policy import BenchArgs, main

    path = main(BenchArgs(device=device, cores=tuple(c.strip() for c in cores.split(",") if c.strip()),
                          latency_steps=latency_steps, big_batch=big_batch, compile=compile_step,
                          json_path=str(json_path) if json_path else None))
    typer.echo(f"wrote {path}")



@play_app.command("agent")
def play_agent_cmd(
    ckpt: Annotated[Path, typer.Argument(help="Policy checkpoint directory, or 'expert': the scripted expert "
                                          "as System 1 (a baseline that ignores intents).")],
    planner: Annotated[str, typer.Option(help="System 2: none | rule | llm.")] = "rule",
    llm_url: Annotated[str | None, typer.Option(
        help="OpenAI-compatible API base for --planner llm (default: the embedded SmolLM2).")] = None,
    episodes: Annotated[int, typer.Option(help="Episodes (seeds seed, seed+1, ...).")] = 1,
    seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    max_steps: Annotated[int, typer.Option(help="Step cap per episode.")] = 10_000,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "cpu",
    compile_step: Annotated[bool, typer.Option("--compile", help="torch.compile System 1's step first "
                                               "(~30 s once; then ~2x faster ticks on CPU).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the result JSON here.")] = None,
    orchestrator: Annotated[str | None, typer.Option(help="Report live frames, state and episodes to this "
                                                     "orchestrator URL (token from $METABONK_TOKEN).")] = None,
    safety: Annotated[bool, typer.Option(help="The risk layer: loop detection/breaking, intent signature "
                                         "checks and the safety projection (docs/planner.md).")] = True,
    mismatch_store: Annotated[Path | None, typer.Option(help="Episode store receiving each segment where "
                                                        "System 1 did not carry out its intent.")] = None,
    playbook: Annotated[Path | None, typer.Option(help="Playbook database receiving one entry per intent "
                                                  "System 1 does not carry out.")] = None,
    dream_check: Annotated[Path | None, typer.Option(help="World checkpoint: System 2's top intents are each "
                                                     "dreamed with System 1 and the best predicted return runs "
                                                     "(docs/two-systems.md).")] = None,
    dream_candidates: Annotated[int, typer.Option(help="Intents dreamed per decision (System 2's top k).")] = 3,
    dream_samples: Annotated[int, typer.Option(help="Dreams per candidate intent.")] = 4,
    dream_horizon: Annotated[int, typer.Option(help="Dreamed steps per dream.")] = 15,
    deadline_s: Annotated[float, typer.Option(help="System 2's wall-clock deadline per decision, dream check "
                                              "included; a later answer is dropped and counted late.")] = 5.0,
) -> None:
    """Play Arena with the policy (System 1) and the async planner (System 2) together."""
    from rich.console import Console
    from rich.table import Table

    from metabonk.common.device import resolve_device
    from metabonk.common.results import write_result
    from metabonk.data.store import EpisodeStore
    from metabonk.envs.arena.spec import NUM_ACTIONS
    from metabonk.planner.async_planner import AsyncPlanner
    from metabonk.planner.planner import Planner
    from metabonk.planner.playbook import PlaybookStore
    from metabonk.policy.agent import Agent
    from metabonk.policy.scripted_system1 import ScriptedSystem1
    from metabonk.two_systems import SafetyConfig, run_two_systems

    if planner not in ("none", "rule", "llm"):
        raise MetabonkError(f"unknown --planner '{planner}' (choose none, rule or llm)")
    if episodes < 1 or max_steps < 1:
        raise MetabonkError("--episodes and --max-steps must be ≥ 1")
    _one_cpu_thread(device)
    dev = resolve_device(device)
    if not safety and (mismatch_store is not None or playbook is not None):
        raise MetabonkError("--mismatch-store and --playbook need the safety layer (drop --no-safety)")
    agent: Agent | ScriptedSystem1
    if str(ckpt) == "expert":
        agent = ScriptedSystem1()
    else:
        agent = Agent.load(ckpt, dev)
        if compile_step:
            agent.compile_for_inference()
    guard = SafetyConfig.off()
    if safety:
        guard = SafetyConfig(playbook=PlaybookStore(playbook) if playbook is not None else None)
        if mismatch_store is not None:  # a bad path fails now, not at the first mismatch
            EpisodeStore.create(mismatch_store, "arena", NUM_ACTIONS, agent.cfg.image_size,
                                meta={"kind": "intent-mismatch"}, exist_ok=True)
            guard.mismatch_store = mismatch_store
    checker = None
    if dream_check is not None:
        if planner == "none" or not isinstance(agent, Agent):
            raise MetabonkError("--dream-check needs System 2 (--planner rule|llm) and a policy checkpoint as "
                                "System 1 (the scripted expert ignores intents)")
        from metabonk.planner.dream_check import DreamCheckConfig, DreamChecker
        from metabonk.world.world_model import WorldModel

        checker = DreamChecker(WorldModel.load(dream_check, dev), agent, DreamCheckConfig(
            candidates=dream_candidates, samples=dream_samples, horizon=dream_horizon))
    system2: AsyncPlanner | None = None
    if planner == "rule":
        system2 = AsyncPlanner(Planner(None), route="rule", deadline_s=deadline_s, checker=checker)
    elif planner == "llm":
        from metabonk.planner.llm_client import make_client

        system2 = AsyncPlanner(Planner(make_client(llm_url)), route="direct", deadline_s=deadline_s,
                               checker=checker)
    ctrl = None
    if orchestrator is not None:
        from metabonk.serve.hooks import reporting_controller

        ctrl = reporting_controller(orchestrator, agent, system2, dev, policy=str(ckpt))
        ctrl.safety = guard
    try:
        res = run_two_systems(agent, system2, episodes=episodes, seed=seed, max_steps=max_steps, device=dev,
                              controller=ctrl, safety=guard)
    finally:
        if ctrl is not None:
            ctrl.close()
        if guard.playbook is not None:
            guard.playbook.close()
    res.update(checkpoint=str(ckpt), planner=planner)
    if dream_check is not None:
        res["dream_check"] = str(dream_check)
    table = Table(title=f"arena, System 1 + System 2 ({planner}): {episodes} episode(s) from seed {seed}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("survival (steps) per episode", ", ".join(str(s) for s in res["survival"])),
        ("return per episode", ", ".join(f"{r:.2f}" for r in res["returns"])),
        ("ticks", str(res["ticks"])),
        ("intents applied (of them fallbacks)", f"{res['intents_applied']} ({res['intent_fallbacks']})"),
        ("level-up menus", str(res["menus"])),
        ("cards by System 2 (ranked ahead) / policy",
         f"{res['cards_system2']} ({res['cards_system2_ranked']}) / {res['cards_policy']}"),
        ("card fallbacks", str(res["card_fallbacks"])),
        ("System 1 tick p50 / p99 (ms)", f"{res['system1_ms_p50']:.2f} / {res['system1_ms_p99']:.2f}"),
        ("whole tick p50 / p99 (ms)", f"{res['tick_ms_p50']:.2f} / {res['tick_ms_p99']:.2f}"),
    ]
    if safety:
        rows += [
            ("loops detected (intent breaks / perturbations)",
             f"{res['loops_detected']} ({res['loop_intent_breaks']} / {res['loop_perturbations']})"),
            ("intent windows checked / mismatched", f"{res['intent_windows']} / {res['intent_mismatches']}"),
            ("intents projected to feasible ones", str(res["intent_projections"])),
        ]
    if dream_check is not None:
        rows.append(("dream checks (switched from System 2's top) / check p50 (ms)",
                     f"{res['dream_checks']} ({res['dream_switches']}) / {res['dream_check_ms_p50']:.0f}"))
    for name, value in rows:
        table.add_row(name, value)
    Console(soft_wrap=True).print(table)
    if json_path is not None:
        write_result(json_path, res, dev)
