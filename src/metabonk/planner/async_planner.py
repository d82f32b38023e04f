"""Dual-speed control: System 2 runs on a worker thread; System 1's loop polls it and never waits.

`AsyncPlanner.tick()` is called once per System 1 step. It submits an intent request every `period_s` of
game time, swaps in an answer when one is ready, and otherwise keeps the last intent. Card choices are
requested when the level-up menu opens and read back with `card_result()`; after the wall-clock deadline
the policy's own card is used and the late answer is counted and discarded. Because the game's menu closes
itself within about a second, System 2 can also rank the whole card pool ahead of the menu
(`request_ranking`, e.g. after each level-up); `ranked_card` then answers a menu at once from that ranking.
With a `DreamChecker`, each intent decision is checked in the dream on the same worker thread: `tick` takes a
`context` callable that snapshots the last k real frames and actions when a request is submitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metabonk.common.intents import DEFAULT_INTENT, INTENTS
from metabonk.planner.planner import Decision, Planner
from metabonk.planner.summary import GameSummary

if TYPE_CHECKING:
    from metabonk.planner.dream_check import DreamChecker

Context = tuple[Any, Any]
"""The last k real frames uint8 [k,H,W,3] and the actions taken at them [k] (oldest first)."""


@dataclass
class _Pending:
    future: Future[Decision]
    started: float
    fallback: int = 0
    options: tuple[str, ...] = ()


class AsyncPlanner:
    """Wraps a Planner in one worker thread (LLM calls are serial anyway) with non-blocking access."""

    def __init__(
        self, planner: Planner, period_s: float = 2.0, deadline_s: float | None = None, route: str = "direct",
        checker: DreamChecker | None = None,
    ) -> None:
        self.planner = planner
        self.checker = checker
        """Checks each intent decision in the dream (its time counts against the deadline); None: unchecked."""
        self.period_s = period_s
        self.deadline_s = deadline_s if deadline_s is not None else planner.config.timeout_s
        self.route = route
        self.intent = DEFAULT_INTENT
        self.decisions: list[Decision] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="system2")
        self._intent_job: _Pending | None = None
        self._card_job: _Pending | None = None
        self._rank_job: _Pending | None = None
        self.ranking: list[str] = []  # the latest card ranking, best first; used up by one menu
        self._last_request_t = -float("inf")
        self._abandoned: list[Future[Decision]] = []

    @property
    def intent_id(self) -> int:
        return INTENTS.index(self.intent)

    def tick(self, game_time_s: float, summary: GameSummary | None = None,
             context: Callable[[], Context | None] | None = None) -> int:
        """Called every System 1 step; returns the current intent id without ever blocking. `context` is called
        only when an intent request is submitted (its snapshot goes to the dream check)."""
        job = self._intent_job
        if job is not None:
            if job.future.done():
                self._intent_job = None
                d = self._result(job, "intent")
                if d is not None:
                    self.intent = d.value
            elif time.perf_counter() - job.started > self.deadline_s:
                self._intent_job = None  # the late answer is dropped when it lands
                self._abandoned.append(job.future)
                self.planner.record_late("intent")
        self._abandoned = [f for f in self._abandoned if not f.done()]
        if (
            summary is not None
            and self._intent_job is None
            and self._card_job is None
            and self._rank_job is None
            and not self._abandoned
            and game_time_s - self._last_request_t >= self.period_s
        ):
            self._last_request_t = game_time_s
            snapshot = context() if context is not None and self.checker is not None else None
            fut = self._pool.submit(self._choose_intent, summary, self.intent, snapshot)
            self._intent_job = _Pending(fut, time.perf_counter())
        return self.intent_id

    def _choose_intent(self, summary: GameSummary, last: str, context: Context | None) -> Decision:
        """System 2's intent (on the worker thread), checked in the dream when there is a checker and a context."""
        d = self.planner.choose_intent(summary, self.route, last)
        if self.checker is None:
            return d
        if context is None:  # fewer than k real frames since the episode began
            self.planner.count("dream_no_context")
            return d
        self.planner.count("dream_checks")
        d = self.checker.check_decision(d, *context)
        if d.value != d.unchecked:
            self.planner.count("dream_switches")
        return d

    def request_card(self, summary: GameSummary, options: list[str], fallback: int) -> None:
        """Start a card decision (the level-up menu just opened); `fallback` is the policy's own card."""
        fut = self._pool.submit(self.planner.choose_card, summary, list(options), self.route, fallback)
        self._card_job = _Pending(fut, time.perf_counter(), fallback, tuple(options))

    def card_result(self) -> int | None:
        """The chosen card index once known (answer, or fallback after the deadline); None while waiting."""
        job = self._card_job
        if job is None:
            return None
        if job.future.done():
            self._card_job = None
            d = self._result(job, "card")
            return d.index if d is not None else job.fallback
        if time.perf_counter() - job.started > self.deadline_s:
            self._card_job = None
            self._abandoned.append(job.future)
            self.planner.record_late("card")
            return job.fallback
        return None

    def request_ranking(self, summary: GameSummary, pool: list[str]) -> bool:
        """Start ranking `pool` for the next menu unless a ranking is already under way; whether it started."""
        self._poll_ranking()
        if self._rank_job is not None:
            return False
        fut = self._pool.submit(self.planner.rank_cards, summary, list(pool), self.route)
        self._rank_job = _Pending(fut, time.perf_counter())
        return True

    def ranked_card(self, options: list[str]) -> int | None:
        """The best-ranked of the offered `options` by the latest ranking (which this uses up), or None when no
        ranking is ready or it names none of them."""
        self._poll_ranking()
        ranking, self.ranking = self.ranking, []
        rank = {name: r for r, name in enumerate(ranking)}
        known = [i for i, o in enumerate(options) if o in rank]
        return min(known, key=lambda i: rank[options[i]]) if known else None

    def ranking_pending(self) -> bool:
        """Whether a ranking is being made (a menu that opens now may wait for it rather than ask anew)."""
        self._poll_ranking()
        return self._rank_job is not None

    def _poll_ranking(self) -> None:
        job = self._rank_job
        if job is not None and job.future.done():
            self._rank_job = None
            d = self._result(job, "card_rank")
            if d is not None and d.source != "fallback":
                self.ranking = list(d.ranking)

    def card_pending(self) -> bool:
        return self._card_job is not None

    def _result(self, job: _Pending, kind: str) -> Decision | None:
        try:
            d = job.future.result(timeout=0)
        except (RuntimeError, ValueError, KeyError) as e:  # planner bug surfaced as a counted fallback
            self.planner.counts[f"crashed_{kind}"] += 1
            self.planner.counts["fallbacks"] += 1
            self.decisions.append(Decision(kind, "", job.fallback, self.route, "fallback", error=str(e)))
            return None
        self.decisions.append(d)
        return d

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
