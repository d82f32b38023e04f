"""The planner's bounded prompt context (StreamingLLM-style): a fixed system prompt, a running summary that
changes rarely, and the last few events, so a long game's prompt stays short and its prefix stays cached.

The summary is rewritten only every `summary_every` events, so between rewrites the prompt's start is
byte-identical across calls and llama.cpp reuses its keys/values; the events window has a fixed length and
each event a fixed character budget, so the prompt's size is bounded whatever the game's length.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class ContextConfig:
    """Bounds of the planner's context."""

    recent: int = 4
    """Events kept verbatim (the newest)."""
    event_chars: int = 60
    """Characters kept of each event."""
    summary_every: int = 8
    """Events between two rewrites of the running summary (the cached prefix changes only then)."""
    summary_kinds: int = 4
    """Event kinds counted in the summary (the most frequent)."""


@dataclass
class BoundedContext:
    """Events of one game folded into `summary()` + `recent()`; `reset()` starts the next game."""

    config: ContextConfig = field(default_factory=ContextConfig)
    _events: deque[str] = field(init=False)
    _kinds: Counter[str] = field(default_factory=Counter, init=False)
    _seen: int = field(default=0, init=False)
    _summary: str = field(default="game start", init=False)

    def __post_init__(self) -> None:
        self._events = deque(maxlen=self.config.recent)

    def reset(self) -> None:
        self._events.clear()
        self._kinds.clear()
        self._seen, self._summary = 0, "game start"

    def add(self, event: str) -> None:
        """Record one event ("kind: detail"); the kind is the text before the first colon."""
        text = " ".join(event.split())[: self.config.event_chars]
        self._events.append(text)
        self._kinds[text.split(":", 1)[0].strip()[:24]] += 1
        self._seen += 1
        if self._seen % self.config.summary_every == 0:
            top = ", ".join(f"{k} x{n}" for k, n in self._kinds.most_common(self.config.summary_kinds))
            self._summary = f"{self._seen} events so far ({top})"

    def summary(self) -> str:
        return self._summary

    def recent(self) -> list[str]:
        return list(self._events)

    def text(self) -> str:
        """Summary line then the recent events, one per line."""
        lines = [f"Summary: {self._summary}"] + [f"- {e}" for e in self._events]
        return "\n".join(lines)
