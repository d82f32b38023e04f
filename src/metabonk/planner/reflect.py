"""After-episode learning: a Reflexion reflector writes a lesson; an ACE curator edits the playbook.

Credit is structured (each card taken gets helpful/harmful from the episode's survival against a baseline);
the LLM, when given, only phrases the lesson text and falls back to a template when its answer is invalid.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

from metabonk.planner.chat import ChatClient, LLMError
from metabonk.planner.playbook import Entry, PlaybookStore
from metabonk.planner.rules import card_tag
from metabonk.planner.schema import REFLECTION_SCHEMA, InvalidAnswer, parse_answer


@dataclass
class EpisodeStats:
    """What one episode did (from Arena's info) and which cards System 2 (or the fallback) took."""

    seed: int
    survived_s: float
    time_limit_s: float
    died: bool
    level: int
    kills: int = 0
    damage_taken: float = 0.0
    picks: list[str] = field(default_factory=list)
    boss_spawned: int = 0
    boss_killed: int = 0
    route: str = "rule"

    @property
    def survival(self) -> float:
        """Fraction of the stage survived, in [0, 1] (the router's reward)."""
        return max(0.0, min(1.0, self.survived_s / max(self.time_limit_s, 1e-6)))

    def text(self) -> str:
        picks = ", ".join(f"{k} x{v}" for k, v in Counter(self.picks).most_common()) or "none"
        end = "died" if self.died else "survived the stage"
        return (
            f"seed {self.seed}: {end} at {self.survived_s:.0f}s of {self.time_limit_s:.0f}s, "
            f"level {self.level}, "
            f"{self.kills} kills, {self.damage_taken:.0f} damage taken, bosses {self.boss_killed}/"
            f"{self.boss_spawned} killed; cards: {picks}"
        )


@dataclass
class Reflection:
    """A short lesson plus the signed outcome used for credit (delta = survival - baseline)."""

    text: str
    tags: list[str]
    delta: float


@dataclass
class Edit:
    """One curator operation on the playbook."""

    op: str  # add | rewrite | merge | delete | credit
    id: str = ""
    ids: list[str] = field(default_factory=list)
    text: str = ""
    tags: list[str] = field(default_factory=list)
    helpful: int = 0
    harmful: int = 0


class Reflector:
    """Writes the episode's lesson (template, or the LLM under REFLECTION_SCHEMA when a client is given)."""

    def __init__(self, client: ChatClient | None = None, margin: float = 0.02) -> None:
        self.client = client
        self.margin = margin
        self.counts: Counter[str] = Counter()

    def reflect(self, stats: EpisodeStats, baseline: float) -> Reflection:
        delta = stats.survival - baseline
        verdict = "better" if delta > self.margin else "worse" if delta < -self.margin else "as good as"
        cards = [card_tag(c) for c, _ in Counter(stats.picks).most_common(3)]
        text = f"{stats.text()}. Survival {verdict} than baseline ({delta:+.0%})."
        tags = ["boss", *cards] if stats.died and stats.boss_spawned > stats.boss_killed else cards
        if self.client is not None:
            ask = (
                f"Episode summary: {text}\nWrite one short lesson (under 25 words) for the next run, "
                "and up to 4 tags."
            )
            try:
                out = self.client.chat(
                    [{"role": "user", "content": ask}],
                    schema=REFLECTION_SCHEMA,
                    temperature=0.0,
                    max_tokens=72,
                )
                doc = parse_answer(out, REFLECTION_SCHEMA)
                text = f"{text} Lesson: {doc['lesson']}"
                self.counts["llm_lessons"] += 1
            except (InvalidAnswer, LLMError):
                self.counts["template_lessons"] += 1
        return Reflection(text=text, tags=tags[:4], delta=delta)


class Curator:
    """Turns reflections into add / rewrite / merge / delete / credit edits, within a size budget."""

    def __init__(
        self, store: PlaybookStore, max_entries: int = 16, max_chars: int = 1600, margin: float = 0.02
    ) -> None:
        self.store = store
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.margin = margin

    def propose(self, stats: EpisodeStats, reflection: Reflection, entries: list[Entry]) -> list[Edit]:
        edits: list[Edit] = []
        by_tags: dict[tuple[str, ...], list[Entry]] = {}
        for e in entries:
            by_tags.setdefault(tuple(sorted(e.tags)), []).append(e)
        for group in by_tags.values():  # duplicates on the same subject become one entry
            if len(group) > 1:
                edits.append(Edit("merge", ids=[e.id for e in group], text=group[0].text, tags=group[0].tags))
        if abs(reflection.delta) <= self.margin:
            return edits
        good = reflection.delta > 0
        for card in dict.fromkeys(stats.picks):
            tag = card_tag(card)
            owners = [e for e in entries if tag in e.tags]
            if owners:
                edits.append(Edit("credit", id=owners[0].id, helpful=int(good), harmful=int(not good)))
            else:
                edits.append(
                    Edit(
                        "add",
                        text=_card_text(card, int(good), int(not good)),
                        tags=[tag],
                        helpful=int(good),
                        harmful=int(not good),
                    )
                )
        if stats.died and stats.boss_spawned > stats.boss_killed:
            owners = [e for e in entries if "boss" in e.tags]
            if owners:
                edits.append(Edit("credit", id=owners[0].id, helpful=1))
            else:
                edits.append(
                    Edit(
                        "add",
                        text="A boss ended a run: kite in wide circles when it spawns and "
                        "take defensive cards before boss time.",
                        tags=["boss"],
                        helpful=1,
                    )
                )
        return edits

    def apply(self, entries: list[Entry], edits: list[Edit]) -> list[Entry]:
        """Pure: the entries after `edits`, trimmed to the budget (least informative entries go first)."""
        out = {e.id: dataclasses.replace(e, tags=list(e.tags)) for e in entries}
        for ed in edits:
            if ed.op == "add":
                eid = self.store.new_id()
                out[eid] = Entry(eid, ed.text, list(ed.tags), ed.helpful, ed.harmful)
            elif ed.op == "rewrite" and ed.id in out:
                out[ed.id].text = ed.text
            elif ed.op == "delete":
                out.pop(ed.id, None)
            elif ed.op == "merge":
                group = [out.pop(i) for i in ed.ids if i in out]
                if group:
                    keep = group[0]
                    keep.helpful = sum(e.helpful for e in group)
                    keep.harmful = sum(e.harmful for e in group)
                    out[keep.id] = keep
            elif ed.op == "credit" and ed.id in out:
                e = out[ed.id]
                e.helpful += ed.helpful
                e.harmful += ed.harmful
                card = next((t[5:] for t in e.tags if t.startswith("card:")), None)
                if card is not None:  # keep the text in step with the evidence (an ACE rewrite)
                    e.text = _card_text(card, e.helpful, e.harmful)
        kept = list(out.values())
        while kept and (len(kept) > self.max_entries or sum(len(e.text) for e in kept) > self.max_chars):
            weakest = min(kept, key=lambda e: (abs(e.score), e.helpful + e.harmful))
            kept.remove(weakest)
        return kept

    def update(self, stats: EpisodeStats, reflection: Reflection) -> int:
        """Store the reflection, apply the proposed edits, commit a new version; returns the head version."""
        self.store.add_reflection(reflection.text, reflection.tags, episode=f"seed{stats.seed}")
        entries = self.store.entries()
        edits = self.propose(stats, reflection, entries)
        new = self.apply(entries, edits)
        ops = Counter(e.op for e in edits)
        reason = (
            f"episode seed {stats.seed}: survival {stats.survival:.0%} "
            f"({reflection.delta:+.0%} vs baseline); "
            + (", ".join(f"{k} x{v}" for k, v in sorted(ops.items())) or "no edits")
        )
        return self.store.commit(new, reason)


def _card_text(card: str, helpful: int, harmful: int) -> str:
    if helpful > harmful:
        advice = f"Prefer {card}"
    elif harmful > helpful:
        advice = f"Avoid {card} unless nothing better is offered"
    else:
        advice = f"{card} is neutral so far"
    return f"{advice}: runs with it went better {helpful}x, worse {harmful}x than baseline."
