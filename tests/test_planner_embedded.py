"""The planner's bounded, cached prompts, scored choices with the real embedded model, model selection, and the
control vector (representation steering)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metabonk.common.errors import MetabonkError
from metabonk.planner.context import BoundedContext, ContextConfig
from metabonk.planner.planner import Planner, PlannerConfig
from metabonk.planner.summary import GameSummary

SUMMARY = GameSummary(hp=30, max_hp=100, level=4, time_s=120, build={"armor": 1}, enemies_near=9)
OPTIONS = ["armor", "damage", "regen"]


class Recorder:
    """A ChatClient with `choose` that records the prompts it sees and picks the first option."""

    name = "recorder"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def chat(self, messages: Any, **_: Any) -> str:
        raise AssertionError("score decoding must not generate")

    def choose(self, messages: list[dict[str, str]], field: str, options: list[str]) -> tuple[int, list[float]]:
        self.prompts.append(messages[0]["content"] + "\n" + messages[1]["content"])
        return 0, [0.0] * len(options)


def test_bounded_context_keeps_prompts_short_over_1000_events() -> None:
    client = Recorder()
    planner = Planner(client, config=PlannerConfig(samples=3))
    sizes = []
    for i in range(1000):
        planner.note(f"damage: took {i % 37} from a {'boss' if i % 5 == 0 else 'swarm'} at tick {i * 60}")
        if i % 50 == 0:
            planner.choose_intent(SUMMARY)
            sizes.append(len(client.prompts[-1]))
    assert max(sizes) < 1100 and max(sizes) - min(sizes) < 200, sizes
    text = planner.memory.text()
    assert text.startswith("Summary: ") and "events so far" in text
    assert len(planner.memory.recent()) == ContextConfig().recent


def test_prompt_prefix_is_identical_between_summary_rewrites() -> None:
    client = Recorder()
    planner = Planner(client)
    planner.choose_intent(SUMMARY)
    planner.note("boss: appeared")
    planner.choose_intent(SUMMARY)
    a, b = client.prompts
    prefix = a.split("\n- ")[0].split("\nState:")[0]
    assert b.startswith(prefix) and "Summary: game start" in prefix  # the summary is rewritten every 8 events


def test_context_summary_counts_event_kinds() -> None:
    ctx = BoundedContext(ContextConfig(recent=2, summary_every=4, event_chars=10))
    for e in ["boss: a", "boss: b", "heal: c", "card: level 3 took armor and more"]:
        ctx.add(e)
    assert ctx.summary() == "4 events so far (boss x2, heal x1, card x1)"
    assert ctx.recent() == ["heal: c", "card: leve"]


def test_unknown_model_name_is_one_clear_error() -> None:
    from metabonk.planner.embedded import find_gguf

    with pytest.raises(MetabonkError, match="smollm2, gemma3"):
        find_gguf("no-such-model")


@pytest.fixture(scope="module")
def smol() -> Any:
    from metabonk.planner.embedded import EmbeddedClient

    return EmbeddedClient("smollm2", n_threads=2, n_ctx=1024)


@pytest.mark.llm
def test_real_model_decides_in_the_loop_and_reuses_the_prefix(smol: Any) -> None:
    planner = Planner(smol, config=PlannerConfig(decode="score"))
    first = planner.choose_intent(SUMMARY)
    evaluated_first = smol.last.prompt_tokens - smol.last.reused_tokens
    card = planner.choose_card(SUMMARY, OPTIONS)
    second = planner.choose_intent(GameSummary(hp=90, max_hp=100, level=5, time_s=150, enemies_near=1))
    assert all(d.source == "llm" for d in (first, card, second)), planner.counts
    assert card.value in OPTIONS and planner.counts["valid_answers"] == 3
    # the fixed system prompt and running summary come from the KV cache on the later calls
    assert smol.last.reused_tokens > 40
    assert smol.last.prompt_tokens - smol.last.reused_tokens < evaluated_first


@pytest.mark.llm
def test_control_vector_changes_logits_and_zero_strength_does_not(smol: Any) -> None:
    msgs = [{"role": "user", "content": "The boss is near and my HP is low. What now?"}]
    smol.set_control_vector(None)
    base = smol.logits(msgs)
    vec = np.random.default_rng(0).normal(size=(smol.n_layer, smol.n_embd)).astype(np.float32)
    smol.set_control_vector(vec, 0.0)
    zero = smol.logits(msgs)
    smol.set_control_vector(vec, 2.0)
    steered = smol.logits(msgs)
    smol.set_control_vector(None)
    assert np.array_equal(base, zero)
    assert np.abs(steered - base).max() > 1.0
    with pytest.raises(MetabonkError, match="shape"):
        smol.set_control_vector(vec[:, :10], 1.0)


@pytest.mark.llm
def test_steering_vector_roundtrips_through_safetensors(tmp_path: Path) -> None:
    from metabonk.planner.steering import load_vector, save_vector

    vec = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_vector(tmp_path / "v.safetensors", vec, {"model": "x"})
    assert np.array_equal(load_vector(tmp_path / "v.safetensors"), vec)
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    with pytest.raises(MetabonkError, match="not a steering vector"):
        load_vector(tmp_path / "bad.safetensors")
