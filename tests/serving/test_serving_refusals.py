"""Backends that work by default (issue 13): a server's validation answer is a refusal, not an outage.

``structured_output="auto"`` moves an endpoint from ``json_schema`` to ``json_object`` (and to free text) when
the server refuses the form, and remembers it; an explicit form that is refused, or any other invalid request,
is a one-line :class:`CleanerConfigError` with a hint -- never retried, never held against the endpoint. A
request that timed out is not sent again to the same endpoint (the server is still computing it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import pytest

from freemem import FreeMemory
from freemem.cleaners.free_module import DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, FreeModuleCleaner
from freemem.cleaners.prompted import PromptedCleaner
from freemem.cleaners.refusals import refusal_of
from freemem.config import Triggers
from freemem.core.errors import CleanerConfigError, CleanerError, CleanerTimeout, ConfigError
from tests.serving.stub_openai import StubReply

# What llama-cpp-python's server (0.3.x) answers to response_format {"type": "json_schema", ...}: HTTP 500 with
# a pydantic error list and a traceback line in the message.
LLAMA_CPP_PYTHON_500 = {"error": {
    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
               "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
               "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"/x/llama_cpp/server/app.py\", "
               "line 376, in create_chat_completion\n    POST /v1/chat/completions" + " padding" * 150,
    "type": "internal_server_error", "param": None, "code": None}}
GOOD = '{"commands": [{"prefix": "abc", "suffix": "xyz"}]}'


def refusing(status: int = 500, body: Any = None) -> StubReply:
    return StubReply(status=status, body=body if body is not None else LLAMA_CPP_PYTHON_500)


def make(url: str, **kw: Any) -> FreeModuleCleaner:
    kw.setdefault("model", "m")
    kw.setdefault("adapter", None)
    kw.setdefault("timeout", 5.0)
    kw.setdefault("backoff_s", 0.0)
    return FreeModuleCleaner(url, **kw)


def formats(stub) -> list[str | None]:
    return [(r["json"].get("response_format") or {}).get("type") for r in stub.requests]


def test_auto_is_the_default_and_falls_back_to_json_object_once(stub_server) -> None:
    stub = stub_server()
    stub.replies = [refusing()]
    stub.default = StubReply(content=GOOD)
    c = make(stub.base_url)
    assert c.structured_output == "auto" and c.structured_output_in_use == {stub.base_url: "json_schema"}
    p = c.propose("ctx")
    assert [(cmd.prefix, cmd.suffix) for cmd in p.commands] == [("abc", "xyz")]
    assert formats(stub) == ["json_schema", "json_object"]
    assert stub.requests[1]["json"]["response_format"]["schema"]["required"] == ["commands"]
    assert p.extra["structured_output"] == "json_object" and p.extra["attempts"] == 1
    assert c.structured_output_in_use == {stub.base_url: "json_object"}
    breaker = c.breakers[stub.base_url]
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
    c.propose("again")  # remembered: no second refusal
    assert formats(stub) == ["json_schema", "json_object", "json_object"]


async def test_auto_fallback_async_down_to_free_text(stub_server) -> None:
    stub = stub_server()
    refuses_object = {"error": {"message": "1 validation error: {'type': 'literal_error', 'loc': ('body', "
                                           "'response_format', 'type'), 'msg': \"Input should be 'text'\"}"}}
    stub.replies = [refusing(), refusing(body=refuses_object)]
    stub.default = StubReply(content="Sure: " + GOOD)
    c = make(stub.base_url)
    p = await c.apropose("ctx")
    assert formats(stub) == ["json_schema", "json_object", None]
    assert p.extra["structured_output"] == "none" and len(p.commands) == 1  # parsed out of the prose
    await c.aclose()


def test_auto_is_remembered_per_endpoint(stub_server) -> None:
    a, b = stub_server(), stub_server()
    a.replies = [refusing()]
    a.default = b.default = StubReply(content=GOOD)
    c = make([a.base_url, b.base_url])
    c.propose("1")  # a: refused, then json_object
    c.propose("2")  # b: json_schema accepted
    assert c.structured_output_in_use == {a.base_url: "json_object", b.base_url: "json_schema"}
    assert formats(a) == ["json_schema", "json_object"] and formats(b) == ["json_schema"]


def test_explicit_form_refused_is_a_short_config_error_not_retried(stub_server) -> None:
    stub = stub_server()
    stub.default = refusing()
    c = make(stub.base_url, structured_output="json_schema", max_retries=3)
    with pytest.raises(CleanerConfigError) as info:
        c.propose("ctx")
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, CleanerError)
    msg = str(err)
    assert "\n" not in msg and len(msg) < 400, msg
    assert "HTTP 500" in msg and "Input should be 'text' or 'json_object'" in msg
    assert "json_schema" in msg and "structured_output='auto'" in msg and "json_object" in msg
    assert len(stub.requests) == 1
    assert c.breakers[stub.base_url].state == "closed" and c.breakers[stub.base_url].consecutive_failures == 0


@pytest.mark.parametrize(("status", "body", "hint"), [
    (400, {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 9000 "
                                "tokens", "type": "BadRequestError"}}, "context window"),
    (404, {"error": {"message": "The model `nope:free` does not exist.", "type": "NotFoundError"}}, "/v1/models"),
    (422, {"detail": [{"type": "missing", "loc": ["body", "messages"], "msg": "Field required"}]}, "settings"),
])
def test_other_refusals_name_their_fix(stub_server, status: int, body: Any, hint: str) -> None:
    stub = stub_server()
    stub.default = refusing(status, body)
    c = make(stub.base_url, max_retries=2)
    with pytest.raises(CleanerConfigError, match=f"HTTP {status}") as info:
        c.propose("ctx")
    assert hint in str(info.value) and len(str(info.value)) < 400
    assert len(stub.requests) == 1  # never retried, even under auto


def test_a_500_without_a_validation_report_is_still_transient(stub_server) -> None:
    stub = stub_server()
    stub.replies = [StubReply(status=500)]  # {"error": {"message": "stub error 500"}}
    stub.default = StubReply(content=GOOD)
    p = make(stub.base_url, max_retries=1).propose("ctx")
    assert p.extra["attempts"] == 2 and formats(stub) == ["json_schema", "json_schema"]


def test_a_timed_out_request_is_not_sent_again_to_the_same_endpoint(stub_server) -> None:
    stub = stub_server()
    stub.default = StubReply(delay_s=1.5)
    c = make(stub.base_url, timeout=0.3, max_retries=3)
    with pytest.raises(CleanerTimeout, match="needs a larger timeout"):
        c.propose("ctx")
    assert len(stub.requests) == 1


def test_a_timed_out_endpoint_fails_over_to_the_next(stub_server) -> None:
    slow, fast = stub_server(), stub_server()
    slow.default = StubReply(delay_s=1.5)
    fast.default = StubReply(content=GOOD)
    c = make([slow.base_url, fast.base_url], timeout=0.3, max_retries=3)
    p = c.propose("ctx")
    assert p.extra["endpoint"] == fast.base_url and p.extra["attempts"] == 2 and len(slow.requests) == 1


def test_defaults_fit_cpu_serving_and_the_round_net_stays_above_them() -> None:
    c = FreeModuleCleaner("http://127.0.0.1:9/v1", model="m", adapter=None)
    assert c.timeout == DEFAULT_TIMEOUT == 600.0
    assert c.total_timeout == max(DEFAULT_TOTAL_TIMEOUT, DEFAULT_TIMEOUT)
    assert FreeMemory(c, counter="approx").rounds.timeout > c.total_timeout


def test_free_memory_skips_the_round_with_one_short_warning(stub_server) -> None:
    stub = stub_server()
    stub.default = refusing()
    memory = FreeMemory(make(stub.base_url, structured_output="json_schema"), counter="approx",
                        triggers=Triggers(every_tokens=None, on_loop=False))
    text = "Question: q\n" + "filler line\n" * 50
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = memory.clean_text(text)
    ours = [w for w in caught if "round skipped" in str(w.message)]
    assert len(ours) == 1 and len(str(ours[0].message)) < 500
    assert result.text == text and result.event.error.startswith("CleanerConfigError")


# -- the classifier and PromptedCleaner --------------------------------------------------------------------


@dataclass
class FakeStatusError(Exception):
    status_code: int
    body: Any = None
    message: str = ""


def test_refusal_of_reads_status_and_body() -> None:
    r = refusal_of(FakeStatusError(500, LLAMA_CPP_PYTHON_500))
    assert r is not None and r.kind == "response_format"
    assert r.message == "body.response_format.type: Input should be 'text' or 'json_object'"
    assert refusal_of(FakeStatusError(500, {"error": {"message": "CUDA out of memory"}})) is None
    assert refusal_of(FakeStatusError(503, "overloaded")) is None
    assert refusal_of(FakeStatusError(429, {"error": {"message": "Input should be slower"}})) is None
    assert refusal_of(ValueError("no status")) is None
    long = refusal_of(FakeStatusError(400, {"error": {"message": "x" * 5000}}))
    assert long is not None and long.kind == "request" and len(long.message) <= 200


def test_prompted_cleaner_turns_a_refusal_into_a_config_error() -> None:
    class Refusing:
        def invoke(self, *a: Any, **k: Any) -> Any:
            raise FakeStatusError(500, LLAMA_CPP_PYTHON_500)

        async def ainvoke(self, *a: Any, **k: Any) -> Any:
            raise FakeStatusError(422, {"detail": "Field required"})

    cleaner = PromptedCleaner(Refusing())  # type: ignore[arg-type]
    with pytest.raises(CleanerConfigError, match="response_format bound to the chat model") as info:
        cleaner.propose("ctx")
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
