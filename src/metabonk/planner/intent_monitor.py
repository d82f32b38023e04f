"""Dual-policy consistency: does System 1 carry out System 2's intent? Plus the safety projection that keeps
System 2 from commanding what the game state makes impossible.

**Safety projection** (`project`): a command is first checked against the game state (the feasibility table
`FEASIBILITY`); an infeasible one is mapped to the nearest feasible intent:

| intent      | feasible when                                  | otherwise                           |
|-------------|------------------------------------------------|-------------------------------------|
| fight_boss  | a boss is alive                                | kite                                |
| heal        | HP below max and regeneration > 0              | flee (no regen) / kite (HP full)    |
| collect_xp  | a gem is in view                               | explore                             |
| flee        | an enemy is in view                            | kite                                |
| kite        | always                                         |                                     |
| explore     | always                                         |                                     |

**Signatures** (`signature_met`): every `deadline` game ticks of one (projected) intent (a change of intent
opens a new window; the cut one gets no verdict), the window from its
first to its last state must show the intent's behaviour, read through `StateView`:
flee: the nearest enemy is `flee_margin` farther (or beyond `safe_distance`, or none in view);
collect_xp: XP progress (level + xp/xp_next) rose; heal: HP rose; fight_boss: the lowest boss HP fraction in
view fell (or no boss is alive any more); kite: HP lost < `kite_hp_loss` of max HP; explore: the player got
`explore_distance` from where the window began. A window without its signature is a **mismatch**: counted,
its segment (frames, states, actions, rewards, intent) appended to a mismatch episode store for training, and
recorded in the playbook as one entry per intent (tags `mismatch`, `intent:<name>`), whose `harmful` count
goes up by one per further mismatch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from metabonk.common.intents import INTENTS
from metabonk.data.store import EpisodeStore
from metabonk.envs.arena.spec import NUM_ACTIONS, UPGRADES, LayoutConfig, StateView
from metabonk.planner.playbook import Entry, PlaybookStore

FEASIBILITY: dict[str, str] = {
    "fight_boss": "a boss is alive, else kite",
    "heal": "HP below max and regeneration > 0, else flee (no regen) or kite (HP full)",
    "collect_xp": "a gem is in view, else explore",
    "flee": "an enemy is in view, else kite",
    "kite": "always",
    "explore": "always",
}
"""The feasibility table of the safety projection (documented in the module docstring and docs/planner.md)."""


class RegenConfig(LayoutConfig, Protocol):
    """The config fields the heal check reads (ArenaConfig has them)."""

    player_regen: float
    gain_regen: float
    upgrade_decay: float


@dataclass
class MonitorConfig:
    """Tunables of the signature checks (ticks are game ticks, 60 per second)."""

    deadline: int = 120
    """Ticks an intent has to show its signature (2 s: one planner period); a command held for less gets no
    verdict (counted as a cut window)."""
    flee_margin: float = 1.0
    safe_distance: float = 8.0
    kite_hp_loss: float = 0.05
    explore_distance: float = 4.0
    project: bool = True
    """Apply the safety projection before System 1 sees the intent."""

    def __post_init__(self) -> None:
        if self.deadline < 2:
            raise ValueError(f"MonitorConfig.deadline must be >= 2 ticks, got {self.deadline}")


def regeneration(view: StateView[np.ndarray], cfg: RegenConfig) -> float:
    """HP regenerated per tick at this state (base regen plus the regen picks, with diminishing returns)."""
    k = float(view.upgrade_counts[UPGRADES.index("regen")])
    d = cfg.upgrade_decay
    return cfg.player_regen + (1.0 - d**k) / (1.0 - d) * cfg.gain_regen


def project(intent: str, view: StateView[np.ndarray], cfg: RegenConfig) -> str:
    """The nearest feasible intent to `intent` at this state (itself when feasible); see FEASIBILITY."""
    if intent == "fight_boss" and not bool(view.boss_alive):
        return "kite"
    if intent == "heal":
        if float(view.hp_frac) >= 1.0:
            return "kite"
        if regeneration(view, cfg) <= 0.0:
            return "flee"
    if intent == "collect_xp" and not bool(view.gem_valid.any()):
        return "explore"
    if intent == "flee" and not bool(view.enemy_valid.any()):
        return "kite"
    return intent


def _nearest_enemy(view: StateView[np.ndarray]) -> float:
    valid = view.enemy_valid
    return float(view.enemy_distance[valid].min()) if valid.any() else math.inf


def _boss_hp(view: StateView[np.ndarray]) -> float:
    rows = view.enemy_valid & (view.enemy("boss") > 0.5)
    return float(view.enemy("hp_frac")[rows].min()) if rows.any() else math.nan


def _progress(view: StateView[np.ndarray]) -> float:
    return float(view.level) + float(view.player("xp_frac"))


def signature_met(intent: str, first: StateView[np.ndarray], last: StateView[np.ndarray],
                  cfg: MonitorConfig) -> tuple[bool, str]:
    """Whether a window from `first` to `last` shows `intent`'s behaviour, and what was measured."""
    if intent == "flee":
        a, b = _nearest_enemy(first), _nearest_enemy(last)
        return b >= cfg.safe_distance or b >= a + cfg.flee_margin, f"nearest enemy {a:.1f} -> {b:.1f} units"
    if intent == "collect_xp":
        a, b = _progress(first), _progress(last)
        return b > a, f"XP progress {a:.3f} -> {b:.3f} levels"
    if intent == "heal":
        a, b = float(first.hp), float(last.hp)
        return b > a, f"HP {a:.1f} -> {b:.1f}"
    if intent == "fight_boss":
        a, b = _boss_hp(first), _boss_hp(last)
        gone = bool(first.boss_alive) and not bool(last.boss_alive)
        return gone or b < a, f"boss HP {a:.3f} -> {b:.3f}"
    if intent == "kite":
        loss = float(first.hp - last.hp) / max(float(first.max_hp), 1e-6)
        return loss < cfg.kite_hp_loss, f"HP lost {100 * loss:.1f} % of max"
    if intent == "explore":
        moved = float(np.linalg.norm(last.position - first.position))
        return moved >= cfg.explore_distance, f"moved {moved:.1f} units"
    raise ValueError(f"unknown intent '{intent}'")


@dataclass
class _Segment:
    intent: str
    frames: list[np.ndarray] = field(default_factory=list)
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)


class IntentMonitor:
    """Online signature checks per intent window; mismatches go to `counts`, a store and the playbook."""

    def __init__(self, cfg: MonitorConfig, arena_cfg: RegenConfig, store_path: str | Path | None = None,
                 playbook: PlaybookStore | None = None, meta: dict[str, Any] | None = None) -> None:
        self.cfg, self.arena_cfg = cfg, arena_cfg
        self.store_path = None if store_path is None else Path(store_path)
        self.store: EpisodeStore | None = None
        self.playbook = playbook
        self.meta = dict(meta or {})
        self.counts: Counter[str] = Counter()
        self.mismatches: list[dict[str, Any]] = []
        self._seg: _Segment | None = None

    def reset(self) -> None:
        """A new episode: the open window is dropped."""
        self._seg = None

    def project(self, intent: int | None, state: np.ndarray) -> int | None:
        """The intent System 1 should get at `state` (the projection, when on); counts each projection."""
        if intent is None or not self.cfg.project:
            return intent
        name = INTENTS[intent]
        to = project(name, StateView(state, self.arena_cfg), self.arena_cfg)
        if to != name:
            self.counts["projections"] += 1
            self.counts[f"projected_{name}_to_{to}"] += 1
        return INTENTS.index(to)

    def observe(self, frame: np.ndarray, state: np.ndarray, intent: int | None, reward: float) -> bool | None:
        """One game tick: the frame and state System 1 acts on now, the intent it is given, the reward of the
        previous tick's action. Returns the window's verdict when one closes (True: signature met)."""
        if intent is None:
            self._seg = None
            return None
        name = INTENTS[intent]
        seg = self._seg
        if seg is None or seg.intent != name:  # a new command opens a new window at this frame
            if seg is not None and seg.actions:
                self.counts["windows_cut"] += 1
            self._seg = _Segment(name, [frame.copy()], [np.array(state, np.float32)])
            return None
        seg.frames.append(frame.copy())
        seg.states.append(np.array(state, np.float32))
        seg.rewards.append(float(reward))
        if len(seg.actions) < self.cfg.deadline:
            return None
        first, last = StateView(seg.states[0], self.arena_cfg), StateView(seg.states[-1], self.arena_cfg)
        ok, measured = signature_met(name, first, last, self.cfg)
        self.counts["windows"] += 1
        self.counts[f"windows_{name}"] += 1
        if not ok:
            self._mismatch(seg, measured)
        self._seg = _Segment(name, [seg.frames[-1]], [seg.states[-1]])
        return ok

    def record_action(self, action: int) -> None:
        """The action sent at the frame last observed (only game ticks: not while the menu is open)."""
        if self._seg is not None and len(self._seg.actions) < len(self._seg.frames):
            self._seg.actions.append(int(action))

    def _mismatch(self, seg: _Segment, measured: str) -> None:
        self.counts["mismatches"] += 1
        self.counts[f"mismatches_{seg.intent}"] += 1
        record: dict[str, Any] = {"intent": seg.intent, "ticks": len(seg.actions), "measured": measured}
        if self.store_path is not None:
            if self.store is None:
                self.store = EpisodeStore.create(self.store_path, "arena", NUM_ACTIONS, int(seg.frames[0].shape[0]),
                                                 meta={"kind": "intent-mismatch"}, exist_ok=True)
            episode = {
                "obs": np.stack(seg.frames),
                "state": np.stack(seg.states),
                "action": np.asarray(seg.actions, np.int64),
                "reward": np.asarray(seg.rewards, np.float32),
                "terminated": np.zeros(len(seg.actions), bool),
                "intent": np.full(len(seg.actions), INTENTS.index(seg.intent), np.int64),
            }
            record["store_index"] = self.store.append(episode, meta={**self.meta, **record, "kind": "intent-mismatch"})
        if self.playbook is not None:
            record["playbook_version"] = self._playbook_entry(seg.intent, measured)
        self.mismatches.append(record)

    def _playbook_entry(self, intent: str, measured: str) -> int:
        """Add (or count one more against) the playbook entry saying System 1 does not carry out `intent`."""
        assert self.playbook is not None
        entries = self.playbook.entries()
        tags = ["mismatch", f"intent:{intent}"]
        old = next((e for e in entries if set(tags) <= set(e.tags)), None)
        if old is None:
            text = (f"System 1 did not carry out '{intent}' within {self.cfg.deadline} ticks ({measured}); "
                    f"prefer another intent in this situation until System 1 is retrained on the mismatch store")
            entries.append(Entry(self.playbook.new_id(), text, tags, harmful=1))
            reason = f"intent monitor: '{intent}' not carried out by System 1"
        else:
            old.harmful += 1
            reason = f"intent monitor: '{intent}' not carried out again ({old.harmful} times)"
        return self.playbook.commit(entries, reason)

    def stats(self) -> dict[str, Any]:
        """Counters for the play JSON: windows, mismatches (per intent), projections (per mapping)."""
        c = self.counts
        out: dict[str, Any] = {"intent_windows": int(c["windows"]), "intent_windows_cut": int(c["windows_cut"]),
                               "intent_mismatches": int(c["mismatches"]), "intent_projections": int(c["projections"])}
        out["intent_mismatch_by_intent"] = {i: int(c[f"mismatches_{i}"]) for i in INTENTS if c[f"windows_{i}"]}
        out["intent_windows_by_intent"] = {i: int(c[f"windows_{i}"]) for i in INTENTS if c[f"windows_{i}"]}
        out["intent_projected"] = {k[len("projected_"):]: int(v) for k, v in c.items() if k.startswith("projected_")}
        if self.store is not None:
            out["mismatch_store"] = str(self.store.path)
            out["mismatch_store_episodes"] = len(self.store)
        return out
