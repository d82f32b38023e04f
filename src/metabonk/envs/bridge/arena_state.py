"""JSON game state of a served Arena game, read from its tensors (what a MegaBonk plugin would send).

Used by the server for envs that look like `ArenaVectorEnv` (`.config` and a `.game` with state dict `.s`);
positions are world units with y down as rendered, time is seconds at the spec's TICKS_PER_SECOND.
"""

from __future__ import annotations

import weakref
from typing import Any

from metabonk.envs.arena.spec import TICKS_PER_SECOND, UPGRADES

_MAX_HP: weakref.WeakKeyDictionary[Any, dict[tuple[float, ...], float]] = weakref.WeakKeyDictionary()
"""Per game object: max HP by upgrade counts (it only changes when a card is picked)."""
_KEYS = ("pos", "vel", "hp", "t", "level", "xp", "xp_next", "menu_open", "card_options",
         "e_pos", "e_hp", "e_maxhp", "e_alive", "e_elite", "upg")


def is_arena(env: Any) -> bool:
    inner = getattr(env, "unwrapped", env)
    s = getattr(getattr(inner, "game", None), "s", None)
    return isinstance(s, dict) and all(k in s for k in _KEYS) and hasattr(inner, "config")


def arena_state(env: Any, i: int, playing: bool) -> dict[str, Any]:
    """JSON state of game i (docs/bridge.md "Game state"); call only when `is_arena(env)`."""
    from metabonk.envs.arena.state import upgrade_stats

    inner = getattr(env, "unwrapped", env)
    game, cfg = inner.game, inner.config
    s = {k: game.s[k][i].detach().cpu() for k in _KEYS}
    upg = tuple(s["upg"].tolist())
    cache = _MAX_HP.setdefault(game, {})
    if upg not in cache:
        cache[upg] = float(upgrade_stats(cfg, s["upg"][None])["max_hp"][0])
    max_hp = cache[upg]
    n_boss = len(cfg.boss_times)
    alive = s["e_alive"].nonzero().flatten().tolist()
    enemies = [{"position": s["e_pos"][j].tolist(), "health": float(s["e_hp"][j]),
                "max_health": float(s["e_maxhp"][j]), "elite": bool(s["e_elite"][j]), "boss": j < n_boss}
               for j in alive]
    menu_open = bool(s["menu_open"])
    state: dict[str, Any] = {
        "player": {"position": s["pos"].tolist(), "velocity": s["vel"].tolist(), "health": float(s["hp"]),
                   "max_health": max_hp, "level": int(s["level"]), "xp": float(s["xp"]),
                   "xp_next": float(s["xp_next"])},
        "time": float(s["t"]) / TICKS_PER_SECOND, "playing": playing, "paused": menu_open, "scene": "arena",
        "menu": "level_up" if menu_open else None, "enemies": enemies,
    }
    if menu_open:
        state["level_up_options"] = [{"index": k, "id": UPGRADES[int(c)], "name": UPGRADES[int(c)]}
                                     for k, c in enumerate(s["card_options"].tolist())]
    return state
