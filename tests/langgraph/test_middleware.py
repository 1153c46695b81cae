"""FreeMemoryMiddleware inside a real ``create_agent`` agent: long tool loops, checkpointers, async, streaming."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages
from lgfakes import (
    BUDGET,
    TOOLS,
    FailingCleaner,
    assert_requests_ok,
    make_memory,
    scripted_model,
)

from freemem import InMemoryArchive
from freemem.cleaners.heuristic import HeuristicCleaner
from freemem.config import CachePolicy, Triggers
from freemem.core.archive import restore_event
from freemem.core.folding import FOLD_ID_PREFIX
from freemem.langgraph import (
    LAST_CALL_KEY,
    LEDGER_KEY,
    LEDGER_MAX_EVENTS,
    TOKENS_KEY,
    CleanStep,
    FreeMemoryMiddleware,
    bounded_ledger,
)
from freemem.memory import FreeMemory

MW_NODE = "FreeMemoryMiddleware.before_model"


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 1000}


def _ask(text: str) -> dict[str, Any]:
    return {"messages": [HumanMessage(text)]}


def test_long_turn_is_cleaned_between_model_calls_and_persisted() -> None:
    calls = 60
    baseline = scripted_model([calls])
    create_agent(baseline, TOOLS).invoke(_ask("why is the service down?"), _config("b"))
    memory = make_memory()
    baseline_sizes = [memory.count_messages(r) for r in baseline.received]
    assert max(baseline_sizes) > 20 * BUDGET  # without freemem the context only grows

    model = scripted_model([calls])
    middleware = FreeMemoryMiddleware(memory)
    agent = create_agent(model, TOOLS, middleware=[middleware], checkpointer=InMemorySaver())
    out = agent.invoke(_ask("why is the service down?"), _config("t"))

    assert len(model.received) == calls + 1
    assert out["messages"][-1].content == "Turn 0 done."
    sizes = assert_requests_ok(model, memory)  # every request within budget and pairing-valid
    assert sizes[-1] < baseline_sizes[-1] / 20

    # The pruned messages are what the checkpointer holds: the last request plus the final answer.
    state = agent.get_state(_config("t")).values
    persisted = state["messages"]
    last_request = model.received[-1]
    assert [m.id for m in persisted[:-1]] == [m.id for m in last_request]
    assert [m.content for m in persisted[:-1]] == [m.content for m in last_request]
    # Edited in place, or folded: at most one fold message stands for the oldest units it took out.
    folds = [m for m in persisted if m.id.startswith(FOLD_ID_PREFIX)]
    assert len(folds) <= 1
    assert len(persisted) - len(folds) <= len(baseline.received[-1]) + 1
    results = [m.tool_call_id for m in persisted if isinstance(m, ToolMessage)]
    expected = [m.tool_call_id for m in baseline.received[-1] if isinstance(m, ToolMessage)]
    assert results == expected[len(expected) - len(results):]  # the newest results, in order
    assert len({m.id for m in persisted}) == len(persisted)
    assert any("[freemem:" in str(m.content) for m in persisted if isinstance(m, ToolMessage))

    ledger = state[LEDGER_KEY]
    assert len(ledger) == middleware.stats.cleans == min(middleware.stats.cleans, LEDGER_MAX_EVENTS)
    assert all(e["tokens_after"] <= e["tokens_before"] and e["error"] is None for e in ledger)
    assert sum(e["applied"] for e in ledger) > 0
    assert state[TOKENS_KEY] == ledger[-1]["tokens_after"]
    assert "rounds" not in ledger[-1]  # state keeps summaries, not the removed text
    assert middleware.stats.steps == calls + 1 and middleware.stats.errors == 0


def test_updates_replace_by_known_id_only() -> None:
    memory = make_memory()
    model = scripted_model([30])
    agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=InMemorySaver())
    known: set[str] = set()
    cleaned = 0
    for chunk in agent.stream(_ask("look around"), _config("u"), stream_mode=["updates", "values"]):
        mode, data = chunk
        if mode == "values":
            known |= {m.id for m in data["messages"]}
            continue
        for node, update in data.items():
            if node != MW_NODE or not update:
                continue
            messages = update.get("messages", [])
            if any(isinstance(m, RemoveMessage) for m in messages):
                # A fold: the list is rewritten whole, with one fold message in place of the folded units.
                assert messages[0].id == REMOVE_ALL_MESSAGES
                assert sum(1 for m in messages[1:] if m.id.startswith(FOLD_ID_PREFIX)) == 1
                known |= {m.id for m in messages[1:]}
                cleaned += 1
                continue
            assert {m.id for m in messages} <= known  # same id -> add_messages replaces in place
            cleaned += bool(messages)
    assert cleaned > 5
    assert_requests_ok(model, memory)


def test_archive_keeps_removed_spans_and_restores_the_original() -> None:
    archive = InMemoryArchive()
    memory = make_memory(archive=archive)
    model = scripted_model([40])
    agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=InMemorySaver())
    agent.invoke(_ask("dig into the logs"), _config("arch"))
    baseline = scripted_model([40])
    original = create_agent(baseline, TOOLS).invoke(_ask("dig into the logs"), _config("x"))["messages"]

    events = archive.events("arch")  # every event under the agent's thread
    assert events and archive.events("default") == []
    assert all((e["applied"] and e["rounds"]) or e.get("folds") for e in events)
    pruned = agent.get_state(_config("arch")).values["messages"]
    restored = pruned
    for event in reversed(events):
        restored = restore_event(restored, event)
    assert [m.content for m in restored] == [m.content for m in original]


def test_twenty_turns_on_sqlite_then_resume_from_the_checkpointer(tmp_path: Any) -> None:
    path = tmp_path / "threads.sqlite"
    turns = 22
    # Deletions only (no folds): every message stays in the thread, so ids line up on resume.
    memory = make_memory(fold=False)
    model = scripted_model([2] * turns)
    with SqliteSaver.from_conn_string(str(path)) as saver:
        agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=saver)
        for turn in range(turns):
            out = agent.invoke(_ask(f"question {turn}"), _config("chat"))
            assert out["messages"][-1].content == f"Turn {turn} done."
        persisted = agent.get_state(_config("chat")).values["messages"]
    assert len(model.received) == turns * 3
    assert_requests_ok(model, memory)
    assert len(persisted) == turns * 6  # every message kept (pruned, not dropped)

    # A new process: a new graph object on the same database continues from the pruned thread.
    resumed_model = scripted_model([2])
    with SqliteSaver.from_conn_string(str(path)) as saver:
        agent = create_agent(resumed_model, TOOLS, middleware=[FreeMemoryMiddleware(make_memory(fold=False))],
                             checkpointer=saver)
        agent.invoke(_ask("one more"), _config("chat"))
        final = agent.get_state(_config("chat")).values["messages"]
    first = resumed_model.received[0]
    assert [m.id for m in first[:len(persisted)]] == [m.id for m in persisted]
    assert any("[freemem:" in str(m.content) for m in first)
    assert_requests_ok(resumed_model, memory)
    assert len(final) == len(persisted) + 6


class CountingAsyncCleaner(HeuristicCleaner):
    """The heuristic cleaner, counting calls to its async entry point."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.async_calls = 0

    async def apropose(self, context: Any) -> Any:
        self.async_calls += 1
        return self.propose(context)


async def test_async_turns_on_async_sqlite_with_streaming(tmp_path: Any) -> None:
    cleaner = CountingAsyncCleaner(budget=BUDGET)
    memory = FreeMemory(cleaner, counter="approx", budget=BUDGET)
    model = scripted_model([6] * 8)
    async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "async.sqlite")) as saver:
        agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=saver)
        for turn in range(5):
            out = await agent.ainvoke(_ask(f"q{turn}"), _config("a"))
            assert out["messages"][-1].content == f"Turn {turn} done."
        nodes: list[str] = []
        async for update in agent.astream(_ask("q5"), _config("a"), stream_mode="updates"):
            nodes.extend(update)
        assert nodes.count("model") == 7 and "tools" in nodes and MW_NODE in nodes
        streamed: list[Any] = []
        async for message, meta in agent.astream(_ask("q6"), _config("a"), stream_mode="messages"):
            streamed.append((message, meta["langgraph_node"]))
        state = (await agent.aget_state(_config("a"))).values
    assert cleaner.async_calls > 0
    assert [type(m) for m, node in streamed if node == "model"] == [AIMessage] * 7
    assert sum(isinstance(m, ToolMessage) for m, _ in streamed) == 6
    assert len({m.id for m, _ in streamed}) == len(streamed)  # pruned copies are not re-emitted
    assert_requests_ok(model, memory)
    assert state[LEDGER_KEY] and state["messages"][-1].content == "Turn 6 done."


def test_sync_stream_modes() -> None:
    memory = make_memory()
    model = scripted_model([12])
    agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=InMemorySaver())
    kinds = [type(m).__name__ for m, _meta in agent.stream(_ask("go"), _config("s"), stream_mode="messages")]
    assert kinds.count("AIMessage") == 13 and kinds.count("ToolMessage") == 12
    assert_requests_ok(model, memory)


def test_a_failing_cleaner_costs_a_warning_not_the_turn() -> None:
    cleaner = FailingCleaner()
    memory = FreeMemory(cleaner, counter="approx", budget=BUDGET)
    middleware = FreeMemoryMiddleware(memory)
    model = scripted_model([10])
    agent = create_agent(model, TOOLS, middleware=[middleware], checkpointer=InMemorySaver())
    with pytest.warns(RuntimeWarning, match="cleaner failing failed"):
        out = agent.invoke(_ask("go"), _config("f"))
    assert out["messages"][-1].content == "Turn 0 done."
    assert cleaner.calls > 0 and middleware.stats.errors == cleaner.calls == memory.stats.errors
    ledger = agent.get_state(_config("f")).values[LEDGER_KEY]
    assert ledger and all("cleaner exploded" in e["error"] and e["applied"] == 0 for e in ledger)
    assert_requests_ok(model, memory, budget=None)


async def test_a_failing_cleaner_async() -> None:
    memory = FreeMemory(FailingCleaner(), counter="approx", budget=BUDGET)
    agent = create_agent(scripted_model([6]), TOOLS, middleware=[FreeMemoryMiddleware(memory)])
    with pytest.warns(RuntimeWarning):
        out = await agent.ainvoke(_ask("go"))
    assert out["messages"][-1].content == "Turn 0 done." and memory.stats.errors > 0


def test_a_broken_step_fails_open() -> None:
    memory = make_memory()
    step = CleanStep(memory)
    bad = {"messages": [HumanMessage("hi"), {"content": "a dict message without a role"}]}
    with pytest.warns(RuntimeWarning, match="cleaning step skipped"):
        assert step.run(bad) is None
    assert step.stats.errors == 1


def test_messages_without_ids_are_rewritten_whole() -> None:
    memory = make_memory(budget=600)
    big = "\n".join(f"line {i}: value={i * 7919 % 1000}" for i in range(400))
    messages = [HumanMessage("start"),
                AIMessage("", tool_calls=[{"name": "grep", "args": {"pattern": "a"}, "id": "c1"}]),
                ToolMessage(big, tool_call_id="c1"),
                AIMessage("", tool_calls=[{"name": "grep", "args": {"pattern": "b"}, "id": "c2"}]),
                ToolMessage("short", tool_call_id="c2")]
    update = CleanStep(memory).run({"messages": messages})
    assert update is not None
    first, *rest = update["messages"]
    assert isinstance(first, RemoveMessage) and first.id == REMOVE_ALL_MESSAGES
    assert len(rest) == len(messages) and all(m.id for m in rest)
    merged = add_messages(messages, update["messages"])
    assert [m.id for m in merged] == [m.id for m in rest]
    assert memory.count_messages(merged) < memory.count_messages(messages)
    assert update[LEDGER_KEY][0]["applied"] > 0 and update[TOKENS_KEY] == memory.count_messages(merged)


def test_no_update_when_no_trigger_fires() -> None:
    step = CleanStep(FreeMemory(counter="approx", cache=None, triggers=Triggers(every_tokens=5000)))
    assert step.run({"messages": [HumanMessage("hello")]}) is None
    assert step.run({"messages": []}) is None
    assert step.stats.steps == 2 and step.stats.cleans == 0
    # Scheduling by cache cost, a step records only when the model call it precedes is made.
    clock = iter([1000.0, 1010.0])
    step = CleanStep(FreeMemory(counter="approx", triggers=Triggers(every_tokens=5000),
                                cache=CachePolicy(clock=lambda: next(clock))))
    assert step.run({"messages": [HumanMessage("hello")]}) == {LAST_CALL_KEY: 1000.0}
    assert step.run({"messages": [HumanMessage("hello")], LAST_CALL_KEY: 1000.0}) == {LAST_CALL_KEY: 1010.0}
    assert step.stats.cleans == 0


def test_bounded_ledger_reducer() -> None:
    ledger: list[dict[str, Any]] = []
    for i in range(3 * LEDGER_MAX_EVENTS):
        ledger = bounded_ledger(ledger, [{"i": i}])
    assert len(ledger) == LEDGER_MAX_EVENTS and ledger[-1] == {"i": 3 * LEDGER_MAX_EVENTS - 1}
    assert bounded_ledger(ledger, None) == ledger
    assert bounded_ledger(None, {"i": -1}) == [{"i": -1}]


def test_defaults_and_name() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 'auto' may fall back to another counter
        middleware = FreeMemoryMiddleware()
    assert isinstance(middleware.memory, FreeMemory) and middleware.name == "FreeMemoryMiddleware"
    assert FreeMemoryMiddleware(make_memory(), name="fm").name == "fm"
