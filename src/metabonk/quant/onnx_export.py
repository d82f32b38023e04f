"""System 1 as ONNX: the agent's one-tick `step` with the recurrent state as an input and an output, run by
onnxruntime (CPU, or CUDA where onnxruntime-gpu is installed).

Inputs: pixels uint8 [B,H,W,3], hidden float32 [B,S], intent int64 [B] (and card_options int64 [B,3] with a
card head); outputs: logits [B,A], value [B], hidden_out [B,S] (and cards [B,3]). The batch axis is dynamic.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metabonk.common.errors import MetabonkError


class StepGraph(nn.Module):
    """`Agent.step` as a pure function of tensors (what the exporter traces)."""

    def __init__(self, agent: Any) -> None:
        super().__init__()
        self.agent = agent
        self.cards = bool(agent.cfg.card_head)

    def forward(self, pixels: torch.Tensor, hidden: torch.Tensor, intent: torch.Tensor,
                card_options: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        obs = {"pixels": pixels} if card_options is None else {"pixels": pixels, "card_options": card_options}
        logits, value, cards, hidden_out = self.agent.step(obs, hidden, intent)
        return (logits, value, hidden_out) if cards is None else (logits, value, hidden_out, cards)


def example_inputs(agent: Any, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the exported graph (numpy, as onnxruntime takes them)."""
    rng = np.random.default_rng(seed)
    s = agent.cfg.image_size
    out = {"pixels": rng.integers(0, 256, (batch, s, s, 3), dtype=np.uint8),
           "hidden": rng.standard_normal((batch, agent.core.state_size)).astype(np.float32) * 0.1,
           "intent": np.zeros(batch, np.int64)}
    if agent.cfg.card_head:
        out["card_options"] = rng.integers(0, agent.cfg.num_upgrades, (batch, agent.cfg.num_cards), dtype=np.int64)
    return out


def output_names(agent: Any) -> list[str]:
    return ["logits", "value", "hidden_out"] + (["cards"] if agent.cfg.card_head else [])


def export_onnx(agent: Any, path: str | Path, opset: int = 18) -> Path:
    """Write the agent's step as an ONNX file (batch axis dynamic); quantized (torchao) agents are refused."""
    if any(type(p) not in (torch.Tensor, nn.Parameter) for p in agent.parameters()):
        raise MetabonkError("export-onnx takes an fp32 policy checkpoint (torchao tensors do not export to ONNX)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = StepGraph(agent.cpu().eval())
    ins = example_inputs(agent, batch=2)  # torch.export specialises a batch of 1; 2 keeps the axis dynamic
    args = tuple(torch.from_numpy(v) for v in ins.values())
    batch = torch.export.Dim("batch", min=1, max=65536)
    shapes = {name: {0: batch} for name in ins}
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(graph, args, input_names=list(ins), output_names=output_names(agent),
                                 dynamic_shapes=shapes, opset_version=opset, dynamo=True, verbose=False)
        prog.save(str(tmp), external_data=False)
    tmp.replace(path)
    return path


class OrtPolicy:
    """An onnxruntime session over an exported step; `step(inputs) -> outputs` with numpy arrays."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 1) -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise MetabonkError("onnxruntime has no CUDA provider here: install onnxruntime-gpu")
            providers = ["CUDAExecutionProvider"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.names = [o.name for o in self.session.get_outputs()]

    def step(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(None, inputs), strict=True))
