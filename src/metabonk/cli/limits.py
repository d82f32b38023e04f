"""Ranges of every numeric CLI option, by option name: a bad number is refused at the CLI boundary in one line.

A seed, a step count or a port means the same thing in every verb, so its range is stated once here and given
to typer (its `min`/`max`, checked while the command line is parsed) for each option that declares none of its
own. `apply_limits(app)` runs when `metabonk.cli` is imported; tests/test_hardening_cli.py fails for a numeric
option that ends up with no range, so a new verb's options are covered by naming them here or by `min=`/`max=`.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import typer
from typer.models import ArgumentInfo, OptionInfo

BIG = 10**9
"""Upper bound of counts of steps, episodes, transitions: large enough for any run, small enough to be sane."""

LIMITS: dict[str, tuple[float, float]] = {
    # identity and reproducibility
    "seed": (0, 2**32 - 1),
    "version": (0, 2**31), "a": (0, 2**31), "b": (0, 2**31),  # playbook versions
    "episode": (0, BIG),
    # how long
    "steps": (1, BIG), "max_steps": (1, BIG), "env_steps": (1, BIG), "dream_steps": (1, BIG),
    "latency_steps": (1, BIG), "chunk_steps": (1, BIG), "collect_steps": (1, BIG), "world_updates": (1, BIG),
    "ac_updates": (1, BIG), "epochs": (1, 10**6), "rounds": (0, 1000), "decisions": (1, 10**6),
    "episodes": (1, 10**6), "eval_episodes": (0, 10**6), "seeds": (1, 10**4), "repeats": (1, 1000),
    "train_episodes": (1, 10**6), "test_episodes": (0, 10**6), "test_seed": (0, 2**32 - 1),
    "prompts": (1, 10**4), "states": (1, 10**4), "layer_sweeps": (0, 100),
    "segment_s": (0.1, 3600.0), "in_game_s": (0.0, 86_400.0),
    "class_balance": (0.0, 4.0),  # BC: each label weighs share^-class_balance
    "seq_len": (1, 4096), "actor_init_gain": (0.0, 100.0),  # BC sequences; the policy's actor output init
    "anchor": (0.0, 1000.0), "sampler_steps": (1, 64),  # the online loop: KL weight to the --init policy; denoising
    "strength": (0.0, 1000.0),  # steering strength s (choices measured at -s, 0, +s)
    "seconds": (0.01, 86_400.0), "stage_s": (1.0, 3600.0), "episode_every_s": (0.01, 86_400.0),
    "timeout": (0.01, 86_400.0), "idle_timeout": (0.1, 86_400.0),
    # how much at once
    "batch": (1, 65_536), "big_batch": (1, 1 << 20), "num_envs": (1, 4096), "workers": (1, 4096),
    "max_clients": (1, 1024), "threads": (0, 1024), "samples": (1, 64), "window": (1, 4096),
    "labelled": (0, BIG),
    # pixels and video
    "size": (8, 2048), "crop": (0, 2048), "scale": (1, 64), "fps": (0.1, 1000.0), "frame_skip": (1, 16),
    # model shape and optimiser
    "lr": (1e-12, 10.0), "lr_final": (0.0, 1.0), "ema": (0.0, 0.99999),
    "codes": (2, 4096), "context": (0, 64), "future": (0, 64),
    "width": (1, 1024), "object_shift": (0, 64), "calibrate": (0.0, 0.9),
    "decoder_blocks": (0, 64), "change_weight": (0.0, 1e6), "independence_weight": (0.0, 1e6),
    "budget": (1e-9, 1e6), "sticky": (0.0, 1.0), "num_steps": (1, BIG), "num_cpus": (1, 4096),
    "density": (0.0, 1.0), "drop": (0.0, 1.0),
    "lookup_tokens": (0, 64),
    # plans checked in the dream (play agent): k of the 6 intents, dreams per intent, dreamed steps
    "dream_candidates": (1, 6), "dream_samples": (1, 1024), "dream_horizon": (1, 10_000),
    "deadline_s": (0.01, 3600.0),  # System 2's wall-clock deadline per decision
    # network
    "port": (0, 65_535), "max_body_bytes": (1024, 1 << 30),
    "serve-llm port": (1, 65_535),
}
"""Option name -> (min, max), inclusive; "VERB name" (the verb's words, space separated) overrides a name."""


@dataclass
class NumericParam:
    """One numeric option or argument of one verb, with the typer info object that carries its range."""

    verb: str
    name: str
    kind: type
    info: OptionInfo | ArgumentInfo


def _commands(app: typer.Typer, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, Callable[..., object]]]:
    for command in app.registered_commands:
        if command.callback is not None:
            yield " ".join((*prefix, command.name or command.callback.__name__.replace("_", "-"))), command.callback
    for group in app.registered_groups:
        if group.typer_instance is not None and group.name:
            yield from _commands(group.typer_instance, (*prefix, group.name))


def _evaluated_hints(callback: Callable[..., object]) -> dict[str, object]:
    """The callback's annotations, evaluated once and stored back: with `from __future__ import annotations` each
    evaluation makes new typer.Option objects, so a range set on one would be lost when typer evaluates again."""
    hints = typing.get_type_hints(callback, include_extras=True)
    callback.__annotations__ = hints
    return hints


def numeric_params(app: typer.Typer) -> Iterator[NumericParam]:
    """Every int or float option/argument (optional ones included) of every verb of `app`."""
    for verb, callback in _commands(app):
        hints = _evaluated_hints(callback)
        for name, param in inspect.signature(callback).parameters.items():
            annotation, info = hints.get(name), param.default
            if typing.get_origin(annotation) is typing.Annotated:
                annotation, *extras = typing.get_args(annotation)
                info = next((e for e in extras if isinstance(e, (OptionInfo, ArgumentInfo))), info)
            kinds = [t for t in (annotation, *typing.get_args(annotation)) if t in (int, float)]
            if kinds and isinstance(info, (OptionInfo, ArgumentInfo)):
                yield NumericParam(verb, name, kinds[0], info)


def apply_limits(app: typer.Typer) -> None:
    """Give each numeric option the range LIMITS states for its name, where the option sets no bound itself
    (an option's own `min=` or `max=` wins; the other bound still comes from here)."""
    for p in numeric_params(app):
        bounds = LIMITS.get(f"{p.verb} {p.name}", LIMITS.get(p.name))
        if bounds is None:
            continue
        lo, hi = (int(b) for b in bounds) if p.kind is int else (float(b) for b in bounds)
        if p.info.min is None:
            p.info.min = lo
        if p.info.max is None:
            p.info.max = hi
