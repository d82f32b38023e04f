"""Behavioural signatures of System 1's intents, measured in the real Arena game, and an intent classifier.

A rollout gives every game a fixed-length segment per intent (a shuffled cycle through INTENTS); each
segment's Arena states become behaviour features (`segment_features`). Each intent has one signature
feature that it should push highest (`SIGNATURES`): XP per minute for collect_xp, distance to the nearest
enemy for flee, boss damage for fight_boss, HP regained for heal, area covered for explore, time in the
kiting band for kite. `summarize_signatures` gives per-intent means with 95 % intervals (bootstrap over
games) and whether an intent's interval on its own signature lies above every other intent's;
`IntentClassifier` (multinomial logistic regression, numpy) recovers the commanded intent from the features.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from metabonk.common.errors import MetabonkError
from metabonk.common.intents import INTENTS
from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.spec import TICKS_PER_SECOND, StateView
from metabonk.policy.evaluate import bootstrap_ci

SIGNATURES: dict[str, str] = {
    "kite": "kite_band_fraction",
    "collect_xp": "xp_per_min",
    "fight_boss": "boss_damage_per_s",
    "flee": "nearest_enemy_distance",
    "heal": "hp_regained_per_min",
    "explore": "cells_per_s",
}
"""Intent -> the feature that intent should make highest."""
FEATURES: tuple[str, ...] = (*SIGNATURES.values(), "hp_net_per_min", "spread", "speed", "dash_fraction",
                              "still_fraction", "gem_distance", "approach", "wall_distance")
"""Behaviour features of a segment, in classifier order."""
KITE_BAND = (2.5, 5.0)
"""Nearest-enemy distances (world units) counted as kiting: inside the weapon's range, outside contact."""
CELL = 4.0
"""Side of the grid cells whose visits measure area covered (world units)."""


def _total_xp(view: StateView[np.ndarray], cfg: ArenaConfig) -> np.ndarray:
    """XP collected since the start, from the level and the XP bar (xp to next = base + growth * level)."""
    lvl = np.round(view.level)
    spent = lvl * cfg.xp_base + cfg.xp_growth * lvl * (lvl - 1) / 2
    return spent + view.player("xp_frac") * (cfg.xp_base + cfg.xp_growth * lvl)


def segment_features(states_TD: np.ndarray, cfg: ArenaConfig) -> dict[str, float]:
    """Behaviour features of consecutive Arena states [T, D] of one game (menu ticks are left out of time
    and motion; the pick that closes a menu still counts toward XP and HP). Boss damage is NaN when no boss
    is alive in at least half the play ticks."""
    view = StateView(states_TD, cfg)
    play = ~view.menu_open
    ticks = max(int(play.sum()), 1)
    minutes = ticks / TICKS_PER_SECOND / 60.0
    valid = view.enemy_valid
    dist = np.where(valid, view.enemy_distance, np.inf).min(1)
    dist = np.where(np.isfinite(dist), dist, cfg.view_size)[play]
    hp = view.hp
    xp = _total_xp(view, cfg)
    is_boss = valid & (view.enemy("boss") > 0.5)
    boss_hp = np.where(is_boss, view.enemy("hp_frac"), np.inf).min(1)
    seen = np.isfinite(boss_hp[1:]) & np.isfinite(boss_hp[:-1])
    bh = np.where(np.isfinite(boss_hp), boss_hp, 0.0)
    drop = np.where(seen, bh[:-1] - bh[1:], 0.0)
    boss_dmg = float(np.clip(drop, 0.0, 0.5).sum()) * 100.0 / (ticks / TICKS_PER_SECOND)  # % of its HP per s
    boss_time = float((view.boss_alive & play).sum()) / ticks
    pos = view.position
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1)[play[1:] & play[:-1]]
    cells = {tuple(c) for c in np.floor(pos[play] / CELL).astype(np.int64)}
    motion = np.diff(pos, axis=0)
    k = np.where(valid, view.enemy_distance, np.inf).argmin(1)
    toward = view.enemy_offset[np.arange(len(k)), k][:-1]
    cos = (motion * toward).sum(1) / (np.linalg.norm(motion, axis=1) * np.linalg.norm(toward, axis=1) + 1e-6)
    A = cfg.arena_size
    wall = np.minimum(pos, A - pos).min(1)[play]
    gem = np.where(view.gem_valid[:, 0], np.linalg.norm(view.gem_offset[:, 0], axis=1), cfg.view_size)[play]
    return {
        "kite_band_fraction": float(((dist >= KITE_BAND[0]) & (dist <= KITE_BAND[1])).mean()),
        "xp_per_min": float(max(xp[-1] - xp[0], 0.0)) / minutes,
        "boss_damage_per_s": boss_dmg if boss_time >= 0.5 else float("nan"),
        "nearest_enemy_distance": float(dist.mean()),
        "hp_net_per_min": float(hp[-1] - hp[0]) / minutes,
        "spread": float(np.sqrt(pos[play].var(0).sum())),
        "hp_regained_per_min": float(np.clip(np.diff(hp), 0.0, None).sum()) / minutes,
        "cells_per_s": len(cells) / (ticks / TICKS_PER_SECOND),
        "speed": float(step.mean()) if step.size else 0.0,
        "dash_fraction": float((view.player("dashing") > 0.5)[play].mean()),
        "still_fraction": float((step < 1e-4).mean()) if step.size else 1.0,
        "gem_distance": float(gem.mean()),
        "approach": float(cos[play[1:] & play[:-1] & valid.any(1)[:-1]].mean()) if step.size else 0.0,
        "wall_distance": float(wall.mean()),
    }


# ---------------------------------------------------------------------------------------------- rollouts
class IntentController(Protocol):
    """Anything that picks a batch of Arena actions for a batch of commanded intents."""

    def reset(self, env: Any) -> None: ...

    def act(self, obs: dict[str, Any], info: dict[str, Any], intents: np.ndarray) -> np.ndarray: ...


class ExpertIntentController:
    """The scripted intent expert (metabonk.envs.arena.intent_expert) as an IntentController."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.expert: Any = None

    def reset(self, env: Any) -> None:
        from metabonk.envs.arena.intent_expert import IntentExpert

        self.expert = IntentExpert(getattr(env, "config", None), seed=self.seed)

    def act(self, obs: dict[str, Any], info: dict[str, Any], intents: np.ndarray) -> np.ndarray:
        return np.asarray(self.expert(obs, info, intents), dtype=np.int64)


class AgentIntentController:
    """A System 1 Agent commanded per row by `intents`; the hidden state carries across intent switches."""

    def __init__(self, agent: Any, device: torch.device | str = "cpu", greedy: bool = False, seed: int = 0) -> None:
        self.agent = agent.eval()
        self.device = torch.device(device)
        self.greedy, self.seed = greedy, seed
        self.hidden = torch.zeros(0)

    def reset(self, env: Any) -> None:
        torch.manual_seed(self.seed)
        self.hidden = self.agent.initial_state(env.num_envs, self.device)

    def act(self, obs: dict[str, Any], info: dict[str, Any], intents: np.ndarray) -> np.ndarray:
        from metabonk.envs.torch_obs import obs_to_torch

        t_obs = obs_to_torch(obs, info, self.device)
        menu = torch.as_tensor(np.asarray(info["menu_open"]), device=self.device)
        it = torch.as_tensor(intents, device=self.device, dtype=torch.long)
        action, self.hidden, _ = self.agent.act(t_obs, self.hidden, it, menu, greedy=self.greedy)
        return action.cpu().numpy().astype(np.int64)


@dataclass
class Segments:
    """Segments of a rollout: intent id [S], game (seed offset) [S], features [S, F] in FEATURES order."""

    intent: np.ndarray
    game: np.ndarray
    features: np.ndarray


def intent_cycle(games: int, segments: int, seed: int) -> np.ndarray:
    """[games, segments] intent ids: each game runs shuffled cycles through every intent."""
    rng = np.random.default_rng(seed)
    reps = -(-segments // len(INTENTS))
    return np.stack([np.concatenate([rng.permutation(len(INTENTS)) for _ in range(reps)])[:segments]
                     for _ in range(games)])


def rollout_segments(
    controller: IntentController, episodes: int, seed: int = 0, env_spec: str = "arena",
    segment_s: float = 4.0, settle_s: float = 0.5, pixels: bool = True, size: int = 64,
    max_steps: int = 4000, on_step: Callable[[int], None] | None = None,
) -> Segments:
    """Play one episode per seed seed..seed+episodes-1 with each game's intent switching every `segment_s`
    seconds; a segment's first `settle_s` seconds (the switch) are dropped, as are segments cut to less than
    half their length by the episode's end."""
    from metabonk.envs import make_env

    if episodes < 1:
        raise MetabonkError(f"--episodes must be ≥ 1, got {episodes}")
    seg, settle = int(segment_s * TICKS_PER_SECOND), int(settle_s * TICKS_PER_SECOND)
    if seg < 2 * settle + 2:
        raise MetabonkError(f"segments of {segment_s}s are too short for a {settle_s}s settle")
    env = make_env(env_spec, num_envs=episodes, size=size, seed=seed, pixels=pixels)
    cfg: ArenaConfig = env.config  # type: ignore[attr-defined]
    plan = intent_cycle(episodes, max_steps // seg + 1, seed)
    states: list[np.ndarray] = []
    alive = np.ones(episodes, bool)
    lengths = np.full(episodes, max_steps, np.int64)
    try:
        obs, info = env.reset(seed=seed)
        controller.reset(env)
        for t in range(max_steps):
            states.append(np.asarray(obs["state"], np.float32).copy())
            obs, _, term, trunc, info = env.step(controller.act(obs, info, plan[:, t // seg]))
            ended = alive & (np.asarray(term) | np.asarray(trunc))
            lengths[ended] = t + 1
            alive &= ~ended
            if on_step is not None:
                on_step(t)
            if not alive.any():
                break
    finally:
        env.close()
    S = np.stack(states, axis=1)  # [games, T, D]
    rows: list[tuple[int, int, list[float]]] = []
    for g in range(episodes):
        for k in range(int(lengths[g]) // seg + 1):
            a, b = k * seg + settle, min((k + 1) * seg, int(lengths[g]))
            if b - a < (seg - settle) // 2:
                continue
            f = segment_features(S[g, a:b], cfg)
            rows.append((int(plan[g, k]), g, [f[name] for name in FEATURES]))
    return Segments(np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
                    np.array([r[2] for r in rows], np.float64).reshape(len(rows), len(FEATURES)))


# ---------------------------------------------------------------------------------------------- figures
def _num(x: float) -> float | None:
    """A figure for JSON: None where it is undefined (NaN)."""
    return float(x) if np.isfinite(x) else None


def _game_means(values: np.ndarray, games: np.ndarray) -> np.ndarray:
    ok = np.isfinite(values)
    return np.array([values[ok & (games == g)].mean() for g in np.unique(games[ok])])


def summarize_signatures(seg: Segments) -> dict[str, Any]:
    """Per signature: each intent's mean with a 95 % bootstrap interval over games (per-game means of its
    segments), and whether the signature's own intent lies above every other intent with intervals apart."""
    out: dict[str, Any] = {}
    for owner, feat in SIGNATURES.items():
        col = seg.features[:, FEATURES.index(feat)]
        per: dict[str, Any] = {}
        for i, name in enumerate(INTENTS):
            m = seg.intent == i
            gm = _game_means(col[m], seg.game[m])
            per[name] = {"mean": _num(gm.mean()) if gm.size else None,
                         "ci95": list(bootstrap_ci(gm)) if gm.size else [None, None],
                         "games": int(gm.size), "segments": int((m & np.isfinite(col)).sum())}
        lo = per[owner]["ci95"][0]
        overlaps = [n for n in INTENTS if n != owner and per[n]["ci95"][1] is not None
                    and (lo is None or not lo > per[n]["ci95"][1])]
        out[owner] = {"signature": feat, "by_intent": per, "apart": not overlaps, "overlapping": overlaps}
    return out


def intent_lift(seg: Segments) -> dict[str, float]:
    """Per intent: how far it lifts its own signature, in standard deviations over segments: (mean under the
    intent − mean of the other intents' means) / std of the signature over all segments. ~0 for a policy that
    ignores its intent."""
    out: dict[str, float] = {}
    for owner, feat in SIGNATURES.items():
        col = seg.features[:, FEATURES.index(feat)]
        means = [np.nanmean(col[seg.intent == j]) if np.isfinite(col[seg.intent == j]).any() else np.nan
                 for j in range(len(INTENTS))]
        others = np.nanmean([m for j, m in enumerate(means) if j != INTENTS.index(owner)])
        sd = np.nanstd(col)
        out[owner] = float((means[INTENTS.index(owner)] - others) / sd) if sd > 0 and np.isfinite(others) else 0.0
    return out


@dataclass
class ClassifierConfig:
    """Multinomial logistic regression over standardised behaviour features."""

    features: tuple[str, ...] = FEATURES
    classes: int = len(INTENTS)
    l2: float = 1e-3
    lr: float = 0.5
    steps: int = 2000


class IntentClassifier:
    """Commanded intent from a segment's behaviour features (NaN features read as 0 after standardising)."""

    def __init__(self, cfg: ClassifierConfig | None = None) -> None:
        self.cfg = cfg or ClassifierConfig()
        f, c = len(self.cfg.features), self.cfg.classes
        self.mu, self.sd = np.zeros(f), np.ones(f)
        self.W, self.b = np.zeros((f, c)), np.zeros(c)

    def _z(self, x: np.ndarray) -> np.ndarray:
        return np.nan_to_num((x - self.mu) / self.sd, nan=0.0)

    def fit(self, x: np.ndarray, y: np.ndarray) -> IntentClassifier:
        self.mu = np.nanmean(x, 0)
        self.mu = np.where(np.isfinite(self.mu), self.mu, 0.0)
        sd = np.nanstd(x, 0)
        self.sd = np.where(np.isfinite(sd) & (sd > 1e-9), sd, 1.0)
        z, onehot = self._z(x), np.eye(self.cfg.classes)[y]
        for _ in range(self.cfg.steps):
            p = self.proba_z(z)
            g = (p - onehot) / len(y)
            self.W -= self.cfg.lr * (z.T @ g + self.cfg.l2 * self.W)
            self.b -= self.cfg.lr * g.sum(0)
        return self

    def proba_z(self, z: np.ndarray) -> np.ndarray:
        logits = z @ self.W + self.b
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.proba_z(self._z(x)).argmax(1)

    def save(self, path: str | Path) -> None:
        """Weights as safetensors plus the config as JSON in directory `path`."""
        from safetensors.numpy import save_file

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        save_file({"mu": self.mu, "sd": self.sd, "W": self.W, "b": self.b}, str(p / "model.safetensors"))
        (p / "config.json").write_text(json.dumps({"kind": "intent_classifier", **asdict(self.cfg)}))

    @classmethod
    def load(cls, path: str | Path) -> IntentClassifier:
        from safetensors.numpy import load_file

        p = Path(path)
        raw = json.loads((p / "config.json").read_text())
        if raw.pop("kind", None) != "intent_classifier":
            raise MetabonkError(f"{p} is not an intent classifier")
        raw["features"] = tuple(raw["features"])
        clf = cls(ClassifierConfig(**raw))
        t = load_file(str(p / "model.safetensors"))
        clf.mu, clf.sd, clf.W, clf.b = t["mu"], t["sd"], t["W"], t["b"]
        return clf


def classifier_figures(train: Segments, test: Segments) -> dict[str, Any]:
    """Fit on `train`'s segments, score on `test`'s: accuracy (95 % interval over test games), per-intent
    recall and the confusion matrix (rows: commanded intent, columns: predicted)."""
    clf = IntentClassifier().fit(train.features, train.intent)
    pred = clf.predict(test.features)
    hit = (pred == test.intent).astype(np.float64)
    conf = np.zeros((len(INTENTS), len(INTENTS)), np.int64)
    np.add.at(conf, (test.intent, pred), 1)
    recall = {n: float(hit[test.intent == i].mean()) if (test.intent == i).any() else None
              for i, n in enumerate(INTENTS)}
    return {"accuracy": float(hit.mean()), "accuracy_ci95": list(bootstrap_ci(_game_means(hit, test.game))),
            "chance": 1.0 / len(INTENTS), "train_segments": len(train.intent), "test_segments": len(test.intent),
            "recall": recall, "confusion": conf.tolist(), "classes": list(INTENTS)}
