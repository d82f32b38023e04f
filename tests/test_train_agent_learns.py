"""The online loop learns Scroll (a tiny real game) on CPU: after 3,000 real steps its agent beats random play and
beats PPO from scratch at the same real steps, on the same 32 evaluation seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from metabonk.train.agent_config import loop_config
from metabonk.train.online import train_agent
from metabonk.train.report import evaluate_and_report


def loop_vs_ppo(out: Path, seed: int = 0, env_steps: int = 3000) -> dict:
    """Run the tiny loop and the PPO baseline; returns the eval figures (loop, ppo, random)."""
    import json

    torch.set_num_threads(1)
    cfg = loop_config("tiny", env="scroll", env_steps=env_steps, out=str(out), device="cpu", seed=seed,
                      quiet=True, eval_episodes=32)
    run = train_agent(cfg)
    evaluate_and_report(cfg, run, compare_ppo=True)
    return json.loads((run / "eval.json").read_text())["results"]["eval"]


@pytest.mark.slow
def test_loop_beats_random_and_ppo(tmp_path: Path) -> None:
    ev = loop_vs_ppo(tmp_path / "run", seed=int(os.environ.get("LOOP_TEST_SEED", "0")))
    loop, ppo, rnd = (ev[k]["return_mean"] for k in ("policy", "ppo", "random"))
    # margins from the measured spread (benchmarks/results/agent-scroll-cpu-test-spread.jsonl, 2-core AMD CPU):
    # seeds 0 / 1 gave loop 1.78 / 2.38, PPO 1.03 / 1.63, random 1.03 / 1.16 (1.73x / 2.05x random, PPO + 0.75)
    assert loop > 1.4 * rnd, ev
    assert loop > ppo + 0.3, ev
