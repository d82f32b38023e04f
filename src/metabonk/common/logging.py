"""One logging path for training: TensorBoard scalars plus a rich progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)

SCALAR_SINKS: list[Callable[[str, int, float], None]] = []
"""Called with (name, step, value) for every scalar any ScalarLogger logs (a RunReporter subscribes here)."""
PROGRESS_SINKS: list[Callable[[str, int, int], None]] = []
"""Called with (description, completed, total) whenever a progress bar advances."""


class ScalarLogger:
    """Writes scalars to TensorBoard under `logdir` (created lazily) and keeps the last value of each."""

    def __init__(self, logdir: str | Path | None) -> None:
        self.logdir = Path(logdir) if logdir is not None else None
        self._writer: Any = None
        self.last: dict[str, float] = {}
        self.history: dict[str, list[tuple[int, float]]] = {}

    def log(self, step: int, **scalars: float) -> None:
        for name, value in scalars.items():
            v = float(value)
            self.last[name] = v
            self.history.setdefault(name, []).append((step, v))
            for sink in SCALAR_SINKS:
                sink(name, step, v)
            if self.logdir is not None:
                if self._writer is None:
                    from torch.utils.tensorboard import SummaryWriter

                    self.logdir.mkdir(parents=True, exist_ok=True)
                    self._writer = SummaryWriter(str(self.logdir))
                self._writer.add_scalar(name, v, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


@contextmanager
def progress_bar(description: str, total: int, disable: bool = False) -> Iterator[Any]:
    """A rich progress bar on stderr; yields a callable `advance(n=1, **fields)`."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        disable=disable,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "") -> None:
            progress.update(task, advance=n, status=status)
            for sink in PROGRESS_SINKS:
                sink(description, int(progress.tasks[0].completed), total)

        yield advance
