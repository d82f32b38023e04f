"""System 2 LLM plumbing: OpenAI-compatible client, fallback on garbage / timeout / dead endpoint, the async
controller keeping System 1's tick rate, serve-llm command lines, and the real embedded SmolLM2."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from metabonk.common.errors import MetabonkError
from metabonk.common.intents import INTENTS
from metabonk.planner.async_planner import AsyncPlanner
from metabonk.planner.llm_client import OpenAIClient
from metabonk.planner.planner import Planner, PlannerConfig
from metabonk.planner.schema import card_schema, intent_schema, parse_answer
from metabonk.planner.summary import GameSummary

SUMMARY = GameSummary(hp=30, max_hp=100, level=4, time_s=75, enemies_near=6, build={"damage": 2})
OPTIONS = ["armor", "luck", "magnet"]


class FakeLLM:
    """A fake OpenAI-compatible server on 127.0.0.1: mode 'ok' | 'garbage' | 'schema' | 'sleep' | 'error'."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.sleep_s = 2.0
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                if fake.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                if fake.mode == "sleep":
                    time.sleep(fake.sleep_s)
                schema = body.get("response_format", {}).get("schema", {})
                enum = next(iter(schema.get("properties", {}).values()), {}).get("enum", ["x"])
                key = next(iter(schema.get("properties", {"card": 0})))
                content = {
                    "ok": json.dumps({key: enum[-1]}),
                    "garbage": "I think {card: maybe",
                    "schema": json.dumps({key: "not-an-option"}),
                    "sleep": json.dumps({key: enum[-1]}),
                }
                data = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": content[fake.mode]}}]}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(data.encode())

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    f = FakeLLM()
    yield f
    f.close()


def test_openai_client_sends_schema_and_key(fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test")
    client = OpenAIClient(fake.url, model="m1", api_key_env="MY_KEY")
    text = client.chat([{"role": "user", "content": "hi"}], schema=card_schema(OPTIONS), max_tokens=8)
    assert parse_answer(text, card_schema(OPTIONS)) == {"card": "magnet"}
    req = fake.requests[-1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "m1"
    assert req["body"]["response_format"] == {"type": "json_object", "schema": card_schema(OPTIONS)}
    with pytest.raises(MetabonkError):
        OpenAIClient("localhost:8080")


@pytest.mark.parametrize("mode", ["garbage", "schema", "error"])
def test_bad_answers_fall_back_and_are_counted(fake: FakeLLM, mode: str) -> None:
    fake.mode = mode
    planner = Planner(OpenAIClient(fake.url), config=PlannerConfig(samples=3))
    d = planner.choose_card(SUMMARY, OPTIONS, fallback=1)
    assert (d.source, d.index, d.value) == ("fallback", 1, "luck")
    d = planner.choose_intent(SUMMARY, last="heal")
    assert (d.source, d.value) == ("fallback", "heal")
    assert planner.counts["fallbacks"] == 2 and planner.counts["decisions"] == 2
    assert planner.counts["failed_calls" if mode == "error" else "invalid_answers"] >= 2
    fake.mode = "ok"
    d = planner.choose_card(SUMMARY, OPTIONS, fallback=1)
    assert (d.source, d.value) == ("llm", "magnet")


def test_timeout_falls_back(fake: FakeLLM) -> None:
    fake.mode, fake.sleep_s = "sleep", 1.5
    planner = Planner(OpenAIClient(fake.url, timeout_s=0.3), config=PlannerConfig(samples=1, timeout_s=0.3))
    t0 = time.perf_counter()
    d = planner.choose_intent(SUMMARY, last="collect_xp")
    assert time.perf_counter() - t0 < 1.2
    assert (d.source, d.value) == ("fallback", "collect_xp") and "timed out" in (d.error or "")
    assert planner.counts["failed_calls"] == 1


def test_slow_llm_does_not_slow_system1(fake: FakeLLM) -> None:
    """System 1 ticks at its own rate while System 2 answers late; late answers are counted and replaced."""
    fake.mode, fake.sleep_s = "sleep", 0.6
    planner = Planner(OpenAIClient(fake.url, timeout_s=5.0), config=PlannerConfig(samples=1))
    ctrl = AsyncPlanner(planner, period_s=0.05, deadline_s=0.25)
    tick_s = 0.002

    def loop(n: int, with_planner: bool) -> tuple[float, list[float]]:
        gaps, t0, last = [], time.perf_counter(), time.perf_counter()
        for step in range(n):
            if with_planner:
                ctrl.tick(step * 1 / 60, SUMMARY)
                if step == 100:
                    ctrl.request_card(SUMMARY, OPTIONS, fallback=2)
                ctrl.card_result()
            time.sleep(tick_s)  # System 1's own work
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        return n / (time.perf_counter() - t0), gaps

    base_rate, _ = loop(300, with_planner=False)
    rate, gaps = loop(600, with_planner=True)
    ctrl.close()
    assert rate > 0.8 * base_rate, (rate, base_rate)
    assert max(gaps) < 0.1  # no tick waited for the 0.6 s LLM
    assert planner.counts["late"] >= 1 and planner.counts["late_card"] == 1
    assert ctrl.intent in INTENTS


def test_async_planner_uses_fresh_answers(fake: FakeLLM) -> None:
    planner = Planner(OpenAIClient(fake.url), config=PlannerConfig(samples=1))
    ctrl = AsyncPlanner(planner, period_s=1.0, deadline_s=2.0)
    ctrl.tick(0.0, SUMMARY)
    ctrl.request_card(SUMMARY, OPTIONS, fallback=0)
    deadline = time.perf_counter() + 3
    card = None
    while card is None and time.perf_counter() < deadline:
        ctrl.tick(0.01, SUMMARY)
        card = ctrl.card_result()
        time.sleep(0.005)
    ctrl.close()
    assert card == 2 and ctrl.intent == INTENTS[-1]  # the fake server answers the last enum value
    assert planner.counts["late"] == 0


def test_serve_llm_commands() -> None:
    from metabonk.cli import app

    run = CliRunner().invoke
    r = run(
        app,
        [
            "serve-llm",
            "--backend",
            "vllm",
            "--model",
            "Qwen/Qwen2.5-7B-Instruct-AWQ",
            "--quantization",
            "awq",
            "--speculative-model",
            "Qwen/Qwen2.5-0.5B-Instruct",
            "--port",
            "9000",
            "--dry-run",
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.startswith("vllm serve Qwen/Qwen2.5-7B-Instruct-AWQ") and "--quantization awq" in r.output
    assert (
        "--speculative-config" in r.output
        and "Qwen2.5-0.5B-Instruct" in r.output
        and "--port 9000" in r.output
    )
    r = run(app, ["serve-llm", "--backend", "vllm", "--model", "m"])
    assert r.exit_code != 0 and "vLLM is not installed" in str(r.exception)
    r = run(app, ["serve-llm", "--backend", "vllm", "--dry-run"])
    assert r.exit_code != 0 and "needs --model" in str(r.exception)


@pytest.mark.llm
def test_serve_llm_dry_run_embedded() -> None:
    from metabonk.cli import app

    r = CliRunner().invoke(app, ["serve-llm", "--dry-run", "--port", "8123"])
    assert r.exit_code == 0, r.output
    assert "metabonk.planner.llm_guard" in r.output and ".gguf" in r.output and "--host 127.0.0.1" in r.output


@pytest.mark.llm
def test_real_embedded_model_decisions() -> None:
    """The bundled SmolLM2 answers schema-valid card and intent decisions (direct, step-by-step, voted)."""
    from metabonk.planner.embedded import EmbeddedClient

    # one thread: steady on a busy 2-core machine (two spin-waiting threads collapse under contention)
    # decode="generate": this test is about grammar-constrained answers and votes (tests/test_planner_embedded.py
    # covers the default scored decisions)
    planner = Planner(EmbeddedClient(n_threads=1),
                      config=PlannerConfig(samples=3, max_tokens_cot=64, decode="generate"))
    decisions = [
        planner.choose_card(SUMMARY, OPTIONS, route="direct"),  # self-consistency: 3 votes
        planner.choose_intent(SUMMARY, route="direct"),
    ]
    planner.config.samples = 1
    decisions.append(planner.choose_card(SUMMARY, OPTIONS, route="cot"))
    for d in decisions:
        assert d.value in (OPTIONS if d.kind == "card" else INTENTS)
        assert d.source in ("llm", "fallback")
    assert decisions[0].source == "llm" and decisions[1].source == "llm"  # grammar-constrained direct answers
    assert planner.client is not None
    raw = planner.client.chat(
        [{"role": "user", "content": "Pick an intent."}], schema=intent_schema(), max_tokens=16
    )
    assert parse_answer(raw, intent_schema())["intent"] in INTENTS
    assert planner.counts["valid_answers"] >= 4
