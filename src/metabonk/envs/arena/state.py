"""Arena game state as a dict of batched tensors, upgrade stats, and the fixed-size state vector.

Every tensor has the batch (game) dimension first. Entity tensors have a fixed slot count with an
`*_alive` mask. Enemy slots `[0, num_bosses)` are reserved for bosses.

State vector layout (float32 `[N, STATE_DIM]`, see `state_layout`):
  player (14): x/A, y/A, vx/speed, vy/speed, hp/max_hp, max_hp/100, dash_cooldown fraction, dashing,
               level/20, xp/xp_next, gold/100, time/stage, menu_open, menu_timer/menu_timeout
  upgrades (U=11): pick counts / 5, in UPGRADES order
  cards (3*U): one-hot upgrade id of each of the 3 offered cards (zeros when the menu is closed)
  enemies (K*7): for the K nearest alive enemies: dx/view, dy/view, dist/view, hp fraction, elite, boss, valid
  gems (M*3): for the M nearest gems: dx/view, dy/view, valid
  wave (3): alive enemies / slots, boss alive, time to next boss / stage (1 when none left)
"""

from __future__ import annotations

import math

import torch

from metabonk.envs.arena.config import UPGRADES, ArenaConfig

State = dict[str, torch.Tensor]
NUM_UPGRADES = len(UPGRADES)
U = {name: i for i, name in enumerate(UPGRADES)}

PLAYER_FEATURES = 14
ENEMY_FEATURES = 7
GEM_FEATURES = 3
WAVE_FEATURES = 3


def state_layout(cfg: ArenaConfig) -> dict[str, tuple[int, int]]:
    """Name -> (start, end) column ranges of the state vector."""
    sizes = [
        ("player", PLAYER_FEATURES),
        ("upgrades", NUM_UPGRADES),
        ("cards", 3 * NUM_UPGRADES),
        ("enemies", cfg.state_enemies * ENEMY_FEATURES),
        ("gems", cfg.state_gems * GEM_FEATURES),
        ("wave", WAVE_FEATURES),
    ]
    out, start = {}, 0
    for name, n in sizes:
        out[name] = (start, start + n)
        start += n
    return out


def state_dim(cfg: ArenaConfig) -> int:
    return max(end for _, end in state_layout(cfg).values())


def initial_state(cfg: ArenaConfig, n: int, device: torch.device, gen: torch.Generator) -> State:
    """Fresh games: player near the centre with full HP, no entities, clock at zero."""
    f32 = {"device": device, "dtype": torch.float32}
    E, P, G = cfg.max_enemies, cfg.max_projectiles, cfg.max_gems
    centre = cfg.arena_size / 2
    jitter = (torch.rand(n, 2, generator=gen, **f32) - 0.5) * (cfg.arena_size * 0.2)

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
    player = torch.stack(
        [
            s["pos"][:, 0] / A,
            s["pos"][:, 1] / A,
            s["vel"][:, 0] / cfg.player_speed,
            s["vel"][:, 1] / cfg.player_speed,
            s["hp"] / st["max_hp"],
            st["max_hp"] / 100.0,
            s["dash_cd"] / cfg.dash_cooldown,
            (s["dash_timer"] > 0).float(),
            s["level"] / 20.0,
            s["xp"] / s["xp_next"],
            s["gold"] / 100.0,
            s["t"] / cfg.stage_steps,
            menu,
            s["menu_timer"] / cfg.menu_timeout_steps,
        ],
        dim=1,
    )
    upgrades = s["upg"] / 5.0
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
    enemies = (
        torch.stack(
            [
                relk[..., 0] / V,
                relk[..., 1] / V,
                torch.where(valid, dk, 0.0) / V,
                hpk,
                elitek,
                bossk,
                vf,
            ],
            dim=-1,
        )
        * vf[..., None]
    )
    enemies = _pad_rows(enemies, cfg.state_enemies)

    M = min(cfg.state_gems, cfg.max_gems)
    grel = s["g_pos"] - s["pos"][:, None, :]
    gd = torch.where(s["g_alive"], grel.norm(dim=-1), torch.full_like(dist[:, :1], math.inf))
    gdk, gik = torch.topk(gd, M, dim=1, largest=False)
    gvalid = torch.isfinite(gdk).float()
    grelk = torch.gather(grel, 1, gik[..., None].expand(-1, -1, 2))
    gems = torch.stack([grelk[..., 0] / V, grelk[..., 1] / V, gvalid], dim=-1) * gvalid[..., None]
    gems = _pad_rows(gems, cfg.state_gems)

    boss_alive = s["e_alive"][:, : cfg.num_bosses].any(dim=1).float()
    next_boss = torch.full_like(s["t"], float(cfg.stage_steps))
    for tick in cfg.boss_ticks:  # a handful of bosses; Python scalars keep this free of host-device copies
        left = tick - s["t"]
        next_boss = torch.where(left > 0, torch.minimum(next_boss, left), next_boss)
    wave = torch.stack(
        [
            s["e_alive"].float().mean(dim=1),
            boss_alive,
            next_boss / cfg.stage_steps,
        ],
        dim=1,
    )
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
