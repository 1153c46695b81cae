"""The budget is the request the model receives: system prompt, tool schemas and messages, through real
``create_agent`` and ``create_deep_agent`` agents (issue 22)."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from pydantic import BaseModel, Field

from freemem import FreeMemory, InMemoryArchive
from freemem.config import Budget
from freemem.core.errors import ConfigError
from freemem.core.pairing import pairing_violations
from freemem.core.views import count_messages
from freemem.langgraph import FreeMemoryMiddleware, free_node, pre_model_hook
from freemem.langgraph.request import request_size, request_tokens, tool_schema_tokens

BUDGET = 16_000
CALLS = 200


class RecordingModel(FakeMessagesListChatModel):
    """Replays scripted answers and records every request as the provider would get it: the messages (the
    system message included) and the tools bound for that call."""

    bound: list[Any] = Field(default_factory=list)
    received: list[tuple[list[BaseMessage], list[Any]]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> RecordingModel:
        self.bound = list(tools)
        return self

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.received.append((list(messages), list(self.bound)))
        if self.i >= len(self.responses):
            raise AssertionError(f"script exhausted after {self.i} model calls")
        response = self.responses[self.i].model_copy(deep=True)
        self.i += 1
        return ChatResult(generations=[ChatGeneration(message=response)])

    @property
    def _llm_type(self) -> str:
        return "recording-fake"


def request_sizes(model: RecordingModel, memory: FreeMemory) -> list[int]:
    """Each request's tokens: its messages (system message included) and its tools' schemas."""
    return [count_messages(memory.counter, messages, memory.image_rule)
            + sum(tool_schema_tokens(memory.counter, t) for t in tools)
            for messages, tools in model.received]


# -- a ~2,200-token system prompt and three tools whose schemas total ~1,800 tokens ----------------------
SYSTEM_PROMPT = "\n".join(
    f"Rule {i}: when the operator asks about service health, check the deployment logs of region {i % 7}, compare "
    f"the error rates against the previous release, and report the findings with the exact command used."
    for i in range(60))


def _describe(topic: str, n: int) -> str:
    return " ".join(f"The {topic} option number {i} controls how the search treats matching entries, whether "
                    f"hidden files count and how results are ordered." for i in range(n))


class SearchArgs(BaseModel):
    pattern: str = Field(description=_describe("pattern", 6))
    path: str = Field(default=".", description=_describe("path", 5))
    max_results: int = Field(default=50, description=_describe("limit", 4))


class LogArgs(BaseModel):
    service: str = Field(description=_describe("service", 6))
    since: str = Field(default="1h", description=_describe("window", 5))
    level: str = Field(default="INFO", description=_describe("level", 4))


class ListArgs(BaseModel):
    directory: str = Field(description=_describe("directory", 6))
    recursive: bool = Field(default=False, description=_describe("recursion", 5))
    pattern: str = Field(default="*", description=_describe("glob", 4))


def _output(kind: str, key: str) -> str:
    """About 2 KB of tool output, distinct per call."""
    return "\n".join(f"{kind} {key} line {i}: status=ok latency={(i * 37) % 997}ms shard={key}-{i % 13} "
                     f"checksum={zlib.crc32(f'{kind}{key}{i}'.encode()) & 0xFFFFFF:06x}" for i in range(28))


@tool(args_schema=SearchArgs, description=_describe("search", 8))
def search_code(pattern: str, path: str = ".", max_results: int = 50) -> str:
    return _output("match", pattern)


@tool(args_schema=LogArgs, description=_describe("log", 8))
def read_logs(service: str, since: str = "1h", level: str = "INFO") -> str:
    return _output("log", service)


@tool(args_schema=ListArgs, description=_describe("listing", 8))
def list_dir(directory: str, recursive: bool = False, pattern: str = "*") -> str:
    return _output("entry", directory)


TOOLS = [search_code, read_logs, list_dir]


def script(calls: int) -> list[AIMessage]:
    out = []
    for k in range(calls):
        name, args = [("search_code", {"pattern": f"fn_{k}"}), ("read_logs", {"service": f"svc{k}"}),
                      ("list_dir", {"directory": f"/srv/app/{k}"})][k % 3]
        out.append(AIMessage(content=f"Step {k}: {name}.",
                             tool_calls=[{"name": name, "args": args, "id": f"call_{k}", "type": "tool_call"}]))
    out.append(AIMessage(content="Done: the service is healthy."))
    return out


def _memory() -> FreeMemory:
    return FreeMemory(budget=BUDGET, archive=InMemoryArchive(), counter="approx")


def _config(thread: str, limit: int = 1000) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}, "recursion_limit": limit}


def test_the_fixture_sizes_are_what_the_issue_describes() -> None:
    size = request_size("approx", system_prompt=SYSTEM_PROMPT, tools=TOOLS)
    assert 2000 <= size.system <= 2400, size
    assert 1600 <= size.tools <= 2000, size
    assert 1700 <= len(_output("log", "svc1")) <= 2300


@pytest.mark.slow
def test_create_agent_never_sends_more_than_the_budget() -> None:
    memory = _memory()
    model = RecordingModel(responses=script(CALLS))
    middleware = FreeMemoryMiddleware(memory, recall=True)
    agent = create_agent(model, TOOLS, system_prompt=SYSTEM_PROMPT, middleware=[middleware],
                         checkpointer=InMemorySaver())
    out = agent.invoke({"messages": [HumanMessage("Why is the checkout service slow?")]}, _config("ca"))
    assert out["messages"][-1].content == "Done: the service is healthy."
    sizes = request_sizes(model, memory)
    assert len(sizes) == CALLS + 1
    # every request carried the system prompt and all four tools (the recall tool included)
    assert all(len(tools) == 4 for _, tools in model.received)
    assert {t.name for t in model.received[-1][1]} == {"search_code", "read_logs", "list_dir", "recall"}
    over = [s for s in sizes if s > BUDGET]
    assert over == [], (len(over), max(sizes))
    assert max(sizes) > 0.8 * BUDGET  # the budget was used, not dodged
    assert all(pairing_violations(messages) == [] for messages, _ in model.received)
    fixed = middleware.request_size("ca")
    assert fixed is not None and fixed.tool_count == 4 and fixed.fixed > 4000


async def test_create_agent_async_never_sends_more_than_the_budget() -> None:
    memory = _memory()
    model = RecordingModel(responses=script(60))
    agent = create_agent(model, TOOLS, system_prompt=SYSTEM_PROMPT,
                         middleware=[FreeMemoryMiddleware(memory, recall=True)], checkpointer=InMemorySaver())
    await agent.ainvoke({"messages": [HumanMessage("Why is it slow?")]}, _config("async"))
    sizes = request_sizes(model, memory)
    assert max(sizes) <= BUDGET, max(sizes)
    assert max(sizes) > 0.8 * BUDGET


@pytest.mark.slow
def test_deep_agent_never_sends_more_than_the_budget() -> None:
    deepagents = pytest.importorskip("deepagents")
    memory = _memory()
    model = RecordingModel(responses=script(CALLS))
    agent = deepagents.create_deep_agent(model, TOOLS, system_prompt=SYSTEM_PROMPT,
                                         middleware=[FreeMemoryMiddleware(memory, recall=True)],
                                         checkpointer=InMemorySaver())
    agent.invoke({"messages": [HumanMessage("Why is the checkout service slow?")]}, _config("deep"))
    sizes = request_sizes(model, memory)
    assert len(sizes) == CALLS + 1
    # deepagents binds its own tools and prompt too: all of them are counted
    assert len(model.received[-1][1]) > 4
    assert max(sizes) <= BUDGET, (sum(s > BUDGET for s in sizes), max(sizes))
    assert max(sizes) > 0.8 * BUDGET


def test_the_first_call_of_a_thread_is_fitted_inside_the_call() -> None:
    """A thread that arrives over the budget before any call was measured (a resumed thread, a new process)
    is cleaned inside the model call with the fixed part measured there."""
    memory = _memory()
    history: list[BaseMessage] = [HumanMessage("Look into the slowdown.")]
    for k, message in enumerate(script(30)[:-1]):
        history.append(message)
        call = message.tool_calls[0]
        from langchain_core.messages import ToolMessage

        history.append(ToolMessage(_output("log", f"old{k}"), tool_call_id=call["id"], name=call["name"]))
    history.append(HumanMessage("And now?"))
    assert memory.count(history) > BUDGET
    model = RecordingModel(responses=[AIMessage("Fine now.")])
    agent = create_agent(model, TOOLS, system_prompt=SYSTEM_PROMPT, middleware=[FreeMemoryMiddleware(memory)],
                         checkpointer=InMemorySaver())
    agent.invoke({"messages": history}, _config("resumed"))
    (size,) = request_sizes(model, memory)
    assert size <= BUDGET


def test_a_prompt_and_tools_over_the_budget_are_reported_once() -> None:
    memory = FreeMemory(budget=3000, archive=InMemoryArchive(), counter="approx")
    model = RecordingModel(responses=script(6))
    agent = create_agent(model, TOOLS, system_prompt=SYSTEM_PROMPT, middleware=[FreeMemoryMiddleware(memory)],
                         checkpointer=InMemorySaver())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = agent.invoke({"messages": [HumanMessage("Check it.")]}, _config("tiny"))
    told = [w for w in caught if "system prompt and tool schemas alone" in str(w.message)]
    assert len(told) == 1, [str(w.message) for w in caught]
    notes = [e for e in out["freemem_ledger"] if "system prompt and tool schemas alone" in (e.get("note") or "")]
    assert len(notes) == 1 and "3,000" in notes[0]["note"]
    assert out["messages"][-1].content == "Done: the service is healthy."


def test_fixed_tokens_for_the_other_surfaces() -> None:
    fixed = request_tokens("approx", system_prompt=SYSTEM_PROMPT, tools=TOOLS)
    memory = FreeMemory(budget=Budget(BUDGET, fixed_tokens=fixed), counter="approx")
    assert memory.request_budget == BUDGET and memory.budget == BUDGET - fixed
    assert memory.reserved(fixed) is memory
    other = memory.reserved(1000)
    assert other.budget == BUDGET - 1000 and memory.budget == BUDGET - fixed  # a copy, the original unchanged
    assert other.cleaner is not memory.cleaner and other.cleaner.budget == BUDGET - 1000
    with pytest.raises(ConfigError):
        FreeMemory(budget=Budget(1000, fixed_tokens=1000))
    with pytest.raises(ConfigError):
        FreeMemory(budget=Budget(1000, fixed_tokens=-1))
    # free_node / pre_model_hook take the request's system prompt and tools
    node = free_node(FreeMemory(budget=BUDGET, counter="approx"), system_prompt=SYSTEM_PROMPT, tools=TOOLS)
    assert node.memory.budget == BUDGET - fixed
    hook = pre_model_hook(FreeMemory(budget=BUDGET, counter="approx"), system_prompt=SYSTEM_PROMPT, tools=TOOLS)
    assert hook.memory.budget == BUDGET - fixed


def test_steps_per_model_call_are_as_documented() -> None:
    """docs/budget.md: N tool calls take 3N + 3 supersteps with the middleware (2N + 2 without)."""
    calls = 20
    plain = RecordingModel(responses=script(calls))
    create_agent(plain, TOOLS).invoke({"messages": [HumanMessage("go")]}, _config("p", 2 * calls + 2))
    with pytest.raises(GraphRecursionError):
        create_agent(RecordingModel(responses=script(calls)), TOOLS).invoke(
            {"messages": [HumanMessage("go")]}, _config("p2", 2 * calls + 1))
    model = RecordingModel(responses=script(calls))
    agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(_memory())])
    agent.invoke({"messages": [HumanMessage("go")]}, _config("m", 3 * calls + 3))
    with pytest.raises(GraphRecursionError):
        create_agent(RecordingModel(responses=script(calls)), TOOLS,
                     middleware=[FreeMemoryMiddleware(_memory())]).invoke(
            {"messages": [HumanMessage("go")]}, _config("m2", 3 * calls + 2))


def test_summarize_memory_gets_the_same_accounting() -> None:
    from freemem.policies import SummarizeMemory

    memory = SummarizeMemory(budget=BUDGET, counter="approx")
    other = memory.reserved(5000)
    assert (other.budget, other.keep_tokens, memory.budget) == (BUDGET - 5000, (BUDGET - 5000) // 4, BUDGET)
    assert memory.reserved(BUDGET).check(10 * BUDGET) is None  # nothing can meet it: no fold in vain
    model = RecordingModel(responses=script(60))
    agent = create_agent(model, TOOLS, system_prompt=SYSTEM_PROMPT, middleware=[FreeMemoryMiddleware(memory)],
                         checkpointer=InMemorySaver())
    agent.invoke({"messages": [HumanMessage("Why is it slow?")]}, _config("summ"))
    sizes = [count_messages(memory.counter, messages) + sum(tool_schema_tokens(memory.counter, t) for t in tools)
             for messages, tools in model.received]
    assert max(sizes) <= BUDGET, max(sizes)


def test_protected_messages_over_what_is_left_are_reported_once() -> None:
    fixed = request_tokens("approx", system_prompt=SYSTEM_PROMPT, tools=TOOLS)
    memory = FreeMemory(budget=fixed + 500, archive=InMemoryArchive(), counter="approx")
    model = RecordingModel(responses=script(5))
    agent = create_agent(model, TOOLS, system_prompt=SYSTEM_PROMPT, middleware=[FreeMemoryMiddleware(memory)],
                         checkpointer=InMemorySaver())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = agent.invoke({"messages": [HumanMessage("Check it.")]}, _config("protected"))
    told = [str(w.message) for w in caught if "stays over its budget" in str(w.message)]
    assert len(told) == 1, told
    assert f"system prompt and tools {fixed:,}" in told[0]
    notes = [e["note"] for e in out["freemem_ledger"] if "protected messages" in (e.get("note") or "")]
    assert notes and f"system prompt and tool schemas ({fixed:,} tokens)" in notes[0]


def test_a_given_trigger_follows_the_messages_budget_and_a_given_cleaner_is_left_alone() -> None:
    from freemem.cleaners.heuristic import HeuristicCleaner
    from freemem.engine.triggers import OverBudget

    cleaner = HeuristicCleaner(budget=BUDGET - 3000)
    memory = FreeMemory(cleaner, budget=Budget(BUDGET, fixed_tokens=3000), triggers=[OverBudget(BUDGET)],
                        counter="approx")
    assert memory.cleaner is cleaner and cleaner.budget == BUDGET - 3000  # yours: its state and stats stay
    assert [t.budget for t in memory.triggers] == [BUDGET - 3000]  # type: ignore[attr-defined]
    other = memory.reserved(5000)
    assert other.cleaner is cleaner and [t.budget for t in other.triggers] == [BUDGET - 5000]  # type: ignore[attr-defined]
    own = FreeMemory(budget=BUDGET, counter="approx")
    copy = own.reserved(5000)
    assert copy.cleaner is not own.cleaner and copy.cleaner.budget == BUDGET - 5000
    off = own.reserved(BUDGET)
    assert off.budget is None and off.cleaner.budget is None
    assert not any(isinstance(t, OverBudget) for t in off.triggers)
    assert own.budget == BUDGET and own.cleaner.budget == BUDGET  # reserved() never changes the memory it is called on


def test_an_image_in_the_thread_is_counted_at_its_pixel_size() -> None:
    import base64
    import struct

    header = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 1920, 1080, 8, 2, 0, 0, 0)
              + b"\x00" * 4)
    payload = base64.b64encode(header + b"\x00" * 200_000).decode()
    question = HumanMessage(content=[{"type": "text", "text": "Why does this dashboard look wrong?"},
                                     {"type": "image", "base64": payload, "mime_type": "image/png"}])
    memory = _memory()
    assert memory.count([question]) > 1600  # Anthropic's rule on 1920x1080, not ~8 tokens
    model = RecordingModel(responses=script(40))
    agent = create_agent(model, TOOLS, system_prompt=SYSTEM_PROMPT,
                         middleware=[FreeMemoryMiddleware(memory, recall=True)], checkpointer=InMemorySaver())
    agent.invoke({"messages": [question]}, _config("image"))
    sizes = request_sizes(model, memory)
    assert max(sizes) <= BUDGET, max(sizes)
    assert max(sizes) > 0.8 * BUDGET
    # the image reached every request whole
    assert all(any(isinstance(p, dict) and p.get("base64") == payload for m in messages
                   for p in (m.content if isinstance(m.content, list) else []))
               for messages, _ in model.received)
