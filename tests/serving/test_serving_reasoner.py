"""FreeReasoner: the Free()LM loop end to end against a real llama.cpp server (tiny Qwen3 GGUF + LoRA).

The base model (``tiny``) generates, the Free-Module (``tiny:free``, same server) or the heuristic cleaner
prunes, the next round continues from the pruned text; the state lives in a real checkpointer.
"""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import pytest

from freemem.cleaners.free_module import FreeModuleCleaner, commands_schema
from freemem.config import Triggers
from freemem.core.context import Protection
from freemem.core.errors import ConfigError, ServeError
from freemem.langgraph.reasoner import QWEN3_THINKING_PROMPT, FreeReasoner, ReasonerResult
from freemem.memory import FreeMemory

QUESTION = "Is 391 equal to 17 * 23? Check it step by step."
SMALL_SCHEMA = commands_schema(min_commands=1, max_commands=2, max_anchor_chars=8)


def heuristic_memory(budget: int = 120) -> FreeMemory:
    """The deterministic heuristic cleaner with a small budget and recency window, so it prunes tiny runs."""
    return FreeMemory(budget=budget, counter="qwen3", protection=Protection(recent_chars=120),
                      triggers=Triggers(every_tokens=None, on_loop=False))


def reasoner(server, **kw) -> FreeReasoner:
    kw.setdefault("model", server.base_alias)
    kw.setdefault("temperature", 0.0)
    kw.setdefault("chunk_tokens", 48)
    kw.setdefault("max_total_tokens", 144)
    kw.setdefault("timeout", 120.0)
    return FreeReasoner(server.base_url, **kw)


# -- pure: no server -------------------------------------------------------------------------------------


def test_request_is_a_raw_continuation_of_prompt_and_text() -> None:
    r = FreeReasoner("http://127.0.0.1:1", model="Qwen/Qwen3-8B", chunk_tokens=100, max_total_tokens=250,
                     context_length=1000, seed=3, extra_body={"top_k": 20})
    state = {**r.initial_state("Q?"), "text": "thinking so far", "generated_tokens": 200, "context_tokens": 950}
    req = r.request_for(state)
    assert req is not None
    assert req["prompt"] == QWEN3_THINKING_PROMPT.replace("{question}", "Q?") + "thinking so far"
    assert req["model"] == "Qwen/Qwen3-8B"  # the base model: no adapter for generation
    assert req["max_tokens"] == 50  # min(chunk 100, budget left 50, context room 50)
    assert (req["seed"], req["extra_body"], req["stop"]) == (3, {"top_k": 20}, ["<|im_end|>", "<|endoftext|>"])
    assert r.request_for({**state, "generated_tokens": 250}) is None
    # the default cleaner talks to the same server, with the adapter
    assert isinstance(r.memory.cleaner, FreeModuleCleaner)
    assert r.memory.cleaner.request_for("x")["model"] == "Qwen/Qwen3-8B:free"


def test_result_splits_thinking_and_answer() -> None:
    res = ReasonerResult(question="q", text="a b c</think>\n\nThe answer is 4.\n", status="answer", rounds=1,
                         generated_tokens=9, context_tokens=20)
    assert (res.thinking, res.answer) == ("a b c", "The answer is 4.")
    unfinished = ReasonerResult(question="q", text="still thinking", status="budget", rounds=1,
                                generated_tokens=9, context_tokens=20)
    assert (unfinished.thinking, unfinished.answer) == ("still thinking", None)


@pytest.mark.parametrize("bad", [{"chunk_tokens": 0}, {"max_total_tokens": 0}, {"max_rounds": 0},
                                 {"context_length": 0}, {"prompt": "no placeholder"}, {"think_end": ""},
                                 {"timeout": 0}, {"memory": FreeMemory(), "cleaner_options": {"max_tokens": 5}}])
def test_bad_settings(bad: dict) -> None:
    with pytest.raises(ConfigError):
        FreeReasoner("http://127.0.0.1:1", model="m", **bad)


def test_resume_needs_a_checkpointer_and_a_question_is_required() -> None:
    r = FreeReasoner("http://127.0.0.1:1", model="m")
    with pytest.raises(ConfigError, match="checkpointer"):
        r.resume("t")
    with pytest.raises(ConfigError, match="question"):
        r.invoke("  ")


def test_generation_server_down_raises_serve_error(dead_url: str) -> None:
    r = FreeReasoner(dead_url, model="m", max_retries=1, backoff_s=0.0, memory=FreeMemory())
    with pytest.raises(ServeError, match="2 attempt"):
        r.invoke(QUESTION)


# -- real server -----------------------------------------------------------------------------------------



@pytest.mark.llamacpp
def test_free_module_on_the_same_server(llama_server) -> None:
    """Base model generates, the adapter (same server) cleans; its random anchors are rejected cleanly."""
    r = reasoner(llama_server, adapter="free",
                 cleaner_options={"structured_output": "json_object", "json_schema": SMALL_SCHEMA, "max_tokens": 64})
    res = r.invoke(QUESTION)
    assert res.status == "budget" and res.rounds == 3 and res.generated_tokens == 144
    assert [e["round"] for e in res.ledger] == [1, 2, 3]
    assert res.ledger[-1]["clean"] is None  # no clean after the last round: the run was over
    for entry in res.ledger[:2]:
        gen, clean = entry["generate"], entry["clean"]
        assert gen["finish_reason"] == "length" and gen["completion_tokens"] == 48
        assert clean["cleaner"] == "free-module" and clean["error"] is None
        assert clean["usage"]["prompt_tokens"] > 100 and clean["usage"]["completion_tokens"] > 0
        assert clean["cleaner_latency_s"] > 0
        # constrained decoding gave 1-2 parseable commands; random anchors never apply
        assert clean["note"] is None and clean["applied"] == 0 and clean["tokens_freed"] == 0
        assert 1 <= len(clean["rejected"]) <= 2 and all(rej["reason"] for rej in clean["rejected"])
    # Nothing was pruned, so each round's prompt is the last prompt plus what it generated (re-tokenized).
    for before, after in zip(res.ledger, res.ledger[1:]):
        grown = before["generate"]["prompt_tokens"] + before["generate"]["completion_tokens"]
        assert abs(after["generate"]["prompt_tokens"] - grown) <= 3
    r.close()


@pytest.mark.llamacpp
def test_prunes_and_continues_from_the_pruned_text(llama_server) -> None:
    r = reasoner(llama_server, memory=heuristic_memory(), chunk_tokens=64, max_total_tokens=256)
    res = r.invoke(QUESTION)
    assert res.status == "budget" and res.generated_tokens == 256
    cleans = [e["clean"] for e in res.ledger if e["clean"]]
    assert cleans and all(c["error"] is None for c in cleans)
    assert res.tokens_freed > 0 and any(c["applied"] for c in cleans)
    for before, after in zip(res.ledger, res.ledger[1:]):
        grown = before["generate"]["prompt_tokens"] + before["generate"]["completion_tokens"]
        freed = before["clean"]["tokens_freed"]
        if freed:  # the continuation was sent the pruned text: the server saw a shorter prompt
            assert after["generate"]["prompt_tokens"] < grown - freed // 2
    # the kept text holds fewer tokens than were written, with markers where spans went
    assert r.memory.count_text(res.text) < res.generated_tokens
    assert "<Del>" in res.text


@pytest.mark.llamacpp
def test_stops_on_answer_and_on_context(llama_server) -> None:
    probe = reasoner(llama_server, memory=heuristic_memory(), chunk_tokens=40, max_total_tokens=40).invoke(QUESTION)
    text = probe.text
    assert probe.status == "budget" and len(text) > 30
    # Pretend a piece of the real output closes the thinking and a later piece ends the answer.
    third = len(text) // 3
    think_end, stop = text[third: third + 6], text[2 * third: 2 * third + 6]
    if think_end in text[:third] or stop in text[: 2 * third]:
        pytest.skip("the probe text repeats itself; no unique markers")
    res = reasoner(llama_server, memory=heuristic_memory(), chunk_tokens=40, think_end=think_end,
                   stop=[stop]).invoke(QUESTION)
    assert res.status == "answer" and res.rounds == 1
    assert res.ledger[0]["generate"]["finish_reason"] == "stop"
    assert res.answer == text[third + 6: 2 * third].strip()
    assert res.thinking == text[:third]
    # a server context window: the second round only gets the room that is left, then the run stops
    room = probe.ledger[0]["generate"]["prompt_tokens"] + 40 + 10
    capped = reasoner(llama_server, memory=heuristic_memory(budget=10_000), chunk_tokens=40, max_total_tokens=400,
                      context_length=room).invoke(QUESTION)
    assert capped.status == "context"
    assert [e["generate"]["max_tokens"] for e in capped.ledger] == [40, 10]


@pytest.mark.llamacpp
def test_checkpointed_run_resumes_in_another_reasoner(llama_server, tmp_path: Path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite import SqliteSaver

    straight = reasoner(llama_server, memory=heuristic_memory(), chunk_tokens=48, max_total_tokens=144,
                        checkpointer=InMemorySaver()).invoke(QUESTION, thread_id="straight")

    db = tmp_path / "reasoner.sqlite"
    first = reasoner(llama_server, memory=heuristic_memory(), checkpointer=SqliteSaver(
        sqlite3.connect(db, check_same_thread=False)))
    cfg = {"configurable": {"thread_id": "t1"}}
    # stop after the first clean, as a crashed process would
    first.graph.invoke(first.initial_state(QUESTION), cfg, interrupt_after=["clean"])
    paused = first.get_state("t1")
    assert paused is not None and paused.status == "running" and paused.rounds == 1

    # a new reasoner (as a new process) on the same database picks the run up
    second = reasoner(llama_server, memory=heuristic_memory(), checkpointer=SqliteSaver(
        sqlite3.connect(db, check_same_thread=False)))
    done = second.resume("t1")
    assert done.status == "budget" and done.rounds == 3
    assert done.text == straight.text  # temperature 0 and a deterministic cleaner: the same run
    assert [e["clean"] and e["clean"]["tokens_freed"] for e in done.ledger] == \
        [e["clean"] and e["clean"]["tokens_freed"] for e in straight.ledger]
    assert second.resume("t1").text == done.text  # a finished run is returned as it is
    with pytest.raises(ConfigError, match="no FreeReasoner run"):
        second.resume("unknown")


@pytest.mark.llamacpp
async def test_async_run_matches_sync(llama_server) -> None:
    r = reasoner(llama_server, memory=heuristic_memory())
    sync = r.invoke(QUESTION)
    res = await r.ainvoke(QUESTION)
    assert res.text == sync.text and res.status == sync.status == "budget"
    assert [e["generate"]["prompt_tokens"] for e in res.ledger] == [e["generate"]["prompt_tokens"] for e in sync.ledger]
    await r.aclose()


@pytest.mark.llamacpp
def test_cleaner_down_costs_rounds_not_the_run(llama_server, dead_url: str) -> None:
    cleaner = FreeModuleCleaner(dead_url, model="tiny", adapter="free", max_retries=0, breaker_threshold=1)
    memory = FreeMemory(cleaner, triggers=Triggers(every_tokens=None, on_loop=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = reasoner(llama_server, memory=memory).invoke(QUESTION)
    assert res.status == "budget" and res.rounds == 3
    errors = [e["clean"]["error"] for e in res.ledger if e["clean"]]
    assert len(errors) == 2 and all(err and err.startswith("CleanerUnavailable") for err in errors)
    assert "circuit open" in errors[1]  # the second round did not even try the dead endpoint
    assert sum("round skipped" in str(w.message) for w in caught) == 2
    assert memory.stats.errors == 2
