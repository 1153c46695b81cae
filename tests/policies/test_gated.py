"""GatedReader (GRU-Mem): gates, bounds, fallbacks, modes, checkpointing, tool use — with scripted agents."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langgraph.checkpoint.memory import InMemorySaver
from policyfakes import (
    FunctionChatModel,
    ScriptedChatModel,
    chunk_of,
    evidence_agent,
    gated_reply,
    haystack,
    multihop_document,
    paragraphs_doc,
)

from freemem.core.errors import ConfigError
from freemem.langgraph.gated import GatedReader
from freemem.policies.gated import parse_gated_step, split_chunks
from freemem.tokens import get_counter

COUNTER = get_counter("approx")
NEEDLES = ["The secret code of the blue vault is 4417.", "The vault opens only on day 23.",
           "The key lies under stone 58."]


def _needle_doc() -> str:
    return haystack(NEEDLES, [0.1, 0.45, 0.7], n_sentences=1200, seed=3)


def _chunk_index(chunks: list[str], text: str) -> int:
    return next(i for i, c in enumerate(chunks) if text in c)


def test_split_chunks_is_lossless_and_bounded() -> None:
    doc = _needle_doc()
    chunks = split_chunks(doc, 400, COUNTER)
    assert "".join(chunks) == doc
    assert len(chunks) > 5
    assert all(0 < COUNTER.count(c) <= 400 for c in chunks)
    with pytest.raises(ConfigError):
        split_chunks(doc, 0, COUNTER)


def test_parse_is_strict() -> None:
    ok = parse_gated_step(gated_reply(True, "m", False))
    assert ok.ok and ok.update is True and ok.memory == "m" and ok.exit is False
    bad = parse_gated_step("<update>maybe</update><memory>x</memory><exit>stop</exit>")
    assert bad.update is None and bad.exit is None and len(bad.problems) == 2
    twice = parse_gated_step("<update>yes</update><update>no</update><memory>x</memory><exit>end</exit>")
    assert twice.update is None and "2 <update> tags" in twice.problems[0]
    open_ = parse_gated_step("<update>yes</update><memory>x<exit>end</exit>")
    assert open_.memory is None and "<memory> unterminated" in open_.problems
    # MemAgent mode needs only the memory.
    assert parse_gated_step("<memory>x</memory>", need_gates=False).ok


def test_exit_gate_stops_at_the_chunk_completing_the_evidence() -> None:
    doc = _needle_doc()
    agent = FunctionChatModel(fn=evidence_agent(NEEDLES, "4417"))
    reader = GatedReader(agent, chunk_tokens=400, counter=COUNTER)
    chunks = reader.split(doc)
    last_evidence = max(_chunk_index(chunks, n) for n in NEEDLES)
    assert last_evidence < len(chunks) - 2  # the test means something: there is text left to skip

    result = reader.invoke("What is the code of the blue vault, and when does it open?", doc)

    assert result.exit_position == last_evidence
    assert result.exit_signalled == last_evidence
    assert result.chunks_read == last_evidence + 1
    assert len(result.calls) == last_evidence + 2  # one per chunk read, plus the answer
    assert result.answer == "4417"
    assert all(n in result.memory for n in NEEDLES)
    # The memory changed exactly on the three evidence chunks.
    updated = [s.index for s in result.steps if s.updated]
    assert updated == sorted(_chunk_index(chunks, n) for n in NEEDLES)
    # Ledger: one event per step, memory size after the step.
    assert len(result.events) == result.chunks_read
    assert [e.tokens_after for e in result.events] == result.memory_sizes


def test_without_exit_gate_everything_is_read() -> None:
    doc = _needle_doc()
    agent = FunctionChatModel(fn=evidence_agent(NEEDLES, "4417"))
    reader = GatedReader(agent, chunk_tokens=400, counter=COUNTER, use_exit_gate=False)
    chunks = reader.split(doc)
    last_evidence = max(_chunk_index(chunks, n) for n in NEEDLES)
    result = reader.invoke("What is the code?", doc)
    assert result.chunks_read == len(chunks)
    assert result.exit_position == len(chunks) - 1
    assert result.exit_signalled == last_evidence  # recorded, not honoured
    assert len(result.calls) == len(chunks) + 1
    assert result.answer == "4417"


def test_multihop_document() -> None:
    doc, question, evidence, answer = multihop_document()
    reader = GatedReader(FunctionChatModel(fn=evidence_agent(evidence, answer)), chunk_tokens=300, counter=COUNTER)
    chunks = reader.split(doc)
    result = reader.invoke(question, doc)
    assert result.answer == answer
    assert result.exit_position == _chunk_index(chunks, evidence[1])
    assert result.chunks_read < len(chunks)


def test_closed_update_gate_keeps_memory() -> None:
    doc, size = paragraphs_doc(3, COUNTER, seed=5)
    model = ScriptedChatModel(script=[
        gated_reply(True, "fact A", False),
        gated_reply(False, "SHOULD NOT BE KEPT", False),
        gated_reply(False, "", False),
        "<answer>A</answer>",
    ])
    reader = GatedReader(model, chunk_tokens=size, counter=COUNTER)
    assert len(reader.split(doc)) == 3
    result = reader.invoke("q?", doc)
    assert [s.updated for s in result.steps] == [True, False, False]
    assert result.memory == "fact A"
    assert [e.applied for e in result.events] == [1, 0, 0]
    # The memory shown to the model after the closed gate is still the old one.
    assert "fact A" in model.received[2][-1].content and "SHOULD NOT" not in model.received[2][-1].content


def test_memory_never_exceeds_its_bound() -> None:
    doc = haystack([], [], n_sentences=400, seed=6)
    bound = 120

    def verbose(messages):
        if "<chunk" not in messages[-1].content:
            return "<answer>x</answer>"
        return gated_reply(True, memory_of_chunk(messages) * 3, False)

    def memory_of_chunk(messages):
        return chunk_of(messages)

    model = FunctionChatModel(fn=verbose)
    result = GatedReader(model, chunk_tokens=300, memory_tokens=bound, counter=COUNTER).invoke("q?", doc)
    assert result.chunks_read > 3
    assert all(size <= bound for size in result.memory_sizes)
    assert all(s.memory_truncated for s in result.steps)
    assert COUNTER.count(result.memory) <= bound


def test_malformed_step_is_retried_then_falls_back() -> None:
    doc, size = paragraphs_doc(3, COUNTER, seed=7)
    model = ScriptedChatModel(script=[
        "I think the memory should be: fact A",  # malformed
        gated_reply(True, "fact A", False),  # the retry
        "<update>perhaps</update><memory>junk</memory><exit>stop</exit>",  # malformed
        "still no format",  # malformed again: fallback
        "<update>yes</update><memory>fact B</memory><exit>halt</exit>",  # exit unreadable, twice
        "<update>yes</update><memory>fact B</memory><exit>halt</exit>",
        "<answer>B</answer>",
    ])
    result = GatedReader(model, chunk_tokens=size, counter=COUNTER, step_retries=1).invoke("q?", doc)
    s1, s2, s3 = result.steps
    assert s1.attempts == 2 and s1.updated and not s1.fallback
    assert "no <update> tag" in model.received[1][-1].content  # the retry says what was wrong
    assert s2.attempts == 2 and not s2.updated and "memory kept" in s2.fallback
    assert s3.updated and "exit gate unreadable: continue" in s3.fallback
    assert result.memory == "fact B"
    assert result.chunks_read == 3  # a malformed exit gate never stops reading
    assert len(result.calls) == 7


def test_memagent_mode_always_overwrites_and_reads_all() -> None:
    doc, size = paragraphs_doc(3, COUNTER, seed=8)
    model = ScriptedChatModel(script=[
        "<memory>one</memory>",
        "<update>no</update><memory>two</memory><exit>end</exit>",  # gates ignored
        "<memory>three</memory>",
        "<answer>3</answer>",
    ])
    reader = GatedReader(model, chunk_tokens=size, counter=COUNTER, use_update_gate=False)
    result = reader.invoke("q?", doc)
    assert reader.mode == "ungated"
    assert [s.updated for s in result.steps] == [True, True, True]
    assert result.memory == "three" and result.chunks_read == 3
    assert "<update>" not in model.received[0][0].content  # the MemAgent prompt has no gates


def test_generic_fake_model_and_peak_context() -> None:
    doc = haystack(["The answer is 42."], [0.1], n_sentences=200, seed=9)
    model = GenericFakeChatModel(messages=iter([gated_reply(True, "The answer is 42.", True), "<answer>42</answer>"]))
    reader = GatedReader(model, chunk_tokens=800, counter=COUNTER)
    result = reader.invoke("What is the answer?", doc)
    assert result.answer == "42" and result.exit_position == 0 and len(result.calls) == 2
    first_chunk = COUNTER.count(reader.split(doc)[0])
    assert result.peak_context == result.calls[0].context_tokens
    assert first_chunk < result.peak_context <= first_chunk + reader.memory_tokens + 400


def test_async_matches_sync() -> None:
    doc = _needle_doc()
    sync = GatedReader(FunctionChatModel(fn=evidence_agent(NEEDLES, "4417")), chunk_tokens=400,
                       counter=COUNTER).invoke("q?", doc)
    result = asyncio.run(GatedReader(FunctionChatModel(fn=evidence_agent(NEEDLES, "4417")), chunk_tokens=400,
                                     counter=COUNTER).ainvoke("q?", doc))
    assert result.metrics() == sync.metrics() and result.memory == sync.memory and result.answer == "4417"


def test_checkpointer_persists_each_step_and_resumes() -> None:
    doc, size = paragraphs_doc(6, COUNTER, seed=10)
    model = ScriptedChatModel(script=[
        gated_reply(True, "m1", False),
        gated_reply(True, "m2", False),
        RuntimeError("server went away"),
        gated_reply(True, "m3", False),
        gated_reply(False, "", True),
        "<answer>done</answer>",
    ])
    reader = GatedReader(model, chunk_tokens=size, counter=COUNTER, step_retries=0, checkpointer=InMemorySaver())
    assert len(reader.split(doc)) == 6
    config = {"configurable": {"thread_id": "reader-1"}}
    with pytest.raises(RuntimeError, match="server went away"):
        reader.invoke("q?", doc, config=config)
    saved = reader.graph.get_state(config)
    assert saved.values["position"] == 2 and saved.values["memory"] == "m2"
    assert saved.next == ("read",)
    history = list(reader.graph.get_state_history(config))
    assert {s.values.get("memory") for s in history} >= {"m1", "m2"}  # a checkpoint per step

    result = reader.invoke(None, None, config=config)  # resume: steps 1-2 are not asked again
    assert result.answer == "done"
    assert result.memory == "m3" and result.exit_position == 3
    assert len(model.received) == 6
    assert [s.index for s in result.steps] == [0, 1, 2, 3]


def test_as_tool_sync_and_async() -> None:
    doc, question, evidence, answer = multihop_document(seed=2)
    reader = GatedReader(FunctionChatModel(fn=evidence_agent(evidence, answer)), chunk_tokens=300, counter=COUNTER)
    tool = reader.as_tool(documents={"bio": doc})
    out = tool.invoke({"question": question, "source": "bio"})
    assert f"Answer: {answer}" in out and "stopped after chunk" in out
    assert "bio" in tool.description
    text_tool = reader.as_tool(name="read_text")
    out2 = asyncio.run(text_tool.ainvoke({"question": question, "document": doc}))
    assert f"Answer: {answer}" in out2
    with pytest.raises(ConfigError, match="unknown source"):
        tool.invoke({"question": question, "source": "nope"})


def test_config_errors() -> None:
    model = ScriptedChatModel()
    with pytest.raises(ConfigError):
        GatedReader(model, chunk_tokens=0)
    with pytest.raises(ConfigError):
        GatedReader(model, memory_tokens=-1)
    with pytest.raises(ConfigError):
        GatedReader(model, counter=COUNTER).invoke("", "doc")
