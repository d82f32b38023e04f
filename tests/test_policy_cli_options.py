"""`train policy` shapes a fresh BC policy from the command line (--pixel-norm, --actor-init-gain, --batch,
--seq-len) and its optimiser (--lr, --lr-final, --ema), and `eval policy` plays greedily under a step cap (--greedy,
--max-steps), as the demo's stages do; options that do not apply are one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from metabonk.common.checkpoint import load_trainer_state, read_config
from metabonk.data.record import record_episodes
from metabonk.latent.idm import IDMConfig, InverseDynamicsModel
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig
from tests.hardening_helpers import assert_one_line_error, run_cli


def test_bc_takes_the_policy_shape_options(tmp_path: Path) -> None:
    record_episodes("arena", tmp_path / "vid", 2, policy="scripted", num_envs=2, size=64, seed=0,
                    keep_actions=True, max_steps=24, show_progress=False)
    code, text = run_cli(["train", "policy", "--algo", "bc", "--data", str(tmp_path / "vid"), "--out",
                          str(tmp_path / "bc"), "--steps", "2", "--batch", "2", "--seq-len", "4", "--pixel-norm",
                          "background", "--actor-init-gain", "1", "--device", "cpu"])
    assert code == 0, text
    cfg = read_config(tmp_path / "bc")["config"]
    assert cfg["pixel_norm"] == "background" and cfg["actor_init_gain"] == 1.0
    code, text = run_cli(["train", "policy", "--algo", "bc", "--data", str(tmp_path / "vid"), "--out",
                          str(tmp_path / "bc2"), "--steps", "2", "--pixel-norm", "zscore", "--device", "cpu"])
    assert_one_line_error(code, text, "pixel_norm")
    code, text = run_cli(["train", "policy", "--algo", "ppo", "--out", str(tmp_path / "ppo"), "--batch", "4"])
    assert_one_line_error(code, text, "--algo bc")
    code, text = run_cli(["train", "policy", "--algo", "ppo", "--out", str(tmp_path / "ppo"), "--soft-labels"])
    assert_one_line_error(code, text, "--algo bc")
    code, text = run_cli(["train", "policy", "--algo", "ppo", "--out", str(tmp_path / "ppo"), "--ema", "0.9"])
    assert_one_line_error(code, text, "--algo bc")
    # soft labels are the IDM's probabilities: refused on true labels
    code, text = run_cli(["train", "policy", "--algo", "bc", "--data", str(tmp_path / "vid"), "--out",
                          str(tmp_path / "bc3"), "--steps", "2", "--label", "action", "--soft-labels",
                          "--device", "cpu"])
    assert_one_line_error(code, text, "--label action_idm")


def test_bc_takes_the_optimiser_options(tmp_path: Path) -> None:
    record_episodes("arena", tmp_path / "vid", 2, policy="scripted", num_envs=2, size=64, seed=0,
                    keep_actions=True, max_steps=24, show_progress=False)
    base = ["train", "policy", "--algo", "bc", "--data", str(tmp_path / "vid"), "--steps", "6", "--batch", "2",
            "--seq-len", "4", "--lr", "0.01", "--device", "cpu"]
    code, text = run_cli([*base, "--out", str(tmp_path / "plain")])
    assert code == 0, text
    plain = load_trainer_state(tmp_path / "plain")
    assert plain is not None and "raw_weights" not in plain  # no EMA: the checkpoint is the raw weights
    assert plain["scheduler"]["_last_lr"][0] == 0.01
    code, text = run_cli([*base, "--out", str(tmp_path / "ema"), "--lr-final", "0", "--ema", "0.5"])
    assert code == 0, text
    state = load_trainer_state(tmp_path / "ema")
    assert state is not None and state["scheduler"]["_last_lr"][0] < 1e-3  # cosine-decayed towards 0
    saved = Agent.load(tmp_path / "ema").state_dict()
    assert any(not torch.equal(saved[k], v) for k, v in state["raw_weights"].items())  # the checkpoint is the EMA


def test_eval_policy_greedy_under_a_step_cap(tmp_path: Path) -> None:
    Agent(PolicyConfig(image_size=32, channels=(8,), feature_dim=16, hidden=8)).save(tmp_path / "p")
    out = tmp_path / "e.json"
    code, text = run_cli(["eval", "policy", str(tmp_path / "p"), "--env", "arena", "--episodes", "2", "--greedy",
                          "--max-steps", "30", "--device", "cpu", "--json", str(out)])
    assert code == 0, text
    res = json.loads(out.read_text())["results"]
    assert res["greedy"] is True and res["max_steps"] == 30
    for agent in ("policy", "random", "expert"):
        assert res[agent]["survival_mean"] <= 30  # Arena's stage lasts 2,000 ticks: every game is cut at 30
    InverseDynamicsModel(IDMConfig()).save(tmp_path / "idm")
    code, text = run_cli(["eval", "idm", str(tmp_path / "idm"), "--greedy"])
    assert_one_line_error(code, text, "for policies")
