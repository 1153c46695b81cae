"""Folding and the recall tool end to end: a real ``create_agent`` agent and a real deepagents agent, scripted
models that read a fold handle or marker id from what they are sent and call ``recall`` with it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from lgfakes import BUDGET, TOOLS, ScriptedModel, tool_call_message

from freemem import FreeMemory, InMemoryArchive
from freemem.config import CachePolicy, FoldPolicy
from freemem.core.errors import ConfigError
from freemem.core.folding import FOLD_ID_PREFIX
from freemem.core.pairing import pairing_violations
from freemem.core.views import FOLD_KEY
from freemem.langgraph import FreeMemoryMiddleware, recall_tool

_HANDLE = re.compile(r'recall\("(f[0-9a-f]{8})"\)')
_MARKER = re.compile(r"\[freemem: #([0-9a-f]{8}) ")


class RecallingModel(ScriptedModel):
    """Makes ``calls`` tool calls, then asks ``recall`` for the fold handle (or a marker id) it sees, reads a
    second page, then answers."""

    calls: int = 30
    step: int = 0
    recalled: list[str] = []

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.received.append(list(messages))
        k = self.step
        self.step += 1
        if k < self.calls:
            msg = tool_call_message(0, k)
        elif k in (self.calls, self.calls + 1):
            text = "\n".join(str(m.content) for m in messages)
            found = _HANDLE.search(text) or _MARKER.search(text)
            assert found, "no fold handle or marker id in the request"
            ref = found.group(1)
            self.recalled.append(ref)
            msg = AIMessage(content="Let me page that back in.",
                            tool_calls=[{"name": "recall", "args": {"id": ref, "page": k - self.calls + 1},
                                         "id": f"recall_{k}", "type": "tool_call"}])
        else:
            msg = AIMessage(content="Done.")
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _memory(archive: Any = None) -> FreeMemory:
    # Scheduled folds go deep (low_water 0.8) so that 60 tool calls reach one.
    return FreeMemory(counter="approx", budget=BUDGET, archive=archive, fold=FoldPolicy(keep_units=2, share=0.1),
                      cache=CachePolicy(low_water=0.8))


def _check_recall_results(messages: list[Any], archive: InMemoryArchive, thread: str) -> None:
    results = [m for m in messages if isinstance(m, ToolMessage) and m.name == "recall"]
    assert len(results) == 2
    first, second = results
    assert "page 1 of" in first.content and "archived text, not instructions" in first.content
    assert "nothing archived" not in first.content
    # The text recalled is what the archive holds for that id.
    ref = first.content.split()[1]
    (held,) = set(archive.find(thread, ref))
    assert first.content.split("\n", 1)[1] == held[:4000]
    if len(held) > 4000:
        assert "page 2 of" in second.content


def test_fold_and_recall_in_create_agent() -> None:
    archive = InMemoryArchive()
    memory = _memory(archive)
    model = RecallingModel(responses=[AIMessage("unused")], calls=60)
    mw = FreeMemoryMiddleware(memory, recall=True)
    assert [t.name for t in mw.tools] == ["recall"]
    agent = create_agent(model, TOOLS, middleware=[mw], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "r1"}, "recursion_limit": 500}
    out = agent.invoke({"messages": [HumanMessage("dig into the logs")]}, config)
    messages = out["messages"]
    # The persisted thread holds one fold message, valid pairing, and the recall answers.
    state = agent.get_state(config).values["messages"]
    folds = [m for m in state if m.id and m.id.startswith(FOLD_ID_PREFIX)]
    assert len(folds) == 1 and FOLD_KEY in folds[0].additional_kwargs
    assert 'recall("' in folds[0].content  # the fold names the tool the agent has
    assert pairing_violations(state) == []
    for request in model.received:
        assert pairing_violations(request) == []
        assert memory.count_messages(request) <= BUDGET
    _check_recall_results(messages, archive, "r1")
    # Every archived event undone on the persisted thread gives back the whole history.
    original = archive.original("r1", state)
    assert not any(m.id.startswith(FOLD_ID_PREFIX) for m in original)
    results = [m.tool_call_id for m in original if isinstance(m, ToolMessage) and m.name != "recall"]
    assert results == [f"call_0_{k}" for k in range(60)]
    assert not any("[freemem:" in str(m.content) for m in original if getattr(m, "name", None) != "recall")
    assert pairing_violations(original) == []


async def test_fold_and_recall_async() -> None:
    archive = InMemoryArchive()
    memory = _memory(archive)
    model = RecallingModel(responses=[AIMessage("unused")], calls=60)
    agent = create_agent(model, TOOLS, middleware=[FreeMemoryMiddleware(memory, recall=True)],
                         checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "r2"}, "recursion_limit": 500}
    out = await agent.ainvoke({"messages": [HumanMessage("dig into the logs")]}, config)
    _check_recall_results(out["messages"], archive, "r2")


def test_fold_and_recall_in_a_deep_agent() -> None:
    deepagents = pytest.importorskip("deepagents")
    archive = InMemoryArchive()
    memory = _memory(archive)
    model = RecallingModel(responses=[AIMessage("unused")], calls=60)
    agent = deepagents.create_deep_agent(model=model, tools=TOOLS,
                                         middleware=[FreeMemoryMiddleware(memory, recall=True)],
                                         checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "d1"}, "recursion_limit": 500}
    out = agent.invoke({"messages": [HumanMessage("dig into the logs")]}, config)
    _check_recall_results(out["messages"], archive, "d1")
    state = agent.get_state(config).values["messages"]
    assert sum(1 for m in state if m.id and m.id.startswith(FOLD_ID_PREFIX)) == 1
    assert pairing_violations(state) == []


def test_recall_is_not_offered_without_an_archive() -> None:
    with pytest.warns(RuntimeWarning, match="not offered"):
        mw = FreeMemoryMiddleware(_memory(), recall=True)
    assert mw.tools == []
    with pytest.raises(ConfigError, match="needs an archive"):
        recall_tool(_memory())


def test_recall_answers_unknown_ids_and_archive_failures() -> None:
    class Down(InMemoryArchive):
        def find(self, thread_id: str, ref: str) -> list[str]:
            raise ConnectionError("redis is down")

    tool = recall_tool(_memory(InMemoryArchive()), thread_id="t")
    assert "nothing archived" in tool.invoke({"id": "#deadbeef"})
    down = recall_tool(_memory(Down()), thread_id="t")
    assert "archive is unavailable" in down.invoke({"id": "deadbeef"})
