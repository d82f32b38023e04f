"""`metabonk bench baselines`: random vs the scripted expert on the same seeds, written as a result JSON with the
command inside and the expert/random survival ratio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from metabonk.cli import app


def test_bench_baselines_writes_both_baselines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import metabonk.policy.evaluate as ev

    calls: list[dict[str, Any]] = []
    real = ev.evaluate_policy

    def short(agent: Any, env: str, episodes: int, seed: int) -> dict[str, Any]:
        calls.append({"agent": agent, "env": env, "episodes": episodes, "seed": seed})
        return real(agent, env, episodes=episodes, seed=seed, max_steps=60)  # capped: a quick run

    monkeypatch.setattr(ev, "evaluate_policy", short)
    out = tmp_path / "b.json"
    res = CliRunner().invoke(app, ["bench", "baselines", "--episodes", "3", "--seed", "5", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert calls == [{"agent": None, "env": "arena", "episodes": 3, "seed": 5}]
    doc = json.loads(out.read_text())["results"]
    assert set(doc) >= {"random", "expert", "expert_vs_random"}
    ratio = doc["expert"]["survival_mean"] / doc["random"]["survival_mean"]
    assert doc["expert_vs_random"] == pytest.approx(ratio)
    assert "expert survival / random" in res.output
