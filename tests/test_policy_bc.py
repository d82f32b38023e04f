"""Behaviour cloning learns: a tiny policy cloned from the scripted expert outlives the random policy."""

from __future__ import annotations

import torch

from metabonk.policy.agent import Agent
from metabonk.policy.bc import BCArgs, train_bc
from metabonk.policy.evaluate import evaluate_policy
from tests.test_policy_helpers import one_thread  # noqa: F401  (autouse fixture)


def test_bc_on_expert_actions_beats_random_survival(tmp_path) -> None:
    from metabonk.data.record import record_episodes
    from metabonk.envs.arena import state_dim
    from metabonk.envs.arena.config import ArenaConfig

    torch.manual_seed(0)
    record_episodes("arena", tmp_path / "expert", episodes=12, policy="scripted", num_envs=4, seed=100,
                    max_steps=150, show_progress=False)
    # A small, fast policy; it also reads the state vector so a couple of hundred steps suffice on CPU.
    policy = {"channels": (8, 16), "feature_dim": 64, "hidden": 32, "head_hidden": 64,
              "state_dim": state_dim(ArenaConfig())}
    out = train_bc(BCArgs(data=str(tmp_path / "expert"), out=str(tmp_path / "bc"), steps=300, batch_size=16,
                          seq_len=8, lr=2e-3, device="cpu", quiet=True, policy=policy))
    res = evaluate_policy(Agent.load(out), "arena", episodes=8, seed=0, max_steps=600, greedy=True)
    bc, rnd, exp = (res[k]["survival_mean"] for k in ("policy", "random", "expert"))
    assert bc >= 1.3 * rnd, (bc, rnd, exp)  # random ≈ 330 ticks, the expert ≈ 570 of at most 600
    # resume: a second call with more steps continues from the checkpoint's step count
    from metabonk.common.checkpoint import load_trainer_state

    assert load_trainer_state(out)["step"] == 300


def test_class_weights_balance_rare_actions() -> None:
    """share^-balance weights, mean 1 over the data: 0 leaves CE plain, 1 makes every class weigh the same in all."""
    import numpy as np

    from metabonk.policy.bc import class_weights

    labels = np.array([0] * 90 + [2] * 6 + [3] * 4)
    plain = class_weights(labels, 6, 0.0)
    assert np.allclose(plain[[0, 2, 3]], 1.0) and plain[1] == plain[4] == 0.0
    full = class_weights(labels, 6, 1.0)
    share = np.bincount(labels, minlength=6) / len(labels)
    assert np.isclose((full * share).sum(), 1.0)
    assert np.allclose((full * share)[[0, 2, 3]], 1 / 3)  # each present class carries a third of the weight
    half = class_weights(labels, 6, 0.5)
    assert full[3] > half[3] > plain[3] and full[0] < half[0] < plain[0]


def test_soft_labels_clone_the_idm_distribution_where_argmax_labels_clone_its_mode(tmp_path) -> None:
    """One state seen again and again, where the IDM gives NOOP 0.4, up 0.35, down 0.25: BC on its argmax labels
    learns always-NOOP; BC on its probabilities learns the distribution (the expert's policy, were the IDM
    calibrated)."""
    import numpy as np

    from metabonk.data.store import EpisodeStore

    p = np.array([0.40, 0.0, 0.35, 0.25, 0.0, 0.0], np.float32)
    store = EpisodeStore.create(tmp_path / "vid", "ale:Pong", 6, 32)
    frame = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    for _ in range(4):
        store.append({"obs": np.repeat(frame[None], 41, 0), "action_idm": np.zeros(40, np.int64),
                      "action_idm_conf": np.full(40, 0.4, np.float32), "action_idm_probs": np.tile(p, (40, 1))})
    policy = {"channels": (8, 16), "feature_dim": 32, "hidden": 16, "head_hidden": 32}
    probs = {}
    for soft in (False, True):
        out = train_bc(BCArgs(data=str(tmp_path / "vid"), out=str(tmp_path / f"bc{soft}"), steps=150, batch_size=8,
                              seq_len=8, lr=5e-3, device="cpu", quiet=True, policy=policy, soft_labels=soft))
        agent = Agent.load(out, "cpu")
        with torch.no_grad():
            logits = agent.forward_sequence({"pixels": torch.as_tensor(np.repeat(frame[None, None], 8, 1))})[0]
        probs[soft] = logits[0, -1].softmax(-1).numpy()
    # measured (seeds 0-2): argmax labels give NOOP 1.00; soft labels match p to 1e-4 per action
    assert probs[False][0] > 0.85, probs[False]
    assert np.abs(probs[True] - p).sum() < 0.15, probs[True]
