"""Merge rules of metabonk.hive.merge against hand-computed small tensors, and the `metabonk merge` verb."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from metabonk.common.errors import MetabonkError
from metabonk.hive.merge import MergeOptions, dare_drop, elect_sign, merge, ram_masks, trim
from metabonk.hive.transport import state_bytes, state_from_bytes


def sd(*values: float) -> dict[str, torch.Tensor]:
    return {"w": torch.tensor(values, dtype=torch.float32), "step": torch.tensor([7])}


BASE = sd(0.0, 0.0, 0.0, 0.0)


def test_task_arithmetic_and_soup() -> None:
    models = [sd(1.0, 0.0, 2.0, 0.0), sd(0.0, 2.0, 4.0, 0.0)]
    assert merge("task-arith", BASE, models)["w"].tolist() == [1.0, 2.0, 6.0, 0.0]
    assert merge("task-arith", BASE, models, MergeOptions(scale=0.5))["w"].tolist() == [0.5, 1.0, 3.0, 0.0]
    assert merge("soup", BASE, models)["w"].tolist() == [0.5, 1.0, 3.0, 0.0]
    # non-float tensors (counters) come from the base
    assert merge("soup", BASE, [sd(1, 1, 1, 1) | {"step": torch.tensor([9])}])["step"].tolist() == [7]


def test_ema_soup_weights_later_models_more() -> None:
    models = [sd(4.0, 0, 0, 0), sd(0.0, 0, 0, 0), sd(8.0, 0, 0, 0)]
    # ((4 * .5 + 0 * .5) * .5 + 8 * .5) = 5
    assert merge("ema", BASE, models, MergeOptions(ema=0.5))["w"][0].item() == pytest.approx(5.0)


def test_ties_trim_sign_election_and_disjoint_mean() -> None:
    tau = torch.tensor([[3.0, -1.0, 0.1, 2.0], [-1.0, 2.0, 0.2, 2.0], [-1.0, -2.0, 0.0, 1.0]])
    assert trim(tau[:1], 0.5).tolist() == [[3.0, 0.0, 0.0, 2.0]]
    assert elect_sign(tau).tolist() == [1.0, -1.0, 1.0, 1.0]
    models = [sd(*row.tolist()) for row in tau]
    out = merge("ties", BASE, models, MergeOptions(density=1.0))["w"]
    # entry 0: only +3 agrees; entry 1: -1 and -2 agree; entry 2: .1 and .2; entry 3: 2, 2, 1
    assert out.tolist() == pytest.approx([3.0, -1.5, 0.15, 5.0 / 3.0])
    trimmed = merge("ties", BASE, models, MergeOptions(density=0.5))["w"]
    # trimmed: [3,0,0,2], [0,2,0,2], [0,-2,0,1] -> signs +, 0, 0, +
    assert trimmed.tolist() == pytest.approx([3.0, 0.0, 0.0, 5.0 / 3.0])


def test_dare_rescale_is_unbiased() -> None:
    g = torch.Generator().manual_seed(0)
    tau = torch.ones(1, 200_000)
    dropped = dare_drop(tau, 0.5, g)
    assert set(dropped.unique().tolist()) == {0.0, 2.0}
    assert dropped.mean().item() == pytest.approx(1.0, abs=0.01)
    assert dare_drop(tau, 0.0, g).equal(tau)
    with pytest.raises(MetabonkError):
        dare_drop(tau, 1.0, g)
    big = {"w": torch.zeros(100_000)}
    out = merge("dare", big, [{"w": torch.full((100_000,), 3.0)}], MergeOptions(drop=0.9, seed=1))["w"]
    assert out.mean().item() == pytest.approx(3.0, rel=0.05)


def test_ram_keeps_unique_rescaled_and_averages_shared() -> None:
    models = [sd(1.0, 0.0, 2.0, 0.0), sd(0.0, 3.0, 4.0, 0.0)]
    tau = torch.stack([m["w"] for m in models])
    _, unique, shared = ram_masks(tau, 0.1)
    assert unique.tolist() == [True, True, False, False] and shared.tolist() == [False, False, True, False]
    # each specialist: 1 shared, 1 unique entry -> rho 1, clamped to alpha .2 -> lambda = 1 + .1 * .2
    lam = 1.02
    out = merge("ram", BASE, models, MergeOptions(threshold=0.1, ram_r=0.1, ram_alpha=0.2))["w"]
    assert out.tolist() == pytest.approx([1.0 * lam, 3.0 * lam, 3.0, 0.0])


def test_bad_inputs_are_metabonk_errors() -> None:
    with pytest.raises(MetabonkError, match="unknown merge method"):
        merge("slerp", BASE, [BASE])
    with pytest.raises(MetabonkError, match="at least one"):
        merge("ties", BASE, [])
    with pytest.raises(MetabonkError, match="shape"):
        merge("soup", BASE, [{"w": torch.zeros(3), "step": torch.tensor([7])}])
    with pytest.raises(MetabonkError, match="tensors"):
        merge("soup", BASE, [{"v": torch.zeros(4), "step": torch.tensor([7])}])
    with pytest.raises(MetabonkError, match="safetensors"):
        state_from_bytes(b"not a checkpoint")
    assert state_from_bytes(state_bytes(BASE))["w"].equal(BASE["w"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metabonk", *args], capture_output=True, text=True, timeout=120)


def test_merge_verb_on_safetensors_files(tmp_path: Path) -> None:
    base, a, b = tmp_path / "base.safetensors", tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"w": torch.zeros(4)}, str(base))
    save_file({"w": torch.tensor([1.0, 0, 0, 0])}, str(a))
    save_file({"w": torch.tensor([0.0, 1, 0, 0])}, str(b))
    out = tmp_path / "m.safetensors"
    r = _cli("merge", "--method", "task-arith", str(a), str(b), "--base", str(base), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert load_file(str(out))["w"].tolist() == [1.0, 1.0, 0.0, 0.0]
    bad = _cli("merge", "--method", "ties", str(tmp_path / "missing"), "--base", str(base), "--out", str(out))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "no such checkpoint" in bad.stderr


def test_layer_scales_take_the_longest_matching_prefix() -> None:
    from metabonk.hive.merge import scale_for, tensor_groups

    base = {"core.w": torch.zeros(2), "core.ff.w": torch.zeros(2), "corex.w": torch.zeros(1), "step": torch.tensor([1])}
    model = {k: torch.ones_like(v) if v.is_floating_point() else v for k, v in base.items()}
    opt = MergeOptions(scale=3.0, layer_scales={"core": 2.0, "core.ff": 0.5})
    out = merge("task-arith", base, [model, model], opt)
    assert out["core.w"].tolist() == [4.0, 4.0]  # 2 * (1 + 1)
    assert out["core.ff.w"].tolist() == [1.0, 1.0]  # the longer prefix wins
    assert out["corex.w"].tolist() == [6.0]  # "core" is not a prefix of the module "corex": global scale
    ties = merge("ties", base, [model], MergeOptions(density=1.0, layer_scales={"core.ff": 0.5}))
    assert ties["core.ff.w"].tolist() == [0.5, 0.5] and ties["core.w"].tolist() == [1.0, 1.0]
    assert merge("soup", base, [model], opt)["core.w"].tolist() == [1.0, 1.0]  # soups ignore lambda
    assert scale_for("a.b.c", 1.0, {"a.b": 9.0}) == 9.0 and tensor_groups(base) == ["core", "core.ff", "corex"]


def test_merge_verb_layer_scale(tmp_path: Path) -> None:
    base, a = tmp_path / "base.safetensors", tmp_path / "a.safetensors"
    save_file({"enc.w": torch.zeros(2), "head.w": torch.zeros(2)}, str(base))
    save_file({"enc.w": torch.ones(2), "head.w": torch.ones(2)}, str(a))
    out = tmp_path / "m.safetensors"
    r = _cli("merge", "--method", "task-arith", str(a), "--base", str(base), "--out", str(out),
             "--scale", "1.5", "--layer-scale", "enc=0.5")
    assert r.returncode == 0, r.stderr
    merged = load_file(str(out))
    assert merged["enc.w"].tolist() == [0.5, 0.5] and merged["head.w"].tolist() == [1.5, 1.5]
    bad = _cli("merge", "--method", "task-arith", str(a), "--base", str(base), "--out", str(out),
               "--layer-scale", "enc")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "PREFIX=LAMBDA" in bad.stderr
