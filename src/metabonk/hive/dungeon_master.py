"""The DungeonMaster: System 2 reads the merged agent's per-niche scores and death causes and proposes
the next round's training niches as Arena perturbations, validated by a schema and then by a rollout.

Two routes, as in metabonk.planner: `rule` (a fixed curriculum rule: practise what kills you, harden what
is already solved) and `llm` (any chat client of metabonk.planner.llm_client, answer constrained by the
JSON schema; a malformed answer or a failed call falls back to the rule and is counted). Each proposal is
then tried: `real` runs the scripted expert and the random policy for a short real rollout and rejects
'impossible' (the expert barely lives) and 'trivial' (random play survives the stage) niches; `dream`
is the slot for the world model's verdict once the online dream loop (issue 17) lands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metabonk.common.errors import MetabonkError
from metabonk.hive.niches import Niche

BOUNDS: dict[str, tuple[float, float]] = {
    "enemy_speed": (0.05, 0.3),
    "spawn_rate_start": (0.01, 0.6),
    "spawn_rate_end": (0.05, 1.0),
    "enemy_hp": (0.5, 10.0),
    "elite_chance": (0.0, 0.5),
    "boss_hp": (20.0, 400.0),
}
"""Arena fields the DungeonMaster may set, with the range it may set them in; plus boss_times."""
IMPOSSIBLE_EXPERT_SURVIVAL = 0.2
"""A niche where the scripted expert lives less than this fraction of the stage is impossible."""
TRIVIAL_RANDOM_SURVIVAL = 0.9
"""A niche where this fraction of random-play episodes reach the stage end is trivial."""


def proposal_schema(niches: list[str]) -> dict[str, Any]:
    """JSON schema of the DungeonMaster's answer: up to one proposal per niche."""
    changes: dict[str, Any] = {k: {"type": "number", "minimum": lo, "maximum": hi} for k, (lo, hi) in BOUNDS.items()}
    changes["boss_times"] = {
        "type": "array", "items": {"type": "number", "minimum": 0.05, "maximum": 0.95}, "minItems": 1, "maxItems": 3,
    }
    item = {
        "type": "object",
        "properties": {
            "niche": {"type": "string", "enum": niches},
            "changes": {"type": "object", "properties": changes, "additionalProperties": False, "minProperties": 1},
            "reason": {"type": "string", "maxLength": 200},
        },
        "required": ["niche", "changes", "reason"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"proposals": {"type": "array", "items": item, "maxItems": len(niches)}},
        "required": ["proposals"],
        "additionalProperties": False,
    }


@dataclass
class Verdict:
    """What a rollout said about a proposed niche."""

    verdict: str
    """'accepted', 'impossible' or 'trivial'."""
    expert_survival: float
    random_survival: float
    mode: str = "real"


@dataclass
class Proposal:
    niche: str
    changes: dict[str, Any]
    reason: str
    route: str
    verdict: dict[str, Any] = field(default_factory=dict)


def _clip(name: str, v: float) -> float:
    lo, hi = BOUNDS[name]
    return float(min(hi, max(lo, v)))


def rule_proposals(scores: dict[str, dict[str, Any]], niches: dict[str, Niche]) -> list[Proposal]:
    """Practise what kills you, harden what is solved: one proposal per Arena niche from its death causes.

    `scores[niche]` holds the merged agent's `causes` counts (metabonk.hive.evaluate.NicheScore.summary).
    """
    out = []
    for name, s in scores.items():
        n = niches[name]
        if n.kind != "arena":
            continue
        cfg = n.arena_config()
        causes = s.get("causes", {})
        total = max(1, sum(causes.values()))
        survived, boss, swarm = (causes.get(k, 0) / total for k in ("survived", "boss", "swarm"))
        if survived >= 0.8:
            ch = {"spawn_rate_end": _clip("spawn_rate_end", cfg.spawn_rate_end * 1.3),
                  "enemy_speed": _clip("enemy_speed", cfg.enemy_speed * 1.1)}
            why = f"{survived:.0%} of episodes survive: harden the late waves"
        elif boss >= swarm:
            ch = {"boss_times": [round(max(0.05, t * 0.7), 3) for t in cfg.boss_times]}
            why = f"{boss:.0%} of deaths with a boss alive: bring bosses earlier to practise them"
        else:
            ch = {"spawn_rate_start": _clip("spawn_rate_start", cfg.spawn_rate_start * 1.5)}
            why = f"{swarm:.0%} of deaths to the wave: denser early waves to practise crowds"
        out.append(Proposal(name, ch, why, "rule"))
    return out


def llm_proposals(client: Any, scores: dict[str, dict[str, Any]], niches: dict[str, Niche],
                  max_tokens: int = 256) -> tuple[list[Proposal], int]:
    """Ask a chat client (metabonk.planner.llm_client.ChatClient); returns (proposals, fallbacks used)."""
    from metabonk.planner.llm_client import LLMError
    from metabonk.planner.schema import InvalidAnswer, parse_answer

    arena = {k: v for k, v in niches.items() if v.kind == "arena"}
    schema = proposal_schema(sorted(arena))
    brief = {
        k: {"mean_return": round(scores[k]["mean"], 3), "death_causes": scores[k].get("causes", {}),
            "current": {f: getattr(arena[k].arena_config(), f) for f in (*BOUNDS, "boss_times")}}
        for k in arena
    }
    messages = [
        {"role": "system", "content": "You are the DungeonMaster of a survivors-like game. Propose next round's "
         "training niches for the merged agent: practise what kills it, harden what it already survives. "
         "Answer JSON only."},
        {"role": "user", "content": json.dumps(brief)},
    ]
    try:
        doc = parse_answer(client.chat(messages, schema=schema, max_tokens=max_tokens), schema)
    except (LLMError, InvalidAnswer):
        fallback = rule_proposals(scores, niches)
        for p in fallback:
            p.route = "rule-fallback"
        return fallback, 1
    return [Proposal(p["niche"], p["changes"], p["reason"], "llm") for p in doc["proposals"]], 0


def real_rollout_verdict(niche: Niche, episodes: int, seed: int) -> Verdict:
    """Short real rollout of the scripted expert and of random play on `niche` (first episode per seed)."""
    from metabonk.policy.evaluate import BaselineController, run_episodes

    cfg = niche.arena_config()
    kw = dict(niche.overrides)

    def survival(name: str) -> np.ndarray:
        stats = run_episodes("arena", BaselineController("arena", name, seed), episodes, seed, niche.size,
                             2 * cfg.stage_steps + 200, kw)
        return np.minimum(1.0, stats.lengths / cfg.stage_steps)

    expert, rand = survival("scripted"), survival("random")
    e, r = float(expert.mean()), float((rand >= 1.0).mean())
    verdict = "accepted"
    if e < IMPOSSIBLE_EXPERT_SURVIVAL:
        verdict = "impossible"
    elif r >= TRIVIAL_RANDOM_SURVIVAL:
        verdict = "trivial"
    return Verdict(verdict, e, r)


def dream_verdict(niche: Niche, episodes: int, seed: int) -> Verdict:
    """The world model's verdict on a proposal: the hook for the online dream loop (issue 17)."""
    raise MetabonkError(
        "dream validation of DungeonMaster proposals needs the online dream loop (issue 17, metabonk.train); "
        "use --dm-validate real"
    )
