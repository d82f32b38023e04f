"""The online world-model loop (`metabonk train agent`): agents that learn in their dreams, as DIAMOND does.

Each epoch: (1) collect real steps with the current policy (ε-exploration) into the replay — a crash-safe
episode store under OUT/replay; (2) update the diffusion world model and its reward/termination head on the
replay; (3) train the actor-critic purely in imagination, from real context frames. Both models are driven by
the shared `Fitter`. After every epoch the agent, the world model (each with its optimiser state) and the loop
state (OUT/loop.json: epoch, learning curve) are written atomically, so a run killed with SIGKILL resumes from its
last epoch; the replay is append-only and keeps every episode written before the kill.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.checkpoint import check_out_dir, load_trainer_state
from metabonk.common.device import resolve_device
from metabonk.common.errors import MetabonkError
from metabonk.common.logging import ScalarLogger, console, progress_bar
from metabonk.common.results import write_json_atomic
from metabonk.train.agent_config import AgentLoopConfig
from metabonk.train.collect import Collector
from metabonk.train.fit import FitConfig, Fitter
from metabonk.train.imagination import ImaginationActorCritic

LOOP_STATE = "loop.json"
NEVER = 10**12  # Fitter step budgets of the loop's open-ended trainers (the loop decides when to stop)


def world_config_for(cfg: AgentLoopConfig, num_actions: int) -> Any:
    """The world model's shape for a fresh run (the demo's sizes; the tiny one with a two-level U-Net)."""
    from metabonk.world.config import sized_world_config

    return sized_world_config(cfg.world_size, cfg.size, num_actions, tiny_channels=(32, 32))


class AgentLoop:
    """State of one run; `run()` trains until the real-step budget is spent."""

    def __init__(self, cfg: AgentLoopConfig, env: Any = None) -> None:
        """`env`: a ready vector env of `cfg.num_envs` copies honouring the env contract (e.g. the hive's
        reward-profile wrapper); by default `make_env(cfg.env, ...)`."""
        from metabonk.data.store import EpisodeStore
        from metabonk.envs import make_env, num_actions_of
        from metabonk.policy.agent import Agent
        from metabonk.policy.config import config_for_env

        self.cfg, self.out = cfg, Path(cfg.out)
        # a run folder is new, empty, or an earlier run of this loop (killed runs may hold only replay/)
        check_out_dir(self.out, cfg.init, cfg.world_init, markers=(LOOP_STATE, "replay"))
        self.device = resolve_device(cfg.device)
        if self.device.type == "cpu":
            torch.set_num_threads(max(1, cfg.threads))
        torch.manual_seed(cfg.seed)
        self.env = env if env is not None else make_env(cfg.env, num_envs=cfg.num_envs, size=cfg.size,
                                                        seed=cfg.seed, **cfg.env_kwargs)
        n_actions = num_actions_of(self.env)
        self.out.mkdir(parents=True, exist_ok=True)
        state_file = self.out / LOOP_STATE
        self.state: dict[str, Any] = (
            json.loads(state_file.read_text()) if state_file.is_file()
            else {"epoch": 0, "curve": [], "config": dataclasses.asdict(cfg)}
        )
        replay = self.out / "replay"
        self.store = EpisodeStore.create(replay, env_spec=cfg.env, num_actions=n_actions, frame_size=cfg.size,
                                         exist_ok=True)
        resumed = (self.out / "agent" / "config.json").is_file()
        if resumed:
            self.agent = Agent.load(self.out / "agent", self.device)
        elif cfg.init:
            self.agent = Agent.load(cfg.init, self.device)
        else:
            self.agent = Agent(config_for_env(n_actions, cfg.env.startswith("arena"), image_size=cfg.size,
                                              **cfg.policy)).to(self.device)
        if self.agent.cfg.env_actions != n_actions or self.agent.cfg.image_size != cfg.size:
            raise MetabonkError(f"the policy drives {self.agent.cfg.env_actions} actions at "
                                f"{self.agent.cfg.image_size}px; {cfg.env} has {n_actions} at {cfg.size}px")
        self.n_actions = n_actions
        self.logger = ScalarLogger(self.out / "tb")
        self.world: Any = None  # built at the first world update: a fresh model's σ_data is measured on the replay
        self.world_fit: Any = None
        start = Agent.load(cfg.init, self.device) if cfg.init and cfg.imagination.anchor_coef > 0 else None
        self.ac = ImaginationActorCritic(self.agent, n_actions, cfg.imagination, start=start).to(self.device)
        self.ac_fit = Fitter(self.ac, FitConfig(steps=NEVER, lr=cfg.ac_lr, grad_clip=10.0, log_every=10,
                                                device=str(self.device)),
                             self.logger, prefix="", params=list(self.agent.parameters()))
        self._restore(self.ac_fit, "agent")
        self.rng = np.random.default_rng([cfg.seed, self.state["epoch"]])
        self.collector = Collector(self.env, self.agent, self.store, self.device, cfg.epsilon,
                                   seed=cfg.seed + 1000 * self.state["epoch"], intent=cfg.imagination.intent)
        self.data: Any = None

    def _restore(self, fitter: Fitter, name: str) -> None:
        ts = load_trainer_state(self.out / name) if (self.out / name / "config.json").is_file() else None
        if ts is not None and "loop_fitter" in ts:
            fitter.load_state_dict(ts["loop_fitter"])

    def _ensure_world(self, data: Any) -> None:
        """Load the run's world model, or `world_init`, or build a fresh one with σ_data measured on `data`."""
        from metabonk.world.train import calibrate
        from metabonk.world.world_model import WorldModel

        if self.world is not None:
            return
        cfg = self.cfg
        if (self.out / "world" / "config.json").is_file():
            world = WorldModel.load(self.out / "world", self.device)
        elif cfg.world_init:
            world = WorldModel.load(cfg.world_init, self.device)
        else:
            wc = world_config_for(cfg, self.n_actions)
            calibrate(wc, data, cfg.seed)  # σ_data and the reward scale, measured on the first replay
            world = WorldModel(wc).to(self.device)
        wc = world.config
        if wc.frame_size != cfg.size or wc.num_actions < self.n_actions:
            raise MetabonkError(f"the world model dreams {wc.frame_size}px frames with {wc.num_actions} actions; "
                                f"{cfg.env} has {self.n_actions} at {cfg.size}px")
        self.world = world
        self.world_fit = Fitter(world, FitConfig(steps=NEVER, lr=cfg.world_lr, weight_decay=1e-2, warmup_steps=100,
                                                 grad_clip=1.0, ema_decay=cfg.world_ema, log_every=50,
                                                 device=str(self.device)),
                                self.logger, prefix="world/")
        self._restore(self.world_fit, "world")

    @property
    def env_steps(self) -> int:
        """Real steps on disk: every transition of the replay (also those written after the last checkpoint)."""
        return self.store.num_transitions

    def _num_context(self) -> int:
        from metabonk.common.checkpoint import read_config

        for src in (self.out / "world", self.cfg.world_init):
            if src is not None and (Path(src) / "config.json").is_file():
                return int(read_config(src, kind="world")["config"]["num_context"])
        return world_config_for(self.cfg, self.n_actions).num_context

    def _windows(self) -> Any:
        from metabonk.world.data import WindowData

        self.store.refresh()
        eps = list(range(len(self.store)))
        if self.data is None:
            self.data = WindowData(self.store, eps, self._num_context())
        else:
            held = set(self.data.episodes)
            self.data.extend(self.store, [e for e in eps if e not in held])
        return self.data

    def _dream_env(self) -> Any:
        from metabonk.world.dream_env import DreamEnv

        model = self.world_fit.ema_model
        if self.cfg.kernels != "eager":  # fused kernels pack the weights: a copy of this epoch's weights
            model = copy.deepcopy(model)
        return DreamEnv(model, num_steps=self.cfg.sampler_steps, max_episode_steps=10**9,
                        seed=int(self.rng.integers(2**31)), kernels=self.cfg.kernels)

    def _train_world(self, updates: int) -> None:
        data = self._windows()
        self._ensure_world(data)
        self.world.train()
        for _ in range(updates):
            self.world_fit.step(data.sample(self.cfg.world_batch, self.rng, terminal_fraction=0.1))

    def _train_agent(self, updates: int) -> None:
        data, k = self._windows(), self.world.config.num_context
        self.ac.env = self._dream_env()
        self.agent.train()
        for _ in range(updates):
            w = data.sample(self.cfg.ac_batch, self.rng)
            self.ac_fit.step({"frames": w["obs"][:, :k], "actions": w["action"][:, :k]})

    def _save(self) -> None:
        meta = {"algo": "online", "env": self.cfg.env, "epoch": self.state["epoch"], "env_steps": self.env_steps}
        self.agent.save(self.out / "agent", meta=meta,
                        trainer_state={"algo": "online", "loop_fitter": self.ac_fit.state_dict(full=False)})
        self.world_fit.ema_model.save(self.out / "world", meta={**meta, "data": str((self.out / "replay").resolve())},
                                      trainer_state={"loop_fitter": self.world_fit.state_dict(full=False)})
        write_json_atomic(self.out / LOOP_STATE, self.state)

    def epoch(self) -> dict[str, Any]:
        """One epoch: collect, update the world model, train the actor-critic in imagination, checkpoint."""
        cfg, st = self.cfg, self.state
        timing = st.setdefault("seconds", {"collect": 0.0, "world": 0.0, "imagination": 0.0})
        first = st["epoch"] == 0 and not st["curve"]
        want = cfg.start_steps if first else cfg.collect_steps
        t0 = time.time()
        res = self.collector.collect(min(want, cfg.env_steps - self.env_steps),
                                     random_actions=first and cfg.init is None)
        t1 = time.time()
        self._train_world(cfg.world_updates + (cfg.first_world_updates if first else 0))
        t2 = time.time()
        self._train_agent(cfg.ac_updates)
        t3 = time.time()
        timing["collect"] += t1 - t0
        timing["world"] += t2 - t1
        timing["imagination"] += t3 - t2
        st["epoch"] += 1
        point = {"epoch": st["epoch"], "env_steps": self.env_steps,
                 "return_mean": float(np.mean(res.returns)) if res.returns else None,
                 "episodes": len(res.returns), "world": self.world_fit.last, "imagination": self.ac_fit.last}
        st["curve"].append(point)
        if res.returns:
            self.logger.log(self.env_steps, **{"charts/episodic_return": point["return_mean"]})
        self._save()
        return point

    def run_epochs(self) -> None:
        """Epochs until `cfg.env_steps` real steps are on disk."""
        cfg = self.cfg
        with progress_bar("train agent", cfg.env_steps, disable=cfg.quiet) as advance:
            advance(min(self.env_steps, cfg.env_steps))
            while self.env_steps < cfg.env_steps:
                t0, before = time.time(), self.env_steps
                point = self.epoch()
                self.state["wall_seconds"] = self.state.get("wall_seconds", 0.0) + time.time() - t0
                ret = "-" if point["return_mean"] is None else f"{point['return_mean']:.2f}"
                status = f"return {ret} dream {self.ac_fit.last.get('imagination/return', 0):.3f}"
                advance(self.env_steps - before, status=status)
                if not cfg.quiet:  # one line per epoch for logs (the bar is redrawn in place)
                    secs = self.state["seconds"]
                    console.print(f"epoch {point['epoch']}: {self.env_steps} steps, {status}, world loss "
                                  f"{self.world_fit.last.get('loss', float('nan')):.4f}; seconds so far "
                                  + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()))
        write_json_atomic(self.out / LOOP_STATE, self.state)

    def close(self) -> None:
        self.logger.close()
        self.env.close()

    def run(self) -> dict[str, Any]:
        self.run_epochs()
        self.close()
        return self.state


def train_agent(cfg: AgentLoopConfig) -> Path:
    """Run (or resume) the online loop; returns the run folder (OUT/agent is the policy checkpoint)."""
    loop = AgentLoop(cfg)
    st = loop.run()
    if not cfg.quiet:
        console.print(f"train agent: {st['epoch']} epochs, {loop.env_steps} real steps; policy in {loop.out / 'agent'}")
    return loop.out
