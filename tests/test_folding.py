"""Folding: whole units leave for one fold message; pairing stays valid, protected messages stay byte-identical,
and the archive restores everything exactly — for dict and LangChain messages, over many successive folds."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from freemem import FreeMemory, InMemoryArchive, pairing_violations
from freemem.config import FoldPolicy
from freemem.core.archive import find_refs, restore_event
from freemem.core.context import Protection
from freemem.core.folding import FOLD_ID_PREFIX, FoldMismatch, fold_units, unfold
from freemem.core.views import FOLD_KEY, message_views


def _tool_text(rng: random.Random, k: int, lines: int) -> str:
    return "\n".join(f"{k}:{j} worker-{rng.randint(1, 9)} req-{k:04d}-{j} path=/api/items/{rng.randint(0, 9999)} "
                     f"status={rng.choice([200, 200, 404, 500])}" for j in range(lines))


def build_transcript(seed: int, units: int, *, chat_share: float = 0.3, pinned: int | None = None) -> list[dict[str, Any]]:
    """system, the task, then ``units`` units: a user message, or an assistant message with 0-3 tool calls
    and their results; the last unit is an assistant answer."""
    rng = random.Random(seed)
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a careful agent.", "id": "sys"},
        {"role": "user", "content": "Find why checkout fails; the order id is ORD-77812.", "id": "task"},
    ]
    for k in range(units):
        if rng.random() < chat_share:
            msgs.append({"role": "user", "content": f"Also note: my id is USR-{k:05d} " * rng.randint(1, 4),
                         "id": f"u{k}"})
            continue
        calls = [{"id": f"c{k}_{j}", "type": "function",
                  "function": {"name": rng.choice(["read_log", "grep", "ls"]),
                               "arguments": json.dumps({"path": f"/srv/{k}/{j}.log"})}}
                 for j in range(rng.choice([0, 1, 1, 1, 2, 3]))]
        msg: dict[str, Any] = {"role": "assistant", "content": f"Checking req-{max(0, k - 3):04d}-1 next.",
                               "id": f"a{k}"}
        if calls:
            msg["tool_calls"] = calls
        msgs.append(msg)
        for call in calls:
            msgs.append({"role": "tool", "tool_call_id": call["id"], "id": f"t{call['id']}",
                         "content": _tool_text(rng, k, rng.randint(2, 40))})
    if pinned is not None and len(msgs) > pinned + 3 and msgs[pinned]["role"] == "user":
        msgs[pinned] = {**msgs[pinned], "pinned": True}
    msgs.append({"role": "assistant", "content": "Here is what I found so far.", "id": "final"})
    return msgs


def _protected_ids(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Messages protection keeps whole (system, first and latest human, recent turn, pinned), by id."""
    from freemem.core.context import protected_messages

    views = message_views(messages)
    return {views[i].id: messages[i] for i in protected_messages(views, Protection())}


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), units=st.integers(5, 120), budget=st.integers(600, 6000),
       share=st.floats(0.1, 0.6), keep=st.integers(0, 6), chat=st.floats(0.0, 0.9))
def test_fold_invariants(seed: int, units: int, budget: int, share: float, keep: int, chat: float) -> None:
    msgs = build_transcript(seed, units, chat_share=chat, pinned=5 + seed % 7)
    before = json.dumps(msgs, sort_keys=True)
    memory = FreeMemory(counter="approx", budget=budget, fold=FoldPolicy(share=share, keep_units=keep))
    result = memory.clean(msgs)
    assert json.dumps(msgs, sort_keys=True) == before  # the input is never mutated
    out = result.messages
    assert out is not None
    assert pairing_violations(out) == []
    # Protected messages are still there, byte-identical.
    kept = {m.get("id"): m for m in out}
    for mid, original in _protected_ids(msgs).items():
        assert json.dumps(kept[mid], sort_keys=True) == json.dumps(original, sort_keys=True)
    # At most one fold message; ids of surviving messages unchanged and in order.
    folds = [m for m in out if FOLD_KEY in (m.get("metadata") or {})]
    assert len(folds) <= 1
    ids = [m["id"] for m in out if not m["id"].startswith(FOLD_ID_PREFIX)]
    assert ids == [m["id"] for m in msgs if m["id"] in set(ids)]
    # Exact restore, also after a JSON round trip of the archived event.
    archived = json.loads(json.dumps(result.event.to_dict(spans=True)))
    assert restore_event(out, archived) == msgs
    if result.event.folds:
        assert result.event.tokens_after < result.event.tokens_before


def test_successive_folds_merge_and_restore_in_reverse() -> None:
    """A growing session: one fold message at most at every step, and undoing every event newest first
    rebuilds the whole unpruned history."""
    full = build_transcript(3, 400, chat_share=0.2)
    memory = FreeMemory(counter="approx", budget=3000)
    archive = InMemoryArchive()
    state: list[dict[str, Any]] = full[:2]
    seen: list[dict[str, Any]] = list(state)
    folds = 0
    for msg in full[2:]:
        state = [*state, msg]
        seen.append(msg)
        if msg["role"] == "tool" and state[-2:][0]["role"] == "tool":
            pass
        # Clean only at unit boundaries (before a model call: the last message is not an open tool call).
        nxt = full[len(seen)] if len(seen) < len(full) else None
        if nxt is not None and nxt["role"] == "tool":
            continue
        res = memory.clean(state)
        if res.changed:
            archive.record("t", res.event.to_dict(spans=True))
            state = res.messages
            folds += bool(res.event.folds)
        assert pairing_violations(state) == []
        assert sum(1 for m in state if FOLD_KEY in (m.get("metadata") or {})) <= 1
        assert memory.count_messages(state) <= 3000
    assert folds >= 3
    assert archive.original("t", state) == seen


def test_langchain_messages_fold_and_restore_exactly() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    import freemem.lc  # noqa: F401 - registers the reviver

    msgs: list[Any] = [SystemMessage("sys", id="s"), HumanMessage("the task", id="h")]
    for k in range(80):
        msgs.append(AIMessage(content=f"step {k}", id=f"a{k}",
                              tool_calls=[{"name": "grep", "args": {"q": f"x{k}"}, "id": f"c{k}"}]))
        msgs.append(ToolMessage(_tool_text(random.Random(k), k, 20), tool_call_id=f"c{k}", id=f"t{k}"))
    msgs.append(AIMessage("done", id="end"))
    memory = FreeMemory(counter="approx", budget=2500)
    result = memory.clean(msgs)
    assert result.event.folds
    fold_msgs = [m for m in result.messages if m.id.startswith(FOLD_ID_PREFIX)]
    assert len(fold_msgs) == 1 and isinstance(fold_msgs[0], HumanMessage)
    assert fold_msgs[0].additional_kwargs[FOLD_KEY]["handle"] == result.event.folds[0].handle
    archived = json.loads(json.dumps(result.event.to_dict(spans=True)))
    back = restore_event(result.messages, archived)
    assert back == msgs
    assert [type(m) for m in back] == [type(m) for m in msgs]


def test_nothing_folds_when_everything_is_protected_or_recent() -> None:
    """Too few units for ``keep_units``: no plan. A budget out of reach lets the newest units go (keep_units
    yields to the hard budget), never the head or the recent turn, and the fold restores exactly."""
    msgs = build_transcript(1, 3, chat_share=0.0)
    plan = fold_units(message_views(msgs), Protection(), keep_units=4)
    assert plan.units == []
    result = FreeMemory(counter="approx", budget=50).clean(msgs)
    for fold in result.event.folds:
        assert not {0, 1, len(msgs) - 1} & set(fold.positions)
    assert [m["id"] for m in result.messages[:2]] == ["sys", "task"]
    assert result.messages[-1] == msgs[-1]
    assert restore_event(result.messages, result.event.to_dict(spans=True)) == msgs


def test_unfinished_tool_calls_never_fold() -> None:
    """An assistant message whose call has no result in its unit (a result elsewhere) stays in place."""
    msgs = build_transcript(2, 30, chat_share=0.0)
    # Move one tool result away from its call: folding that unit would orphan it.
    idx = next(i for i, m in enumerate(msgs) if m["role"] == "tool" and i > 8)
    moved = msgs.pop(idx)
    msgs.insert(len(msgs) - 1, moved)
    views = message_views(msgs)
    plan = fold_units(views, Protection(), keep_units=0)
    broken = next(i for i, m in enumerate(msgs) if m.get("tool_calls") and
                  any(c["id"] == moved["tool_call_id"] for c in m["tool_calls"]))
    assert all(not (u.start <= broken < u.end) for u in plan.units)
    assert any(u.start > broken for u in plan.units)  # folding goes on around it
    result = FreeMemory(counter="approx", budget=1500, fold=FoldPolicy(keep_units=0)).clean(msgs)
    assert any(m.get("id") == msgs[broken]["id"] for m in result.messages)
    assert restore_event(result.messages, json.loads(json.dumps(result.event.to_dict(spans=True)))) == msgs


def test_digest_names_tools_user_asks_and_lines_used_later() -> None:
    msgs = build_transcript(5, 60, chat_share=0.3)
    # A later assistant message quotes a request id from an early tool result.
    early = next(m for m in msgs if m["role"] == "tool")
    quoted = early["content"].split("\n")[0].split()[2]
    msgs.insert(len(msgs) - 1, {"role": "assistant", "content": f"The culprit is {quoted}.", "id": "q"})
    result = FreeMemory(counter="approx", budget=2000, fold=FoldPolicy(digest_tokens=600)).clean(msgs)
    fold = next(m for m in result.messages if m["id"].startswith(FOLD_ID_PREFIX))
    digest = fold["content"]
    assert digest.startswith("[freemem: ") and result.event.folds[0].handle in digest
    assert quoted in digest
    assert "- called " in digest or "- user: " in digest
    assert FreeMemory(counter="approx").counter.count(digest) <= 600


def test_recall_lookup_finds_spans_and_folds() -> None:
    msgs = build_transcript(8, 100, chat_share=0.1)
    archive = InMemoryArchive()
    memory = FreeMemory(counter="approx", budget=2500, archive=archive)
    result = memory.clean(msgs)
    archive.record("t", result.event.to_dict(spans=True))
    handle = result.event.folds[0].handle
    (text,) = archive.find("t", handle)
    assert "[assistant #a0]" in text and "req-0000" in text
    spans = [s for r in result.event.rounds for s in r]
    if spans:
        from freemem.core.apply import span_ref

        ref = span_ref(spans[0].original)
        assert spans[0].original in find_refs(archive.events("t"), "#" + ref)
    assert archive.find("t", "deadbeef") == []


def test_unfold_without_its_message_is_a_clear_error() -> None:
    msgs = build_transcript(4, 80)
    result = FreeMemory(counter="approx", budget=2000).clean(msgs)
    record = result.event.folds[0]
    without = [m for m in result.messages if not m["id"].startswith(FOLD_ID_PREFIX)]
    with pytest.raises(FoldMismatch, match="not in the messages"):
        unfold(without, record)


def test_a_chat_digest_gets_chat_digest_share_and_an_agent_digest_digest_share() -> None:
    from freemem.memory import CHAT_DIGEST_SHARE, DIGEST_SHARE

    chat = FreeMemory(counter="approx", budget=4000)
    assert chat.digest_tokens == int(DIGEST_SHARE * 4000) and chat.chat_digest_tokens == int(CHAT_DIGEST_SHARE * 4000)
    fixed = FreeMemory(counter="approx", budget=4000, fold=FoldPolicy(digest_tokens=300))
    assert fixed.digest_tokens == fixed.chat_digest_tokens == 300
    facts = [f"My friend Person{k} lives in City{k} and works at Company{k}." for k in range(400)]
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be kind.", "id": "sys"}]
    for k, fact in enumerate(facts):
        messages.append({"role": "user", "content": fact, "id": f"u{k}"})
        messages.append({"role": "assistant", "content": "Noted.", "id": f"a{k}"})
    result = chat.clean(messages)
    (record,) = result.event.folds
    assert record.digest_cap > int(DIGEST_SHARE * 4000) and record.digest_tokens > int(DIGEST_SHARE * 4000)
    # The same amount of text in a tool-using thread: the agent's share.
    agent = FreeMemory(counter="approx", budget=4000)
    tools: list[dict[str, Any]] = [{"role": "system", "content": "Be kind.", "id": "sys"},
                                   {"role": "user", "content": "Go.", "id": "task"}]
    for k, fact in enumerate(facts):
        tools.append({"role": "assistant", "content": "", "id": f"a{k}", "tool_calls": [
            {"id": f"c{k}", "type": "function", "function": {"name": "note", "arguments": "{}"}}]})
        tools.append({"role": "tool", "tool_call_id": f"c{k}", "content": fact, "id": f"t{k}"})
    (agent_record,) = agent.clean(tools).event.folds
    assert agent_record.digest_cap <= int(DIGEST_SHARE * 4000)
