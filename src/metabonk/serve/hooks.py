"""`--orchestrator URL` for existing verbs: what `metabonk demo`, `train agent`, `hive run` and `play agent`
report, kept here so their own code changes by a few lines. Reporting never stops the run: writes are queued
(see client.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common import logging as mlog
from metabonk.serve.client import Orchestrator, RunReporter
from metabonk.serve.worker_client import WorkerReporter

ARTIFACT_GLOBS = ("report.md", "*.png", "*.gif", "*/*.png", "*/*.gif")
MAX_ARTIFACT_BYTES = 32 << 20
MAX_UPLOAD_STEPS = 4000


@contextmanager
def capture_training(reporter: RunReporter, stage: str, every_s: float = 0.5) -> Iterator[None]:
    """While inside, every ScalarLogger scalar becomes metric STAGE/NAME and progress bars the stage's progress."""
    last = [0.0]

    def scalar(name: str, step: int, value: float) -> None:
        reporter.metric(f"{stage}/{name}", step, value)

    def progress(desc: str, done: int, total: int) -> None:
        t = time.monotonic()
        if t - last[0] >= every_s or done >= total:
            last[0] = t
            reporter.stage(stage, "running", done / max(total, 1), f"{desc}: {done}/{total}")

    mlog.SCALAR_SINKS.append(scalar)
    mlog.PROGRESS_SINKS.append(progress)
    try:
        yield
    finally:
        mlog.SCALAR_SINKS.remove(scalar)
        mlog.PROGRESS_SINKS.remove(progress)
        reporter.flush_metrics()


class DemoReporter:
    """Passed to `run_demo(on_stage=...)`: stages with live progress and curves, then the report's artifacts."""

    def __init__(self, url: str, name: str, stages: list[str], config: dict[str, Any]) -> None:
        self.run = RunReporter(Orchestrator(url), name=name, kind="demo", config=config)
        for s in stages:
            self.run.stage(s, "pending")
        self._capture: Any = None

    def __call__(self, stage: str, status: str, doc: dict[str, Any]) -> None:
        if self._capture is not None:
            self._capture.__exit__(None, None, None)
            self._capture = None
        if status == "running":
            self.run.stage(stage, "running", 0.0)
            self._capture = capture_training(self.run, stage)
            self._capture.__enter__()
        elif status == "done":
            secs = doc.get("seconds")
            self.run.stage(stage, "done", 1.0, f"{secs:.0f} s" if isinstance(secs, float) else "")
        else:
            self.run.stage(stage, status, 0.0, str(doc.get("error", ""))[:4000])

    def finish(self, run_dir: Path | None, ok: bool) -> None:
        if self._capture is not None:
            self._capture.__exit__(None, None, None)
            self._capture = None
        upload_artifacts(self.run, run_dir)
        self.run.finish("done" if ok else "failed")
        self.run.orch.close(timeout=60.0)


def upload_artifacts(run: RunReporter, run_dir: Path | None) -> None:
    """The run folder's report.md, PNGs and GIFs (top level and one folder down) as the run's artifacts."""
    if run_dir is None or not run_dir.is_dir():
        return
    seen: set[str] = set()
    for pattern in ARTIFACT_GLOBS:
        for p in sorted(run_dir.glob(pattern)):
            name = p.name if p.parent == run_dir else f"{p.parent.name}-{p.name}"
            if p.stat().st_size <= MAX_ARTIFACT_BYTES and name not in seen:
                seen.add(name)
                run.artifact(p, name)


@contextmanager
def reported_run(url: str | None, name: str, kind: str, config: dict[str, Any], stage: str,
                 out: Path) -> Iterator[RunReporter | None]:
    """A one-stage run on the orchestrator around a verb's work (`train agent`, `hive run`): live curves from
    its ScalarLogger scalars, progress from its progress bars, then `out`'s artifacts and the final status.
    With `url` None it reports nothing and yields None."""
    if url is None:
        yield None
        return
    run = RunReporter(Orchestrator(url), name=name, kind=kind, config=config)
    run.stage(stage, "running", 0.0)
    ok = False
    try:
        with capture_training(run, stage):
            yield run
        ok = True
    finally:
        run.stage(stage, "done" if ok else "failed", 1.0 if ok else 0.0)
        upload_artifacts(run, out)
        run.finish("done" if ok else "failed")
        run.orch.close(timeout=60.0)


def reporting_controller(url: str, agent: Any, planner: Any, device: Any, policy: str, name: str = "",
                         fps: float = 30.0) -> Any:
    """A TwoSystemController for `run_two_systems(controller=...)` that also reports to the orchestrator."""
    import socket

    from metabonk.two_systems import TwoSystemController

    class ReportingController(TwoSystemController):
        """Sends live frames, System 2's intent / cards / fallbacks, and each episode (as the ticks saw it)."""

        def __init__(self) -> None:
            super().__init__(agent, planner, device)
            self.orch = Orchestrator(url)
            self.worker = WorkerReporter(self.orch, name or f"play-{socket.gethostname()}"[:64], env="arena",
                                         policy=policy)
            self.frame_every_s = 1.0 / fps
            self._last_frame = 0.0
            self._t0 = time.monotonic()
            self._episode = -1
            self._store = ""
            self._ep: dict[str, list[Any]] = {}

        def reset(self, env: Any) -> None:
            super().reset(env)
            self._upload()  # the previous episode when --max-steps cut it (episode_done was not called)
            self._episode += 1
            self._ep = {"obs": [], "action": [], "ret": []}
            size = int(agent.cfg.image_size)
            if not self._store:
                self._store = f"play-arena-{size}"
                self.worker.ensure_store(self._store, "arena", int(env.single_action_space.n), size)

        def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
            action = super().act(obs, info)
            pixels = np.asarray(obs["pixels"])[0]
            if len(self._ep["action"]) < MAX_UPLOAD_STEPS:
                self._ep["obs"].append(pixels.copy())
                self._ep["action"].append(int(action[0]))
                self._ep["ret"].append(float(np.asarray(info.get("episode_return", [0.0]))[0]))
            t = time.monotonic()
            if t - self._last_frame >= self.frame_every_s:
                self._last_frame = t
                self.worker.frame(pixels)
            self._beat(force=False)
            return action

        def _beat(self, force: bool) -> None:
            from metabonk.common.intents import INTENTS

            c = self.counts
            picks = [p["options"][p["index"]] for p in self.picks[-5:] if 0 <= p["index"] < len(p["options"])]
            self.worker.heartbeat(
                force=force, intent=INTENTS[self.intent] if self.intent is not None else "default",
                fps=c["ticks"] / max(time.monotonic() - self._t0, 1e-6), step=int(c["ticks"]),
                episode=max(self._episode, 0), cards=picks,
                fallbacks=int(c["intent_fallbacks"] + c["cards_fallback"] + c["cards_policy_timeout"]),
                score=self._ep["ret"][-1] if self._ep.get("ret") else 0.0)

        def episode_done(self) -> None:
            super().episode_done()
            self._upload()
            self._beat(force=True)

        def _upload(self) -> None:
            # The ticks see frames o_0..o_n and the running return; the final step's reward is not seen by the
            # controller, so the episode ends one step early, marked truncated (never a made-up reward).
            obs, acts, ret = self._ep.get("obs", []), self._ep.get("action", []), self._ep.get("ret", [])
            T = len(obs) - 1
            if T >= 1:
                trunc = np.zeros(T, bool)
                trunc[-1] = True
                arrays = {"obs": np.stack(obs), "action": np.asarray(acts[:T], np.int64),
                          "reward": np.diff(np.asarray(ret, np.float64)).astype(np.float32),
                          "terminated": np.zeros(T, bool), "truncated": trunc}
                self.worker.episode(arrays, self._store, meta={"episode": self._episode, "source": "play agent"})
            self._ep = {"obs": [], "action": [], "ret": []}

        def close(self) -> None:
            self._upload()  # an episode cut by --max-steps
            self._beat(force=True)
            self.worker.close()
            self.orch.close(timeout=60.0)

    return ReportingController()
