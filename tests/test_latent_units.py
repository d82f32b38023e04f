"""Unit behaviour of the latent area that needs no training: VQ restarts, windows, adapter tables, resume."""

from __future__ import annotations

import numpy as np
import torch

from metabonk.common.checkpoint import load_trainer_state, read_config
from metabonk.latent.adapter import ActionAdapter, AdapterConfig
from metabonk.latent.frames import clip_windows, movement_map
from metabonk.latent.lam import LAMConfig, LatentActionModel
from metabonk.latent.synthetic import scrolled_video
from metabonk.latent.train import TrainConfig, train_lam
from metabonk.latent.vq import VectorQuantizer, VQConfig, codebook_usage


def _usage_after_data_shift(dead_threshold: float) -> dict[str, float]:
    """Codebook seeded on 8 clusters, then the data moves far away: only restarts can follow it."""
    torch.manual_seed(0)
    vq = VectorQuantizer(VQConfig(num_codes=8, code_dim=4, decay=0.8, dead_threshold=dead_threshold))
    old = torch.randn(8, 4) * 5
    new = old + 30
    vq.train()
    for step in range(150):
        centres = old if step < 20 else new
        vq(centres[torch.randint(0, 8, (256,))] + 0.05 * torch.randn(256, 4))
    vq.eval()
    return codebook_usage(vq(new[torch.arange(8).repeat(32)])[1], 8)


def test_vq_dead_code_restarts_prevent_codebook_collapse() -> None:
    collapsed = _usage_after_data_shift(dead_threshold=0.0)
    guarded = _usage_after_data_shift(dead_threshold=VQConfig().dead_threshold)
    assert collapsed["codes_used"] == 1
    assert guarded["codes_used"] >= 5
    assert guarded["perplexity"] > 3.5


def test_clip_windows_repeat_first_frame() -> None:
    clip = torch.arange(5).view(5, 1, 1, 1).expand(5, 2, 2, 3).to(torch.uint8)
    w = clip_windows(clip, context=2)
    assert w.shape == (4, 4, 2, 2, 3)
    assert w[0, :, 0, 0, 0].tolist() == [0, 0, 0, 1]
    assert w[3, :, 0, 0, 0].tolist() == [1, 2, 3, 4]


def test_arena_movement_classes_follow_the_action_encoding() -> None:
    m = movement_map("arena", 21)
    assert m[0] == 0 and m[9] == 0 and m[3] == 3 and m[12] == 3 and list(m[18:]) == [0, 0, 0]


def test_adapter_tables_both_directions() -> None:
    ad = ActionAdapter(AdapterConfig(num_codes=3, num_actions=4, code_dim=2, smoothing=0.1))
    ad.counts.copy_(torch.tensor([[9.0, 1, 0, 0], [0, 0, 8, 0], [0, 0, 0, 5]]))
    ad.action_code.copy_(torch.tensor([0, 0, 1, 2]))
    assert ad.code_to_action(torch.tensor([0, 1, 2])).tolist() == [0, 2, 3]
    probs = ad.code_to_action_probs(torch.tensor([0]))
    assert torch.allclose(probs.sum(-1), torch.ones(1))
    assert ad.action_to_code(torch.tensor([3, 2])).tolist() == [2, 1]


def test_training_resumes_from_the_saved_step(tmp_path) -> None:
    data = scrolled_video(episodes=2, steps=20, size=16, seed=1)
    cfg = LAMConfig(width=8, vq=VQConfig(num_codes=4))
    out = tmp_path / "lam"
    train_lam(data, out, TrainConfig(steps=4, batch=4, device="cpu", resume=False, quiet=True), cfg)
    assert load_trainer_state(out)["step"] == 4
    assert list((out / "tb").glob("events.out.tfevents.*")), "TensorBoard log kept inside the checkpoint"
    first = LatentActionModel.load(out)
    model = train_lam(data, out, TrainConfig(steps=7, batch=4, device="cpu", resume=True, quiet=True))
    assert load_trainer_state(out)["step"] == 7
    assert read_config(out, kind="lam")["meta"]["step"] == 7
    # The resumed run started from the saved weights (its config came from the checkpoint) and moved on.
    assert model.config.vq.num_codes == 4
    w0, w1 = first.decoder.out.weight, model.decoder.out.weight
    assert not torch.equal(w0, w1)
    assert np.isfinite(float(w1.detach().abs().sum()))


def test_pair_probe_reads_an_acceleration_that_one_code_cannot() -> None:
    from metabonk.latent.evaluate import pair_probe, per_code_probe

    # codes that say where an object with inertia moved (its velocity), as a Pong LAM's do; the action changes it
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 3, 6000)  # down, none, up
    velocity = np.zeros(len(actions), dtype=np.int64)
    for t in range(1, len(actions)):  # clipped: at the ends an action may not show
        velocity[t] = np.clip(velocity[t - 1] + actions[t] - 1, -2, 2)
    codes = velocity + 2
    prev, cur, y = codes[:-1], codes[1:], actions[1:]
    half = len(y) // 2
    one = per_code_probe(cur[:half], y[:half], cur[half:], y[half:])["accuracy"]
    two = pair_probe(prev, cur, y, num_codes=5)["accuracy"]
    assert one < 0.5 < 0.8 < two, (one, two)


def test_previous_transitions_are_one_step_earlier_in_the_same_episode() -> None:
    from metabonk.latent.data import TransitionData

    frames = [torch.zeros(4, 8, 8, 3, dtype=torch.uint8), torch.zeros(3, 8, 8, 3, dtype=torch.uint8)]
    data = TransitionData.from_episodes([{"obs": f} for f in frames], env="test")
    rows, before = data.previous()
    assert [tuple(x) for x in data.index[rows]] == [(0, 1), (0, 2), (1, 1)]
    assert [tuple(x) for x in before.index] == [(0, 0), (0, 1), (1, 0)]


def test_clip_windows_look_ahead_repeats_the_last_frame() -> None:
    clip = torch.arange(5).view(5, 1, 1, 1).expand(5, 2, 2, 3).to(torch.uint8)
    w = clip_windows(clip, context=1, future=2)
    assert w.shape == (4, 5, 2, 2, 3)
    assert w[0, :, 0, 0, 0].tolist() == [0, 0, 1, 2, 3]
    assert w[3, :, 0, 0, 0].tolist() == [2, 3, 4, 4, 4]
