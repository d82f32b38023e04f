"""Dual-policy consistency end to end: System 2 commands an intent, a System 1 that ignores it is caught by the
signature check, counted, its segment lands in the mismatch store and a playbook entry says so; the safety
projection maps infeasible commands (no boss, no regen, full HP, no gem, no enemy) to feasible ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metabonk.common.intents import INTENTS
from metabonk.data.store import EpisodeStore
from metabonk.envs.arena import make_arena_env
from metabonk.envs.arena.spec import PLAYER, WAVE, StateView, direction_toward, move_action
from metabonk.planner.async_planner import AsyncPlanner
from metabonk.planner.intent_monitor import MonitorConfig, project, signature_met
from metabonk.planner.planner import Planner, PlannerConfig
from metabonk.planner.playbook import PlaybookStore
from metabonk.policy.scripted_system1 import ScriptedSystem1
from metabonk.two_systems import SafetyConfig, TwoSystemController, run_two_systems

TOUGH = {"player_max_hp": 1000.0}
"""A player that survives walking into enemies for the whole test."""


class FixedIntent:
    """A ChatClient that always answers one intent (and the first card)."""

    name = "fixed"

    def __init__(self, intent: str) -> None:
        self.intent = intent

    def chat(self, messages: Any, *, schema: dict[str, Any] | None = None, **_: Any) -> str:
        assert schema is not None
        if "intent" in schema["properties"]:
            return json.dumps({"intent": self.intent})
        return json.dumps({"card": schema["properties"]["card"]["enum"][0]})


def chaser(obs: dict[str, Any], info: Any) -> np.ndarray:
    """Walks straight at the nearest enemy whatever System 2 says (so 'flee' is never carried out)."""
    from metabonk.envs.arena.config import ArenaConfig

    view = StateView(np.asarray(obs["state"]), ArenaConfig())
    out = np.full(view.x.shape[0], move_action(3), np.int64)
    for i in range(view.x.shape[0]):
        if view.enemy_valid[i].any():
            dx, dy = np.sign(view.enemy_offset[i, 0]).astype(int)
            out[i] = move_action(direction_toward(int(dx), int(dy)))
    return out


def test_ignored_intent_is_detected_stored_and_in_the_playbook(tmp_path: Path) -> None:
    store_path, db = tmp_path / "mismatch", tmp_path / "playbook.sqlite"
    playbook = PlaybookStore(db)
    safety = SafetyConfig(mismatch_store=store_path, playbook=playbook)
    agent = ScriptedSystem1(chaser, image_size=32)
    planner = AsyncPlanner(Planner(FixedIntent("flee"), config=PlannerConfig(samples=1)), period_s=0.5)
    ctrl = TwoSystemController(agent, planner, safety=safety)
    res = run_two_systems(agent, planner, episodes=1, seed=0, max_steps=900, controller=ctrl, env_overrides=TOUGH)
    n = res["intent_mismatch_by_intent"].get("flee", 0)
    assert n >= 2 and res["intent_mismatches"] >= n, res
    assert res["mismatch_store_episodes"] == res["intent_mismatches"]
    playbook.close()

    store = EpisodeStore.open(store_path)  # reopened from disk: every mismatch is one stored segment
    assert len(store) == res["intent_mismatches"] and store.has_actions
    cfg, deadline = make_arena_env(1, size=32).config, MonitorConfig().deadline
    flee = [i for i in range(len(store)) if store.episode_meta(i)["intent"] == "flee"]
    assert len(flee) == n
    ep = store.episode(flee[0])
    assert ep["obs"].shape == (deadline + 1, 32, 32, 3) and ep["action"].shape == (deadline,)
    assert (ep["intent"] == INTENTS.index("flee")).all()
    assert store.episode_meta(flee[0])["kind"] == "intent-mismatch" and store.episode_meta(flee[0])["seed"] == 0
    first, last = StateView(ep["state"][0], cfg), StateView(ep["state"][-1], cfg)
    assert not signature_met("flee", first, last, MonitorConfig())[0]  # the stored segment is the failure

    book = PlaybookStore(db, read_only=True)
    entries = [e for e in book.entries() if {"mismatch", "intent:flee"} <= set(e.tags)]
    assert len(entries) == 1 and entries[0].harmful == n and "flee" in entries[0].text
    assert book.head == res["intent_mismatches"]  # one version per mismatch, each with a reason
    book.close()


def test_a_system1_that_flees_shows_fewer_flee_mismatches() -> None:
    """The control: the same command to the scripted expert (it kites away) is carried out far more often."""
    counts = {}
    for name, policy in (("chaser", chaser), ("expert", None)):
        agent = ScriptedSystem1(policy, image_size=32)
        planner = AsyncPlanner(Planner(FixedIntent("flee"), config=PlannerConfig(samples=1)), period_s=0.5)
        res = run_two_systems(agent, planner, episodes=1, seed=0, max_steps=900, safety=SafetyConfig(loop=None),
                              env_overrides=TOUGH)
        windows = res["intent_windows_by_intent"].get("flee", 0)
        assert windows >= 2, res
        counts[name] = res["intent_mismatch_by_intent"]["flee"] / windows
    assert counts["expert"] < counts["chaser"], counts


def quiet_state(**overrides: Any) -> tuple[np.ndarray, Any]:
    env = make_arena_env(1, size=32, spawn_rate_start=0.0, spawn_rate_end=0.0, **overrides)
    obs, _ = env.reset(seed=0)
    env.close()
    return np.array(obs["state"][0]), env.config


def test_projection_of_a_boss_free_state() -> None:
    state, cfg = quiet_state()
    view = StateView(state, cfg)
    assert not view.boss_alive and not view.enemy_valid.any() and view.hp_frac == 1.0
    assert project("fight_boss", view, cfg) == "kite"  # no boss alive
    assert project("heal", view, cfg) == "kite"  # HP already full
    assert project("flee", view, cfg) == "kite"  # nothing to flee from
    assert project("kite", view, cfg) == "kite" and project("explore", view, cfg) == "explore"
    if not view.gem_valid.any():
        assert project("collect_xp", view, cfg) == "explore"
    boss = state.copy()
    boss[view.layout["wave"][0] + WAVE["boss_alive"]] = 1.0
    assert project("fight_boss", StateView(boss, cfg), cfg) == "fight_boss"  # feasible: kept
    hurt = state.copy()
    hurt[view.layout["player"][0] + PLAYER["hp_frac"]] = 0.5
    assert project("heal", StateView(hurt, cfg), cfg) == "heal"
    no_regen, cfg0 = quiet_state(player_regen=0.0)
    no_regen[view.layout["player"][0] + PLAYER["hp_frac"]] = 0.5
    assert project("heal", StateView(no_regen, cfg0), cfg0) == "flee"  # hurt, no regeneration


class IntentRecorder(ScriptedSystem1):
    """The scripted expert, remembering the intent System 1 was given at every tick."""

    def __init__(self, image_size: int) -> None:
        super().__init__(image_size=image_size)
        self.seen: list[Any] = []

    def act(self, obs: Any, hidden: Any, intent: Any = None, *args: Any, **kw: Any) -> Any:
        self.seen.append(intent)
        return super().act(obs, hidden, intent, *args, **kw)


def test_projection_in_the_controller_keeps_system1_off_fight_boss_before_a_boss() -> None:
    agent = IntentRecorder(image_size=32)
    planner = AsyncPlanner(Planner(FixedIntent("fight_boss"), config=PlannerConfig(samples=1)), period_s=0.5)
    res = run_two_systems(agent, planner, episodes=1, seed=0, max_steps=200)  # the first boss comes at tick 400
    assert res["intent_projected"].get("fight_boss_to_kite", 0) > 100, res
    assert INTENTS.index("fight_boss") not in agent.seen and INTENTS.index("kite") in agent.seen


def test_signatures_on_synthetic_windows() -> None:
    state, cfg = quiet_state()
    lay = StateView(state, cfg).layout
    first = state.copy()
    e0 = lay["enemies"][0]
    first[e0 : e0 + 7] = [0.1, 0.0, 0.1, 1.0, 0.0, 0.0, 1.0]  # one enemy, 0.1 view away
    far = first.copy()
    far[e0 : e0 + 3] = [0.4, 0.0, 0.4]
    c = MonitorConfig()
    assert signature_met("flee", StateView(first, cfg), StateView(far, cfg), c)[0]
    assert not signature_met("flee", StateView(far, cfg), StateView(first, cfg), c)[0]
    hurt = state.copy()
    hurt[lay["player"][0] + PLAYER["hp_frac"]] = 0.5
    assert signature_met("heal", StateView(hurt, cfg), StateView(state, cfg), c)[0]
    assert not signature_met("kite", StateView(state, cfg), StateView(hurt, cfg), c)[0]
    assert not signature_met("explore", StateView(state, cfg), StateView(state, cfg), c)[0]
    assert not signature_met("fight_boss", StateView(state, cfg), StateView(state, cfg), c)[0]  # no boss to hit
    with pytest.raises(ValueError, match="unknown intent"):
        signature_met("dance", StateView(state, cfg), StateView(state, cfg), c)


def test_play_agent_writes_the_safety_counters(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from metabonk.cli import app

    out, ms = tmp_path / "play.json", tmp_path / "ms"
    args = ["play", "agent", "expert", "--planner", "rule", "--max-steps", "300", "--json", str(out),
            "--mismatch-store", str(ms), "--playbook", str(tmp_path / "pb.sqlite")]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "loops detected" in result.output and "intent windows checked" in result.output
    doc = json.loads(out.read_text())["results"]
    assert doc["ticks"] == 300 and 0 < doc["game_ticks"] <= 300 and doc["loops_detected"] == 0
    assert doc["intent_windows"] + doc["intent_windows_cut"] >= 1 and doc["intent_projections"] >= 0
    assert len(EpisodeStore.open(ms)) == doc["intent_mismatches"]  # the store exists from the start


@pytest.mark.parametrize("extra", [["--mismatch-store", "BAD"], ["--no-safety", "--playbook", "x.sqlite"]])
def test_play_agent_bad_safety_options_are_one_line_errors(tmp_path: Path, extra: list[str]) -> None:
    import subprocess
    import sys

    bad = tmp_path / "not-a-store"
    bad.mkdir()
    (bad / "file").write_text("x")
    extra = [str(bad) if a == "BAD" else a for a in extra]
    p = subprocess.run([sys.executable, "-c", "from metabonk.cli import main; main()", "play", "agent", "expert",
                        "--max-steps", "5", *extra], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and lines[0].startswith("error:"), p.stderr
