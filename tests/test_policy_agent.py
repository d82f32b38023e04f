"""System 1 agent: cores step-by-step == sequence forward, save/load round-trip, action mapping."""

from __future__ import annotations

import pytest
import torch

from metabonk.common.errors import MetabonkError
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig, config_for_env
from metabonk.policy.cores import make_core
from tests.test_policy_helpers import one_thread  # noqa: F401  (autouse fixture)


@pytest.mark.parametrize("core", ["cfc", "mamba"])
def test_core_step_by_step_equals_sequence(core: str) -> None:
    torch.manual_seed(0)
    cfg = PolicyConfig(core=core, hidden=32)
    c = make_core(24, cfg).eval()
    B, T = 3, 12
    x = torch.randn(B, T, 24)
    h = c.initial_state(B)
    ys = []
    with torch.no_grad():
        for t in range(T):
            y, h = c.step(x[:, t], h)
            ys.append(y)
        y_step = torch.stack(ys, 1)
        y_seq, h_seq = c.sequence(x, c.initial_state(B))
        y_fast = c.outputs_from_zero(x)  # Mamba: parallel scan; CfC: ncps' own loop
    assert y_step.abs().mean() > 1e-3  # outputs are not trivially zero
    torch.testing.assert_close(y_seq, y_step, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h_seq, h, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(y_fast, y_step, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("core", ["cfc", "mamba"])
def test_core_resets_mid_sequence_equal_fresh_start(core: str) -> None:
    torch.manual_seed(1)
    c = make_core(16, PolicyConfig(core=core, hidden=16)).eval()
    x = torch.randn(2, 10, 16)
    resets = torch.zeros(2, 10, dtype=torch.bool)
    resets[:, 6] = True
    with torch.no_grad():
        y, _ = c.sequence(x, torch.randn(2, c.state_size), resets)
        y_fresh, _ = c.sequence(x[:, 6:], c.initial_state(2))
    torch.testing.assert_close(y[:, 6:], y_fresh, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("core", ["cfc", "mamba"])
def test_agent_step_equals_forward_sequence(core: str) -> None:
    torch.manual_seed(2)
    agent = Agent(PolicyConfig(core=core)).eval()
    B, T = 2, 6
    obs = {
        "pixels": torch.randint(0, 256, (B, T, 64, 64, 3), dtype=torch.uint8),
        "card_options": torch.randint(0, 11, (B, T, 3)),
    }
    h = agent.initial_state(B)
    vals, cards = [], []
    with torch.no_grad():
        for t in range(T):
            _, v, c, h = agent.step({k: o[:, t] for k, o in obs.items()}, h, intent=3)
            vals.append(v)
            cards.append(c)
        _, v_seq, c_seq, h_seq = agent.forward_sequence(obs, agent.initial_state(B), intent_BT=3)
    torch.testing.assert_close(v_seq, torch.stack(vals, 1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(c_seq, torch.stack(cards, 1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h_seq, h, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("core", ["cfc", "mamba"])
def test_save_load_round_trip_is_identical(core: str, tmp_path) -> None:
    torch.manual_seed(3)
    agent = Agent(PolicyConfig(core=core, state_dim=5)).eval()
    for p in agent.parameters():  # make every head matter, including the zero-initialised reflex heads
        p.data.add_(torch.randn_like(p) * 0.05)
    agent.save(tmp_path / "ckpt", meta={"note": "test"})
    loaded = Agent.load(tmp_path / "ckpt").eval()
    assert loaded.cfg == agent.cfg
    obs = {"pixels": torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8), "state": torch.randn(4, 5)}
    h = agent.initial_state(4)
    with torch.no_grad():
        a = agent.step(obs, h, intent="flee")
        b = loaded.step(obs, h, intent="flee")
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_intent_changes_the_action_distribution() -> None:
    torch.manual_seed(4)
    agent = Agent(PolicyConfig()).eval()
    agent.reflex.data.normal_(0, 0.5)
    obs = {"pixels": torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)}
    h = agent.initial_state(1)
    with torch.no_grad():
        l_kite = agent.step(obs, h, "kite")[0]
        l_flee = agent.step(obs, h, "flee")[0]
    assert (l_kite - l_flee).abs().max() > 1e-3


def test_arena_action_mapping_menu_and_override() -> None:
    torch.manual_seed(5)
    agent = Agent(PolicyConfig()).eval()
    obs = {
        "pixels": torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8),
        "card_options": torch.tensor([[0, 1, 2]] * 4),
    }
    menu = torch.tensor([True, False, True, False])
    a, _, ex = agent.act(
        obs, agent.initial_state(4), menu_open=menu, card_override=torch.tensor([2, -1, -1, 0])
    )
    assert a[0] == 20  # System 2 override: card 2
    assert 18 <= int(a[2]) <= 20  # the policy's own card choice
    assert int(a[1]) < 18 and int(a[3]) < 18  # movement outside the menu; the override is ignored there
    assert torch.isfinite(ex["logp"]).all()


def test_ale_config_has_no_card_head() -> None:
    cfg = config_for_env(6, is_arena=False)
    agent = Agent(cfg)
    logits, _, cards, _ = agent.step(
        {"pixels": torch.zeros(2, 64, 64, 3, dtype=torch.uint8)}, agent.initial_state(2)
    )
    assert logits.shape == (2, 6) and cards is None and cfg.env_actions == 6


def test_bad_core_is_a_user_error() -> None:
    with pytest.raises(MetabonkError):
        PolicyConfig(core="lstm")


def test_compiled_step_matches_eager_and_carries_state() -> None:
    """`compile_for_inference` (the CPU fast path of `play agent --compile` and `bench policy`) gives the same
    logits, value and next hidden state as eager, tick after tick."""
    torch.manual_seed(0)
    eager = Agent(PolicyConfig(core="cfc", channels=(8, 16), hidden=16, feature_dim=32)).eval()
    fast = Agent(eager.cfg).eval()
    fast.load_state_dict(eager.state_dict())
    fast.compile_for_inference()
    g = torch.Generator().manual_seed(1)
    h_e = h_f = eager.initial_state(1)
    with torch.no_grad():
        for _ in range(3):
            obs = {"pixels": torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8, generator=g),
                   "card_options": torch.randint(0, 11, (1, 3), generator=g)}
            le, ve, _, h_e = eager.step(obs, h_e, "flee")
            lf, vf, _, h_f = fast.step(obs, h_f, "flee")
            assert torch.allclose(le, lf, atol=1e-5) and torch.allclose(ve, vf, atol=1e-5)
            assert torch.allclose(h_e, h_f, atol=1e-5)


def test_frames_too_small_for_the_policy_are_one_line(tmp_path) -> None:
    from tests.hardening_helpers import assert_one_line_error, run_cli

    code, text = run_cli(["train", "agent", "--env", "arena", "--size", "32", "--env-steps", "10",
                          "--device", "cpu", "--out", str(tmp_path / "r")])
    assert_one_line_error(code, text, "too small")
