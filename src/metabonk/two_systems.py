"""Playing Arena with both systems: System 1 (the recurrent policy) acts every tick; System 2 (the async
planner) sets its intent and chooses level-up cards without ever making System 1 wait.

Each tick `TwoSystemController` builds a `GameSummary` from Arena's state (`summaries_from_state`),
polls `AsyncPlanner.tick` for the current intent and passes it to `Agent.act`. When the level-up menu
opens it takes the best offered card of System 2's ranking of the whole card pool, made ahead of the menu
(requested at the start and after every menu; `card_ranking`); without a ready ranking it asks System 2 for a
card (the policy's own pick as fallback) and, while the game is paused, sends no-op moves until the answer
lands; after `card_wait_ticks` the policy picks instead.

The risk layer sits between the two (`SafetyConfig`): System 2's intent is first mapped to the nearest
feasible one (`planner.intent_monitor.project`), the loop guard may force another intent or send escape
moves (`planner.loop_detector`), and the intent monitor checks that System 1 shows the intent's behavioural
signature within a deadline, writing mismatches to a store and the playbook. Their counters join `stats()`.
When System 2 has a dream checker (planner/dream_check.py) the controller keeps the last k game frames and the
actions sent at them, and each intent request carries a snapshot of them for the check on System 2's worker.
`ScriptedSystem1` (policy/scripted_system1.py) plays any batched Arena policy behind System 1's interface.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabonk.common.intents import INTENTS
from metabonk.envs.arena.spec import TICKS_PER_SECOND, UPGRADES, StateView
from metabonk.envs.torch_obs import obs_to_torch
from metabonk.planner.async_planner import AsyncPlanner
from metabonk.planner.intent_monitor import IntentMonitor, MonitorConfig
from metabonk.planner.loop_detector import LoopBreak, LoopConfig, LoopGuard
from metabonk.planner.playbook import PlaybookStore
from metabonk.planner.summary import GameSummary, summaries_from_state
from metabonk.policy.agent import Agent
from metabonk.policy.scripted_system1 import ScriptedSystem1

WAIT_ACTION = 0
"""A movement action (stand); it does nothing while the menu is open, so it waits for System 2."""


@dataclass
class SafetyConfig:
    """The risk layer between System 2 and System 1; None / False turns a part off."""

    loop: LoopConfig | None = field(default_factory=LoopConfig)
    monitor: MonitorConfig | None = field(default_factory=MonitorConfig)
    """Signature checks and (with `monitor.project`) the safety projection."""
    mismatch_store: str | Path | None = None
    """Episode store that receives each mismatched segment (created on the first one)."""
    playbook: PlaybookStore | None = None
    """Playbook that receives one entry per intent System 1 does not carry out."""

    @classmethod
    def off(cls) -> SafetyConfig:
        return cls(loop=None, monitor=None)


System1 = Agent | ScriptedSystem1
"""What the controller drives as System 1: the learned policy, or a scripted one (a baseline, a test probe)."""


class TwoSystemController:
    """Plays a single-env (num_envs=1) Arena vector env with an Agent and an optional AsyncPlanner."""

    def __init__(
        self,
        agent: System1,
        planner: AsyncPlanner | None,
        device: torch.device | str = "cpu",
        greedy: bool = True,
        seconds_per_tick: float = 1.0 / TICKS_PER_SECOND,
        card_wait_ticks: int = 30,
        safety: SafetyConfig | None = None,
        card_ranking: bool = True,
    ) -> None:
        self.agent = agent.eval()
        self.safety = safety if safety is not None else SafetyConfig()
        self.loop_guard: LoopGuard | None = None
        self.monitor: IntentMonitor | None = None
        self.commanded: int | None = None  # System 2's intent before projection and loop breaks
        self.planner = planner
        self.device = torch.device(device)
        self.greedy = greedy
        self.seconds_per_tick = seconds_per_tick
        self.card_wait_ticks = card_wait_ticks
        self.card_ranking = card_ranking
        self._want_ranking = card_ranking
        self.counts: Counter[str] = Counter()
        self.intent_ticks: Counter[str] = Counter()
        self.tick_s: list[float] = []  # wall time of each whole tick (summary, planner poll, System 1)
        self.system1_s: list[float] = []  # wall time of each System 1 step alone (`Agent.act`)
        self.picks: list[dict[str, Any]] = []
        self.intent: int | None = None
        self.hidden = torch.zeros(0)
        self._cfg: Any = None
        self._seen = self._wait_ticks = self._fallback = self._game_ticks = 0
        self._menu_prev = self._waiting = self._sent_card = self._rank_wait = False
        self._options: list[str] = []
        self._last_return = 0.0
        self._break = LoopBreak()
        k = planner.checker.num_context if planner is not None and planner.checker is not None else 0
        self._ring_frames: deque[np.ndarray] = deque(maxlen=k)  # the last k game frames (menu ticks skipped)
        self._ring_actions: deque[int] = deque(maxlen=k)  # the action sent at each of them
        self.dream_log: list[dict[str, Any]] = []  # per checked intent: unchecked, checked, returns, latency

    def reset(self, env: Any) -> None:
        """Start of an episode (and of the run): zero the hidden state and the menu bookkeeping."""
        if env.num_envs != 1:
            raise ValueError(f"TwoSystemController drives one env, got num_envs={env.num_envs}")
        self._cfg = env.config
        self.hidden = self.agent.initial_state(1, self.device)
        self._menu_prev = self._waiting = self._sent_card = self._rank_wait = False
        self._wait_ticks = self._game_ticks = 0
        self._last_return, self._break = 0.0, LoopBreak()
        self._want_ranking = self.card_ranking
        self._ring_frames.clear()
        self._ring_actions.clear()
        sc = self.safety
        if sc.loop is not None:
            self.loop_guard = self.loop_guard or LoopGuard(sc.loop, env.config)
            self.loop_guard.reset()
        if sc.monitor is not None:
            self.monitor = self.monitor or IntentMonitor(sc.monitor, env.config, sc.mismatch_store, sc.playbook)
            self.monitor.reset()
        self.card_wait_ticks = max(1, min(self.card_wait_ticks, env.config.menu_timeout_steps - 2))

    def summary(self, obs: dict[str, Any]) -> GameSummary:
        return summaries_from_state(np.asarray(obs["state"])[:1], self._cfg)[0]

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        """One tick: actions [1] for the env."""
        t0 = time.perf_counter()
        self.counts["ticks"] += 1
        menu = bool(np.asarray(info["menu_open"])[0])
        summary = None
        ring = bool(self._ring_frames.maxlen) and not menu
        if ring:  # this frame's action is filled in once it is known
            self._ring_frames.append(np.array(np.asarray(obs["pixels"])[0], copy=True))
            self._ring_actions.append(WAIT_ACTION)
        if self.planner is not None:
            summary = self.summary(obs)
            self.commanded = self.planner.tick(self._game_ticks * self.seconds_per_tick, summary, self._context)
            self._take_decisions()
            if self._want_ranking and not self._waiting and self.planner.request_ranking(summary, list(UPGRADES)):
                self._want_ranking = False
        if not menu:
            self._game_ticks += 1  # the game is paused while the menu is open
            self.counts["game_ticks"] += 1
            self.intent = self._guard(obs, info)
        self.intent_ticks[INTENTS[self.intent] if self.intent is not None else "default"] += 1
        if self.planner is not None and not self._waiting and self.planner.card_pending():
            if self.planner.card_result() is not None:  # an answer after the policy chose: dropped
                self.counts["late_cards"] += 1
        res = self._card_answer() if menu and self._waiting else None
        override = -1 if res is None else res
        action = self._system1(obs, info, menu, override)
        if not menu:
            if self._break.action is not None:
                action[:] = self._break.action
            if self.monitor is not None:
                self.monitor.record_action(int(action[0]))
        if menu and not self._waiting and (not self._menu_prev or self._sent_card):
            self.counts["menus"] += 1  # a new menu (or the next one of queued level-ups)
            if self.planner is not None and summary is not None:
                self._open_menu(info, summary, action)
            else:
                self._options = self._names(info)
                self._record_pick(int(action[0]) - self.agent.cfg.move_actions, "policy")
        elif menu and self._waiting and override < 0:
            self._wait_ticks += 1
            if self._wait_ticks >= self.card_wait_ticks:  # no answer in time: the policy chooses
                self._waiting = False
                self._record_pick(int(action[0]) - self.agent.cfg.move_actions, "policy_timeout")
            else:
                action[:] = WAIT_ACTION
        self._waiting = self._waiting and menu and override < 0
        self._rank_wait = self._rank_wait and self._waiting
        self._sent_card = menu and int(action[0]) >= self.agent.cfg.move_actions
        self._menu_prev = menu
        if ring:
            self._ring_actions[-1] = int(action[0])
        self.tick_s.append(time.perf_counter() - t0)
        return action

    def _context(self) -> tuple[np.ndarray, np.ndarray] | None:
        """A copy of the last k game frames and the actions at them, for System 2's dream check (None until k)."""
        if len(self._ring_frames) < (self._ring_frames.maxlen or 1):
            return None
        return np.stack(self._ring_frames), np.asarray(self._ring_actions, dtype=np.int64)

    def _guard(self, obs: dict[str, Any], info: dict[str, Any]) -> int | None:
        """The intent System 1 gets this game tick: System 2's, projected to a feasible one, maybe replaced by
        the loop guard (whose escape move, if any, replaces System 1's action); the monitor sees the result."""
        state = np.asarray(obs["state"])[0]
        intent = self.commanded
        if self.monitor is not None:
            intent = self.monitor.project(intent, state)
        self._break = self.loop_guard.step(state, intent) if self.loop_guard is not None else LoopBreak()
        if self._break.intent is not None:
            intent = self._break.intent
        if self.monitor is not None:
            ret = float(np.asarray(info.get("episode_return", [0.0]))[0])
            self.monitor.observe(np.asarray(obs["pixels"])[0], state, intent, ret - self._last_return)
            self._last_return = ret
        return intent

    def _system1(self, obs: dict[str, Any], info: dict[str, Any], menu: bool, override: int) -> np.ndarray:
        t0 = time.perf_counter()
        t_obs = obs_to_torch(obs, info, self.device)
        menu_t = torch.tensor([menu], device=self.device)
        card = torch.tensor([override], device=self.device)
        action, self.hidden, _ = self.agent.act(
            t_obs, self.hidden, self.intent, menu_t, greedy=self.greedy, card_override=card
        )
        out = action.cpu().numpy().astype(np.int64)
        self.system1_s.append(time.perf_counter() - t0)
        return out

    @staticmethod
    def _names(info: dict[str, Any]) -> list[str]:
        return [UPGRADES[int(c)] for c in np.asarray(info["card_options"])[0]]

    def _open_menu(self, info: dict[str, Any], summary: GameSummary, action: np.ndarray) -> None:
        assert self.planner is not None
        options = self._names(info)
        self._want_ranking = self.card_ranking  # the build changes with this card: rank again for the next menu
        ranked = self.planner.ranked_card(options) if self.card_ranking else None
        if ranked is not None:  # System 2's card, known before the menu opened: sent on this very tick
            self._options = options
            self._record_pick(ranked, "system2_ranked")
            action[:] = self.agent.cfg.move_actions + ranked
            return
        self._fallback = max(0, int(action[0]) - self.agent.cfg.move_actions)
        if self.card_ranking and self.planner.ranking_pending():
            # a ranking is under way on System 2's one worker: a new request would queue behind it, so wait
            # for the ranking instead (up to `card_wait_ticks`, then the policy's card)
            self._rank_wait, self._waiting, self._wait_ticks, self._options = True, True, 0, options
            action[:] = WAIT_ACTION
            return
        self.planner.request_card(summary, options, self._fallback)
        self._waiting, self._wait_ticks, self._options = True, 0, options
        action[:] = WAIT_ACTION  # System 2's answer is read on the next tick

    def _card_answer(self) -> int | None:
        """System 2's card once known; counts whether it came from System 2 or fell back to the policy."""
        assert self.planner is not None
        if self._rank_wait:
            if self.planner.ranking_pending():
                return None
            self._rank_wait = False
            ranked = self.planner.ranked_card(self._options)
            if ranked is None:  # the ranking failed or named none of the offered cards: the policy's card
                self._record_pick(self._fallback, "fallback")
                return self._fallback
            self._record_pick(ranked, "system2_ranked")
            return ranked
        n = len(self.planner.decisions)
        res = self.planner.card_result()
        if res is None:
            return None
        new = [d for d in self.planner.decisions[n:] if d.kind == "card"]
        by = "system2" if new and new[-1].source != "fallback" else "fallback"
        self._record_pick(res, by)
        self._seen = len(self.planner.decisions)
        return res

    def _record_pick(self, index: int, by: str) -> None:
        self.counts[f"cards_{by}"] += 1
        self.picks.append({"tick": self.counts["ticks"], "index": index, "by": by, "options": list(self._options)})

    def _take_decisions(self) -> None:
        """Count the intent answers System 2 delivered since the last tick (they reach System 1 now)."""
        assert self.planner is not None
        for d in self.planner.decisions[self._seen :]:
            if d.kind == "intent":
                self.counts["intents_applied"] += 1
                if d.source == "fallback":
                    self.counts["intent_fallbacks"] += 1
                if d.dream is not None:
                    self.dream_log.append({"tick": self.counts["ticks"], "unchecked": d.unchecked, "checked": d.value,
                                           "decision_latency_s": d.latency_s, **d.dream.as_dict()})
        self._seen = len(self.planner.decisions)

    def episode_done(self) -> None:
        self._menu_prev = self._waiting = self._sent_card = self._rank_wait = False

    def stats(self) -> dict[str, Any]:
        tick = np.asarray(self.tick_s) * 1e3
        s1 = np.asarray(self.system1_s) * 1e3
        c = self.counts
        out: dict[str, Any] = {
            "ticks": int(c["ticks"]),
            "game_ticks": int(c["game_ticks"]),
            "menus": int(c["menus"]),
            "intents_applied": int(c["intents_applied"]),
            "intent_fallbacks": int(c["intent_fallbacks"]),
            "cards_system2": int(c["cards_system2"] + c["cards_system2_ranked"]),
            "cards_system2_ranked": int(c["cards_system2_ranked"]),  # of those, answered from the ranking
            # the policy's own card: no planner, System 2 too slow (timeout) or failed (fallback)
            "cards_policy": int(c["cards_policy"] + c["cards_policy_timeout"] + c["cards_fallback"]),
            "card_fallbacks": int(c["cards_fallback"] + c["cards_policy_timeout"]),
            "late_cards": int(c["late_cards"]),
            "intent_ticks": dict(self.intent_ticks),
        }
        for name, x in (("tick", tick), ("system1", s1)):
            out[f"{name}_ms_p50"] = float(np.percentile(x, 50)) if len(x) else 0.0
            out[f"{name}_ms_p99"] = float(np.percentile(x, 99)) if len(x) else 0.0
        if self.loop_guard is not None:
            lc = self.loop_guard.counts
            for k in ("loops_detected", "loop_stalls", "loop_cycles", "loop_intent_breaks", "loop_perturbations",
                      "loop_perturb_ticks", "loops_resolved_by_intent", "loops_resolved_by_perturbation"):
                out[k] = int(lc[k])
            out["loops_per_1k_game_ticks"] = 1e3 * lc["loops_detected"] / max(c["game_ticks"], 1)
        if self.monitor is not None:
            out.update(self.monitor.stats())
        if self.planner is not None:
            out["planner_counts"] = {k: int(v) for k, v in self.planner.planner.counts.items()}
        if self.planner is not None and self.planner.checker is not None:
            check_ms = np.asarray([r["latency_s"] for r in self.dream_log]) * 1e3
            out["dream_checks"] = len(self.dream_log)
            out["dream_switches"] = sum(r["checked"] != r["unchecked"] for r in self.dream_log)
            out["dream_check_ms_p50"] = float(np.percentile(check_ms, 50)) if len(check_ms) else 0.0
            out["dream_check_ms_p99"] = float(np.percentile(check_ms, 99)) if len(check_ms) else 0.0
            out["dream_decisions"] = list(self.dream_log)
        return out


def run_two_systems(
    agent: System1,
    planner: AsyncPlanner | None,
    episodes: int = 1,
    seed: int = 0,
    max_steps: int = 10_000,
    device: torch.device | str = "cpu",
    greedy: bool = True,
    env_overrides: dict[str, Any] | None = None,
    controller: TwoSystemController | None = None,
    safety: SafetyConfig | None = None,
) -> dict[str, Any]:
    """Play `episodes` Arena games (seeds seed, seed+1, ...) with both systems; per-episode scores + counters."""
    from metabonk.envs.arena import make_arena_env

    ctrl = controller or TwoSystemController(agent, planner, device, greedy=greedy, safety=safety)
    env = make_arena_env(1, size=agent.cfg.image_size, seed=seed, **(env_overrides or {}))
    survival: list[int] = []
    returns: list[float] = []
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            ctrl.reset(env)
            if ctrl.monitor is not None:
                ctrl.monitor.meta["seed"] = seed + ep
            ret, steps = 0.0, 0
            for steps in range(1, max_steps + 1):  # noqa: B007  (steps is read after the loop)
                action = ctrl.act(obs, info)
                k = int(action[0]) - agent.cfg.move_actions  # a card index, or < 0 for a move
                before = StateView(np.asarray(obs["state"])[0], env.config).upgrade_counts.copy() if k >= 0 else None
                obs, reward, term, trunc, info = env.step(action)
                ret += float(np.asarray(reward)[0])
                done = bool(np.asarray(term)[0] or np.asarray(trunc)[0])
                if before is not None and ctrl.picks and "applied" not in ctrl.picks[-1] and not done:
                    after = StateView(np.asarray(obs["state"])[0], env.config).upgrade_counts
                    name = ctrl.picks[-1]["options"][k]
                    i = UPGRADES.index(name)
                    ctrl.picks[-1]["sent"] = k
                    ctrl.picks[-1]["applied"] = bool(round(after[i]) > round(before[i]))
                if done:
                    ctrl.episode_done()
                    break
            survival.append(steps)
            returns.append(ret)
    finally:
        env.close()
        if planner is not None:
            planner.close()
    res: dict[str, Any] = {"episodes": episodes, "seed": seed, "max_steps": max_steps}
    res.update(survival=survival, returns=returns)
    res["survival_mean"] = float(np.mean(survival)) if survival else 0.0
    res["return_mean"] = float(np.mean(returns)) if returns else 0.0
    res.update(ctrl.stats())
    res["cards_applied"] = sum(1 for p in ctrl.picks if p.get("applied"))
    return res
