"""IDM temperature scaling: an IDM overfitted on a few labels is overconfident; the temperature fitted on the tail
of its labelled episodes brings its held-out log-likelihood back, without changing an argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metabonk.common.errors import MetabonkError
from metabonk.latent.calibrate import calibrate_idm, fit_temperature, raw_action_logits
from metabonk.latent.synthetic import inertia_video


def test_fit_temperature_recovers_the_scale_of_sharpened_logits() -> None:
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=g)
    actions = torch.multinomial(true_logits.softmax(-1), 1, generator=g).squeeze(1)
    assert fit_temperature(true_logits * 4, actions) == pytest.approx(4.0, rel=0.15)
    assert fit_temperature(true_logits, actions) == pytest.approx(1.0, rel=0.15)


def test_tail_split_holds_out_the_end_of_every_episode() -> None:
    data = inertia_video(episodes=3, steps=40, size=32, seed=0)
    train, held = data.tail_split(0.25)
    assert len(train) + len(held) == len(data) and len(held) == 30
    assert set(held.index[:, 0]) == {0, 1, 2} and held.index[:, 1].min() == 30 and train.index[:, 1].max() == 29


def test_a_calibrated_overfit_idm_predicts_held_out_actions_with_far_lower_nll(tmp_path) -> None:
    from metabonk.common.checkpoint import read_config
    from metabonk.latent.evaluate import evaluate_idm
    from metabonk.latent.idm import IDMConfig, InverseDynamicsModel
    from metabonk.latent.train import TrainConfig, train_idm

    train = inertia_video(episodes=4, steps=100, size=32, seed=1)
    held = inertia_video(episodes=4, steps=100, size=32, seed=50)
    cfg = TrainConfig(steps=400, batch=32, lr=2e-3, device="cpu", resume=False, quiet=True, save_every=400,
                      threads=1)
    idm = train_idm(train, tmp_path / "idm", cfg, labelled=0, calibration=0.25,
                    model_cfg=IDMConfig(width=8, context=1, object_shift=4, dropout=0.0))
    figures = read_config(tmp_path / "idm")["meta"]["calibration"]
    assert figures["transitions"] == 100 and figures["temperature"] == idm.config.temperature
    loaded = InverseDynamicsModel.load(tmp_path / "idm", "cpu")
    assert loaded.config.temperature == idm.config.temperature
    logits, actions = raw_action_logits(loaded, held)
    t = loaded.config.temperature
    before, after = float(F.cross_entropy(logits, actions)), float(F.cross_entropy(logits / t, actions))
    # measured over 4 seeds and 1-2 threads: T 5.8-7.5, held-out NLL 1.79-2.85 -> 0.63-0.78 (ratio 0.27-0.38)
    assert t > 2.5 and after < 0.6 * before, (t, before, after)
    figures = evaluate_idm(loaded, held)  # `eval idm` reports the calibration it finds on its data
    assert figures["temperature"] == t and figures["nll"] == pytest.approx(after, rel=1e-4)
    assert figures["nll_at_best_temperature"] <= figures["nll"] + 1e-6
    out = loaded.predict(held.windows(np.arange(64), 1))
    assert torch.equal(out["action"], logits[:64].argmax(-1))  # the temperature changes no argmax
    assert torch.allclose(out["probs"], (logits[:64] / t).softmax(-1), atol=1e-5)


def test_calibration_refuses_too_few_held_out_labels(tmp_path) -> None:
    from metabonk.latent.idm import IDMConfig, InverseDynamicsModel

    data = inertia_video(episodes=2, steps=10, size=32, seed=0)
    idm = InverseDynamicsModel(IDMConfig(width=8, frame_size=32, num_actions=3))
    with pytest.raises(MetabonkError, match="at least 32 held-out"):
        calibrate_idm(idm, data)
    from metabonk.latent.train import TrainConfig, train_idm

    with pytest.raises(MetabonkError, match="at least 32 held-out"):  # refused before any training step
        train_idm(data, tmp_path / "idm", TrainConfig(steps=1, device="cpu", quiet=True), labelled=0, calibration=0.2)
    assert not (tmp_path / "idm").exists()
