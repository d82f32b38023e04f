"""System 2 decisions: level-up cards and intents from a state summary, retrieved playbook and a chosen route.

Every decision comes back schema-valid: an answer that is malformed, fails or is late is replaced by the
fallback (the last intent, or the policy's own card) and counted in `Planner.counts`. Prompts are bounded
(planner/context.py): fixed system prompt, running summary, recent events, then the state and the question,
so the start of the prompt is byte-identical across calls and its KV cache is reused.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from metabonk.common.intents import DEFAULT_INTENT, INTENTS
from metabonk.planner.chat import ChatClient, LLMError, Message
from metabonk.planner.consistency import majority
from metabonk.planner.context import BoundedContext
from metabonk.planner.playbook import Entry, PlaybookStore
from metabonk.planner.retrieval import Retriever
from metabonk.planner.rules import rule_card, rule_intent, score_card
from metabonk.planner.schema import InvalidAnswer, card_schema, intent_schema, parse_answer
from metabonk.planner.summary import GameSummary

if TYPE_CHECKING:
    from metabonk.planner.dream_check import DreamCheck

SYSTEM_PROMPT = (
    "You are the strategist of a survivors-like arena game. The player moves; weapons fire by "
    "themselves. Goal: survive until the timer ends. Use the playbook. Reply with JSON only."
)


@dataclass
class PlannerConfig:
    """Knobs of the System 2 planner."""

    samples: int = 3
    """Self-consistency votes for decisions that matter (card choice, boss fight); 1 disables voting."""
    temperature: float = 0.7
    """Sampling temperature when voting (a single sample is greedy)."""
    top_k: int = 4
    """Playbook entries + reflections retrieved into the prompt."""
    max_tokens_direct: int = 16
    max_tokens_cot: int = 96
    decode: str = "score"
    """"score": one prompt evaluation ranks the schema's options by log-probability (clients with `choose`,
    i.e. the embedded model; greedy, so no votes); "generate": grammar-constrained sampling of the JSON."""
    timeout_s: float = 5.0
    """Wall-clock budget of one decision; later answers count as late (enforced by the async controller)."""
    seed: int = 0


@dataclass
class Decision:
    """A schema-valid decision and how it was reached."""

    kind: str  # "card" | "intent" | "card_rank"
    value: str  # card name or intent name (for a ranking: its first card)
    index: int  # card index among the options, or intent id
    route: str  # "direct" | "cot" | "rule"
    source: str  # "llm" | "rule" | "fallback"
    latency_s: float = 0.0
    agreement: float = 1.0
    error: str | None = None
    retrieved: list[str] = field(default_factory=list)
    ranking: list[str] = field(default_factory=list)
    """Best first: a card ranking's cards (`rank_cards`), or every intent for an intent decision (by the LLM's
    scores or votes; the rule route and a fallback put their choice first, the rest in `INTENTS` order)."""
    unchecked: str | None = None
    """System 2's own top intent when the dream check ran (then `value` is the checked choice); else None."""
    dream: DreamCheck | None = None
    """The dream check's predicted returns per candidate and its added latency (planner/dream_check.py)."""


class Planner:
    """Turns summaries into decisions with an LLM (direct or step-by-step) or the rule route."""

    def __init__(
        self,
        client: ChatClient | None,
        store: PlaybookStore | None = None,
        retriever: Retriever | None = None,
        config: PlannerConfig | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.retriever = retriever
        self.config = config or PlannerConfig()
        self.memory = BoundedContext()
        self.counts: Counter[str] = Counter()
        self.latencies: list[float] = []
        self._lock = threading.Lock()
        self._calls = 0

    # ---- context
    def playbook(self) -> list[Entry]:
        return self.store.entries() if self.store is not None else []

    def context(self, query: str) -> list[Entry]:
        """Top-k playbook entries and reflections for `query` (best by score when there is no retriever)."""
        entries = self.playbook()
        if self.store is not None:
            entries = entries + self.store.reflections(last=16)
        k = self.config.top_k
        if self.retriever is None or len(entries) <= k:
            return sorted(entries, key=lambda e: -e.score)[:k]
        return self.retriever.top_k(query, entries, k)

    # ---- decisions
    def choose_card(
        self, summary: GameSummary, options: list[str], route: str = "direct", fallback: int = 0
    ) -> Decision:
        """Pick one of `options` (upgrade names); `fallback` is the policy's own pick."""
        t0 = time.perf_counter()
        if route == "rule" or self.client is None:
            i = rule_card(options, summary, self.playbook())
            return self._done(Decision("card", options[i], i, "rule", "rule"), t0)
        query = f"level-up card choice: {', '.join(options)}. {summary.text()}"
        ctx = self.context(query)
        cot = route == "cot"
        ask = (
            f"{self.memory.text()}\nState: {summary.text()}\nPlaybook:\n{_bullets(ctx)}\n"
            f"Cards offered: {', '.join(options)}.\n"
            + (
                "Think briefly, then pick the card that best helps survival."
                if cot
                else "Pick the card that best helps survival."
            )
        )
        schema = card_schema(options, reasoning=cot)
        answers, err, _ = self._ask(ask, schema, cot, self.config.samples, "card", options)
        d = self._vote("card", answers, err, options, route, ctx, t0,
                       fallback=max(0, min(fallback, len(options) - 1)))
        self.memory.add(f"card: level {summary.level} took {d.value}")
        return d

    def rank_cards(self, summary: GameSummary, pool: list[str], route: str = "direct") -> Decision:
        """Rank every card of `pool` for the next level-up, ahead of its menu (whose ~1 s deadline a live answer
        of the embedded model misses). The rule route ranks by the rule's score; the LLM route scores every
        card in one prompt evaluation (the embedded model's `choose`) and orders them by log-probability. A
        client that cannot score, or a failed call, gives a `fallback` decision with an empty ranking: the
        menu then asks for a live card as before."""
        t0 = time.perf_counter()
        if not pool:
            raise ValueError("rank_cards needs a non-empty card pool")
        if route == "rule" or self.client is None:
            entries = self.playbook()
            scores = [score_card(c, summary, entries) for c in pool]
            return self._done(self._ranked(pool, scores, "rule", "rule", []), t0)
        choose = getattr(self.client, "choose", None)
        ctx = self.context(f"level-up card choice: {', '.join(pool)}. {summary.text()}")
        if self.config.decode != "score" or route == "cot" or choose is None:
            return self._done(Decision("card_rank", pool[0], 0, route, "fallback",
                                       error="ranking needs a scoring client (decode='score', route direct)",
                                       retrieved=[e.id for e in ctx]), t0)
        ask = (
            f"{self.memory.text()}\nState: {summary.text()}\nPlaybook:\n{_bullets(ctx)}\n"
            f"Cards that a level-up may offer: {', '.join(pool)}.\nPick the card that best helps survival."
        )
        messages: list[Message] = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ask}]
        _, err, scores = self._score(choose, messages, card_schema(pool), "card", pool)
        if scores is None:
            return self._done(Decision("card_rank", pool[0], 0, route, "fallback", error=err,
                                       retrieved=[e.id for e in ctx]), t0)
        return self._done(self._ranked(pool, scores, route, "llm", ctx), t0)

    @staticmethod
    def _ranked(pool: list[str], scores: list[float], route: str, source: str, ctx: list[Entry]) -> Decision:
        ranking = _by_score(pool, scores)
        return Decision("card_rank", ranking[0], pool.index(ranking[0]), route, source,
                        retrieved=[e.id for e in ctx], ranking=ranking)

    def choose_intent(
        self, summary: GameSummary, route: str = "direct", last: str = DEFAULT_INTENT
    ) -> Decision:
        """An intent for System 1; votes only when a boss is present (the decision that matters)."""
        t0 = time.perf_counter()
        if route == "rule" or self.client is None:
            name = rule_intent(summary)
            return self._done(Decision("intent", name, INTENTS.index(name), "rule", "rule",
                                       ranking=_first(name, list(INTENTS))), t0)
        query = f"intent for the current situation: threat {summary.threat()}, {summary.text()}"
        ctx = self.context(query)
        cot = route == "cot"
        ask = (
            f"{self.memory.text()}\nState: {summary.text()}\nPlaybook:\n{_bullets(ctx)}\n"
            f"Intents: {', '.join(INTENTS)}.\n"
            "Which intent should the player follow now?"
        )
        samples = self.config.samples if summary.boss else 1
        answers, err, scores = self._ask(ask, intent_schema(reasoning=cot), cot, samples, "intent", list(INTENTS))
        fallback_name = last if last in INTENTS else DEFAULT_INTENT
        d = self._vote("intent", answers, err, list(INTENTS), route, ctx, t0,
                       fallback=INTENTS.index(fallback_name))
        d.ranking = _intent_ranking(d, answers, scores)
        if d.value != last:
            self.memory.add(f"intent: {last} -> {d.value} at {summary.time_s:.0f}s, threat {summary.threat()}")
        return d

    def _vote(
        self, kind: str, answers: list[dict[str, Any]], err: str | None, names: list[str],
        route: str, ctx: list[Entry], t0: float, fallback: int,
    ) -> Decision:
        """Majority of the valid answers among `names`; the `fallback` index when no answer was valid."""
        retrieved = [e.id for e in ctx]
        if not answers:
            return self._done(Decision(kind, names[fallback], fallback, route, "fallback", error=err,
                                       retrieved=retrieved), t0)
        name, agree = majority([a[kind] for a in answers])
        return self._done(Decision(kind, name, names.index(name), route, "llm", agreement=agree, error=err,
                                   retrieved=retrieved), t0)

    def record_late(self, decision_kind: str) -> None:
        """Called by the async controller when an answer missed its deadline and the fallback was used."""
        with self._lock:
            self.counts["late"] += 1
            self.counts[f"late_{decision_kind}"] += 1

    # ---- internals
    def note(self, event: str) -> None:
        """Add a game event ("kind: detail") to the bounded context of the next prompts."""
        self.memory.add(event)

    def _ask(
        self, ask: str, schema: dict[str, Any], cot: bool, samples: int, field_name: str, options: list[str]
    ) -> tuple[list[dict[str, Any]], str | None, list[float] | None]:
        """Valid answers, the last error, and the options' scores when they were ranked by a scoring client."""
        assert self.client is not None
        messages: list[Message] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": ask},
        ]
        choose = getattr(self.client, "choose", None)
        if self.config.decode == "score" and not cot and choose is not None:
            return self._score(choose, messages, schema, field_name, options)
        max_tokens = self.config.max_tokens_cot if cot else self.config.max_tokens_direct
        answers: list[dict[str, Any]] = []
        err: str | None = None
        for _ in range(max(1, samples)):
            with self._lock:
                self._calls += 1
                seed = self.config.seed + self._calls
                self.counts["llm_calls"] += 1
            temperature = self.config.temperature if samples > 1 else 0.0
            try:
                text = self.client.chat(
                    messages,
                    schema=schema,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    seed=seed,
                    timeout_s=self.config.timeout_s,
                )
                answers.append(parse_answer(text, schema))
                self.count("valid_answers")
            except InvalidAnswer as e:
                err = str(e)
                self.count("invalid_answers")
            except LLMError as e:
                err = str(e)
                self.count("failed_calls")
                break  # a dead endpoint will not recover within this decision
        return answers, err, None

    def _score(
        self, choose: Any, messages: list[Message], schema: dict[str, Any], field_name: str, options: list[str]
    ) -> tuple[list[dict[str, Any]], str | None, list[float] | None]:
        """One greedy scored choice among `options` (validated like any answer), with every option's score."""
        self.count("llm_calls")
        try:
            index, scores = choose(messages, field_name, options)
            answer = parse_answer(json.dumps({field_name: options[index]}), schema)
        except LLMError as e:
            self.count("failed_calls")
            return [], str(e), None
        except InvalidAnswer as e:
            self.count("invalid_answers")
            return [], str(e), None
        self.count("valid_answers")
        return [answer], None, [float(x) for x in scores]

    def count(self, key: str) -> None:
        """Add one to `counts[key]` (thread-safe: the async controller's worker counts here too)."""
        with self._lock:
            self.counts[key] += 1

    def _done(self, d: Decision, t0: float) -> Decision:
        d.latency_s = time.perf_counter() - t0
        with self._lock:
            self.counts["decisions"] += 1
            self.counts[f"{d.kind}_{d.source}"] += 1
            if d.source == "fallback":
                self.counts["fallbacks"] += 1
            self.latencies.append(d.latency_s)
        return d


def _by_score(names: list[str], scores: list[float]) -> list[str]:
    """`names` best score first (ties keep their order)."""
    return [names[i] for i in sorted(range(len(names)), key=lambda i: (-scores[i], i))]


def _first(name: str, names: list[str]) -> list[str]:
    return [name] + [n for n in names if n != name]


def _intent_ranking(d: Decision, answers: list[dict[str, Any]], scores: list[float] | None) -> list[str]:
    """Every intent, best first: by the scored options' log-probabilities, else by votes; the decision's own
    value always leads (a fallback's, too), the unranked rest keep `INTENTS` order."""
    names = list(INTENTS)
    if scores is not None and d.source == "llm":
        return _first(d.value, _by_score(names, scores))
    votes = Counter(a["intent"] for a in answers)
    return _first(d.value, sorted(names, key=lambda n: (-votes[n], names.index(n))))


def _bullets(entries: list[Entry]) -> str:
    return "\n".join(f"- {e.text}" for e in entries) or "- (empty)"
