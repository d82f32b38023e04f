"""Slow: the CPU default demo (`make demo`'s job, its 32 evaluation seeds) reaches issue 5's survival target."""

from __future__ import annotations

import json

import pytest

from metabonk.demo.pipeline import run_demo
from metabonk.demo.presets import get_preset
from tests.test_policy_helpers import one_thread  # noqa: F401  (autouse fixture)


@pytest.mark.slow
def test_default_demo_survives_like_the_target(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the demo writes its tracked result under ./benchmarks/results
    # The reduced sizes tried before (8 video episodes, 1,200 BC steps) missed even a lowered bound (1.99x random
    # < 2.0 on 2026-12-02): the default preset's data is what reaches the target. Measured: 3.02x / 3.81x random,
    # 0.82 / 1.04 of the expert over 32 seeds (docs/demo.md).
    preset = get_preset("default")
    run_demo(preset, device="cpu", root=tmp_path, name="slow")
    ev = json.loads((tmp_path / "slow" / "eval" / "done.json").read_text())["summary"]
    demo = ev["demo (BC + dream)"]
    # issue 5's target for the default preset: ≥ 50 % of the expert and ≥ 3× random.
    assert demo["survival_vs_expert"] >= 0.5, demo
    assert demo["survival_vs_random"] >= 3.0, demo
