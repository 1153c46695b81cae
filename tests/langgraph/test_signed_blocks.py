"""Signed blocks through the LangGraph surfaces: a real ``create_agent`` tool loop with ``FreeMemoryMiddleware``
whose scripted model answers with Anthropic / OpenAI Responses / Gemini signed blocks (0 edited in any request,
the latest turn whole, the providers' own payloads unchanged, the archive giving the originals back), and the
messages-channel check of ``free_node`` (``operator.add`` refused with a ConfigError) and ``wrap``."""

from __future__ import annotations

import operator
from typing import Annotated, Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from lgfakes import TOOLS, assert_requests_ok, log_with_loop
from typing_extensions import TypedDict

from freemem import FreeMemory, InMemoryArchive
from freemem.core.archive import restore_event
from freemem.core.errors import ConfigError
from freemem.langgraph import FreeMemoryMiddleware, free_node, pre_model_hook, wrap
from freemem.langgraph.channels import remove_aware
from tests.support import provider_blocks as pb
from tests.support.signed_agents import check_requests, script, scripted

BUDGET = 8_000


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": 1000}


@pytest.mark.parametrize("provider", pb.PROVIDERS)
def test_tool_loop_with_signed_thinking_edits_none(provider: pb.Provider) -> None:
    steps = 24
    archive = InMemoryArchive()
    memory = FreeMemory(counter="approx", budget=BUDGET, archive=archive)
    model = scripted(provider, steps)
    agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=InMemorySaver())
    agent.invoke({"messages": [HumanMessage("Why does svc3 drop connections?", id="task")]}, _config("s"))

    answers = script(provider, steps)
    assert len(model.received) == steps + 1
    compared = check_requests(provider, model.received, answers)
    assert compared > steps  # signed blocks really went through the cleans
    events = archive.events("s")
    assert events, "the loop never cleaned"
    assert_requests_ok(model, memory, BUDGET)

    # the archive gives back exactly what an agent without freemem holds
    baseline = scripted(provider, steps)
    original = create_agent(baseline, TOOLS).invoke(
        {"messages": [HumanMessage("Why does svc3 drop connections?", id="task")]}, _config("b"))["messages"]
    restored = agent.get_state(_config("s")).values["messages"]
    for event in reversed(events):
        restored = restore_event(restored, event)
    assert [(m.type, m.id if m.type != "tool" else None) for m in restored] == [
        (m.type, m.id if m.type != "tool" else None) for m in original]  # tool results get fresh ids per run
    assert [m.content for m in restored] == [m.content for m in original]
    assert [m.additional_kwargs for m in restored] == [m.additional_kwargs for m in original]


async def test_async_tool_loop_with_signed_thinking_edits_none() -> None:
    steps = 20
    memory = FreeMemory(counter="approx", budget=BUDGET, fold=False)
    model = scripted("anthropic", steps)
    agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory)], checkpointer=InMemorySaver())
    await agent.ainvoke({"messages": [HumanMessage("Why?", id="task")]}, _config("a"))
    assert check_requests("anthropic", model.received, script("anthropic", steps)) > steps
    assert max(memory.count_messages(r) for r in model.received) < memory.count_messages(
        agent.get_state(_config("a")).values["messages"]) + 1  # cleaned: state is the pruned history


# -- the messages channel ---------------------------------------------------------------------------------------

class AddState(TypedDict):
    messages: Annotated[list[AnyMessage], operator.add]


class PlainState(TypedDict):
    messages: list[AnyMessage]


def _tool_history(n: int) -> list[Any]:
    msgs: list[Any] = [HumanMessage("look at the logs", id="h")]
    for k in range(n):
        msgs.append(AIMessage(f"step {k}", id=f"a{k}", tool_calls=[
            {"name": "read_log", "args": {"service": f"svc{k}"}, "id": f"c{k}", "type": "tool_call"}]))
        msgs.append(ToolMessage(log_with_loop(f"svc{k}"), tool_call_id=f"c{k}", id=f"t{k}"))
    msgs.append(AIMessage("done", id="end"))
    return msgs


def _graph(state: type, node: Any) -> Any:
    builder = StateGraph(state)
    builder.add_node("freemem", node)
    builder.add_edge(START, "freemem")
    return builder.compile(checkpointer=InMemorySaver())


@pytest.mark.parametrize("state", [AddState, PlainState])
def test_free_node_refuses_a_channel_that_does_not_apply_removals(state: type) -> None:
    history = _tool_history(12)
    graph = _graph(state, free_node(FreeMemory(counter="approx", budget=2_000), state_fields=False))
    with pytest.raises(ConfigError, match="add_messages"):
        graph.invoke({"messages": history}, _config("bad"))
    # nothing was written by freemem: the state holds the input once, no RemoveMessage
    values = graph.get_state(_config("bad")).values
    assert len(values.get("messages") or []) <= len(history)
    assert not any(isinstance(m, RemoveMessage) for m in values.get("messages") or [])


async def test_free_node_refuses_operator_add_async() -> None:
    graph = _graph(AddState, free_node(FreeMemory(counter="approx", budget=2_000), state_fields=False))
    with pytest.raises(ConfigError, match="operator.add|add"):
        await graph.ainvoke({"messages": _tool_history(12)}, _config("bad-async"))


def test_free_node_and_pre_model_hook_accept_add_messages() -> None:
    history = _tool_history(12)
    graph = _graph(MessagesState, free_node(FreeMemory(counter="approx", budget=2_000), state_fields=False))
    out = graph.invoke({"messages": history}, _config("good"))["messages"]
    assert [m.id for m in out] != [m.id for m in history] or out != history  # cleaned (edited or folded)
    assert not any(isinstance(m, RemoveMessage) for m in out)
    assert len(out) <= len(history)
    hook = _graph(MessagesState, pre_model_hook(FreeMemory(counter="approx", budget=2_000)))
    assert len(hook.invoke({"messages": history}, _config("hook"))["messages"]) <= len(history)


def test_remove_aware_probe() -> None:
    assert remove_aware(add_messages)
    assert not remove_aware(operator.add)
    assert not remove_aware(lambda left, right: right)
    assert not remove_aware(lambda left, right: 1 / 0)


def test_wrap_builds_its_own_add_messages_channel_around_an_operator_add_graph() -> None:
    def answer(state: AddState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"answer {len(state['messages'])}")]}

    inner = StateGraph(AddState)
    inner.add_node("answer", answer)
    inner.add_edge(START, "answer")
    memory = FreeMemory(counter="approx", budget=3_000)
    chat = wrap(inner.compile(), memory=memory, checkpointer=InMemorySaver())
    config = _config("wrapped")
    for turn in range(4):
        chat.invoke({"messages": [HumanMessage(log_with_loop(f"turn{turn}"), id=f"h{turn}")]}, config)
    messages = chat.get_state(config).values["messages"]
    assert not any(isinstance(m, RemoveMessage) for m in messages)
    assert len(messages) <= 8  # four turns of two messages: never doubled
    assert len({m.id for m in messages}) == len(messages)


def test_outside_a_graph_the_node_checks_the_state_it_is_given() -> None:
    node = free_node(FreeMemory(counter="approx", budget=2_000), state_fields=False)
    history = _tool_history(6)
    with pytest.raises(ConfigError, match="RemoveMessage"):  # what operator.add leaves behind
        node.invoke({"messages": [RemoveMessage(id="a0"), *history]})
    update = node.invoke({"messages": history})  # no graph, nothing to see: it cleans as before
    assert isinstance(update, dict)
