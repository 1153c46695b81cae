"""One policy interface: ``SummarizeMemory`` (InftyThink on transcripts) plugs into the same surfaces as
``FreeMemory`` — a real ``create_agent`` agent with the middleware, and ``wrap`` around a chat graph — and its
folds persist, stay pairing-valid and restore exactly from the archive."""

from __future__ import annotations

from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from lgfakes import TOOLS, scripted_model

from freemem import FreeMemory, InMemoryArchive
from freemem.core.folding import FOLD_ID_PREFIX
from freemem.core.pairing import pairing_violations
from freemem.langgraph import FreeMemoryMiddleware, wrap
from freemem.policies import SummarizeMemory
from freemem.policy import MemoryPolicy


def test_both_policies_implement_the_protocol() -> None:
    assert isinstance(FreeMemory(counter="approx"), MemoryPolicy)
    assert isinstance(SummarizeMemory(counter="approx"), MemoryPolicy)


def test_summarize_memory_in_create_agent() -> None:
    archive = InMemoryArchive()
    memory = SummarizeMemory(None, budget=6000, counter="approx", archive=archive, summary_tokens=300)
    model = scripted_model([30])
    agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=InMemorySaver())
    config: dict[str, Any] = {"configurable": {"thread_id": "s1"}, "recursion_limit": 500}
    agent.invoke({"messages": [HumanMessage("dig into the logs")]}, config)
    state = agent.get_state(config).values
    messages = state["messages"]
    summaries = [m for m in messages if m.id.startswith(FOLD_ID_PREFIX)]
    assert len(summaries) == 1 and summaries[0].content.startswith("[freemem summary of ")
    assert pairing_violations(messages) == []
    assert any(e.get("folds") for e in state["freemem_ledger"])
    for request in model.received[1:]:
        assert pairing_violations(request) == []
    original = archive.original("s1", messages)
    assert not any(m.id.startswith(FOLD_ID_PREFIX) for m in original)
    calls = [m.tool_call_id for m in original if m.type == "tool"]
    assert calls == [f"call_0_{k}" for k in range(30)]


def test_summarize_memory_under_wrap() -> None:
    def chat(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"Noted, turn {len(state['messages'])}. " + "details " * 60)]}

    builder = StateGraph(MessagesState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    archive = InMemoryArchive()
    memory = SummarizeMemory(None, budget=1500, counter="approx", archive=archive, summary_tokens=200)
    app = wrap(builder.compile(), memory=memory, checkpointer=InMemorySaver())
    config: dict[str, Any] = {"configurable": {"thread_id": "w1"}}
    for turn in range(30):
        app.invoke({"messages": [HumanMessage(f"fact {turn}: my code is C-{turn:03d}")]}, config)
        msgs = app.get_state(config).values["messages"]
        assert sum(1 for m in msgs if m.id.startswith(FOLD_ID_PREFIX)) <= 1
    msgs = app.get_state(config).values["messages"]
    assert memory.count(msgs) < 3000
    original = archive.original("w1", msgs)
    humans = [m.content for m in original if m.type == "human"]
    assert humans == [f"fact {t}: my code is C-{t:03d}" for t in range(30)]
