"""System 2 decision latency: card and intent decisions of the embedded (or any) LLM, p50/p99 and validity;
KV-prefix reuse (prompt tokens evaluated on the 1st vs 2nd call); and, with `in_game`, the latency inside a
running real-time Arena game with System 1's tick rate measured with and without the planner."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from metabonk.common.results import write_result


def _summaries(n: int, seed: int) -> list[Any]:
    from metabonk.envs.arena import UPGRADES
    from metabonk.planner.summary import GameSummary

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        picks = rng.choice(len(UPGRADES), size=int(rng.integers(0, 6)))
        build: dict[str, int] = {}
        for p in picks:
            build[UPGRADES[int(p)]] = build.get(UPGRADES[int(p)], 0) + 1
        max_hp = float(rng.integers(80, 160))
        out.append(GameSummary(hp=float(rng.uniform(5, max_hp)), max_hp=max_hp, level=int(rng.integers(1, 15)),
                               time_s=float(rng.uniform(0, 600)), build=build,
                               enemies_near=int(rng.integers(0, 12)), boss=bool(rng.random() < 0.2),
                               kills=int(rng.integers(0, 200))))
    return out


def _pct(x: list[float]) -> dict[str, float]:
    return {"p50_s": float(np.percentile(x, 50)), "p99_s": float(np.percentile(x, 99)), "n": len(x)} if x else {}


def load_average() -> list[float]:
    """The 1/5/15-minute load averages (the machine is shared: latency figures depend on them)."""
    return [round(v, 2) for v in os.getloadavg()]


def run_latency_bench(decisions: int = 30, samples: int = 1, threads: int = 2, llm_url: str | None = None,
                      seed: int = 0, json_path: str | Path | None = None, model: str | None = None,
                      decode: str = "score", in_game_s: float = 0.0) -> dict[str, Any]:
    """Time `decisions` card choices and as many intent choices; every answer is validated or falls back."""
    from metabonk.envs.arena import UPGRADES
    from metabonk.planner.llm_client import make_client
    from metabonk.planner.planner import Planner, PlannerConfig

    load_start = load_average()
    client = make_client(llm_url=llm_url, n_threads=threads, gguf=model)
    planner = Planner(client, config=PlannerConfig(samples=samples, seed=seed, decode=decode))
    figures: dict[str, Any] = {"backend": client.name, "model": model, "decode": decode, "threads": threads,
                               "samples_per_card": samples, "load_average_start": load_start}
    figures["prefix_reuse"] = _prefix_reuse(planner, client)
    planner.latencies.clear()
    planner.counts.clear()
    rng = np.random.default_rng(seed + 1)
    card_lat, intent_lat, sources, prompt_tokens = [], [], [], []
    for s in _summaries(decisions, seed):
        options = [UPGRADES[int(i)] for i in rng.choice(len(UPGRADES), size=3, replace=False)]
        for d in (planner.choose_card(s, options), planner.choose_intent(s)):
            (card_lat if d.kind == "card" else intent_lat).append(d.latency_s)
            sources.append(d.source)
            last = getattr(client, "last", None)
            if last is not None:
                prompt_tokens.append(last.prompt_tokens)
    every = card_lat + intent_lat
    figures.update({
        "decisions": len(every),
        # raw LLM answers that passed schema validation; the rest fell back to the last/policy choice
        "raw_answers_valid_fraction": planner.counts["valid_answers"] / max(planner.counts["llm_calls"], 1),
        "llm_answered_fraction": sources.count("llm") / len(sources),
        "fallback_fraction": sources.count("fallback") / len(sources),
        "p50_s": float(np.percentile(every, 50)), "p99_s": float(np.percentile(every, 99)),
        "card": _pct(card_lat), "intent": _pct(intent_lat),
        "prompt_tokens_max": max(prompt_tokens, default=0),
        "counts": dict(planner.counts),
    })
    figures["unconstrained_json_valid_fraction"] = _free_validity(planner, client, decisions, seed)
    if in_game_s > 0:
        figures["in_game"] = run_in_game(planner, in_game_s, seed)
    figures["load_average_end"] = load_average()
    _print(figures)
    write_result(json_path or "benchmarks/results/planner-latency-cpu.json", figures)
    return figures


def _prefix_reuse(planner: Any, client: Any) -> dict[str, Any]:
    """Two consecutive intent decisions on different states: prompt tokens evaluated and prompt-eval time."""
    if getattr(client, "last", None) is None:
        return {}
    calls = []
    for s in _summaries(2, 99):
        d = planner.choose_intent(s)
        last = client.last
        calls.append({"prompt_tokens": last.prompt_tokens, "reused_tokens": last.reused_tokens,
                      "evaluated_tokens": last.prompt_tokens - last.reused_tokens,
                      "prompt_eval_s": last.prompt_eval_s, "decision_s": d.latency_s})
    return {"first": calls[0], "second": calls[1]}


def _free_validity(planner: Any, client: Any, n: int, seed: int) -> float | None:
    """Share of intent answers generated WITHOUT the grammar that still parse and match the schema: how well
    the model itself follows the JSON format (the planner's own decisions are constrained or scored)."""
    from metabonk.planner.chat import LLMError
    from metabonk.planner.planner import SYSTEM_PROMPT
    from metabonk.planner.schema import InvalidAnswer, intent_schema, parse_answer

    ok = 0
    schema = intent_schema()
    for s in _summaries(n, seed + 7):
        ask = (f"State: {s.text()}\nIntents: {', '.join(schema['properties']['intent']['enum'])}.\n"
               'Which intent should the player follow now? Answer as {"intent": "<name>"}.')
        try:
            text = client.chat([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": ask}],
                               temperature=0.0, max_tokens=16)
            parse_answer(text, schema)
            ok += 1
        except (InvalidAnswer, LLMError):
            pass
    return ok / n if n else None


def run_in_game(planner: Any, seconds: float, seed: int) -> dict[str, Any]:
    """Play Arena in real time (60 ticks/s, scripted System 1) for `seconds`, first without and then with the
    async planner; System 1's achieved ticks/s and tick time, and System 2's decision latency in the game."""
    from metabonk.planner.async_planner import AsyncPlanner
    from metabonk.planner.experiment import ARENA_OVERRIDES

    out: dict[str, Any] = {"seconds_each": seconds, "arena_overrides": ARENA_OVERRIDES}
    out["without_planner"] = _paced_game(None, seconds, seed)
    planner.latencies.clear()
    planner.counts.clear()
    planner.memory.reset()
    ctrl = AsyncPlanner(planner, period_s=2.0, deadline_s=planner.config.timeout_s)
    out["with_planner"] = _paced_game(ctrl, seconds, seed)
    out["decision_latency"] = _pct(list(planner.latencies))
    out["planner_counts"] = {k: int(v) for k, v in planner.counts.items()}
    out["tick_rate_ratio"] = out["with_planner"]["ticks_per_s"] / max(out["without_planner"]["ticks_per_s"], 1e-9)
    return out


def _paced_game(ctrl: Any, seconds: float, seed: int) -> dict[str, Any]:
    from metabonk.envs.arena import make_arena_env
    from metabonk.envs.arena.spec import TICKS_PER_SECOND
    from metabonk.planner.experiment import ARENA_OVERRIDES
    from metabonk.policy.scripted_system1 import ScriptedSystem1
    from metabonk.two_systems import SafetyConfig, TwoSystemController

    # the risk layer is off: this measures System 2's cost on System 1's tick, not the risk layer's
    controller = TwoSystemController(ScriptedSystem1(), ctrl, safety=SafetyConfig.off())
    env = make_arena_env(1, seed=seed, **ARENA_OVERRIDES)  # System 1 reads pixels
    obs, info = env.reset(seed=seed)
    controller.reset(env)
    period, ticks, late = 1.0 / TICKS_PER_SECOND, 0, 0
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            due = t0 + ticks * period
            action = controller.act(obs, info)
            obs, _, term, trunc, info = env.step(action)
            ticks += 1
            if bool(np.asarray(term)[0] or np.asarray(trunc)[0]):
                controller.episode_done()
            wait = due + period - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            else:
                late += 1
    finally:
        env.close()
        if ctrl is not None:
            ctrl.close()
    wall = time.perf_counter() - t0
    st = controller.stats()
    return {"ticks": ticks, "ticks_per_s": ticks / wall, "target_ticks_per_s": TICKS_PER_SECOND,
            "ticks_behind_schedule": late, "tick_ms_p50": st["tick_ms_p50"], "tick_ms_p99": st["tick_ms_p99"],
            "menus": st["menus"], "cards_system2": st["cards_system2"],
            "cards_system2_ranked": st["cards_system2_ranked"], "late_cards": st["late_cards"],
            "card_fallbacks": st["card_fallbacks"],
            "intents_applied": st["intents_applied"]}


def _print(figures: dict[str, Any]) -> None:
    table = Table(title=f"System 2 decision latency ({figures['backend']}, {figures['decode']})")
    for col in ("what", "p50 s", "p99 s"):
        table.add_column(col)
    for what in ("card", "intent"):
        table.add_row(what, f"{figures[what]['p50_s']:.2f}", f"{figures[what]['p99_s']:.2f}")
    table.add_row("all", f"{figures['p50_s']:.2f}", f"{figures['p99_s']:.2f}")
    game = figures.get("in_game")
    if game and game["decision_latency"]:
        table.add_row("in game", f"{game['decision_latency']['p50_s']:.2f}",
                      f"{game['decision_latency']['p99_s']:.2f}")
    console = Console()
    console.print(table)
    console.print(f"LLM answered {figures['llm_answered_fraction']:.0%}, fell back {figures['fallback_fraction']:.0%}; "
                  f"load average {figures['load_average_start']} -> {figures['load_average_end']}")
    if game:
        console.print(f"System 1 ticks/s without planner {game['without_planner']['ticks_per_s']:.1f}, "
                      f"with {game['with_planner']['ticks_per_s']:.1f} (ratio {game['tick_rate_ratio']:.3f})")
