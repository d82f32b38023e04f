"""System 2 decision latency: card and intent decisions of the embedded (or any) LLM, p50/p99 and validity."""

from __future__ import annotations

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


def run_latency_bench(decisions: int = 30, samples: int = 1, threads: int = 2, llm_url: str | None = None,
                      seed: int = 0, json_path: str | Path | None = None) -> dict[str, Any]:
    """Time `decisions` card choices and as many intent choices; every answer is validated or falls back."""
    from metabonk.envs.arena import UPGRADES
    from metabonk.planner.llm_client import make_client
    from metabonk.planner.planner import Planner, PlannerConfig

    client = make_client(llm_url=llm_url, n_threads=threads)
    planner = Planner(client, config=PlannerConfig(samples=samples, seed=seed))
    rng = np.random.default_rng(seed + 1)
    planner.choose_intent(_summaries(1, seed)[0])  # warm-up: model load and prompt cache
    planner.latencies.clear()
    planner.counts.clear()
    card_lat, intent_lat, sources = [], [], []
    for s in _summaries(decisions, seed):
        options = [UPGRADES[int(i)] for i in rng.choice(len(UPGRADES), size=3, replace=False)]
        d = planner.choose_card(s, options)
        card_lat.append(d.latency_s)
        sources.append(d.source)
        d = planner.choose_intent(s)
        intent_lat.append(d.latency_s)
        sources.append(d.source)
    every = card_lat + intent_lat
    figures: dict[str, Any] = {
        "backend": llm_url or "embedded SmolLM2-135M-Instruct Q4_1 (llama-cpp-python)",
        "threads": threads, "samples_per_card": samples, "decisions": len(every),
        # raw LLM answers that passed schema validation; the rest fell back to the last/policy choice
        "raw_answers_valid_fraction": planner.counts["valid_answers"] / max(planner.counts["llm_calls"], 1),
        "llm_answered_fraction": sources.count("llm") / len(sources),
        "fallback_fraction": sources.count("fallback") / len(sources),
        "p50_s": float(np.percentile(every, 50)), "p99_s": float(np.percentile(every, 99)),
        "card_p50_s": float(np.percentile(card_lat, 50)), "card_p99_s": float(np.percentile(card_lat, 99)),
        "intent_p50_s": float(np.percentile(intent_lat, 50)), "intent_p99_s": float(np.percentile(intent_lat, 99)),
        "counts": dict(planner.counts),
    }
    table = Table(title="System 2 decision latency")
    for col in ("what", "p50 s", "p99 s"):
        table.add_column(col)
    for what in ("card", "intent"):
        table.add_row(what, f"{figures[what + '_p50_s']:.2f}", f"{figures[what + '_p99_s']:.2f}")
    table.add_row("all", f"{figures['p50_s']:.2f}", f"{figures['p99_s']:.2f}")
    Console().print(table)
    Console().print(f"LLM answered {figures['llm_answered_fraction']:.0%}, "
                    f"fell back {figures['fallback_fraction']:.0%}")
    write_result(json_path or "benchmarks/results/planner-latency-cpu.json", figures)
    return figures
