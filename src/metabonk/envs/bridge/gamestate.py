"""Game state on the bridge: the JSON state a game sends, its fixed-size float encoding, and info forwarding.

A game that sends no `vector` gets MetaBonk's state vector from `encode_state` (fixed layout below). A served
MetaBonk env sends its own state vector and its `info` row, which the client turns back into arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

K_ENEMIES = 8
NUM_OPTIONS = 3
_PLAYER_FIELDS = 12  # x, y, vx, vy, hp, max_hp, hp_frac, time, playing, paused, menu_open, level
STATE_DIM = _PLAYER_FIELDS + 4 * K_ENEMIES + NUM_OPTIONS
"""Length of `encode_state`'s vector: 12 player/game fields, 4 per nearest enemy, 1 per level-up option."""


def _xy(v: Any) -> tuple[float, float]:
    if isinstance(v, list) and len(v) >= 2:
        return float(v[0]), float(v[1])
    return 0.0, 0.0


def encode_state(state: dict[str, Any]) -> np.ndarray:
    """Fixed-size float32 vector of a game's JSON state (missing fields read as 0).

    Layout: player x, y, vx, vy, health, max_health, health fraction, time (s), playing, paused, menu open,
    level; then for the K_ENEMIES nearest enemies (by distance, padded): dx, dy, health, present; then one
    flag per level-up option slot present.
    """
    out = np.zeros(STATE_DIM, np.float32)
    player = state.get("player") or {}
    px, py = _xy(player.get("position"))
    vx, vy = _xy(player.get("velocity"))
    hp = float(player.get("health", 0.0))
    max_hp = float(player.get("max_health", 0.0))
    out[:_PLAYER_FIELDS] = (
        px, py, vx, vy, hp, max_hp, hp / max_hp if max_hp > 0 else 0.0, float(state.get("time", 0.0)),
        float(bool(state.get("playing", False))), float(bool(state.get("paused", False))),
        float(state.get("menu") is not None), float(player.get("level", 0)),
    )
    enemies = []
    for e in state.get("enemies") or []:
        ex, ey = _xy(e.get("position"))
        enemies.append((ex - px, ey - py, float(e.get("health", 0.0))))
    enemies.sort(key=lambda t: t[0] * t[0] + t[1] * t[1])
    for k, (dx, dy, h) in enumerate(enemies[:K_ENEMIES]):
        o = _PLAYER_FIELDS + 4 * k
        out[o:o + 4] = (dx, dy, h, 1.0)
    for opt in state.get("level_up_options") or []:
        idx = int(opt.get("index", -1))
        if 0 <= idx < NUM_OPTIONS:
            out[_PLAYER_FIELDS + 4 * K_ENEMIES + idx] = 1.0
    return out


def info_row_to_json(info: dict[str, Any], i: int) -> dict[str, Any]:
    """Row i of a vector env's info as JSON: numeric/bool arrays only (final_obs and objects dropped)."""
    row: dict[str, Any] = {}
    for key, value in info.items():
        if key.startswith("_") or key == "final_obs" or not isinstance(value, np.ndarray):
            continue
        if value.dtype.kind not in "biuf" or value.ndim == 0 or i >= value.shape[0]:
            continue
        item = value[i]
        if item.dtype.kind == "f" and not np.all(np.isfinite(item)):
            continue  # JSON has no NaN/inf; such a value is not forwarded
        row[key] = item.tolist()
    return row


def info_row_from_json(row: dict[str, Any]) -> dict[str, np.ndarray]:
    """Inverse of info_row_to_json (one env): bool -> bool, int -> int64, float -> float32, leading dim 1."""
    out: dict[str, np.ndarray] = {}
    for key, value in row.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64)
        elif arr.dtype.kind != "b":
            continue
        out[key] = arr[None]
    return out


def served_state(env: Any, info: dict[str, Any], i: int, step: int, playing: bool,
                 name: str) -> dict[str, Any]:
    """The JSON state a served MetaBonk env reports: the env's own `bridge_state(i)` when it has one, else
    what the vector-env info tells (tick count as time, level-up menu and its card ids)."""
    from metabonk.envs.bridge.arena_state import arena_state, is_arena

    hook = getattr(getattr(env, "unwrapped", env), "bridge_state", None)
    if callable(hook):
        return dict(hook(i))
    if is_arena(env) and playing:  # after an episode end the env already holds the next episode's game
        return arena_state(env, i, playing)
    menu_open = bool(np.asarray(info.get("menu_open", [False]))[i]) if "menu_open" in info else False
    state: dict[str, Any] = {"time": float(step), "playing": playing, "paused": menu_open, "scene": name,
                             "menu": "level_up" if menu_open else None}
    if menu_open and "card_options" in info:
        cards = np.asarray(info["card_options"])[i].tolist()
        state["level_up_options"] = [{"index": k, "id": int(c)} for k, c in enumerate(cards)]
    return state
