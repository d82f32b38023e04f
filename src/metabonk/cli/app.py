"""The typer application and its command groups; each area's module registers its verbs here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from metabonk.common.errors import MetabonkError

app = typer.Typer(
    name="metabonk",
    help="MetaBonk: learn latent actions from video, dream in a world model, play with System 1 + System 2.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
train_app = typer.Typer(help="Train a model: lam, idm, adapter, world, policy.", no_args_is_help=True)
play_app = typer.Typer(help="Play interactively: the Arena game or a dream.", no_args_is_help=True)
data_app = typer.Typer(help="Inspect and export episode stores.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: print a table and write JSON to benchmarks/results/.", no_args_is_help=True)
playbook_app = typer.Typer(help="Show, diff and restore versions of the System 2 strategy playbook.",
                           no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(play_app, name="play")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(playbook_app, name="playbook")


@dataclass
class EvalOptions:
    """Options shared by every evaluator behind `metabonk eval`."""

    data: Path | None
    env: str
    episodes: int
    json_path: Path | None
    device: str
    seed: int
    frame_skip: int | None = None
    """Arena only: game ticks per env step of the evaluation games (None: the game's default)."""
    greedy: bool = False
    """Policies: play the most likely action instead of sampling."""
    max_steps: int | None = None
    """Policies: step cap per episode (episodes cut there are counted; None: 10,000)."""


Evaluator = Callable[[Path, EvalOptions], None]
EVALUATORS: dict[str, Evaluator] = {}


def register_eval(kind: str, fn: Evaluator) -> None:
    """Make `metabonk eval [KIND] CKPT` dispatch checkpoints of model kind `kind` to `fn`."""
    EVALUATORS[kind] = fn


@app.command("eval")
def eval_cmd(
    target: Annotated[list[str], typer.Argument(help="[KIND] CKPT — KIND (lam, idm, adapter, world, policy) "
                                                      "is read from the checkpoint when omitted.")],
    data: Annotated[Path | None, typer.Option(help="Episode store to evaluate on (models of video/frames).")] = None,
    env: Annotated[str, typer.Option(help="Environment for policy evaluation.")] = "arena",
    episodes: Annotated[int, typer.Option(help="Episodes (seeds) for policy evaluation.")] = 32,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the figures to this JSON file.")] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    seed: Annotated[int, typer.Option(help="Base seed.")] = 0,
    frame_skip: Annotated[int | None, typer.Option(help="Arena only: game ticks per env step of the evaluation "
                                                        "games (the game's default: 1).")] = None,
    greedy: Annotated[bool, typer.Option(help="Policies: play the most likely action instead of sampling.")] = False,
    max_steps: Annotated[int | None, typer.Option(help="Policies: step cap per episode (episodes cut there "
                                                       "are counted; default 10,000).")] = None,
) -> None:
    """Evaluate a checkpoint and print its metrics (and write them as JSON with --json)."""
    from metabonk.common.checkpoint import read_config

    if json_path is not None and json_path.is_dir():
        raise MetabonkError(f"--json {json_path} is a directory: give the JSON file's name")
    if len(target) == 1:
        ckpt = Path(target[0])
        kind = str(read_config(ckpt).get("kind"))
    elif len(target) == 2:
        kind, ckpt = target[0], Path(target[1])
        read_config(ckpt, kind=kind)
    else:
        raise MetabonkError("usage: metabonk eval [KIND] CKPT")
    if kind not in EVALUATORS:
        known = ", ".join(sorted(EVALUATORS)) or "none"
        raise MetabonkError(f"no evaluator for model kind '{kind}' (known: {known})")
    if kind != "policy" and (greedy or max_steps is not None):
        raise MetabonkError(f"--greedy and --max-steps are for policies; this checkpoint is a {kind}")
    EVALUATORS[kind](ckpt, EvalOptions(data, env, episodes, json_path, device, seed, frame_skip, greedy, max_steps))
