"""The card-choice experiment: same scripted movement in Arena, cards chosen by random / rule prior /
reflected playbook (several rounds) / the LLM planner with playbook; survival and level with 95 % CIs.

The playbook learns on seeds `seed...`; random, rule and LLM cards are then compared on held-out seeds
`heldout_seed...` that the playbook never saw, with the LLM's agreement with the rule route per decision."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metabonk.common.logging import ScalarLogger, progress_bar
from metabonk.common.results import write_result
from metabonk.envs.arena.spec import TICKS_PER_SECOND, StateView
from metabonk.planner.summary import GameSummary, summaries_from_state

ARENA_OVERRIDES: dict[str, Any] = {"stage_steps": 1500, "xp_base": 1.0, "xp_growth": 0.5}
"""A shorter stage with faster levels, so each run has ~10 card decisions."""

Picker = Callable[[GameSummary, list[str], int], int]
"""(summary, offered upgrade names, game row) -> chosen index."""


@dataclass
class ExperimentConfig:
    seeds: int = 16
    rounds: int = 3
    seed: int = 1000
    llm_url: str | None = None
    llm_model: str = "default"
    samples: int = 3
    n_threads: int = 2
    stage_s: float | None = None
    use_llm: bool = True
    logdir: str | None = None
    model: str | None = None
    """Embedded model (smollm2 | gemma3 | GGUF path); None: the default."""
    decode: str = "score"
    heldout_seed: int = 5000
    """First seed of the held-out evaluation (random / rule / LLM on seeds the playbook never learned from)."""


def run_games(pick: Picker, n: int, seed: int, overrides: dict[str, Any]) -> list[Any]:
    """Play n Arena games (one batch) with the scripted expert moving and `pick` choosing cards."""
    from metabonk.envs.arena import UPGRADES, ScriptedExpert, make_arena_env
    from metabonk.planner.reflect import EpisodeStats

    env = make_arena_env(n, seed=seed, pixels=False, **overrides)
    cfg = env.config
    chosen: dict[tuple[int, int, tuple[int, ...]], int] = {}
    picks: list[list[str]] = [[] for _ in range(n)]
    done = np.zeros(n, bool)

    def chooser(cards: np.ndarray, st: np.ndarray) -> np.ndarray:
        out = np.zeros(cards.shape[0], np.int64)
        view = StateView(st, cfg)
        level = view.level
        summaries = None
        for i in np.flatnonzero(view.menu_open & ~done):
            key = (int(i), round(float(level[i])), tuple(int(c) for c in cards[i]))
            if key not in chosen:
                summaries = summaries or summaries_from_state(st, cfg)
                names = [UPGRADES[c] for c in cards[i]]
                chosen[key] = pick(summaries[i], names, int(i))
                picks[i].append(names[chosen[key]])
            out[i] = chosen[key]
        return out

    policy = ScriptedExpert(cfg, card_chooser=chooser)
    obs, info = env.reset(seed=seed)
    stats: list[Any] = [None] * n
    while not done.all():
        obs, _, term, trunc, info = env.step(policy(obs, info))
        end = (term | trunc) & ~done
        for i in np.flatnonzero(end):
            final = StateView(info["final_obs"]["state"][i], cfg)
            stats[i] = EpisodeStats(
                seed=seed * 1000 + int(i),
                survived_s=float(final.time_frac) * cfg.stage_steps / TICKS_PER_SECOND,
                time_limit_s=cfg.stage_steps / TICKS_PER_SECOND,
                died=bool(term[i]),
                level=round(float(final.level)),
                picks=list(picks[i]),
            )
        done |= end
    return stats


def ci95(x: list[float]) -> dict[str, float]:
    a = np.asarray(x, dtype=np.float64)
    half = 1.96 * a.std(ddof=1) / math.sqrt(len(a)) if len(a) > 1 else float("nan")
    return {"mean": float(a.mean()), "ci95": float(half), "n": len(a)}


def summarize(stats: list[Any], base: list[Any] | None = None) -> dict[str, Any]:
    out = {
        "survival": ci95([s.survival for s in stats]),
        "level": ci95([float(s.level) for s in stats]),
        "died_frac": float(np.mean([s.died for s in stats])),
    }
    if base is not None:
        out["survival_minus_random"] = ci95(
            [s.survival - b.survival for s, b in zip(stats, base, strict=True)]
        )
        out["level_minus_random"] = ci95([float(s.level - b.level) for s, b in zip(stats, base, strict=True)])
    return out


def run_experiment(cfg: ExperimentConfig, out: Path) -> dict[str, Any]:
    from metabonk.planner.playbook import PlaybookStore
    from metabonk.planner.reflect import Curator, Reflector
    from metabonk.planner.rules import rule_card

    overrides = dict(ARENA_OVERRIDES)
    if cfg.stage_s is not None:
        overrides["stage_steps"] = round(cfg.stage_s * TICKS_PER_SECOND)
    n, seed = cfg.seeds, cfg.seed
    logger = ScalarLogger(cfg.logdir)
    figures: dict[str, Any] = {"config": asdict(cfg), "arena_overrides": overrides, "conditions": {}}
    runs = 2 + cfg.rounds + (1 if cfg.use_llm else 0)
    t_start = time.time()
    with progress_bar("planner eval", total=runs) as advance:
        rng = np.random.default_rng(cfg.seed)
        base = run_games(lambda s, o, i: int(rng.integers(len(o))), n, seed, overrides)
        figures["conditions"]["random"] = summarize(base)
        advance(status="random")
        rule = run_games(lambda s, o, i: rule_card(o, s, []), n, seed, overrides)
        figures["conditions"]["rule_prior"] = summarize(rule, base)
        advance(status="rule prior")

        db = Path("runs/planner/eval-playbook.sqlite")
        db.parent.mkdir(parents=True, exist_ok=True)
        db.unlink(missing_ok=True)
        store = PlaybookStore(db)
        reflector, curator = Reflector(), Curator(store, max_entries=16)
        rounds = []
        for r in range(cfg.rounds):
            entries = store.entries()
            stats = run_games(
                lambda s, o, i, e=entries: rule_card(o, s, e, use_prior=False), n, seed, overrides
            )
            rounds.append({"round": r, "playbook_version": store.head, **summarize(stats, base)})
            logger.log(r, **{"playbook/survival": rounds[-1]["survival"]["mean"]})
            for s, b in zip(stats, base, strict=True):  # paired credit: same seed with random cards
                curator.update(s, reflector.reflect(s, baseline=b.survival))
            advance(status=f"playbook round {r}")
        figures["conditions"]["playbook_rule_rounds"] = rounds
        figures["playbook_final_version"] = store.head
        if cfg.use_llm:
            held = cfg.heldout_seed
            rng_h = np.random.default_rng(held)
            base_h = run_games(lambda s, o, i: int(rng_h.integers(len(o))), n, held, overrides)
            heldout: dict[str, Any] = {"seed": held, "random": summarize(base_h)}
            heldout["rule_prior"] = summarize(run_games(lambda s, o, i: rule_card(o, s, []), n, held, overrides),
                                              base_h)
            heldout["llm_playbook"] = _llm_condition(cfg, store, n, held, overrides, base_h)
            figures["conditions"]["heldout"] = heldout
            advance(status="llm")
    figures["wall_s"] = time.time() - t_start
    logger.close()
    write_result(out, figures)
    return figures


def _llm_condition(
    cfg: ExperimentConfig, store: Any, n: int, seed: int, overrides: dict[str, Any], base: list[Any]
) -> dict[str, Any]:
    from metabonk.planner.llm_client import make_client
    from metabonk.planner.planner import Planner, PlannerConfig
    from metabonk.planner.retrieval import Retriever
    from metabonk.planner.rules import rule_card

    client = make_client(cfg.llm_url, model=cfg.llm_model, n_threads=cfg.n_threads, gguf=cfg.model)
    planner = Planner(client, store=store, retriever=Retriever(),
                      config=PlannerConfig(samples=cfg.samples, decode=cfg.decode))
    rng = np.random.default_rng(cfg.seed + 1)
    valid: list[bool] = []
    agree: list[bool] = []

    def pick(s: GameSummary, o: list[str], i: int) -> int:
        d = planner.choose_card(s, o, route="direct", fallback=int(rng.integers(len(o))))
        valid.append(0 <= d.index < len(o) and o[d.index] == d.value)
        agree.append(d.index == rule_card(o, s, []))
        return d.index

    stats = run_games(pick, n, seed, overrides)
    lat = np.asarray(planner.latencies, dtype=np.float64)
    c = planner.counts
    res = summarize(stats, base)
    res.update(
        {
            "client": client.name,
            "decisions": int(c["decisions"]),
            "from_llm": int(c["card_llm"]),
            "fallbacks": int(c["fallbacks"]),
            "invalid_answers": int(c["invalid_answers"]),
            "failed_calls": int(c["failed_calls"]),
            "schema_valid_after_fallback_frac": float(np.mean(valid)) if valid else 1.0,
            "raw_answers_valid_frac": c["valid_answers"] / max(c["llm_calls"], 1),
            "agreement_with_rule": float(np.mean(agree)) if agree else float("nan"),
            "decode": cfg.decode,
            "latency_p50_s": float(np.percentile(lat, 50)),
            "latency_p99_s": float(np.percentile(lat, 99)),
            "samples_per_decision": cfg.samples,
        }
    )
    return res


def print_report(figures: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="card choices in Arena (scripted movement), mean ± 95% CI")
    for col in ("condition", "survival", "level", "Δsurvival vs random", "died"):
        t.add_column(col)

    def row(name: str, d: dict[str, Any]) -> None:
        diff = d.get("survival_minus_random")
        t.add_row(
            name,
            f"{d['survival']['mean']:.3f} ± {d['survival']['ci95']:.3f}",
            f"{d['level']['mean']:.2f} ± {d['level']['ci95']:.2f}",
            f"{diff['mean']:+.3f} ± {diff['ci95']:.3f}" if diff else "-",
            f"{d['died_frac']:.2f}",
        )

    conds = figures["conditions"]
    row("random", conds["random"])
    row("rule prior", conds["rule_prior"])
    for r in conds["playbook_rule_rounds"]:
        row(f"playbook round {r['round']} (v{r['playbook_version']})", r)
    if "heldout" in conds:
        h = conds["heldout"]
        row(f"held-out seeds {h['seed']}+: random", h["random"])
        row("held-out: rule prior", h["rule_prior"])
        llm = h["llm_playbook"]
        row("held-out: LLM + playbook", llm)
        t.caption = (
            f"LLM: {llm['decisions']} decisions, {llm['fallbacks']} fallbacks, latency p50 "
            f"{llm['latency_p50_s']:.2f}s p99 {llm['latency_p99_s']:.2f}s, agrees with the rule route on "
            f"{llm['agreement_with_rule']:.0%}"
        )
    Console().print(t)
