"""CLI verbs of the data area: `record`, `ingest`, `data info`, `data export` (heavy imports stay lazy)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metabonk.cli.app import app, bench_app, data_app
from metabonk.common.errors import MetabonkError


@app.command("record")
def record_cmd(
    env: Annotated[str, typer.Argument(help="arena | ale:<Game> (e.g. ale:Pong) | crafter | bridge://HOST:PORT")],
    out: Annotated[Path, typer.Option("--out", help="New episode-store directory to write.")],
    policy: Annotated[str, typer.Option(help="scripted (arena, arena-hard, ale:Pong, ale:Breakout) | "
                                             "intents (arena: intent expert, stores the intent per step) | "
                                             "random")] = "random",
    episodes: Annotated[int, typer.Option(help="Number of finished episodes to record.")] = 10,
    no_actions: Annotated[bool, typer.Option("--no-actions", help="Drop actions (video-like data).")] = False,
    num_envs: Annotated[int, typer.Option(help="Games played in parallel.")] = 1,
    size: Annotated[int, typer.Option(help="Frame size in pixels (size×size RGB).")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the env and the policy.")] = 0,
    max_steps: Annotated[int | None, typer.Option(
        help="Cut stored episodes at this many steps (truncated; play goes on in a new episode).")] = None,
    device: Annotated[str, typer.Option(help="Device of batched envs (arena): cpu | cuda.")] = "cpu",
    sticky: Annotated[float | None, typer.Option(
        help="ALE only: sticky-action probability (default: the env's 0.25). 0 makes every stored action "
             "the one executed, as labelled data for the latent models needs.")] = None,
) -> None:
    """Play a policy in an env and store N finished episodes (frames, actions, rewards, done flags)."""
    from rich.console import Console

    from metabonk.data.record import record_episodes

    env_kwargs: dict[str, float] = {}
    if sticky is not None:
        if not env.startswith("ale:"):
            raise MetabonkError(f"--sticky applies to ALE games only (ale:<Game>), not '{env}'")
        if not 0.0 <= sticky <= 1.0:
            raise MetabonkError(f"--sticky must be in [0, 1], got {sticky}")
        env_kwargs["sticky_actions"] = sticky
    s = record_episodes(env, out, episodes, policy=policy, num_envs=num_envs, size=size, seed=seed,
                        keep_actions=not no_actions, max_steps=max_steps, device=device, env_kwargs=env_kwargs)
    Console(soft_wrap=True).print(
        f"wrote {s.episodes} episodes, {s.transitions} transitions to {out} "
        f"(mean return {s.mean_return:.2f}, mean length {s.mean_length:.1f}, "
        f"{s.steps / max(s.seconds, 1e-9):.0f} steps/s)"
    )


@app.command("ingest")
def ingest_cmd(
    videos: Annotated[list[Path], typer.Argument(help="Video files (mp4/mkv/webm) or directories of them.")],
    out: Annotated[Path, typer.Option("--out", help="Store directory (new, or a video store to add to).")],
    size: Annotated[int, typer.Option(help="Frame size in pixels (size×size RGB).")] = 64,
    fps: Annotated[float | None, typer.Option(help="Resample to F frames/s (default: all).")] = None,
    chunk_steps: Annotated[int | None, typer.Option(help="Split long videos into N-step episodes.")] = None,
) -> None:
    """Turn gameplay videos into action-free episodes; unreadable files are reported and skipped."""
    from rich.console import Console
    from rich.markup import escape

    from metabonk.common.logging import progress_bar
    from metabonk.data.video import find_videos, ingest_videos

    err = Console(stderr=True, soft_wrap=True)
    files = find_videos(videos)
    with progress_bar("ingest", total=len(files)) as advance:

        def on_file(path: Path, status: str) -> None:
            if status.startswith("skipped") or "stopped early" in status:
                err.print(f"[yellow]warning:[/] {escape(str(path))}: {escape(status)}", highlight=False)
            advance(1, status=path.name)

        report = ingest_videos(files, out, size=size, fps=fps, chunk_steps=chunk_steps, on_file=on_file)
    Console(soft_wrap=True).print(
        f"ingested {len(report.ingested)}/{len(files)} file(s) → {len(report.episodes)} episodes, "
        f"{report.frames} frames in {out}; skipped {len(report.skipped)}"
    )
    if not report.ingested:
        why = "; ".join(f"{p.name}: {m}" for p, m in report.skipped)
        raise MetabonkError(f"no video could be ingested: {why}")


@data_app.command("info")
def info_cmd(
    store_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Episode-store directory.")],
) -> None:
    """Summarise a store: episodes, transitions, frame size, keys, labelled fraction, returns."""
    from rich.console import Console
    from rich.table import Table

    from metabonk.data.store import EpisodeStore

    store = EpisodeStore.open(store_dir)
    t = Table(title=f"episode store {store_dir}", show_header=False)
    t.add_row("env", store.env_spec)
    t.add_row("episodes", str(len(store)))
    t.add_row("transitions", str(store.num_transitions))
    t.add_row("frame size", f"{store.frame_size}×{store.frame_size}")
    t.add_row("num actions", str(store.num_actions))
    keys = sorted(set().union(*(store.episode_keys(i) for i in range(len(store))))) if len(store) else []
    t.add_row("keys", ", ".join(keys))
    t.add_row("with true actions", f"{store.labelled_fraction('action'):.0%}")
    t.add_row("IDM-labelled", f"{store.labelled_fraction('action_idm'):.0%}")
    if len(store):
        L = store.lengths
        R = store.returns()
        t.add_row("length min/mean/max", f"{min(L)} / {sum(L) / len(L):.1f} / {max(L)}")
        t.add_row("return min/mean/max", f"{min(R):.2f} / {sum(R) / len(R):.2f} / {max(R):.2f}")
    for k, v in store.info.get("meta", {}).items():
        if k != "action_meanings":
            t.add_row(f"meta.{k}", str(v))
    Console().print(t)


@data_app.command("export")
def export_cmd(
    store_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Episode-store directory.")],
    episode: Annotated[int, typer.Option(help="Episode index to export.")],
    out: Annotated[Path, typer.Option("--out", help="Output .mp4 file.")],
    fps: Annotated[float | None, typer.Option(help="Frame rate (default: the episode's, else 15).")] = None,
    scale: Annotated[int, typer.Option(help="Integer upscale factor (nearest neighbour) for viewing.")] = 1,
) -> None:
    """Write one stored episode's frames to an mp4 file."""
    from rich.console import Console

    from metabonk.data.store import EpisodeStore
    from metabonk.data.video import export_episode

    if out.suffix.lower() != ".mp4":
        raise MetabonkError(f"--out must end in .mp4, got {out}")
    store = EpisodeStore.open(store_dir)
    export_episode(store, episode, out, fps=fps, scale=scale)
    Console(soft_wrap=True).print(f"wrote episode {episode} ({store.lengths[episode] + 1} frames) to {out}")


@bench_app.command("store")
def bench_store_cmd(
    episodes: Annotated[int, typer.Option(help="Episodes appended.")] = 40,
    steps: Annotated[int, typer.Option(help="Steps per episode.")] = 500,
    size: Annotated[int, typer.Option(help="Frame size.")] = 64,
    batch: Annotated[int, typer.Option(help="Windows per sampled batch.")] = 64,
    window: Annotated[int, typer.Option("--T", help="Window length T.")] = 16,
    json_path: Annotated[Path | None, typer.Option("--json", help="Result file (default "
                                                   "benchmarks/results/store-<device>.json).")] = None,
) -> None:
    """Episode-store speed: append MB/s, open time, random windows/s and sequential windows/s."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from metabonk.bench.store import run_store_bench
    from metabonk.common.device import device_label
    from metabonk.common.results import write_result

    figures = run_store_bench(episodes=episodes, steps=steps, size=size, batch=batch, T=window)
    t = Table(title="episode store (CPU, local disk)")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in figures.items():
        t.add_row(k, f"{v:,.1f}" if isinstance(v, float) else str(v))
    Console().print(t)
    device = torch.device("cpu")
    out = json_path or Path("benchmarks/results") / f"store-{device_label(device)}.json"
    write_result(out, figures, device)
    Console(soft_wrap=True).print(f"wrote {out}")
