"""Quantized checkpoints (torchao): save/load through the normal `load`, bit-equal outputs, formats this CPU
cannot run refuse with one line, hybrid precision meets its budget, drift checks see more drift at fewer bits."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from metabonk.common.errors import MetabonkError
from metabonk.latent.idm import IDMConfig, InverseDynamicsModel
from metabonk.latent.lam import LAMConfig, LatentActionModel
from metabonk.latent.vq import VQConfig
from metabonk.policy.agent import Agent
from metabonk.policy.config import PolicyConfig
from metabonk.quant import drift
from metabonk.quant.apply import quantize_model
from metabonk.quant.formats import Recipe
from metabonk.quant.models import arena_rollout, policy_logits, probe_output, relative_error
from metabonk.quant.sensitivity import hybrid_report
from metabonk.quant.store import save_quantized
from metabonk.world.config import tiny_config
from metabonk.world.world_model import WorldModel

warnings.filterwarnings("ignore")
CPU = torch.device("cpu")


def tiny_agent(seed: int = 0) -> Agent:
    torch.manual_seed(seed)
    agent = Agent(PolicyConfig(image_size=32, channels=(8, 16), feature_dim=32, hidden=32, head_hidden=32)).eval()
    torch.nn.init.normal_(agent.actor[-1].weight, std=0.3)  # an untrained actor's near-zero logits tie everywhere
    return agent


def tiny_world(seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    w = WorldModel(tiny_config(frame_size=16, num_actions=18)).eval()
    torch.nn.init.normal_(w.denoiser.inner.unet.conv_out.weight, std=0.05)  # zero-initialised: would predict 0
    return w


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize("fmt,weight_only", [("int8", False), ("int8", True), ("int4", True), ("fp8", True),
                                             ("nvfp4", True)])
def test_policy_round_trip_through_normal_load(tmp_path, fmt: str, weight_only: bool) -> None:
    agent = tiny_agent()
    probe = arena_rollout(2, 4, 32, seed=1)
    ref = policy_logits(agent, probe)
    quant = quantize_model(agent, Recipe(fmt, weight_only))
    out = policy_logits(agent, probe)
    save_quantized(tmp_path / "q", agent, agent.config, agent.KIND, quant)
    doc = json.loads((tmp_path / "q" / "config.json").read_text())
    assert doc["kind"] == "policy" and doc["quant"]["format"] == fmt and doc["quant"]["layers"]
    loaded = Agent.load(tmp_path / "q")
    assert torch.equal(policy_logits(loaded, probe), out)  # the same quantized kernels, bit for bit
    err = relative_error(out, ref)
    assert 0 < err < 0.3  # quantized (not a silent fp32 copy), yet close


def test_no_pickle_in_quantized_checkpoint(tmp_path) -> None:
    agent = tiny_agent()
    save_quantized(tmp_path / "q", agent, agent.config, agent.KIND, quantize_model(agent, Recipe("int8")))
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["config.json", "model.safetensors"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "q" / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert torch.int8 in dtypes  # int data stored as plain int8 tensors beside float scales


@pytest.mark.parametrize("fmt", ["fp8", "nvfp4", "mxfp4"])
def test_formats_this_cpu_cannot_run_refuse(fmt: str) -> None:
    with pytest.raises(MetabonkError, match=r"GPU|Blackwell"):
        quantize_model(tiny_agent(), Recipe(fmt))


def test_quantized_world_lam_idm_load_and_run(tmp_path) -> None:
    torch.manual_seed(0)
    lam = LatentActionModel(LAMConfig(width=8, frame_size=16, vq=VQConfig(num_codes=4))).eval()
    idm = InverseDynamicsModel(IDMConfig(width=8, frame_size=16, features=16)).eval()
    probe = arena_rollout(2, 6, 16, seed=2)
    for kind, model in (("world", tiny_world()), ("lam", lam), ("idm", idm)):
        ref = probe_output(model, kind, probe)
        quant = quantize_model(model, Recipe("int8"))
        assert quant["quantized_fraction"] > 0.5, kind  # convolutions too (torchao int-x weight-only)
        save_quantized(tmp_path / kind, model, model.config, kind, quant)
        loaded = type(model).load(tmp_path / kind)
        out = probe_output(loaded, kind, probe)
        assert torch.equal(out, probe_output(model, kind, probe)), kind
        assert 0 < relative_error(out, ref) < 0.2, kind


def test_drift_grows_as_bits_shrink() -> None:
    probe = arena_rollout(4, 12, 16, seed=3)
    ref = tiny_world()
    figures = {}
    for fmt in ("int8", "int4"):
        q = tiny_world()
        quantize_model(q, Recipe(fmt))
        figures[fmt] = drift.world_drift(ref, q, probe, steps=4, seed=0)
    assert len(figures["int8"]["psnr_vs_fp32_dream_db"]) == 4
    # int8's dream stays far closer to fp32's (same noise) than int4's at every step
    for a, b in zip(figures["int8"]["psnr_vs_fp32_dream_db"], figures["int4"]["psnr_vs_fp32_dream_db"],
                    strict=True):
        assert a > b + 3
    assert figures["int8"]["psnr_vs_fp32_dream_db"][0] > 30


def test_hybrid_keeps_sensitive_layers_under_budget() -> None:
    agent = tiny_agent()
    probe = arena_rollout(2, 6, 32, seed=4)
    rep = hybrid_report(agent, "policy", Recipe("int4"), probe, budget=0.02, device=CPU)
    errors = [r["error"] for r in rep["layers"]]
    assert errors == sorted(errors) and errors[-1] > errors[0]
    assert rep["all_layers_error"] > 0.02  # int4 everywhere breaks this budget ...
    assert rep["kept"] and rep["joint_error"] <= 0.02 and rep["met_budget"]  # ... the measured hybrid mix fits
    assert rep["layers"][-1]["layer"] in rep["kept"]  # the most sensitive layer is kept
    assert hybrid_report(agent, "policy", Recipe("int4"), probe, budget=1.0, device=CPU)["kept"] == []


def test_keep_unknown_layer_is_an_error() -> None:
    with pytest.raises(MetabonkError, match="does not have"):
        quantize_model(tiny_agent(), Recipe("int8"), keep=["no.such.layer"])
