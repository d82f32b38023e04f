"""System 1 exported to ONNX: onnxruntime's ticks equal torch's with the recurrent state carried, at any batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metabonk.common.errors import MetabonkError
from metabonk.quant.apply import quantize_model
from metabonk.quant.formats import Recipe
from metabonk.quant.onnx_export import OrtPolicy, example_inputs, export_onnx
from tests.test_quant_formats import tiny_agent


def test_onnx_step_matches_torch_over_ticks(tmp_path) -> None:
    torch.set_num_threads(1)
    agent = tiny_agent()
    path = export_onnx(agent, tmp_path / "step.onnx")
    session = OrtPolicy(path)
    for batch in (1, 3):  # the batch axis stays dynamic
        x = example_inputs(agent, batch, seed=batch)
        h_torch = torch.from_numpy(x["hidden"])
        obs = {"pixels": torch.from_numpy(x["pixels"]), "card_options": torch.from_numpy(x["card_options"])}
        for _ in range(4):
            got = session.step(x)
            with torch.no_grad():
                logits, value, cards, h_torch = agent.step(obs, h_torch, torch.from_numpy(x["intent"]))
            np.testing.assert_allclose(got["logits"], logits.numpy(), atol=1e-4, rtol=1e-3)
            np.testing.assert_allclose(got["cards"], cards.numpy(), atol=1e-4, rtol=1e-3)
            np.testing.assert_allclose(got["value"], value.numpy(), atol=1e-4, rtol=1e-3)
            np.testing.assert_allclose(got["hidden_out"], h_torch.numpy(), atol=1e-4, rtol=1e-3)
            x["hidden"] = got["hidden_out"]
        assert np.abs(x["hidden"]).mean() > 1e-3  # the state moved: it is really carried


def test_quantized_agent_is_not_exported(tmp_path) -> None:
    agent = tiny_agent()
    quantize_model(agent, Recipe("int8"))
    with pytest.raises(MetabonkError, match="fp32"):
        export_onnx(agent, tmp_path / "q.onnx")
