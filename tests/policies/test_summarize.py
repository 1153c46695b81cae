"""InftyThinker (sawtooth reasoning) and SummarizeMemory (transcript folding) with scripted chat models."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from policyfakes import ScriptedChatModel, cut_off, filler

from freemem import InMemoryArchive
from freemem.core.errors import ConfigError
from freemem.core.pairing import pairing_violations
from freemem.langgraph.inftythink import InftyThinker
from freemem.memory import MESSAGE_OVERHEAD_TOKENS
from freemem.policies.inftythink import fallback_summary, parse_segment
from freemem.policies.summarize import SummarizeMemory
from freemem.tokens import get_counter

COUNTER = get_counter("approx")
QUESTION = "What is the sum of the first 100 positive integers?"


def reasoning(tokens: int, seed: int) -> str:
    """Filler reasoning of about ``tokens`` tokens (without tags)."""
    out: list[str] = []
    for sentence in filler(10_000, seed):
        if COUNTER.count(" ".join(out + [sentence])) > tokens:
            break
        out.append(sentence)
    return " ".join(out)


def received_tokens(model: ScriptedChatModel, i: int) -> int:
    return sum(COUNTER.count(str(m.content)) for m in model.received[i]) + MESSAGE_OVERHEAD_TOKENS * len(
        model.received[i])


# ------------------------------------------------------------------------------------------- parsing


def test_parse_segment_rules() -> None:
    assert parse_segment("so the sum is 5050. Final answer: 5050").answer == "5050"
    assert parse_segment("thus \\boxed{\\frac{1}{2}}").answer == "\\frac{1}{2}"
    cut = parse_segment("maybe \\boxed{5} — wait, let me check", truncated=True)
    assert cut.answer is None and cut.needs_summary and "cut off" in cut.problem
    # A candidate answer mentioned inside the summary does not end the reasoning.
    mention = parse_segment("work <summary>tried \\boxed{3}, it fails the check</summary>")
    assert mention.answer is None and mention.summary.startswith("tried")
    assert parse_segment("work <summary>never closed").problem == "unterminated <summary> block"
    assert parse_segment("work <summary>  </summary>").problem == "empty <summary> block"
    assert parse_segment("work <summary>a</summary> more <summary>b</summary>").summary == "b"


def test_fallback_summary_is_bounded_and_keeps_the_newest_reasoning() -> None:
    segment = reasoning(600, 1) + " NEWEST STEP"
    out = fallback_summary(COUNTER, reasoning(500, 2), segment, 120)
    assert COUNTER.count(out) <= 120
    assert out.endswith("NEWEST STEP")


# ----------------------------------------------------------------------------------------- the loop


def test_sawtooth_context_is_question_plus_latest_summary() -> None:
    seg = 200
    model = ScriptedChatModel(script=[
        "ROUND-ONE " + reasoning(150, 1) + " <summary>S1: pairs sum to 101</summary>",
        "ROUND-TWO " + reasoning(150, 2) + " <summary>S2: 50 pairs of 101</summary>",
        "50 * 101 = 5050. Final answer: 5050",
    ])
    thinker = InftyThinker(model, segment_tokens=seg, summary_tokens=64, counter=COUNTER)
    result = thinker.invoke(QUESTION)
    assert result.answer == "5050" and result.status == "answered" and result.rounds == 3
    assert result.summaries == ["S1: pairs sum to 101", "S2: 50 pairs of 101"]
    second, third = (str(model.received[i][-1].content) for i in (1, 2))
    assert "S1" in second and "ROUND-ONE" not in second
    assert "S2" in third and "S1" not in third and "ROUND-TWO" not in third
    assert all(QUESTION in str(model.received[i][-1].content) for i in range(3))
    assert [kw.get("max_tokens") for kw in model.kwargs_seen] == [seg] * 3
    # One ledger event per context reset; metrics per call.
    assert [e.cleaner for e in result.events] == ["summarize", "summarize"]
    assert all(e.tokens_after < e.tokens_before for e in result.events)
    assert [c.kind for c in result.calls] == ["segment"] * 3
    assert result.peak_context == max(c.context_tokens for c in result.calls)


def test_context_per_call_never_exceeds_question_summary_segment() -> None:
    seg, summ = 150, 40
    long_summary = reasoning(100, 9)  # the model over-writes its summary: it is cut to the bound
    model = ScriptedChatModel(script=[
        reasoning(40, 1) + f" <summary>{long_summary}</summary>",
        cut_off(reasoning(145, 2)),  # no summary: a dedicated summary call follows
        f"<summary>{long_summary}</summary>",
        reasoning(600, 3) + " Final answer: 5050",  # the model ignores max_tokens: cut by counting
        "<summary>short</summary>",
        "Final answer: 5050",
    ])
    thinker = InftyThinker(model, segment_tokens=seg, summary_tokens=summ, counter=COUNTER)
    result = thinker.invoke(QUESTION)
    bound = thinker.context_bound(QUESTION)
    assert result.answer == "5050" and len(model.received) == 6
    for i, call in enumerate(result.calls):
        assert call.output_tokens <= seg
        assert call.context_tokens <= bound
        assert received_tokens(model, i) + call.output_tokens <= bound
    assert all(COUNTER.count(s) <= summ for s in result.summaries)
    # The fourth call's output was cut at the limit, so its "Final answer" did not count.
    assert [c.kind for c in result.calls] == ["segment", "segment", "summary", "segment", "summary", "segment"]


def test_cut_off_segment_is_not_a_final_answer() -> None:
    model = ScriptedChatModel(script=[
        cut_off("We get \\boxed{5}, but the check at n=3 fails, so"),
        "<summary>Candidate 5 fails the n=3 check.</summary>",
        "Recomputing: Final answer: \\boxed{6}",
    ])
    result = InftyThinker(model, segment_tokens=100, counter=COUNTER).invoke("Find n.")
    assert result.answer == "6"
    assert [c.kind for c in result.calls] == ["segment", "summary", "segment"]
    assert "Candidate 5 fails" in str(model.received[2][-1].content)


def test_missing_summary_gets_bounded_retries_then_fallback() -> None:
    model = ScriptedChatModel(script=[
        "a long line of thought without any summary ... LAST IDEA: try induction",
        "<summary>unterminated",
        RuntimeError("summary server timeout"),
        "By induction the claim holds. Final answer: yes",
    ])
    thinker = InftyThinker(model, segment_tokens=100, summary_tokens=50, summary_retries=2, counter=COUNTER)
    result = thinker.invoke("Does the claim hold?")
    assert result.answer == "yes"
    assert [c.kind for c in result.calls] == ["segment", "summary", "summary", "segment"]
    assert len(result.summaries) == 1 and "LAST IDEA: try induction" in result.summaries[0]
    assert "fallback summary after 2 failed attempt(s)" in result.events[0].note
    assert "LAST IDEA" in str(model.received[3][-1].content)


def test_round_cap_ends_with_one_conclude_call() -> None:
    model = ScriptedChatModel(script=[
        "step <summary>s1</summary>",
        "step <summary>s2</summary>",
        "Final answer: 42",
    ])
    result = InftyThinker(model, segment_tokens=100, max_rounds=2, counter=COUNTER).invoke("q?")
    assert result.status == "round_cap" and result.answer == "42" and result.rounds == 2
    assert [c.kind for c in result.calls] == ["segment", "segment", "conclude"]
    assert "no reasoning rounds left" in str(model.received[2][0].content)
    none = ScriptedChatModel(script=["<summary>s1</summary>", "I still do not know."])
    capped = InftyThinker(none, segment_tokens=100, max_rounds=1, counter=COUNTER).invoke("q?")
    assert capped.status == "round_cap" and capped.answer is None


def test_any_langchain_chat_model_and_async() -> None:
    model = FakeMessagesListChatModel(responses=[AIMessage(content="x <summary>half done</summary>"),
                                                 AIMessage(content="Final answer: 12")])
    result = asyncio.run(InftyThinker(model, segment_tokens=64, counter=COUNTER).ainvoke("q?"))
    assert result.answer == "12" and result.rounds == 2 and result.summary == "half done"


def test_checkpointer_persists_and_resumes() -> None:
    model = ScriptedChatModel(script=[
        "r1 <summary>S1</summary>",
        ConnectionError("endpoint down"),
        "r2 Final answer: 7",
    ])
    thinker = InftyThinker(model, segment_tokens=100, counter=COUNTER, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "think-1"}}
    with pytest.raises(ConnectionError):
        thinker.invoke(QUESTION, config)
    saved = thinker.graph.get_state(config)
    assert saved.values["summary"] == "S1" and saved.values["round"] == 1 and saved.next == ("segment",)
    result = thinker.invoke(None, config)
    assert result.answer == "7" and result.rounds == 2 and len(model.received) == 3
    assert "S1" in str(model.received[2][-1].content)


def test_thinker_config_errors() -> None:
    with pytest.raises(ConfigError):
        InftyThinker(ScriptedChatModel(), segment_tokens=0)
    with pytest.raises(ConfigError):
        InftyThinker(ScriptedChatModel(), counter=COUNTER).invoke("  ")


# ------------------------------------------------------------------------------------ transcript memory


def tool_transcript(turns: int, seed: int = 0, lc: bool = False) -> list:
    msgs: list = [{"role": "system", "content": "You are a coding agent."},
                  {"role": "user", "content": "Fix the failing test in tests/test_io.py."}]
    for i in range(turns):
        calls = [{"id": f"call_{i}_{k}", "type": "function",
                  "function": {"name": "read", "arguments": f'{{"path": "src/m{i}_{k}.py"}}'}} for k in range(1 + i % 2)]
        msgs.append({"role": "assistant", "content": f"Reading files for step {i}.", "tool_calls": calls})
        for call in calls:
            msgs.append({"role": "tool", "tool_call_id": call["id"], "content": " ".join(filler(30, seed + i))})
        if i % 3 == 2:
            msgs.append({"role": "user", "content": f"Any progress on step {i}?"})
    if not lc:
        return msgs
    out = []
    for m in msgs:
        if m["role"] == "system":
            out.append(SystemMessage(m["content"]))
        elif m["role"] == "user":
            out.append(HumanMessage(m["content"]))
        elif m["role"] == "assistant":
            out.append(AIMessage(m["content"], tool_calls=[
                {"id": c["id"], "name": "read", "args": {"path": "x"}} for c in m["tool_calls"]]))
        else:
            out.append(ToolMessage(m["content"], tool_call_id=m["tool_call_id"]))
    return out


def test_fold_keeps_pairs_valid_and_archives_originals() -> None:
    msgs = tool_transcript(12)
    archive = InMemoryArchive()
    summarizer = ScriptedChatModel(script=["Read m0..m8; tests fail on an encoding bug in io.read()."])
    memory = SummarizeMemory(summarizer, budget=1500, keep_tokens=600, summary_tokens=100, counter=COUNTER,
                             archive=archive)
    before = memory.count(msgs)
    assert before > 1500
    result = memory.fold(msgs, thread_id="t1")
    assert result.changed and pairing_violations(result.messages) == []
    assert result.messages[:2] == msgs[:2]  # system and task kept verbatim
    assert result.messages[2]["content"].startswith(f"[freemem summary of {len(result.folded)} earlier messages]")
    assert result.messages[3:] == msgs[2 + len(result.folded):]  # the tail, verbatim
    assert result.messages[3]["role"] != "tool"
    assert memory.count(result.messages[3:]) >= 600
    assert result.event.tokens_before == before and result.event.tokens_after == memory.count(result.messages)
    assert result.event.applied == len(result.folded)
    (record,) = archive.events("t1")  # one event, under the thread named
    assert record["folded"] == result.folded and record["policy"] == "summarize"
    # The summarizer saw only the folded part.
    assert "Fix the failing test" not in summarizer.received[0][-1].content


def test_second_fold_replaces_the_previous_summary() -> None:
    memory = SummarizeMemory(None, budget=1200, keep_tokens=400, summary_tokens=80, counter=COUNTER)
    first = memory.fold(tool_transcript(10))
    grown = first.messages + tool_transcript(8, seed=50)[2:]
    second = memory.fold(grown)
    summaries = [m for m in second.messages if str(m["content"]).startswith("[freemem summary")]
    assert len(summaries) == 1 and pairing_violations(second.messages) == []
    assert second.folded[0]["content"].startswith("[freemem summary")
    assert COUNTER.count(summaries[0]["content"]) <= 80 + 20
    assert "extractive" in second.event.note


def test_fold_under_budget_is_a_no_op_and_failures_fall_back() -> None:
    msgs = tool_transcript(3)
    memory = SummarizeMemory(ScriptedChatModel(script=[]), budget=100_000, counter=COUNTER)
    assert not memory.fold(msgs).changed
    failing = SummarizeMemory(ScriptedChatModel(script=[RuntimeError("down")]), budget=800, keep_tokens=200,
                              counter=COUNTER)
    result = failing.fold(tool_transcript(8))
    assert result.changed and "summarizer failed" in result.event.note
    assert pairing_violations(result.messages) == []


def test_fold_langchain_messages_async() -> None:
    msgs = tool_transcript(10, lc=True)
    memory = SummarizeMemory(ScriptedChatModel(script=["summary text"]), budget=1000, keep_tokens=300,
                             counter=COUNTER)
    result = asyncio.run(memory.afold(msgs))
    assert result.changed and pairing_violations(result.messages) == []
    assert isinstance(result.messages[2], HumanMessage) and "summary text" in result.messages[2].content


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(turns=st.integers(1, 14), keep=st.integers(0, 2000), budget=st.integers(50, 3000), seed=st.integers(0, 5))
def test_fold_never_breaks_pairing(turns: int, keep: int, budget: int, seed: int) -> None:
    msgs = tool_transcript(turns, seed)
    result = SummarizeMemory(None, budget=budget, keep_tokens=keep, summary_tokens=60, counter=COUNTER).fold(msgs)
    assert pairing_violations(result.messages) == []
    assert result.messages[-1] == msgs[-1]
    assert len(result.messages) + len(result.folded) - int(result.changed) == len(msgs)
