"""System 2 quantization: the bundled GGUF requantized by llama.cpp loads and decides; the vLLM command carries
--quantization and speculative-decoding flags (dry run; vLLM cannot be installed here)."""

from __future__ import annotations

import json

import pytest

from metabonk.common.errors import MetabonkError
from metabonk.planner.serve import vllm_command


def test_vllm_quantization_and_speculative_flags() -> None:
    cmd = vllm_command("Qwen/Qwen2.5-7B-Instruct-AWQ", quantization="awq", speculative_model="Qwen/Qwen2.5-0.5B",
                       num_speculative_tokens=4)
    assert cmd[cmd.index("--quantization") + 1] == "awq"
    assert json.loads(cmd[cmd.index("--speculative-config") + 1]) == {"model": "Qwen/Qwen2.5-0.5B",
                                                                     "num_speculative_tokens": 4}
    cmd = vllm_command("m", quantization="fp8", speculative_model="ngram")
    spec = json.loads(cmd[cmd.index("--speculative-config") + 1])
    assert spec["method"] == "ngram" and "model" not in spec and cmd[cmd.index("--quantization") + 1] == "fp8"
    with pytest.raises(MetabonkError, match="quantization"):
        vllm_command("m", quantization="int3")


def test_unknown_level_is_an_error() -> None:
    from metabonk.quant.gguf import ftype

    with pytest.raises(MetabonkError, match="Q4_K_M"):
        ftype("Q9_9")


@pytest.mark.llm
def test_requantized_gguf_is_smaller_and_reused(tmp_path) -> None:
    from metabonk.planner.embedded import find_gguf
    from metabonk.quant.gguf import requantize

    out = requantize("Q2_K", tmp_path, threads=2)
    assert out.stat().st_size < find_gguf().stat().st_size  # fewer bits than the bundled Q4_1
    mtime = out.stat().st_mtime_ns
    assert requantize("Q2_K", tmp_path) == out and out.stat().st_mtime_ns == mtime  # reused, not redone
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.llm
@pytest.mark.slow  # four LLM decisions: seconds alone, minutes on a crowded 2-core machine
def test_requantized_gguf_decides_with_prompt_lookup(tmp_path) -> None:
    from metabonk.quant.gguf import LookupClient, decisions, requantize

    d = decisions(LookupClient(requantize("Q4_0", tmp_path), n_threads=2, lookup_tokens=4), n=2)
    assert len(d["chosen"]) == 4 and all(t > 0 for t in d["latency_s"])
    assert d["llm_fraction"] > 0  # the requantized model still answers within the schema


@pytest.mark.llm
def test_f16_holds_the_bundled_weights(tmp_path) -> None:
    """F16 made from the bundled Q4_1 is its weights dequantized (no further rounding that matters): the same
    next-token choice and near-equal logits on a fixed prompt, where Q2_K's lower bits move them further."""
    import numpy as np

    from metabonk.planner.embedded import find_gguf
    from metabonk.quant.gguf import LookupClient, ftype, requantize

    assert ftype("F32") != ftype("F16")
    msgs = [{"role": "user", "content": "Pick a card for a fast arena run: speed, armor or magnet?"}]
    ref = LookupClient(find_gguf(), n_threads=2).logits(msgs)
    f16 = LookupClient(requantize("F16", tmp_path, threads=2), n_threads=2).logits(msgs)
    q2 = LookupClient(requantize("Q2_K", tmp_path, threads=2), n_threads=2).logits(msgs)
    assert f16.argmax() == ref.argmax()
    assert np.abs(f16 - ref).mean() < 0.5 * np.abs(q2 - ref).mean(), (np.abs(f16 - ref).mean(), np.abs(q2 - ref).mean())
