"""FreeModuleCleaner against a scripted OpenAI-compatible stub: requests, parsing, retries, failover, breaker."""

from __future__ import annotations

import time

import pytest

from freemem.cleaners.free_module import CircuitBreaker, Endpoint, FreeModuleCleaner, commands_schema
from freemem.core.commands import COMMANDS_JSON_SCHEMA, Command
from freemem.core.context import Context
from freemem.core.errors import CleanerError, CleanerTimeout, CleanerUnavailable, ConfigError
from tests.serving.stub_openai import StubReply


def make(urls, **kw) -> FreeModuleCleaner:
    kw.setdefault("model", "Qwen/Qwen3-8B")
    kw.setdefault("timeout", 5.0)
    kw.setdefault("backoff_s", 0.0)
    return FreeModuleCleaner(urls, **kw)


# -- request shape --------------------------------------------------------------------------------------


def test_endpoint_gets_v1_and_rejects_non_http() -> None:
    assert Endpoint("http://h:30000").base_url == "http://h:30000/v1"
    assert Endpoint("http://h:30000/").base_url == "http://h:30000/v1"
    assert Endpoint("https://h/proxy/v1/").base_url == "https://h/proxy/v1"
    with pytest.raises(ConfigError):
        Endpoint("h:30000")


@pytest.mark.parametrize(
    ("mode", "model", "lora_path"),
    [("model_suffix", "Qwen/Qwen3-8B:free", None), ("lora_path", "Qwen/Qwen3-8B", "free"),
     ("model", "free", None), ("none", "Qwen/Qwen3-8B", None)],
)
def test_adapter_modes(mode: str, model: str, lora_path: str | None) -> None:
    req = make("http://x:1", adapter_mode=mode).request_for("ctx")
    assert req["model"] == model
    assert req.get("extra_body", {}).get("lora_path") == lora_path


def test_no_adapter_means_base_model() -> None:
    assert make("http://x:1", adapter=None).request_for("t")["model"] == "Qwen/Qwen3-8B"


def test_endpoint_model_override() -> None:
    c = make([Endpoint("http://a:1", model="served-base")])
    assert c.request_for("t", c.endpoints[0])["model"] == "served-base:free"


def test_structured_output_styles() -> None:
    schema = make("http://x:1").request_for("t")["response_format"]
    assert schema == {"type": "json_schema",
                      "json_schema": {"name": "commands", "schema": COMMANDS_JSON_SCHEMA, "strict": True}}
    obj = make("http://x:1", structured_output="json_object").request_for("t")["response_format"]
    assert obj == {"type": "json_object", "schema": COMMANDS_JSON_SCHEMA}
    assert "response_format" not in make("http://x:1", structured_output="none").request_for("t")


def test_prompt_holds_context_verbatim_and_settings() -> None:
    text = "step 1 {not a placeholder} [tool read_file #call_3]"
    req = make("http://x:1", temperature=0.3, max_tokens=77, seed=5, stop=["</s>"],
               extra_body={"chat_template_kwargs": {"enable_thinking": False}}).request_for(text)
    assert req["messages"][0]["role"] == "system"
    assert text in req["messages"][-1]["content"]
    assert (req["temperature"], req["max_tokens"], req["seed"], req["stop"]) == (0.3, 77, 5, ["</s>"])
    assert req["extra_body"] == {"chat_template_kwargs": {"enable_thinking": False}}


def test_completions_api_renders_one_prompt() -> None:
    req = make("http://x:1", api="completions").request_for("CTX")
    assert "messages" not in req and "CTX" in req["prompt"]
    assert req["extra_body"]["response_format"]["type"] == "json_schema"


def test_commands_schema_bounds() -> None:
    s = commands_schema(max_commands=3, min_commands=1, max_anchor_chars=40)
    cmds = s["properties"]["commands"]
    assert (cmds["minItems"], cmds["maxItems"]) == (1, 3)
    assert cmds["items"]["properties"]["prefix"]["maxLength"] == 40
    assert "maxItems" not in COMMANDS_JSON_SCHEMA["properties"]["commands"]  # the shared schema is untouched


@pytest.mark.parametrize("bad", [{"adapter_mode": "x"}, {"structured_output": "x"}, {"api": "x"},
                                 {"max_tokens": 0}, {"timeout": 0}, {"max_retries": -1}])
def test_bad_settings(bad: dict) -> None:
    with pytest.raises(ConfigError):
        make("http://x:1", **bad)
    with pytest.raises(ConfigError):
        FreeModuleCleaner([], model="m")


# -- answers --------------------------------------------------------------------------------------------


def test_commands_usage_and_request(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply('{"commands": [{"prefix": "Let me retry", "suffix": "wrong."}]}')
    ctx = Context.from_text("Question: 2+2?\nLet me retry. 2+2=5, wrong. 2+2=4.")
    p = make(stub.base_url).propose(ctx)
    assert p.commands == [Command(prefix="Let me retry", suffix="wrong.")]
    assert p.note is None and p.cleaner == "free-module"
    assert p.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert p.latency_s > 0 and p.extra["endpoint"] == stub.base_url and p.extra["attempts"] == 1
    assert p.extra["template"] == "free_module_v3"
    sent = stub.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["json"]["model"] == "Qwen/Qwen3-8B:free"
    assert ctx.text in sent["json"]["messages"][-1]["content"]


def test_garbage_answer_is_a_note_not_an_error(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply("I think everything here is important, nothing to delete!")
    p = make(stub.base_url).propose("some context")
    assert p.commands == [] and p.note and "no JSON" in p.note
    assert p.raw == "I think everything here is important, nothing to delete!"


def test_empty_choices_is_a_note(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply(body={"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                   "choices": []})
    p = make(stub.base_url).propose("ctx")
    assert p.commands == [] and p.note == "the server returned no choices"


async def test_async_propose(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply('[{"prefix": "a", "suffix": "b"}]')
    c = make(stub.base_url)
    p = await c.apropose("ctx")
    assert p.commands == [Command(prefix="a", suffix="b")]
    await c.aclose()


# -- transport: retries, failover, round robin, breaker -------------------------------------------------


def test_round_robin_spreads_calls(stub_server) -> None:
    a, b = stub_server(), stub_server()
    c = make([a.base_url, b.base_url])
    for _ in range(4):
        c.propose("ctx")
    assert len(a.requests) == 2 and len(b.requests) == 2


def test_server_error_fails_over_to_next_endpoint(stub_server) -> None:
    a, b = stub_server(), stub_server()
    a.default = StubReply(status=503)
    c = make([a.base_url, b.base_url], max_retries=1)
    p = c.propose("ctx")
    assert p.extra["endpoint"] == b.base_url and p.extra["attempts"] == 2
    assert c.breakers[a.base_url].consecutive_failures == 1


def test_retry_same_endpoint_with_backoff(stub_server) -> None:
    stub = stub_server()
    stub.replies = [StubReply(status=500), StubReply(status=502)]
    c = make(stub.base_url, max_retries=2, backoff_s=0.05)
    t0 = time.perf_counter()
    p = c.propose("ctx")
    assert p.extra["attempts"] == 3 and len(stub.requests) == 3
    assert time.perf_counter() - t0 >= 0.05 + 0.1  # 0.05 then 0.1 seconds of backoff


def test_client_error_is_not_retried(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply(status=400)
    c = make(stub.base_url, max_retries=3)
    with pytest.raises(CleanerError, match="HTTP 400") as info:
        c.propose("ctx")
    assert not isinstance(info.value, CleanerUnavailable)
    assert len(stub.requests) == 1
    assert c.breakers[stub.base_url].state == "closed"


def test_timeout_raises_cleaner_timeout(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply(delay_s=20.0)
    c = make(stub.base_url, timeout=0.2, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(CleanerTimeout):
        c.propose("ctx")
    assert time.perf_counter() - t0 < 10.0  # two tries of 0.2 s, not the server's 20 s (generous for a busy CI)


def test_total_timeout_bounds_the_call(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply(delay_s=20.0)
    c = make(stub.base_url, timeout=1.0, total_timeout=1.0, max_retries=10)
    t0 = time.perf_counter()
    with pytest.raises(CleanerTimeout):
        c.propose("ctx")
    assert time.perf_counter() - t0 < 6.0  # ~1 s, where eleven tries of 1 s would take 11 s
    assert len(stub.requests) <= 2


def test_unreachable_endpoint_raises_unavailable_quickly(dead_url: str) -> None:
    c = make(dead_url, max_retries=2)
    t0 = time.perf_counter()
    with pytest.raises(CleanerUnavailable, match="3 attempt"):
        c.propose("ctx")
    assert time.perf_counter() - t0 < 5.0


def test_breaker_opens_then_fails_fast_then_recovers(stub_server) -> None:
    stub = stub_server()
    stub.replies = [StubReply(status=500)] * 2
    c = make(stub.base_url, max_retries=0, breaker_threshold=2, breaker_cooldown_s=0.3)
    for _ in range(2):
        with pytest.raises(CleanerUnavailable):
            c.propose("ctx")
    assert c.breakers[stub.base_url].state == "open"
    with pytest.raises(CleanerUnavailable, match="circuit open"):
        c.propose("ctx")
    assert len(stub.requests) == 2  # the open circuit sent nothing
    time.sleep(0.35)
    assert c.breakers[stub.base_url].state == "half_open"
    assert c.propose("ctx").commands == []  # the trial call succeeds and closes the circuit
    assert c.breakers[stub.base_url].state == "closed"


def test_circuit_breaker_states_with_a_fake_clock() -> None:
    now = [0.0]
    b = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_failure()
    assert b.state == "open" and not b.allow() and b.retry_after() == 10
    now[0] = 10.0
    assert b.allow()  # the one half-open trial ...
    assert not b.allow()  # ... and only one
    b.record_failure()  # a failed trial re-opens at once
    assert b.state == "open"
    now[0] = 20.0
    assert b.allow()
    b.release()  # a trial that was never sent frees the slot
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.consecutive_failures == 0
    with pytest.raises(ConfigError):
        CircuitBreaker(threshold=0)
