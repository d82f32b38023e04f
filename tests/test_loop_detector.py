"""Loop detection in the two-system controller: a System 1 stuck against a wall (or stepping back and forth) is
detected, broken by an intent change and then by escape moves, and moves afterwards; normal play never fires."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from metabonk.envs.arena.spec import StateView, move_action
from metabonk.planner.loop_detector import LoopConfig
from metabonk.policy.scripted_system1 import ScriptedSystem1
from metabonk.two_systems import SafetyConfig, TwoSystemController, run_two_systems

QUIET = {"spawn_rate_start": 0.0, "spawn_rate_end": 0.0, "boss_times": ()}
"""An empty arena: nothing but System 1 (and the loop guard) moves the player."""


def constant(direction: int) -> Any:
    def policy(obs: dict[str, Any], info: Any) -> np.ndarray:
        return np.full(obs["state"].shape[0], move_action(direction), np.int64)

    return policy


def back_and_forth(period: int) -> Any:
    """East for `period` ticks, then west for `period` ticks, forever (a short cycle of states)."""
    t = [0]

    def policy(obs: dict[str, Any], info: Any) -> np.ndarray:
        t[0] += 1
        d = 1 if (t[0] // period) % 2 == 0 else 5
        return np.full(obs["state"].shape[0], move_action(d), np.int64)

    return policy


class Spy(TwoSystemController):
    """Records, per game tick, the player's x and the guard's counters before the tick's action."""

    def __init__(self, agent: Any, safety: SafetyConfig | None = None) -> None:
        super().__init__(agent, None, safety=safety)
        self.xs: list[float] = []
        self.events: list[tuple[int, int]] = []

    def act(self, obs: dict[str, Any], info: dict[str, Any]) -> np.ndarray:
        action = super().act(obs, info)
        self.xs.append(float(StateView(np.asarray(obs["state"])[0], self._cfg).position[0]))
        c = self.loop_guard.counts if self.loop_guard is not None else {}
        self.events.append((int(c.get("loop_intent_breaks", 0)), int(c.get("loop_perturbations", 0))))
        return action


def play(policy: Any, steps: int, safety: SafetyConfig | None = None) -> tuple[dict[str, Any], Spy]:
    agent = ScriptedSystem1(policy, image_size=32)
    ctrl = Spy(agent, safety)
    res = run_two_systems(agent, None, episodes=1, seed=0, max_steps=steps, env_overrides=QUIET, controller=ctrl)
    return res, ctrl


def test_wall_presser_is_detected_broken_and_moves() -> None:
    res, ctrl = play(constant(1), 900)
    wall_x = max(ctrl.xs)
    assert res["loops_detected"] >= 2 and res["loop_stalls"] >= 2, res
    assert res["loop_intent_breaks"] >= 1 and res["loop_perturbations"] >= 1, res
    breaks = [i for i, (b, _) in enumerate(ctrl.events) if b >= 1]
    perturbs = [i for i, (_, p) in enumerate(ctrl.events) if p >= 1]
    # escalation: the intent change comes first, a window later the perturbation
    assert breaks[0] < perturbs[0] and perturbs[0] - breaks[0] >= LoopConfig().window
    assert wall_x - ctrl.xs[perturbs[0] - 1] < 0.5  # pinned at the wall until the perturbation ...
    after = ctrl.xs[perturbs[0] : perturbs[0] + LoopConfig().perturb_ticks + 1]
    assert wall_x - min(after) > 4.0, after  # ... which moves it away from the wall
    assert res["loop_perturb_ticks"] >= LoopConfig().perturb_ticks


def test_without_the_guard_the_presser_stays_stuck() -> None:
    res, ctrl = play(constant(1), 900, SafetyConfig.off())
    assert "loops_detected" not in res
    assert max(ctrl.xs) - min(ctrl.xs[300:]) < 0.5  # what the guard breaks: it never leaves the wall


def test_back_and_forth_is_a_detected_cycle() -> None:
    res, _ = play(back_and_forth(3), 400)
    assert res["loops_detected"] >= 1 and res["loop_intent_breaks"] >= 1, res


def test_walking_across_the_arena_is_not_a_loop() -> None:
    res, _ = play(back_and_forth(100), 600)  # 25-unit legs: it moves every tick, and never loops
    assert res["loops_detected"] == 0, res


@pytest.mark.parametrize("seed", [0, 1])
def test_scripted_expert_never_triggers_it(seed: int) -> None:
    agent = ScriptedSystem1(image_size=32)
    res = run_two_systems(agent, None, episodes=1, seed=seed, max_steps=1200)
    assert res["game_ticks"] > 1000 and res["loops_detected"] == 0, res


def test_bad_loop_config_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        LoopConfig(window=1)
    with pytest.raises(ValueError, match="escape_intents"):
        LoopConfig(escape_intents=("dance",))
