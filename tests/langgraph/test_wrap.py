"""wrap() around compiled graphs, free_node in a hand-built graph, and the legacy create_react_agent hook."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.prebuilt import ToolNode, tools_condition
from lgfakes import BUDGET, TOOLS, assert_requests_ok, file_listing, make_memory, scripted_model

from freemem.core.errors import ConfigError
from freemem.core.folding import FOLD_ID_PREFIX
from freemem.langgraph import (
    LEDGER_KEY,
    TOKENS_KEY,
    FreeMemoryFields,
    free_node,
    messages_update,
    pre_model_hook,
    route_to_clean,
    wrap,
)


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 500}


def _chat_graph(replies: list[str]) -> Any:
    """A plain one-node chat graph whose 'model' answers each turn with a bulky reply and records its input."""
    seen: list[list[Any]] = []
    it = iter(replies)

    def model(state: MessagesState) -> dict[str, Any]:
        seen.append(list(state["messages"]))
        return {"messages": [AIMessage(next(it))]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_edge(START, "model")
    builder.add_edge("model", END)
    graph = builder.compile()
    graph.seen = seen  # type: ignore[attr-defined]
    return graph


def _bulky_reply(turn: int) -> str:
    return f"Here is the listing you asked for (turn {turn}):\n" + file_listing(f"/data/t{turn}", lines=60)


def test_wrap_cleans_between_turns_of_a_chat_graph() -> None:
    turns = 24
    inner = _chat_graph([_bulky_reply(t) for t in range(turns)])
    memory = make_memory(budget=4000)
    chat = wrap(inner, memory=memory, checkpointer=InMemorySaver())
    for t in range(turns):
        out = chat.invoke({"messages": [HumanMessage(f"list /data/t{t}")]}, _config("w"))
        assert out["messages"][-1].content.startswith(f"Here is the listing you asked for (turn {t})")
        assert LEDGER_KEY not in out  # the wrapped graph returns what the inner graph returns
    sizes = [memory.count_messages(request) for request in inner.seen]
    # the inner graph sees at most budget + the newest question (cleaning happens before each turn)
    assert max(sizes) <= 4000 + 50, sizes
    state = chat.get_state(_config("w")).values
    # pruned in place, and the oldest turns folded into one fold message
    folds = [m for m in state["messages"] if m.id.startswith(FOLD_ID_PREFIX)]
    assert len(folds) <= 1 and len(state["messages"]) - len(folds) <= 2 * turns
    assert state[LEDGER_KEY] and state[TOKENS_KEY] <= 4000
    assert any("[freemem:" in str(m.content) for m in state["messages"])
    # the very first question and the newest answer survive verbatim
    assert state["messages"][0].content == "list /data/t0"
    assert state["messages"][-1].content == _bulky_reply(turns - 1)


async def test_wrap_async_and_streaming() -> None:
    inner = _chat_graph([_bulky_reply(t) for t in range(12)])
    memory = make_memory(budget=3000)
    chat = wrap(inner, memory=memory, checkpointer=InMemorySaver())
    for t in range(8):
        await chat.ainvoke({"messages": [HumanMessage(f"q{t}")]}, _config("a"))
    nodes: list[str] = []
    async for update in chat.astream({"messages": [HumanMessage("q8")]}, _config("a"), stream_mode="updates"):
        nodes.extend(update)
    assert nodes[-1] == "agent"
    values = [v for v in chat.stream({"messages": [HumanMessage("q9")]}, _config("a"), stream_mode="values")]
    assert values[-1]["messages"][-1].content == _bulky_reply(9)
    inner_updates = [ns for ns, _ in chat.stream({"messages": [HumanMessage("q10")]}, _config("a"),
                                                 stream_mode="updates", subgraphs=True) if ns]
    assert inner_updates and all(ns[0].startswith("agent") for ns in inner_updates)
    assert max(memory.count_messages(r) for r in inner.seen[1:]) <= 3000 + 50
    assert (await chat.aget_state(_config("a"))).values[LEDGER_KEY]


def test_wrap_a_create_agent_and_move_its_checkpointer() -> None:
    model = scripted_model([6] * 4)
    saver = InMemorySaver()
    agent = create_agent(model, TOOLS, checkpointer=saver)
    memory = make_memory(fold=False)  # deletions only: every message stays in the thread
    chat = wrap(agent, memory=memory)
    assert chat.checkpointer is saver and chat.freemem_inner.checkpointer is None
    for turn in range(4):
        out = chat.invoke({"messages": [HumanMessage(f"question {turn}")]}, _config("ca"))
        assert out["messages"][-1].content == f"Turn {turn} done."
    state = chat.get_state(_config("ca")).values
    assert len(state["messages"]) == 4 * 14
    # between turns the thread is brought under budget (inside a turn it grows: that is the middleware's job)
    turn_starts = [r for r in model.received if isinstance(r[-1], HumanMessage)]
    assert all(memory.count_messages(r) <= BUDGET + 50 for r in turn_starts[1:])
    assert_requests_ok(model, memory, budget=None)


def test_wrap_rejects_what_it_cannot_wrap() -> None:
    with pytest.raises(ConfigError, match="compiled LangGraph graph"):
        wrap(lambda state: state)  # type: ignore[arg-type]

    class NoMessages(dict):
        pass

    from typing_extensions import TypedDict

    class S(TypedDict):
        count: int

    builder = StateGraph(S)
    builder.add_node("n", lambda s: {"count": s["count"] + 1})
    builder.add_edge(START, "n")
    with pytest.raises(ConfigError, match="'messages' channel"):
        wrap(builder.compile())


def test_messages_update_is_minimal_and_safe() -> None:
    a, b, c = HumanMessage("a", id="1"), AIMessage("b", id="2"), HumanMessage("c", id="3")
    assert messages_update([a, b], [a, b, c]) == [c]
    b2 = AIMessage("b'", id="2")
    assert messages_update([a, b], [a, b2]) == [b2]
    removed = messages_update([a, b, c], [a, c])
    assert isinstance(removed[0], RemoveMessage) and removed[0].id == "2" and len(removed) == 1
    reordered = messages_update([a, b], [b, a])
    assert reordered[0].id == REMOVE_ALL_MESSAGES and reordered[1:] == [b, a]


class _State(MessagesState, FreeMemoryFields):
    pass


def _hand_built(model: Any, memory: Any) -> Any:
    def call_model(state: _State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(_State)
    builder.add_node("freemem", free_node(memory))
    builder.add_node("agent", call_model)
    builder.add_node("tools", ToolNode(TOOLS))
    builder.add_edge(START, "freemem")
    builder.add_edge("freemem", "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_conditional_edges("tools", route_to_clean(memory, clean="freemem", otherwise="agent"))
    return builder.compile(checkpointer=InMemorySaver())


def test_free_node_and_routing_in_a_hand_built_graph() -> None:
    memory = make_memory()
    model = scripted_model([50])
    graph = _hand_built(model, memory)
    out = graph.invoke({"messages": [HumanMessage("find the bug")]}, _config("h"))
    assert out["messages"][-1].content == "Turn 0 done."
    assert len(model.received) == 51
    assert_requests_ok(model, memory)
    state = graph.get_state(_config("h")).values
    assert state[LEDGER_KEY] and all(e["error"] is None for e in state[LEDGER_KEY])
    folds = [m for m in state["messages"] if m.id.startswith(FOLD_ID_PREFIX)]
    assert len(folds) <= 1 and len(state["messages"]) - len(folds) <= 1 + 50 * 2 + 1
    calls = [m.tool_call_id for m in state["messages"] if m.type == "tool"]
    assert calls == [f"call_0_{k}" for k in range(50 - len(calls), 50)]


async def test_free_node_async() -> None:
    memory = make_memory()
    model = scripted_model([20])
    graph = _hand_built(model, memory)
    out = await graph.ainvoke({"messages": [HumanMessage("find the bug")]}, _config("ha"))
    assert out["messages"][-1].content == "Turn 0 done."
    assert_requests_ok(model, memory)


def _react_agent(model: Any, hook: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent is deprecated in favour of create_agent
        from langgraph.prebuilt import create_react_agent

        return create_react_agent(model, TOOLS, pre_model_hook=hook, checkpointer=InMemorySaver())


def test_pre_model_hook_persists_pruned_messages() -> None:
    memory = make_memory()
    model = scripted_model([40])
    agent = _react_agent(model, pre_model_hook(memory))
    out = agent.invoke({"messages": [HumanMessage("go")]}, _config("r"))
    assert out["messages"][-1].content == "Turn 0 done."
    assert_requests_ok(model, memory)
    persisted = agent.get_state(_config("r")).values["messages"]
    assert any("[freemem:" in str(m.content) for m in persisted if isinstance(m, ToolMessage))


def test_pre_model_hook_llm_input_only_leaves_state_unpruned() -> None:
    memory = make_memory()
    model = scripted_model([30])
    agent = _react_agent(model, pre_model_hook(memory, output="llm_input_messages"))
    agent.invoke({"messages": [HumanMessage("go")]}, _config("r2"))
    assert_requests_ok(model, memory)
    persisted = agent.get_state(_config("r2")).values["messages"]
    assert not any("[freemem:" in str(m.content) for m in persisted)
    assert memory.count_messages(persisted) > BUDGET
