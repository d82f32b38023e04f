"""Arena game state as a dict of batched tensors, upgrade stats, and the fixed-size state vector.

Every tensor has the batch (game) dimension first. Entity tensors have a fixed slot count with an
`*_alive` mask. Enemy slots `[0, num_bosses)` are reserved for bosses. The state vector's layout and
field names are the contract in `metabonk.envs.arena.spec`; `state_vector` writes them in that order.
"""

from __future__ import annotations

import math

import torch

from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.spec import (
    ENEMY_FIELDS,
    GEM_FIELDS,
    GOLD_SCALE,
    LEVEL_SCALE,
    MAX_HP_SCALE,
    NUM_UPGRADES,
    PLAYER_FIELDS,
    UPGRADE_SCALE,
    UPGRADES,
    WAVE_FIELDS,
    state_dim,
    state_layout,
)

__all__ = ["NUM_UPGRADES", "State", "U", "state_dim", "state_layout"]

State = dict[str, torch.Tensor]
U = {name: i for i, name in enumerate(UPGRADES)}


def initial_state(
    cfg: ArenaConfig, n: int, device: torch.device, gen: torch.Generator, rows: torch.Tensor | None = None
) -> State:
    """Fresh games: player near the centre with full HP, no entities, clock at zero.

    With `rows` (int64 [k] indices into n games) only those k games are built, from the same random draws
    as the full n, so restarting some games leaves the generator exactly where restarting all would.
    """
    f32 = {"device": device, "dtype": torch.float32}
    E, P, G = cfg.max_enemies, cfg.max_projectiles, cfg.max_gems
    centre = cfg.arena_size / 2
    jitter = (torch.rand(n, 2, generator=gen, **f32) - 0.5) * (cfg.arena_size * 0.2)
    if rows is not None:
        jitter, n = jitter[rows], rows.shape[0]

    def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(*shape, device=device, dtype=dtype)

    b = torch.bool
    return {
        "pos": centre + jitter,
        "vel": zeros(n, 2),
        "hp": torch.full((n,), cfg.player_max_hp, **f32),
        "dash_cd": zeros(n),
        "dash_timer": zeros(n),
        "fire_timer": zeros(n),
        "xp": zeros(n),
        "xp_next": torch.full((n,), cfg.xp_base, **f32),
        "level": zeros(n),
        "gold": zeros(n),
        "t": zeros(n),
        "spawn_acc": zeros(n),
        "upg": zeros(n, NUM_UPGRADES),
        "menu_open": zeros(n, dtype=b),
        "menu_timer": zeros(n),
        "card_options": torch.arange(3, device=device).expand(n, 3).clone(),
        "done": zeros(n, dtype=b),
        "e_pos": zeros(n, E, 2),
        "e_hp": zeros(n, E),
        "e_maxhp": torch.ones(n, E, **f32),
        "e_alive": zeros(n, E, dtype=b),
        "e_elite": zeros(n, E, dtype=b),
        "p_pos": zeros(n, P, 2),
        "p_vel": zeros(n, P, 2),
        "p_life": zeros(n, P),
        "p_alive": zeros(n, P, dtype=b),
        "g_pos": zeros(n, G, 2),
        "g_val": zeros(n, G),
        "g_gold": zeros(n, G),
        "g_life": zeros(n, G),
        "g_alive": zeros(n, G, dtype=b),
    }


def blend(mask: torch.Tensor, new: State, old: State) -> State:
    """Rows of `new` where mask [N] is true, rows of `old` elsewhere (no host sync)."""
    out = {}
    for k, v in old.items():
        m = mask.view(-1, *([1] * (v.dim() - 1)))
        out[k] = torch.where(m, new[k], v)
    return out


def select(s: State, idx: torch.Tensor) -> State:
    """The games at indices `idx`."""
    return {k: v[idx] for k, v in s.items()}


_GAINS: dict[tuple[tuple[float, ...], str], torch.Tensor] = {}


def _gains(cfg: ArenaConfig, device: torch.device) -> torch.Tensor:
    """Per-upgrade gain [U] (projectile_count counts whole projectiles, without decay); cached per device so
    the step never copies host memory to the GPU (a pageable copy would synchronise the stream)."""
    g = {
        "damage": cfg.gain_damage,
        "cooldown": cfg.gain_cooldown,
        "projectile_count": 0.0,
        "area": cfg.gain_area,
        "move_speed": cfg.gain_move_speed,
        "max_hp": cfg.gain_max_hp,
        "regen": cfg.gain_regen,
        "armor": cfg.gain_armor,
        "magnet": cfg.gain_magnet,
        "xp_gain": cfg.gain_xp,
        "luck": cfg.gain_luck,
    }
    values = tuple(float(g[name]) for name in UPGRADES)
    key = (values, str(device))
    if key not in _GAINS:
        _GAINS[key] = torch.tensor(values, device=device, dtype=torch.float32)
    return _GAINS[key]


def upgrade_stats(cfg: ArenaConfig, upg: torch.Tensor) -> dict[str, torch.Tensor]:
    """Effective player stats [N] from the upgrade pick counts [N, U].

    Diminishing returns: after k picks an upgrade's effect is gain * (1 + d + ... + d^(k-1)).
    """
    d = cfg.upgrade_decay
    e = (1.0 - torch.pow(d, upg)) / (1.0 - d) * _gains(cfg, upg.device)
    return {
        "damage": cfg.proj_damage * (1.0 + e[:, U["damage"]]),
        "cooldown": cfg.fire_cooldown / (1.0 + e[:, U["cooldown"]]),
        "volley": torch.clamp(1.0 + upg[:, U["projectile_count"]], max=float(cfg.max_volley)),
        "area": 1.0 + e[:, U["area"]],
        "speed": cfg.player_speed * (1.0 + e[:, U["move_speed"]]),
        "max_hp": cfg.player_max_hp + e[:, U["max_hp"]],
        "regen": cfg.player_regen + e[:, U["regen"]],
        "armor": 1.0 - torch.clamp(e[:, U["armor"]], max=0.7),
        "magnet": cfg.magnet_radius + e[:, U["magnet"]],
        "xp_mult": 1.0 + e[:, U["xp_gain"]],
        "luck": 1.0 + e[:, U["luck"]],
    }


def state_vector(cfg: ArenaConfig, s: State) -> torch.Tensor:
    """The documented fixed-size float32 state vector [N, state_dim(cfg)]."""
    n = s["pos"].shape[0]
    dev = s["pos"].device
    st = upgrade_stats(cfg, s["upg"])
    A, V = cfg.arena_size, cfg.view_size
    menu = s["menu_open"].float()
    player_cols = {
        "x": s["pos"][:, 0] / A,
        "y": s["pos"][:, 1] / A,
        "vx": s["vel"][:, 0] / cfg.player_speed,
        "vy": s["vel"][:, 1] / cfg.player_speed,
        "hp_frac": s["hp"] / st["max_hp"],
        "max_hp": st["max_hp"] / MAX_HP_SCALE,
        "dash_cooldown": s["dash_cd"] / cfg.dash_cooldown,
        "dashing": (s["dash_timer"] > 0).float(),
        "level": s["level"] / LEVEL_SCALE,
        "xp_frac": s["xp"] / s["xp_next"],
        "gold": s["gold"] / GOLD_SCALE,
        "time_frac": s["t"] / cfg.stage_steps,
        "menu_open": menu,
        "menu_timer": s["menu_timer"] / cfg.menu_timeout_steps,
    }
    player = torch.stack([player_cols[f] for f in PLAYER_FIELDS], dim=1)
    upgrades = s["upg"] / UPGRADE_SCALE
    u_ids = torch.arange(NUM_UPGRADES, device=dev)
    cards = (s["card_options"][..., None] == u_ids).float() * menu[:, None, None]

    K = min(cfg.state_enemies, cfg.max_enemies)
    rel = s["e_pos"] - s["pos"][:, None, :]
    dist = rel.norm(dim=-1)
    d_sort = torch.where(s["e_alive"], dist, torch.full_like(dist, math.inf))
    dk, ik = torch.topk(d_sort, K, dim=1, largest=False)
    valid = torch.isfinite(dk)
    relk = torch.gather(rel, 1, ik[..., None].expand(-1, -1, 2))
    hpk = torch.gather(s["e_hp"] / s["e_maxhp"], 1, ik)
    elitek = torch.gather(s["e_elite"], 1, ik).float()
    bossk = (ik < cfg.num_bosses).float()
    vf = valid.float()
    enemy_cols = {
        "dx": relk[..., 0] / V,
        "dy": relk[..., 1] / V,
        "dist": torch.where(valid, dk, 0.0) / V,
        "hp_frac": hpk,
        "elite": elitek,
        "boss": bossk,
        "valid": vf,
    }
    enemies = torch.stack([enemy_cols[f] for f in ENEMY_FIELDS], dim=-1) * vf[..., None]
    enemies = _pad_rows(enemies, cfg.state_enemies)

    M = min(cfg.state_gems, cfg.max_gems)
    grel = s["g_pos"] - s["pos"][:, None, :]
    gd = torch.where(s["g_alive"], grel.norm(dim=-1), torch.full_like(dist[:, :1], math.inf))
    gdk, gik = torch.topk(gd, M, dim=1, largest=False)
    gvalid = torch.isfinite(gdk).float()
    grelk = torch.gather(grel, 1, gik[..., None].expand(-1, -1, 2))
    gem_cols = {"dx": grelk[..., 0] / V, "dy": grelk[..., 1] / V, "valid": gvalid}
    gems = torch.stack([gem_cols[f] for f in GEM_FIELDS], dim=-1) * gvalid[..., None]
    gems = _pad_rows(gems, cfg.state_gems)

    boss_alive = s["e_alive"][:, : cfg.num_bosses].any(dim=1).float()
    next_boss = torch.full_like(s["t"], float(cfg.stage_steps))
    for tick in cfg.boss_ticks:  # a handful of bosses; Python scalars keep this free of host-device copies
        left = tick - s["t"]
        next_boss = torch.where(left > 0, torch.minimum(next_boss, left), next_boss)
    wave_cols = {
        "alive_frac": s["e_alive"].float().mean(dim=1),
        "boss_alive": boss_alive,
        "next_boss": next_boss / cfg.stage_steps,
    }
    wave = torch.stack([wave_cols[f] for f in WAVE_FIELDS], dim=1)
    out = torch.cat(
        [player, upgrades, cards.reshape(n, -1), enemies.reshape(n, -1), gems.reshape(n, -1), wave], 1
    )
    return out.float()


def _pad_rows(x: torch.Tensor, k: int) -> torch.Tensor:
    """Pad [N, k', F] with zero rows to [N, k, F] (when fewer slots exist than the state asks for)."""
    if x.shape[1] == k:
        return x
    pad = torch.zeros(x.shape[0], k - x.shape[1], x.shape[2], device=x.device, dtype=x.dtype)
    return torch.cat([x, pad], dim=1)
