"""Steer a dream with the keyboard (pygame): arrows/WASD move, space dashes, 1-3 pick a card, digits pick raw
action ids for models of other action sets. Events come from an injectable source, so it runs headless."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from metabonk.envs.arena.spec import MOVE_ACTIONS, NUM_ACTIONS, card_action, direction_toward, move_action
from metabonk.world.dream_env import DreamEnv
from metabonk.world.world_model import WorldModel


@dataclass
class Keys:
    """The controls held in one frame."""

    up: bool = False
    down: bool = False
    left: bool = False
    right: bool = False
    dash: bool = False
    card: int | None = None
    quit: bool = False


def keys_to_action(keys: Keys, num_actions: int = NUM_ACTIONS) -> int:
    """Arena's flat action for the held keys (layout in envs.arena.spec), < num_actions; a model of a smaller
    action set gets the card key as a raw action id, and no dash below Arena's move actions."""
    if keys.card is not None and num_actions >= NUM_ACTIONS:
        return card_action(keys.card)
    if keys.card is not None:
        return min(keys.card, num_actions - 1)
    dx, dy_north = int(keys.right) - int(keys.left), int(keys.up) - int(keys.down)
    a = move_action(direction_toward(dx, dy_north), keys.dash and num_actions >= MOVE_ACTIONS)
    return a if a < num_actions else 0


def pygame_keys() -> Keys:
    """Read the pygame keyboard state and window events."""
    import pygame

    quit_ = any(e.type == pygame.QUIT for e in pygame.event.get())
    k = pygame.key.get_pressed()
    card = next((i for i, key in enumerate((pygame.K_1, pygame.K_2, pygame.K_3)) if k[key]), None)
    return Keys(
        up=k[pygame.K_UP] or k[pygame.K_w],
        down=k[pygame.K_DOWN] or k[pygame.K_s],
        left=k[pygame.K_LEFT] or k[pygame.K_a],
        right=k[pygame.K_RIGHT] or k[pygame.K_d],
        dash=bool(k[pygame.K_SPACE]),
        card=card,
        quit=quit_ or bool(k[pygame.K_ESCAPE]),
    )


def play_dream(
    model: WorldModel,
    context_frames: np.ndarray,
    context_actions: np.ndarray,
    max_steps: int = 10_000,
    events: Iterable[Keys] | None = None,
    scale: int = 6,
    fps: int = 15,
    on_frame: Callable[[np.ndarray], None] | None = None,
) -> dict[str, float]:
    """Run one dream under keyboard control. `events` (one Keys per frame) replaces the keyboard when given.
    Returns the number of steps, summed predicted reward and whether the dream predicted an episode end."""
    import pygame

    pygame.init()
    size = model.config.frame_size * scale
    screen = pygame.display.set_mode((size, size))
    pygame.display.set_caption("MetaBonk dream")
    clock = pygame.time.Clock()
    env = DreamEnv(model, seed=0)
    env.reset(torch.from_numpy(context_frames[None]), torch.from_numpy(context_actions[None]))
    source = iter(events) if events is not None else None
    steps, total, ended = 0, 0.0, False
    try:
        while steps < max_steps:
            keys = next(source, Keys(quit=True)) if source is not None else pygame_keys()
            if keys.quit:
                break
            px, r, term, _, _ = env.step(torch.tensor([keys_to_action(keys, model.config.num_actions)]))
            frame = px[0].cpu().numpy()
            if on_frame is not None:
                on_frame(frame)
            surf = pygame.surfarray.make_surface(frame.swapaxes(0, 1).repeat(scale, 0).repeat(scale, 1))
            screen.blit(surf, (0, 0))
            pygame.display.flip()
            steps += 1
            total += float(r[0])
            ended = ended or bool(term[0])
            if source is None:
                clock.tick(fps)
    finally:
        pygame.quit()
    return {"steps": steps, "predicted_return": total, "predicted_end": float(ended)}
