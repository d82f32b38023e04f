"""The shared training loop: it learns, resumes exactly after an interruption, averages weights, clips gradients,
and reads metrics back to the host only at log steps."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from metabonk.common.checkpoint import Checkpointed, load_trainer_state, load_weights
from metabonk.train.fit import FitConfig, Fitter, fit, lr_factor

W_TRUE = np.array([1.5, -2.0, 0.5, 1.0])


@dataclass
class RegressorConfig:
    hidden: int = 16
    input_noise: float = 0.05
    """Noise drawn from torch's RNG in training (like the denoiser's), so resuming must restore that RNG."""


class Regressor(Checkpointed, nn.Module):
    KIND = "test-regressor"
    CONFIG = RegressorConfig

    def __init__(self, config: RegressorConfig) -> None:
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(4, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 1))

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = batch["x"]
        if self.training:
            x = x + self.config.input_noise * torch.randn_like(x)
        err = self.net(x).squeeze(-1) - batch["y"]
        loss = err.pow(2).mean()
        return loss, {"mse": loss.detach(), "abs_err": err.abs().mean().detach()}


def sample(rng: np.random.Generator, n: int = 32) -> dict[str, torch.Tensor]:
    x = rng.standard_normal((n, 4)).astype(np.float32)
    y = np.sin(x @ W_TRUE).astype(np.float32)
    return {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}


def held_out_mse(model: Regressor) -> float:
    batch = sample(np.random.default_rng(999), 2048)
    model.eval()
    with torch.no_grad():
        return float(model(batch)[0])


def fresh(seed: int = 0) -> Regressor:
    torch.manual_seed(seed)
    return Regressor(RegressorConfig())


def test_fit_beats_its_initial_loss(tmp_path: Path) -> None:
    model = fresh()
    before = held_out_mse(model)
    cfg = FitConfig(steps=400, lr=1e-2, warmup_steps=20, log_every=100, device="cpu")
    trained = fit(model, sample, cfg, tmp_path / "ckpt", meta={}, show_progress=False)
    after = held_out_mse(trained)
    # measured over seeds 0-3 at 1 and 2 threads: before 0.54-0.63, after 0.10-0.12 (after/before 0.16-0.21);
    # predicting the mean scores 0.50
    assert after < 0.3 * before, (before, after)
    assert after < 0.25 * float(sample(np.random.default_rng(999), 2048)["y"].var())
    again = Regressor.load(tmp_path / "ckpt")
    assert held_out_mse(again) == pytest.approx(after, abs=1e-7)  # the checkpoint holds the trained weights


class Interrupted(Exception):
    pass


def _cfg(ema: float) -> FitConfig:
    return FitConfig(steps=40, lr=5e-3, weight_decay=1e-2, warmup_steps=8, ema_decay=ema, log_every=7,
                     save_every=10, device="cpu", lr_final=0.1, seed=3)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path: Path, ema: float) -> None:
    whole = fit(fresh(), sample, _cfg(ema), tmp_path / "whole", meta={}, show_progress=False)

    def sample_until_25(rng: np.random.Generator) -> dict[str, torch.Tensor]:
        calls.append(1)
        if len(calls) > 25:
            raise Interrupted
        return sample(rng)

    calls: list[int] = []
    with pytest.raises(Interrupted):
        fit(fresh(), sample_until_25, _cfg(ema), tmp_path / "cut", meta={}, show_progress=False)
    assert load_trainer_state(tmp_path / "cut")["step"] == 20  # the last periodic save
    resumed = fit(fresh(seed=7), sample, _cfg(ema), tmp_path / "cut", meta={}, show_progress=False)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    raw_whole = load_trainer_state(tmp_path / "whole").get("raw_weights")
    raw_cut = load_trainer_state(tmp_path / "cut").get("raw_weights")
    assert (raw_whole is None) == (ema == 0.0)
    if raw_whole is not None:
        assert all(torch.equal(raw_whole[k], raw_cut[k]) for k in raw_whole)


def test_ema_on_averages_and_off_returns_the_raw_weights() -> None:
    model = fresh()
    cfg = FitConfig(steps=30, lr=1e-2, ema_decay=0.8, log_every=100, device="cpu")
    fitter = Fitter(model, cfg)
    mine = {k: v.clone() for k, v in model.state_dict().items()}
    for s in range(cfg.steps):
        fitter.step(sample(np.random.default_rng(s)))
        d = min(cfg.ema_decay, (1 + s) / (10 + s))
        mine = {k: d * mine[k] + (1 - d) * v for k, v in model.state_dict().items()}
    for k, v in fitter.ema_model.state_dict().items():
        torch.testing.assert_close(v, mine[k], rtol=1e-5, atol=1e-6)
        assert not torch.equal(v, model.state_dict()[k])  # the average lags the raw weights
    off = Fitter(fresh(), FitConfig(steps=3, device="cpu"))
    assert off.ema_model is off.model


def test_grad_clip_bounds_the_update_and_none_leaves_it() -> None:
    class Steep(Regressor):
        def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            loss, metrics = super().forward(batch)
            return 1e4 * loss, metrics

    batch = sample(np.random.default_rng(0))
    norms = {}
    for clip in (1.0, None):
        torch.manual_seed(0)
        fitter = Fitter(Steep(RegressorConfig(input_noise=0.0)), FitConfig(steps=1, lr=1e-3, grad_clip=clip))
        out = fitter.step(batch)
        grads = [p.grad for p in fitter.params]
        norms[clip] = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))
        if clip is not None:
            assert float(out["grad_norm"]) > 100  # the metric is the norm before clipping
    assert norms[1.0] == pytest.approx(1.0, rel=1e-4)
    assert norms[None] > 100


SYNCS = ("item", "tolist", "__float__", "__int__", "__bool__", "cpu", "numpy")


def count_syncs(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the Tensor methods that read a value back to the host, from now until monkeypatch.undo()."""
    syncs = dict.fromkeys(SYNCS, 0)
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *a: Any, _name: str = name, _orig: Any = original, **k: Any) -> Any:
            # AdamW reads its step counters, which live on the CPU even for CUDA parameters: not a device sync
            if not sys._getframe(1).f_globals.get("__name__", "").startswith("torch.optim"):
                syncs[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return syncs


def test_metrics_stay_tensors_and_sync_once_per_log_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    model = fresh()
    _, metrics = model(sample(np.random.default_rng(0)))
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in metrics.values())
    batches = [sample(np.random.default_rng(s)) for s in range(20)]
    logged: list[int] = []
    fitter = Fitter(model, FitConfig(steps=20, log_every=5, device="cpu"))
    syncs = count_syncs(monkeypatch)
    monkeypatch.setattr(fitter, "log_now", lambda f=fitter.log_now: logged.append(fitter.step_count) or f())
    for b in batches:
        out = fitter.step(b)
        assert all(isinstance(v, torch.Tensor) for v in out.values())
    monkeypatch.undo()
    assert logged == [5, 10, 15, 20]
    assert syncs == {**dict.fromkeys(SYNCS, 0), "tolist": 4}
    # the logged figure is the interval's mean, not the last step's value
    assert fitter.last["mse"] == pytest.approx(float(np.mean([float(model(b)[1]["mse"]) for b in batches[15:]])),
                                               rel=0.5)
    assert set(fitter.last) >= {"loss", "mse", "abs_err", "grad_norm", "lr", "steps_per_s"}


def _world() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from metabonk.world.config import UNetConfig, tiny_config
    from metabonk.world.world_model import WorldModel

    cfg = tiny_config(frame_size=16, num_actions=9, num_context=2)
    cfg.unet = UNetConfig(channels=(16, 16), depths=(1, 1), cond_channels=32, num_groups=4)
    batch = {"obs": torch.randint(0, 255, (4, 3, 16, 16, 3), dtype=torch.uint8),
             "action": torch.randint(0, 9, (4, 2)), "reward": torch.randn(4, 2),
             "terminated": torch.rand(4, 2) < 0.3}
    return WorldModel(cfg), batch


def _lam() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from metabonk.latent.lam import LAMConfig, LatentActionModel
    from metabonk.latent.vq import VQConfig

    cfg = LAMConfig(width=8, frame_size=16, object_shift=2, decoder_motion=True, independence_weight=0.01,
                    change_weight=5.0, vq=VQConfig(num_codes=4, code_dim=8))
    return LatentActionModel(cfg), {"frames": torch.randint(0, 255, (4, cfg.train_window, 16, 16, 3),
                                                            dtype=torch.uint8)}


def _idm() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from metabonk.latent.idm import IDMConfig, InverseDynamicsModel

    model = InverseDynamicsModel(IDMConfig(num_actions=6, width=8, frame_size=16))
    return model, {"frames": torch.randint(0, 255, (4, model.config.window, 16, 16, 3), dtype=torch.uint8),
                   "action": torch.randint(0, 6, (4,))}


def _bc() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from metabonk.policy.bc import BCAgent
    from metabonk.policy.config import config_for_env

    cfg = config_for_env(21, True, image_size=32, channels=(8, 8), feature_dim=16, hidden=16, head_hidden=16)
    batch = {"obs": torch.randint(0, 255, (2, 5, 32, 32, 3), dtype=torch.uint8),
             "label": torch.randint(0, 21, (2, 4)), "label_weight": torch.rand(2, 4)}
    return BCAgent(cfg), batch


@pytest.mark.parametrize("make", [_world, _lam, _idm, _bc], ids=["world", "lam", "idm", "bc"])
def test_the_migrated_models_train_without_a_host_sync(monkeypatch: pytest.MonkeyPatch, make: Any) -> None:
    torch.manual_seed(0)
    model, batch = make()
    fitter = Fitter(model.train(), FitConfig(steps=100, log_every=3, device="cpu", ema_decay=0.9))
    fitter.step(batch)  # the first step may seed state (the LAM's codebook is seeded from data once)
    syncs = count_syncs(monkeypatch)
    for _ in range(3):
        metrics = fitter.step(batch)
    monkeypatch.undo()
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in metrics.values())
    assert syncs == {**dict.fromkeys(SYNCS, 0), "tolist": 1}, syncs  # the one read at the log step


def test_old_trainer_state_without_scheduler_resumes_on_its_step() -> None:
    cfg = FitConfig(steps=100, lr=1e-3, lr_final=0.1, device="cpu")
    a = Fitter(fresh(), cfg)
    for s in range(10):
        a.step(sample(np.random.default_rng(s)))
    old = {"step": 10, "optimizer": a.opt.state_dict()}  # the latent and BC trainers' former format
    b = Fitter(fresh(), cfg)
    b.load_state_dict(old)
    assert b.step_count == 10
    assert b.opt.param_groups[0]["lr"] == pytest.approx(1e-3 * lr_factor(10, cfg))
    assert a.opt.param_groups[0]["lr"] == pytest.approx(b.opt.param_groups[0]["lr"])


def test_checkpoint_weights_are_the_average_when_ema_is_on(tmp_path: Path) -> None:
    cfg = FitConfig(steps=20, lr=1e-2, ema_decay=0.9, log_every=10, save_every=10, device="cpu")
    trained = fit(fresh(), sample, cfg, tmp_path / "ckpt", meta={"note": "x"}, show_progress=False)
    on_disk = fresh(seed=5)
    load_weights(tmp_path / "ckpt", on_disk)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), on_disk.state_dict().values(),
                                                 strict=True))
    raw = load_trainer_state(tmp_path / "ckpt")["raw_weights"]
    assert not all(torch.equal(raw[k], v) for k, v in on_disk.state_dict().items())
    assert (tmp_path / "ckpt.tb").is_dir()


def test_bf16_autocast_runs_the_forward_in_bf16_and_still_learns() -> None:
    seen: list[torch.dtype] = []

    class Recording(Regressor):
        def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            seen.append(self.net[0](batch["x"]).dtype)
            return super().forward(batch)

    torch.manual_seed(0)
    model = Recording(RegressorConfig())
    before = held_out_mse(model)
    seen.clear()
    fitter = Fitter(model, FitConfig(steps=300, lr=1e-2, warmup_steps=20, autocast="bf16", device="cpu"))
    for s in range(300):
        fitter.step(sample(np.random.default_rng(s)))
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert held_out_mse(model) < 0.4 * before  # measured 0.18-0.24 of the initial loss over seeds 0-2
