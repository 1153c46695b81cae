"""FreeModuleCleaner against a real llama.cpp server (llama-cpp-python) serving the tiny Qwen3 model + LoRA.

Real HTTP, real chat template and tokenizer, real adapter switching and grammar-constrained decoding. The
weights are random, so the commands' anchors match nothing: the point is the plumbing, not the deletions.
"""

from __future__ import annotations

import time

import pytest

from freemem.cleaners.free_module import FreeModuleCleaner, commands_schema
from freemem.config import Triggers
from freemem.core.apply import apply_commands
from freemem.core.commands import parse_commands
from freemem.core.context import Context
from freemem.core.errors import CleanerError, CleanerUnavailable

pytestmark = pytest.mark.llamacpp

CONTEXT = Context.from_text(
    "Question: what is 17 * 23?\n"
    "Let me compute 17 * 23. 17 * 20 = 340, 17 * 3 = 51, so 391. Wait, let me recompute: 17 * 23 = 17 * 20 + 17 * 3"
    " = 340 + 51 = 391. Let me double check once more: 17 * 23 = 391.\nThe answer is \\boxed{391}."
)
# llama-cpp-python wants {"type": "json_object", "schema": ...}; bounded so the random model's JSON closes.
SMALL_SCHEMA = commands_schema(min_commands=1, max_commands=2, max_anchor_chars=8)


def cleaner(server, **kw) -> FreeModuleCleaner:
    kw.setdefault("model", server.base_alias)
    kw.setdefault("adapter", "free")
    kw.setdefault("structured_output", "none")
    kw.setdefault("max_tokens", 16)
    kw.setdefault("timeout", 60.0)
    kw.setdefault("backoff_s", 0.05)
    return FreeModuleCleaner(server.base_url, **kw)


def test_models_are_listed(llama_server) -> None:
    import openai

    ids = {m.id for m in openai.OpenAI(base_url=llama_server.base_url, api_key="x").models.list()}
    assert ids == {"tiny", "tiny:free"}


def test_adapter_switching_changes_output(llama_server) -> None:
    with_adapter = cleaner(llama_server).propose(CONTEXT)
    base = cleaner(llama_server, adapter_mode="none").propose(CONTEXT)
    again = cleaner(llama_server).propose(CONTEXT)
    assert with_adapter.extra["model"] == "tiny:free" and base.extra["model"] == "tiny"
    assert with_adapter.raw and base.raw
    assert with_adapter.raw != base.raw  # same prompt, temperature 0: only the LoRA differs
    assert again.raw == with_adapter.raw  # and it is deterministic
    assert with_adapter.usage["prompt_tokens"] > 100 and with_adapter.usage["completion_tokens"] == 16


def test_constrained_decoding_gives_parseable_commands(llama_server) -> None:
    c = cleaner(llama_server, structured_output="json_object", json_schema=SMALL_SCHEMA, max_tokens=96)
    p = c.propose(CONTEXT)
    assert p.note is None, p.raw
    assert parse_commands(p.raw).ok
    assert 1 <= len(p.commands) <= 2
    assert all(len(cmd.prefix) <= 8 and len(cmd.suffix) <= 8 for cmd in p.commands)
    # Random anchors: applying never raises, and a command that matches nothing is rejected with a reason.
    outcome = apply_commands(CONTEXT, p.commands)
    assert outcome.text == CONTEXT.text or outcome.applied
    assert len(outcome.applied) + len(outcome.rejected) >= 1 or outcome.refused


def test_default_schema_constrained_output_starts_as_json(llama_server) -> None:
    p = cleaner(llama_server, structured_output="json_object", max_tokens=24).propose(CONTEXT)
    assert p.raw is not None and p.raw.lstrip().startswith("{")


def test_openai_json_schema_style_is_refused_by_llama_cpp_python(llama_server) -> None:
    # llama-cpp-python's server only knows {"type": "json_object", "schema": ...} and answers the OpenAI
    # json_schema form with HTTP 500: a CleanerError that names the problem (use structured_output="json_object").
    c = cleaner(llama_server, structured_output="json_schema", max_retries=1)
    with pytest.raises(CleanerError, match="response_format"):
        c.propose(CONTEXT)


def test_garbage_answer_gives_note_not_exception(llama_server) -> None:
    p = cleaner(llama_server, adapter_mode="none", max_tokens=12).propose(CONTEXT)
    assert p.commands == []
    assert p.note is not None and p.note.startswith(("empty output", "no JSON"))
    assert p.extra["finish_reason"] == "length"


async def test_async_propose_real_server(llama_server) -> None:
    c = cleaner(llama_server, structured_output="json_object", json_schema=SMALL_SCHEMA, max_tokens=96)
    p = await c.apropose(CONTEXT)
    assert p.note is None and p.commands
    sync = c.propose(CONTEXT)
    assert sync.raw == p.raw
    await c.aclose()


def test_failover_to_second_endpoint(llama_server, dead_url) -> None:
    c = FreeModuleCleaner([dead_url, llama_server.base_url], model="tiny", adapter="free",
                          structured_output="none", max_tokens=8, max_retries=1)
    p = c.propose(CONTEXT)
    assert p.raw and p.extra["endpoint"] == llama_server.base_url and p.extra["attempts"] == 2
    assert c.breakers[dead_url.rstrip("/")].consecutive_failures == 1


def test_killed_server_raises_quickly_and_breaker_opens(start_server) -> None:
    server = start_server()
    c = cleaner(server, max_tokens=4, max_retries=1, breaker_threshold=2, breaker_cooldown_s=60)
    assert c.propose(CONTEXT).raw  # it works while the server lives
    server.kill()
    t0 = time.perf_counter()
    with pytest.raises(CleanerUnavailable):
        c.propose(CONTEXT)
    assert time.perf_counter() - t0 < 10.0
    assert c.breakers[server.base_url].state == "open"  # two refused connections in a row
    t0 = time.perf_counter()
    with pytest.raises(CleanerUnavailable, match="circuit open"):
        c.propose(CONTEXT)
    assert time.perf_counter() - t0 < 1.0  # fails at once, no network (the message says why)


def test_free_memory_records_usage_then_fails_open_when_the_server_dies(start_server) -> None:
    """Through FreeMemory: a live server's round lands in the ledger event (usage, latency); a killed server
    costs a skipped round with a warning, and the text comes back untouched."""
    from freemem.memory import FreeMemory

    server = start_server()
    c = cleaner(server, structured_output="json_object", json_schema=SMALL_SCHEMA, max_tokens=96, max_retries=1,
                backoff_s=0.0)
    memory = FreeMemory(c, triggers=Triggers(every_tokens=None, on_loop=False))
    text = CONTEXT.text
    ok = memory.clean_text(text, question="Question: what is 17 * 23?")
    assert ok.event.error is None and ok.event.cleaner == "free-module"
    assert ok.event.usage["prompt_tokens"] > 100 and ok.event.usage["completion_tokens"] > 0
    assert 0 < ok.event.cleaner_latency_s <= ok.event.latency_s
    # random anchors: parsed, then rejected with reasons (or refused as a whole), never applied blindly
    assert ok.event.applied == 0 and (ok.event.rejected or ok.event.refused) and ok.text == text

    server.kill()
    with pytest.warns(RuntimeWarning, match="round skipped"):
        down = memory.clean_text(text)
    assert down.text == text and not down.changed
    assert down.event.error is not None and down.event.error.startswith("CleanerUnavailable")
    assert memory.stats.errors == 1


async def test_free_memory_async_fails_open_on_a_dead_server(dead_url) -> None:
    from freemem.memory import FreeMemory

    c = FreeModuleCleaner(dead_url, model="tiny", adapter="free", max_retries=0)
    memory = FreeMemory(c, triggers=Triggers(every_tokens=None, on_loop=False))
    with pytest.warns(RuntimeWarning, match="round skipped"):
        result = await memory.aclean_text(CONTEXT.text)
    assert result.text == CONTEXT.text and result.event.error.startswith("CleanerUnavailable")
    await c.aclose()


def test_prompted_cleaner_through_a_langchain_chat_model(llama_server) -> None:
    """PromptedCleaner over real HTTP: LangChain's ChatOpenAI pointed at the llama.cpp server."""
    langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
    from freemem.cleaners.prompted import PromptedCleaner

    # langchain-openai sends max_tokens as max_completion_tokens, which llama.cpp's server ignores: the bound
    # goes in the body too, or an unconstrained answer runs to the context length.
    chat = langchain_openai.ChatOpenAI(model="tiny:free", base_url=llama_server.base_url, api_key="x",
                                       temperature=0, max_tokens=96, extra_body={"max_tokens": 96},
                                       max_retries=0, timeout=300)
    constrained = chat.bind(response_format={"type": "json_object", "schema": SMALL_SCHEMA})
    p = PromptedCleaner(constrained, name="prompted-tiny").propose(CONTEXT)
    assert p.cleaner == "prompted-tiny" and p.note is None, p.raw
    assert 1 <= len(p.commands) <= 2
    assert p.usage["prompt_tokens"] > 100 and p.usage["completion_tokens"] > 0
    free_text = PromptedCleaner(chat.bind(max_tokens=8, extra_body={"max_tokens": 8})).propose(CONTEXT)  # unconstrained: random text
    assert free_text.commands == [] and free_text.note
