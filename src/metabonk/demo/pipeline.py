"""`metabonk demo`: run the stages in order under runs/<name>/, skipping finished ones (resume).

Each stage writes its outputs under runs/<name>/<stage>/ and, when it finishes, runs/<name>/<stage>/done.json
(its summary and timing). A re-run skips stages that have a done-marker; `stage=X` re-runs X alone (its inputs
must exist); `force=True` starts the whole run again. An interrupted stage resumes from its trainers'
checkpoints on the next run.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metabonk.common.errors import MetabonkError
from metabonk.common.logging import console
from metabonk.common.results import write_json_atomic
from metabonk.demo.presets import DemoPreset, get_preset, preset_for_env
from metabonk.demo.stages import (
    DREAM_POLICY,
    DemoContext,
    stage_bc,
    stage_dream,
    stage_eval,
    stage_latent,
    stage_ppo,
    stage_record,
    stage_world,
)

STAGES: tuple[str, ...] = ("record", "latent", "world", "bc", "dream", "ppo", "eval", "report")
DONE = "done.json"


def stage_names(preset: DemoPreset) -> list[str]:
    """The stages this preset runs (the PPO baseline only where the preset asks for it)."""
    return [s for s in STAGES if s != "ppo" or preset.ppo_steps != 0]


def read_done(root: Path, stage: str) -> dict[str, Any] | None:
    f = root / stage / DONE
    return json.loads(f.read_text()) if f.is_file() else None


def _policies(ctx: DemoContext) -> dict[str, Path]:
    out = {"demo (BC + dream)": ctx.root / DREAM_POLICY, "BC only": ctx.dir("bc") / "policy"}
    if read_done(ctx.root, "ppo") is not None:
        out["PPO from scratch"] = ctx.dir("ppo") / "policy"
    return out


def _run_stage(ctx: DemoContext, stage: str) -> dict[str, Any]:
    record = read_done(ctx.root, "record") or {}
    table: dict[str, Callable[[], dict[str, Any]]] = {
        "record": lambda: stage_record(ctx),
        "latent": lambda: stage_latent(ctx),
        "world": lambda: stage_world(ctx),
        "bc": lambda: stage_bc(ctx),
        "dream": lambda: stage_dream(ctx),
        "ppo": lambda: stage_ppo(ctx, int(record.get("summary", {}).get("real_env_steps", 0))),
        "eval": lambda: stage_eval(ctx, _policies(ctx)),
        "report": lambda: _report(ctx),
    }
    return table[stage]()


def _report(ctx: DemoContext) -> dict[str, Any]:
    from metabonk.demo.report import write_report

    return write_report(ctx, {s: read_done(ctx.root, s) for s in stage_names(ctx.preset)})


def run_demo(preset: str | DemoPreset = "default", device: str = "auto", env: str = "arena",
             name: str | None = None, stage: str | None = None, force: bool = False,
             root: str | Path = "runs", seed: int = 0,
             on_stage: Callable[[str, str, dict[str, Any]], None] | None = None, publish: bool = False) -> Path:
    """Run (or resume) the demo pipeline; returns the path of runs/<name>/report.md.

    `on_stage(stage, status, doc)` hears each stage start ("running"), finish ("done" with its done.json,
    also for stages skipped as already done) and failure ("failed"): the orchestrator's DemoReporter."""
    report = on_stage or (lambda _s, _status, _doc: None)
    import torch

    from metabonk.common.device import resolve_device

    p = preset if isinstance(preset, DemoPreset) else preset_for_env(get_preset(preset), env)
    dev = str(resolve_device(device))
    if dev == "cpu":
        torch.set_num_threads(max(1, p.threads))
    env_tag = env.replace(":", "-").lower()
    run = Path(root) / (name or f"demo-{p.name}-{env_tag}")
    names = stage_names(p)
    if stage is not None and stage not in names:
        raise MetabonkError(f"unknown stage '{stage}' for preset {p.name} (stages: {', '.join(names)})")
    if force and stage is None and run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    run_json = run / "run.json"
    spec = {"preset": p.name, "env": env, "seed": seed, "settings": p.__dict__}
    if run_json.is_file():
        old = json.loads(run_json.read_text())
        if (old.get("preset"), old.get("env"), old.get("seed")) != (p.name, env, seed):
            raise MetabonkError(f"{run} holds a run of preset {old.get('preset')} on {old.get('env')} "
                                f"(seed {old.get('seed')}); use another --name or --force")
        if old.get("settings", {}).get("arena", {}) != p.arena:
            raise MetabonkError(f"{run} holds a run with Arena settings {old['settings'].get('arena', {})}, not "
                                f"{p.arena}; use another --name or --force")
    else:
        write_json_atomic(run_json, spec)
    ctx = DemoContext(root=run, preset=p, env=env, device=dev, seed=seed, publish=publish)

    todo = [stage] if stage is not None else names
    for s in todo:
        if stage is None and read_done(run, s) is not None:
            console.print(f"[dim]demo: stage {s} already done, skipping[/]")
            report(s, "done", read_done(run, s) or {})
            continue
        for before in names[: names.index(s)]:
            if read_done(run, before) is None:
                raise MetabonkError(f"stage '{s}' needs stage '{before}' first "
                                    "(run `metabonk demo` without --stage)")
        if stage is not None and (run / s).exists():
            shutil.rmtree(run / s)  # re-run alone: start this stage afresh
        (run / s).mkdir(parents=True, exist_ok=True)
        console.print(f"[bold]demo: stage {s}[/]")
        t0 = time.time()
        report(s, "running", {})
        try:
            summary = _run_stage(ctx, s)
        except BaseException as e:
            report(s, "failed", {"error": f"{type(e).__name__}: {e}"})
            raise
        doc = {"stage": s, "summary": summary, "seconds": time.time() - t0,
               "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_json_atomic(run / s / DONE, doc)
        report(s, "done", doc)
    return run / "report.md"
