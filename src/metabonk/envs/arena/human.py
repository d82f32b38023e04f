"""Play Arena in a pygame window (a person, or a policy to watch) and optionally record labelled demos.

Input comes from a `KeySource`, so tests drive a session with scripted key presses and a headless
SDL driver (SDL_VIDEODRIVER=dummy). Keys: WASD/arrows move, space dashes, 1/2/3 pick a level-up card.
With `record_dir`, every finished (or interrupted) episode is appended to an `EpisodeStore` with the
actions actually taken, so the session is a labelled demonstration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from metabonk.common.errors import MetabonkError
from metabonk.envs.arena.config import ArenaConfig
from metabonk.envs.arena.game import ArenaGame
from metabonk.envs.arena.spec import NUM_ACTIONS, NUM_CARDS, card_action, direction_toward, move_action

KEY_NAMES = ("up", "down", "left", "right", "dash", "1", "2", "3")
CARD_KEYS = tuple(str(k + 1) for k in range(NUM_CARDS))
Policy = Callable[[dict[str, Any], dict[str, Any]], np.ndarray]


class KeySource(Protocol):
    """Where key presses come from: `poll()` -> (names of keys held now, quit requested)."""

    def poll(self) -> tuple[set[str], bool]: ...


class ScriptedKeys:
    """Key presses from a list (one set of key names per tick); asks to quit when the list runs out."""

    def __init__(self, presses: Iterable[Iterable[str]]) -> None:
        self._it: Iterator[Iterable[str]] = iter(presses)

    def poll(self) -> tuple[set[str], bool]:
        try:
            return set(next(self._it)), False
        except StopIteration:
            return set(), True


class PygameKeys:
    """Key presses from the pygame keyboard state; closing the window or Esc quits."""

    def poll(self) -> tuple[set[str], bool]:
        import pygame

        quit_ = any(e.type == pygame.QUIT for e in pygame.event.get())
        k = pygame.key.get_pressed()
        held = {
            "up": k[pygame.K_w] or k[pygame.K_UP],
            "down": k[pygame.K_s] or k[pygame.K_DOWN],
            "left": k[pygame.K_a] or k[pygame.K_LEFT],
            "right": k[pygame.K_d] or k[pygame.K_RIGHT],
            "dash": k[pygame.K_SPACE],
            "1": k[pygame.K_1],
            "2": k[pygame.K_2],
            "3": k[pygame.K_3],
        }
        return {name for name, down in held.items() if down}, bool(quit_ or k[pygame.K_ESCAPE])


def keys_to_action(keys: set[str], menu_open: bool) -> int:
    """Map held keys to the flat Arena action (a card key wins while the menu is open)."""
    if menu_open:
        for i, name in enumerate(CARD_KEYS):
            if name in keys:
                return card_action(i)
    dx = int("right" in keys) - int("left" in keys)
    dy = int("up" in keys) - int("down" in keys)
    return move_action(direction_toward(dx, dy), "dash" in keys)


@dataclass
class SessionResult:
    """What a play session did: per-episode returns/lengths, the actions taken, episodes written."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    positions: list[tuple[float, float]] = field(default_factory=list)
    episodes_written: int = 0


class _Recorder:
    """Collects one episode's arrays and appends it to the store when it ends."""

    def __init__(self, record_dir: Path | None, cfg: ArenaConfig, seed: int) -> None:
        self.store = None
        if record_dir is not None:
            from metabonk.data.store import EpisodeStore

            self.store = EpisodeStore.create(
                record_dir,
                env_spec="arena",
                num_actions=NUM_ACTIONS,
                frame_size=cfg.frame_size,
                meta={"source": "play arena", "seed": seed},
                exist_ok=True,
            )
        self.clear()

    def clear(self) -> None:
        self.obs: list[np.ndarray] = []
        self.state: list[np.ndarray] = []
        self.action: list[int] = []
        self.reward: list[float] = []
        self.term: list[bool] = []
        self.trunc: list[bool] = []

    def flush(self, who: str) -> bool:
        """Write the collected episode (if any steps); an interrupted one is marked truncated at its end."""
        if self.store is None or not self.action:
            self.clear()
            return False
        if not (self.term[-1] or self.trunc[-1]):
            self.trunc[-1] = True
        self.store.append(
            {
                "obs": np.stack(self.obs),
                "state": np.stack(self.state).astype(np.float32),
                "action": np.asarray(self.action, np.int64),
                "reward": np.asarray(self.reward, np.float32),
                "terminated": np.asarray(self.term, bool),
                "truncated": np.asarray(self.trunc, bool),
            },
            meta={"player": who},
        )
        self.clear()
        return True


def play_session(
    config: ArenaConfig | None = None,
    seed: int = 0,
    max_steps: int = 10_000,
    keys: KeySource | None = None,
    policy: Policy | None = None,
    record_dir: Path | None = None,
    fps: float = 30.0,
    scale: int = 8,
    display: bool = True,
) -> SessionResult:
    """Run episodes until quit or `max_steps` ticks; a person plays via `keys` unless `policy` is given."""
    cfg = config or ArenaConfig()
    if max_steps < 1:
        raise MetabonkError("--max-steps must be >= 1")
    game = ArenaGame(cfg, 1, "cpu", seed)
    rec = _Recorder(record_dir, cfg, seed)
    screen, clock, pygame = _open_window(cfg, scale, display) if display else (None, None, None)
    if keys is None and policy is None:
        keys = PygameKeys()
    res, ep_ret, ep_len = SessionResult(), 0.0, 0
    frame = game.render()[0].numpy()
    state = game.state_vector()
    quit_ = False
    for _ in range(max_steps):
        if screen is not None:
            _show(pygame, screen, frame, scale)
        menu = bool(game.s["menu_open"][0])
        info = {"card_options": game.s["card_options"].numpy(), "menu_open": np.array([menu])}
        if policy is not None:
            action = int(policy({"pixels": frame[None], "state": state.numpy()}, info)[0])
            quit_ = keys.poll()[1] if keys is not None else False
        else:
            assert keys is not None
            held, quit_ = keys.poll()
            action = keys_to_action(held, menu)
        if quit_:
            break
        rec.obs.append(frame)
        rec.state.append(state[0].numpy())
        reward, term, trunc, _ = game.step(torch.tensor([action]))
        frame = game.render()[0].numpy()
        state = game.state_vector()
        rec.action.append(action)
        rec.reward.append(float(reward[0]))
        rec.term.append(bool(term[0]))
        rec.trunc.append(bool(trunc[0]))
        res.actions.append(action)
        res.positions.append((float(game.s["pos"][0, 0]), float(game.s["pos"][0, 1])))
        ep_ret += float(reward[0])
        ep_len += 1
        if bool(term[0] | trunc[0]):
            rec.obs.append(frame)
            rec.state.append(state[0].numpy())
            res.episodes_written += rec.flush("policy" if policy is not None else "human")
            res.returns.append(ep_ret)
            res.lengths.append(ep_len)
            ep_ret, ep_len = 0.0, 0
            game.reset_done(torch.ones(1, dtype=torch.bool))
            frame = game.render()[0].numpy()
            state = game.state_vector()
        if clock is not None and fps > 0:
            clock.tick(fps)
    if ep_len > 0:
        rec.obs.append(frame)
        rec.state.append(state[0].numpy())
        res.episodes_written += rec.flush("policy" if policy is not None else "human")
        res.returns.append(ep_ret)
        res.lengths.append(ep_len)
    if pygame is not None:
        pygame.display.quit()
    return res


def _open_window(cfg: ArenaConfig, scale: int, display: bool) -> tuple[Any, Any, Any]:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    try:
        pygame.display.init()
        side = cfg.frame_size * max(1, scale)
        screen = pygame.display.set_mode((side, side))
    except pygame.error as e:
        raise MetabonkError(f"cannot open a window ({e}); set SDL_VIDEODRIVER=dummy to run headless") from e
    pygame.display.set_caption("MetaBonk Arena — WASD/arrows move, space dash, 1/2/3 pick a card, Esc quits")
    return screen, pygame.time.Clock(), pygame


def _show(pygame: Any, screen: Any, frame: np.ndarray, scale: int) -> None:
    surf = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
    pygame.transform.scale(surf, screen.get_size(), screen)
    pygame.display.flip()
