"""The demo's stages, each a thin wrapper around another area's public training or evaluation function.

Every stage reads its inputs from earlier stages' folders under runs/<name>/ and writes its own outputs
under runs/<name>/<stage>/; the pipeline (pipeline.py) handles ordering, done-markers and resume.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metabonk.common.errors import MetabonkError
from metabonk.common.logging import console
from metabonk.demo.presets import DemoPreset


@dataclass
class DemoContext:
    """What every stage needs: the run folder, the preset, the env and the device."""

    root: Path
    preset: DemoPreset
    env: str
    device: str
    seed: int = 0
    publish: bool = False
    """Also write the scores to benchmarks/results/eval-demo-<env>-<preset>.json (`metabonk demo --publish`)."""

    @property
    def is_arena(self) -> bool:
        from metabonk.envs import ARENA_CONFIGS

        return self.env in ARENA_CONFIGS

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """Game options of every env of the run: the preset's Arena overrides on Arena, none elsewhere."""
        return dict(self.preset.arena) if self.is_arena else {}

    def dir(self, stage: str) -> Path:
        return self.root / stage

    @property
    def video(self) -> Path:
        return self.dir("record") / "video"

    @property
    def labelled(self) -> Path:
        return self.dir("record") / "labelled"

    @property
    def quiet(self) -> bool:
        return self.preset.name == "tiny"


def _record(ctx: DemoContext, out: Path, episodes: int, keep_actions: bool, seed: int,
            max_steps: int | None) -> dict[str, Any]:
    from metabonk.data.record import record_episodes
    from metabonk.envs.policies import has_scripted

    policy = ctx.preset.video_policy if has_scripted(ctx.env) else "random"
    s = record_episodes(ctx.env, out, episodes, policy=policy, num_envs=ctx.preset.num_envs,
                        size=ctx.preset.frame_size, seed=seed, keep_actions=keep_actions, max_steps=max_steps,
                        show_progress=not ctx.quiet, env_kwargs=ctx.env_kwargs)
    return {"policy": policy, "episodes": s.episodes, "transitions": s.transitions, "env_steps": s.steps,
            "mean_return": s.mean_return, "mean_length": s.mean_length, "seconds": s.seconds}


def stage_record(ctx: DemoContext) -> dict[str, Any]:
    """Unlabelled video of the scripted expert (random play where the env has none) plus a small labelled set
    (≤ 5 %)."""
    p = ctx.preset
    video = _record(ctx, ctx.video, p.video_episodes, keep_actions=False, seed=ctx.seed + 1000,
                    max_steps=p.video_max_steps)
    # The labelled set: chunks of play spread over the phases of the game (the first seconds of an episode
    # are mostly standing still), from other seeds; at most 4.5 % of the video's transitions.
    budget = min(p.labelled_steps, int(0.045 * video["transitions"]))
    labelled = _record_labelled(ctx, budget)
    frac = labelled["transitions"] / max(1, labelled["transitions"] + video["transitions"])
    if frac > 0.05:
        raise MetabonkError(f"labelled transitions are {frac:.1%} of the data (> 5 %); raise video_episodes "
                            "or lower labelled_steps in the preset")
    return {"video": video, "labelled": labelled, "labelled_fraction": frac,
            "real_env_steps": video["env_steps"] + labelled["env_steps"]}


def _record_labelled(ctx: DemoContext, budget: int, phases: int = 8) -> dict[str, Any]:
    """Record `phases` chunks per env into a pool, keep one chunk per env from a spread of game phases."""
    from metabonk.data.store import EpisodeStore

    p = ctx.preset
    chunk = max(8, budget // p.num_envs)
    pool_dir = ctx.dir("record") / "labelled_pool"
    if pool_dir.exists():
        shutil.rmtree(pool_dir)
    stats = _record(ctx, pool_dir, p.num_envs * phases, keep_actions=True, seed=ctx.seed + 5000,
                    max_steps=chunk)
    pool = EpisodeStore.open(pool_dir)
    want = {i: 1 + (i * (phases - 1)) // p.num_envs for i in range(p.num_envs)}  # env -> chunk number
    metas = [pool.episode_meta(e) for e in range(len(pool))]
    picks = [e for e, m in enumerate(metas)
             if pool.lengths[e] >= 2 and want.get(m.get("env_index", -1)) == m.get("env_episode")]
    out = EpisodeStore.create(ctx.labelled, pool.env_spec, pool.num_actions, pool.frame_size,
                              meta={**pool.info.get("meta", {}), "chunks_from": "labelled_pool"})
    for e in picks:
        out.append(pool.episode(e), meta=pool.episode_meta(e))
    shutil.rmtree(pool_dir)
    n = sum(out.lengths)
    return {**stats, "episodes": len(out), "transitions": n,
            "mean_length": n / max(len(out), 1), "chunk_numbers": sorted(set(want.values()))}


def _latent_train_config(ctx: DemoContext, steps: int, batch: int) -> Any:
    from metabonk.latent.train import TrainConfig

    return TrainConfig(steps=steps, batch=batch, seed=ctx.seed, device=ctx.device,
                       quiet=ctx.quiet, save_every=max(steps // 4, 1))


def stage_latent(ctx: DemoContext) -> dict[str, Any]:
    """Train the latent action model on the video, the IDM on the labelled set, and label the video."""
    from metabonk.common.checkpoint import read_config
    from metabonk.latent.data import load_transitions
    from metabonk.latent.label import label_store
    from metabonk.latent.train import train_idm, train_lam

    p, d = ctx.preset, ctx.dir("latent")
    video = load_transitions(ctx.video)
    lam_cfg = _lam_config(p)
    t0 = time.time()
    lam_tc = _latent_train_config(ctx, p.lam_steps, p.lam_batch)
    train_lam(video, d / "lam", lam_tc, lam_cfg, logdir=d / "lam.tb")
    del video
    labelled = load_transitions(ctx.labelled)
    train_idm(labelled, d / "idm", _latent_train_config(ctx, p.idm_steps, p.latent_batch), labelled=0,
              model_cfg=_idm_config(p), logdir=d / "idm.tb", calibration=p.idm_calibration)
    idm_acc = _idm_accuracy(d / "idm", ctx)
    lab = label_store(d / "idm", ctx.video, ctx.device, quiet=ctx.quiet)
    calibration = read_config(d / "idm")["meta"].get("calibration")
    return {"lam": str(d / "lam"), "idm": str(d / "idm"), "idm_holdout": idm_acc, "labelling": lab,
            **({"idm_calibration": calibration} if calibration else {}), "seconds": time.time() - t0}


def _lam_config(p: DemoPreset) -> Any:
    from metabonk.latent.lam import LAMConfig

    return LAMConfig(width=p.lam_width)


def _idm_config(p: DemoPreset) -> Any:
    from metabonk.latent.idm import IDMConfig

    return IDMConfig(width=p.idm_width, context=p.idm_context, future=p.idm_future,
                     object_shift=p.idm_object_shift, object_pool=p.idm_object_pool)


def _idm_accuracy(idm_path: Path, ctx: DemoContext) -> dict[str, float]:
    """Honest IDM accuracy on freshly recorded, labelled episodes the IDM never saw."""
    import tempfile

    import torch

    from metabonk.data.store import EpisodeStore
    from metabonk.latent.idm import InverseDynamicsModel

    idm = InverseDynamicsModel.load(idm_path, ctx.device)
    with tempfile.TemporaryDirectory() as tmp:
        # four consecutive chunks per env, so the check covers more than the calm first seconds of play
        _record(ctx, Path(tmp) / "check", ctx.preset.num_envs * 4, keep_actions=True, seed=ctx.seed + 9000,
                max_steps=max(16, min(128, ctx.preset.labelled_steps // ctx.preset.num_envs)))
        store = EpisodeStore.open(Path(tmp) / "check")
        hits = moves = n = 0
        for i in range(len(store)):
            ep = store.episode(i, ["obs", "action"])
            pred = idm.predict(torch.as_tensor(ep["obs"]))
            a = torch.as_tensor(ep["action"]).to(pred["action"].device)
            hits += int((pred["action"] == a).sum())
            moves += int((idm.move_of[pred["action"]] == idm.move_of[a]).sum())
            n += len(a)
    return {"accuracy": hits / max(n, 1), "movement_accuracy": moves / max(n, 1), "transitions": n}


def _world_config(p: DemoPreset, num_actions: int) -> Any:
    from metabonk.world.config import sized_world_config

    wc = sized_world_config(p.world_size, p.frame_size, num_actions, channels=tuple(p.world_channels))
    if p.world_context_noise is not None:
        wc.edm.context_noise_max = p.world_context_noise
    return wc


def stage_world(ctx: DemoContext) -> dict[str, Any]:
    """Train the diffusion world model on the IDM-labelled video."""
    from metabonk.data.store import EpisodeStore
    from metabonk.world.train import TrainConfig, train_world

    p, d = ctx.preset, ctx.dir("world")
    n_actions = EpisodeStore.open(ctx.labelled).num_actions or 18
    t0 = time.time()
    tc = TrainConfig(steps=p.world_steps, batch=p.world_batch, seed=ctx.seed, device=ctx.device,
                     action_source="idm", save_every=max(p.world_steps // 4, 1),
                     log_every=max(p.world_steps // 60, 1))
    model = train_world(ctx.video, d / "model", tc, model_config=_world_config(p, n_actions),
                        logdir=d / "model.tb", show_progress=not ctx.quiet)
    params = sum(x.numel() for x in model.parameters())
    return {"world": str(d / "model"), "params": params, "seconds": time.time() - t0}


def stage_bc(ctx: DemoContext) -> dict[str, Any]:
    """Behaviour cloning of System 1 on the IDM-labelled video."""
    from metabonk.policy.bc import BCArgs, train_bc

    p, d = ctx.preset, ctx.dir("bc")
    t0 = time.time()
    out = train_bc(BCArgs(data=str(ctx.video), out=str(d / "policy"), label="action_idm", steps=p.bc_steps,
                          batch_size=p.bc_batch, lr=p.bc_lr, lr_final=p.bc_lr_final, ema_decay=p.bc_ema,
                          class_balance=p.bc_class_balance,
                          soft_labels=p.bc_soft_labels,
                          seq_len=p.bc_seq_len, seed=ctx.seed,
                          device=ctx.device, quiet=ctx.quiet, save_every=max(p.bc_steps // 4, 1),
                          policy=dict(p.policy)))
    return {"policy": str(out), "seconds": time.time() - t0}


DREAM_POLICY = Path("dream") / "loop" / "agent"
"""Where the demo's final policy lives under the run folder (the online loop's agent checkpoint)."""


def stage_dream(ctx: DemoContext) -> dict[str, Any]:
    """The online loop started from the BC policy and the demo's world model: a small real-env budget collected
    with the policy refits the world model (now on real actions and rewards), and the actor-critic trains in
    imagination between collections."""
    from metabonk.train.agent_config import loop_config
    from metabonk.train.online import train_agent

    p, d = ctx.preset, ctx.dir("dream")
    t0 = time.time()
    cfg = loop_config("default", env=ctx.env, out=str(d / "loop"), init=str(ctx.dir("bc") / "policy"),
                      world_init=str(ctx.dir("world") / "model"), env_steps=p.dream_env_steps,
                      num_envs=p.num_envs, size=p.frame_size, start_steps=p.dream_collect_steps,
                      collect_steps=p.dream_collect_steps, world_updates=p.dream_world_updates,
                      world_batch=p.world_batch, ac_updates=p.dream_updates, ac_batch=p.dream_batch,
                      sampler_steps=p.dream_sampler_steps, ac_lr=p.dream_ac_lr, eval_episodes=0,
                      device=ctx.device, seed=ctx.seed, quiet=ctx.quiet, threads=p.threads, env_kwargs=ctx.env_kwargs,
                      imagination={"horizon": p.dream_horizon, "return_norm_floor": 0.05,
                                   "anchor_coef": p.dream_anchor})
    run = train_agent(cfg)
    import json

    state = json.loads((run / "loop.json").read_text())
    return {"policy": str(ctx.root / DREAM_POLICY), "epochs": state["epoch"],
            "real_env_steps": state["curve"][-1]["env_steps"] if state["curve"] else 0,
            "seconds": time.time() - t0}


def stage_ppo(ctx: DemoContext, real_env_steps: int) -> dict[str, Any]:
    """PPO from scratch at the same number of real env steps as the recording used (the baseline)."""
    from metabonk.policy.ppo import PPOArgs, train_ppo

    p, d = ctx.preset, ctx.dir("ppo")
    steps = real_env_steps if p.ppo_steps < 0 else p.ppo_steps
    t0 = time.time()
    out = train_ppo(PPOArgs(env=ctx.env, out=str(d / "policy"), total_steps=steps, num_envs=p.num_envs,
                            size=p.frame_size, seed=ctx.seed, device=ctx.device, quiet=ctx.quiet,
                            num_minibatches=min(4, p.num_envs), policy=dict(p.policy), env_kwargs=ctx.env_kwargs))
    return {"policy": str(out), "env_steps": steps, "seconds": time.time() - t0}


def stage_eval(ctx: DemoContext, policies: dict[str, Path]) -> dict[str, Any]:
    """Every trained policy and the baselines in the real game, same seeds."""
    from metabonk.common.device import resolve_device
    from metabonk.policy.agent import Agent
    from metabonk.policy.evaluate import add_expert_normalized, evaluate_policy

    p = ctx.preset
    device = resolve_device(ctx.device)
    res: dict[str, Any] = {}
    for i, (name, path) in enumerate(policies.items()):
        t0 = time.time()
        r = evaluate_policy(Agent.load(path, device), ctx.env, episodes=p.eval_episodes, seed=ctx.seed,
                            device=device, baselines=(i == 0), max_steps=p.eval_max_steps, greedy=p.eval_greedy,
                            env_kwargs=ctx.env_kwargs)
        if i == 0:
            for b in ("random", "expert"):
                if b in r:
                    res[b] = r[b]
        res[name] = r["policy"]
        res[name]["seconds"] = time.time() - t0
        if not ctx.quiet:
            console.print(f"eval {name}: survival {r['policy']['survival_mean']:.0f}")
    for name in policies:
        for b in ("random", "expert"):
            if b in res:
                ratio = res[name]["survival_mean"] / max(res[b]["survival_mean"], 1e-9)
                res[name][f"survival_vs_{b}"] = ratio
        add_expert_normalized(res[name], res)  # every agent, not only the first, on the same seeds
    res["episodes"], res["env"], res["seed"] = p.eval_episodes, ctx.env, ctx.seed
    return res
