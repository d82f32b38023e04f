"""After an online-loop run: the agent and the baselines in the real game on fixed seeds, the world model's
reward/termination heads on held-out replay, the learning curve as PNG, and OUT/report.md + OUT/eval.json."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.results import write_result
from metabonk.train.agent_config import AgentLoopConfig


def plot_curve(curve: list[dict[str, Any]], path: Path, baselines: dict[str, float] | None = None,
               ppo: list[dict[str, Any]] | None = None) -> Path:
    """Mean return of the real episodes finished in each epoch against real env steps (PNG), beside PPO's
    training episodes at the same steps when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [(p["env_steps"], p["return_mean"]) for p in curve if p.get("return_mean") is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if pts:
        x, y = zip(*pts, strict=True)
        ax.plot(x, y, marker=".", label="online loop (collection episodes)")
    if ppo:
        ax.plot([p["env_steps"] for p in ppo], [p["return_mean"] for p in ppo], marker=".", label="PPO (training)")
    for name, v in (baselines or {}).items():
        ax.axhline(v, linestyle="--", linewidth=1, label=f"{name} (eval)", color={"random": "grey"}.get(name))
    ax.set_xlabel("real env steps")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def heldout_reward_metrics(run: Path, device: Any, holdout: float = 0.1, max_windows: int = 20_000) -> dict[str, Any]:
    """Reward MAE (vs predicting the mean) and termination F1 of the run's world model on its last `holdout` of
    replay episodes (the ones it trained on least recently; a strict split needs a separate store)."""
    import torch

    from metabonk.data.store import EpisodeStore
    from metabonk.world.data import WindowData
    from metabonk.world.evaluate import reward_metrics
    from metabonk.world.world_model import WorldModel

    store = EpisodeStore.open(run / "replay")
    model = WorldModel.load(run / "world", device)
    n = len(store)
    eps = list(range(max(0, n - max(1, int(n * holdout))), n))
    data = WindowData(store, eps, model.config.num_context)
    rows = data.index[np.random.default_rng(0).permutation(len(data.index))[:max_windows]]
    w = data._gather(rows)
    k = model.config.num_context
    with torch.no_grad():
        return reward_metrics(model, w["obs"], w["action"][:, k - 1], w["reward"][:, k - 1],
                              w["terminated"][:, k - 1])


def train_ppo_baseline(cfg: AgentLoopConfig, run: Path, env_steps: int) -> tuple[Path, list[tuple[int, float]]]:
    """PPO from scratch in the same env, at the same real steps, frame size, policy shape and seed, into OUT/ppo;
    returns its checkpoint and its learning curve (episode returns read back from its TensorBoard log)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from metabonk.policy.ppo import PPOArgs, train_ppo

    num_envs = cfg.num_envs - cfg.num_envs % 4 if cfg.num_envs >= 4 else cfg.num_envs
    path = train_ppo(PPOArgs(env=cfg.env, out=str(run / "ppo"), total_steps=env_steps, num_envs=num_envs,
                             size=cfg.size, seed=cfg.seed, device=cfg.device, quiet=cfg.quiet,
                             num_minibatches=min(4, num_envs), policy=dict(cfg.policy), env_kwargs=cfg.env_kwargs))
    acc = EventAccumulator(str(run / "ppo.tb"))
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    curve = [(e.step, e.value) for e in acc.Scalars("charts/episodic_return")] if "charts/episodic_return" in tags \
        else []
    return path, curve


def _binned(curve: list[tuple[int, float]], bins: int = 20) -> list[dict[str, Any]]:
    if not curve:
        return []
    steps = np.array([c[0] for c in curve])
    vals = np.array([c[1] for c in curve])
    edges = np.linspace(0, steps.max(), bins + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        sel = (steps > lo) & (steps <= hi)
        if sel.any():
            out.append({"env_steps": int(hi), "return_mean": float(vals[sel].mean()), "episodes": int(sel.sum())})
    return out


def evaluate_and_report(cfg: AgentLoopConfig, run: Path, compare_ppo: bool = False) -> Path:
    """Evaluate the run's agent against random (and the scripted expert on Arena) on the same seeds — and PPO
    from scratch at the same real steps with `compare_ppo` — and write OUT/eval.json, OUT/curve.png and
    OUT/report.md. Returns the report's path."""
    from metabonk.common.device import resolve_device
    from metabonk.policy.agent import Agent
    from metabonk.policy.evaluate import evaluate_policy

    device = resolve_device(cfg.device)
    state = json.loads((run / "loop.json").read_text())
    figures: dict[str, Any] = {"env": cfg.env, "env_steps": state["curve"][-1]["env_steps"] if state["curve"] else 0,
                               "epochs": state["epoch"], "wall_seconds": state.get("wall_seconds"),
                               "seconds": state.get("seconds"), "curve": state["curve"]}
    eval_seed = 10_000 + cfg.seed  # seeds no collection episode used
    if cfg.eval_episodes > 0:
        figures["eval"] = evaluate_policy(Agent.load(run / "agent", device), cfg.env, episodes=cfg.eval_episodes,
                                          seed=eval_seed, device=device, max_steps=cfg.eval_max_steps,
                                          env_kwargs=cfg.env_kwargs)
    ppo_curve: list[dict[str, Any]] = []
    if compare_ppo:
        ppo_path, raw = train_ppo_baseline(cfg, run, figures["env_steps"])
        ppo_curve = _binned(raw)
        figures["ppo_curve"] = ppo_curve
        if cfg.eval_episodes > 0:
            figures["eval"]["ppo"] = evaluate_policy(
                Agent.load(ppo_path, device), cfg.env, episodes=cfg.eval_episodes, seed=eval_seed, device=device,
                baselines=False, max_steps=cfg.eval_max_steps, env_kwargs=cfg.env_kwargs)["policy"]
    figures["world_heads"] = heldout_reward_metrics(run, device)
    write_result(run / "eval.json", figures, device)
    ev = figures.get("eval", {})
    base = {k: ev[k]["return_mean"] for k in ("random", "expert") if k in ev}
    plot_curve(state["curve"], run / "curve.png", base, ppo_curve)
    lines = [f"# Online loop on {cfg.env}", "",
             f"{figures['epochs']} epochs, {figures['env_steps']} real env steps, preset {cfg.preset}, "
             f"seed {cfg.seed}.",
             "", "| agent | return mean [95% CI] | survival mean |", "|---|---|---|"]
    for name in ("policy", "ppo", "random", "expert"):
        if name in ev:
            r = ev[name]
            lo, hi = r["return_mean_ci95"]
            lines.append(f"| {name} | {r['return_mean']:.3f} [{lo:.3f}, {hi:.3f}] | {r['survival_mean']:.0f} |")
    wh = figures["world_heads"]
    lines += ["", f"World model heads on the last 10 % of replay episodes: reward MAE {wh['reward_mae']:.4f} "
              f"(predicting the mean: {wh['reward_mae_mean_baseline']:.4f}), termination F1 "
              f"{wh['termination_f1']:.3f} ({wh['termination_positives']} ends).", "",
              "![learning curve](curve.png)", "", "Figures: eval.json (written by `metabonk train agent`)."]
    (run / "report.md").write_text("\n".join(lines) + "\n")
    return run / "report.md"
