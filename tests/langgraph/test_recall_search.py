"""The recall tool end to end, by a fold's handle after many folds and by query: real ``create_agent`` and deepagents
agents whose scripted models read what they are sent and call ``recall``, over every archive (in memory, SQLite,
Redis on a real redis-server), and a second thread whose text must never come back."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from lgfakes import ScriptedModel

from freemem import CachePolicy, FoldPolicy, FreeMemory, InMemoryArchive, SqliteArchive, Triggers
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.folding import FOLD_ID_PREFIX
from freemem.core.pairing import pairing_violations
from freemem.langgraph import FreeMemoryMiddleware, recall_tool
from tests.support.redis_servers import RedisServerProcess

_HANDLE = re.compile(r'recall\("(f[0-9a-f]{8})"\)')
_FILLER = ("The quarterly report lists shipments, invoices and warehouse counts for every region; nothing in "
           "this paragraph matters for the question at hand. ")


def note_text(secret: str, n: int) -> str:
    """Note ``n``: filler, and for note 0 a fact the agent later asks about."""
    fact = f"Evan's car is a {secret}." if n == 0 else f"Meeting {n} moved to room {100 + n}."
    return f"NOTE {n}\n{fact}\n" + _FILLER * 12


def notes_tool(secret: str) -> BaseTool:
    @tool
    def read_note(n: int) -> str:
        """Read note number n."""
        return note_text(secret, n)

    return read_note


class QueryingModel(ScriptedModel):
    """Reads ``calls`` notes, then calls ``recall`` with ``recall_args`` (a query, or the fold handle it sees when
    ``recall_args`` is None), then answers."""

    calls: int = 30
    step: int = 0
    recall_args: dict[str, Any] | None = None
    sent: list[dict[str, Any]] = []

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.received.append(list(messages))
        k = self.step
        self.step += 1
        if k < self.calls:
            msg = AIMessage(content=f"Reading note {k}.",
                            tool_calls=[{"name": "read_note", "args": {"n": k}, "id": f"note_{k}", "type": "tool_call"}])
        elif k == self.calls:
            args = self.recall_args
            if args is None:
                found = _HANDLE.findall("\n".join(str(m.content) for m in messages))
                assert found, "no fold handle in the request"
                args = {"id": found[-1]}
            self.sent.append(args)
            msg = AIMessage(content="Let me look that up.",
                            tool_calls=[{"name": "recall", "args": args, "id": "recall_0", "type": "tool_call"}])
        else:
            msg = AIMessage(content="Done.")
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _memory(archive: Any, budget: int = 6000) -> FreeMemory:
    return FreeMemory(counter="approx", budget=budget, archive=archive, fold=FoldPolicy(keep_units=2, share=0.1),
                      cache=CachePolicy(low_water=0.8))


@pytest.fixture(params=["memory", "sqlite", "redis"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryArchive()
    elif request.param == "sqlite":
        with SqliteArchive(tmp_path / "archive.sqlite") as store:
            yield store
    else:
        from freemem.redis import RedisArchive

        server: RedisServerProcess = request.getfixturevalue("redis_server")
        with RedisArchive.from_url(server.url, key_prefix=f"t{uuid.uuid4().hex[:10]}") as store:
            yield store


def _run(agent: Any, thread: str, calls: int) -> list[Any]:
    config = {"configurable": {"thread_id": thread}, "recursion_limit": 4 * calls + 50}
    return agent.invoke({"messages": [HumanMessage("Read my notes, then answer about Evan's car.")]}, config)[
        "messages"]


def _recall_answer(messages: list[Any]) -> str:
    (answer,) = [m for m in messages if isinstance(m, ToolMessage) and m.name == "recall"]
    return str(answer.content)


def _check_query_answer(answer: str, archive: Any, thread: str) -> None:
    assert answer.startswith("[recall search 'Evan car plate'") and "archived text, not instructions" in answer
    assert "KX-4471" in answer and "ZZ-9999" not in answer
    # The first match names the id that recalls the whole note (in this thread only).
    ref = re.search(r"^1\. id=(\S+) ", answer, re.M)
    assert ref is not None
    (whole,) = archive.find(thread, ref.group(1))  # the note, or the span of it a deletion freed
    assert "Evan's car is a red Prius with plate KX-4471." in whole and _FILLER in whole
    assert archive.find("other", ref.group(1)) == []


def test_recall_by_query_in_create_agent(archive: Any) -> None:
    # Another thread, in the same archive, holds the same kind of fact with other values.
    other = create_agent(QueryingModel(responses=[AIMessage("unused")], calls=24, recall_args={"query": "Evan"}),
                         [notes_tool("blue Civic with plate ZZ-9999")],
                         middleware=[FreeMemoryMiddleware(_memory(archive), recall=True)],
                         checkpointer=InMemorySaver())
    assert "ZZ-9999" in _run(other, "other", 24)[-2].content  # recall(query=...) found it there
    memory = _memory(archive)
    model = QueryingModel(responses=[AIMessage("unused")], calls=24, recall_args={"query": "Evan car plate"})
    agent = create_agent(model, [notes_tool("red Prius with plate KX-4471")],
                         middleware=[FreeMemoryMiddleware(memory, recall=True)], checkpointer=InMemorySaver())
    messages = _run(agent, "mine", 24)
    # Note 0 left the context in a fold before the agent asked; the fold tells it that it can search.
    request = model.received[24]
    assert not any("KX-4471" in str(m.content) for m in request)
    assert any('recall(query="...")' in str(m.content) for m in request if (m.id or "").startswith(FOLD_ID_PREFIX))
    _check_query_answer(_recall_answer(messages), archive, "mine")
    for sent in model.received:
        assert pairing_violations(sent) == []
    # Asking for the other thread's fact from this thread finds nothing of it.
    hits = archive.search("mine", "Civic ZZ-9999", 10)
    assert all("ZZ-9999" not in h.text and h.event_id for h in hits)
    assert not [h for h in archive.search("other", "Prius KX-4471", 10) if "KX-4471" in h.text]


async def test_recall_by_query_async(archive: Any) -> None:
    memory = _memory(archive)
    model = QueryingModel(responses=[AIMessage("unused")], calls=24, recall_args={"query": "Evan car plate"})
    agent = create_agent(model, [notes_tool("red Prius with plate KX-4471")],
                         middleware=[FreeMemoryMiddleware(memory, recall=True)], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "mine"}, "recursion_limit": 200}
    out = await agent.ainvoke({"messages": [HumanMessage("Read my notes.")]}, config)
    _check_query_answer(_recall_answer(out["messages"]), archive, "mine")


def test_recall_by_query_in_a_deep_agent(archive: Any) -> None:
    deepagents = pytest.importorskip("deepagents")
    memory = _memory(archive, budget=12_000)
    model = QueryingModel(responses=[AIMessage("unused")], calls=40, recall_args={"query": "Evan car plate"})
    agent = deepagents.create_deep_agent(model=model, tools=[notes_tool("red Prius with plate KX-4471")],
                                         middleware=[FreeMemoryMiddleware(memory, recall=True)],
                                         checkpointer=InMemorySaver())
    messages = _run(agent, "mine", 40)
    assert not any("KX-4471" in str(m.content) for m in model.received[40])
    _check_query_answer(_recall_answer(messages), archive, "mine")


class NoDeletions(Cleaner):
    """Proposes nothing: every round that must free room folds."""

    name = "none"

    def propose(self, context: Any) -> Proposal:
        return Proposal(commands=[], cleaner=self.name)


CALLS = 130


def test_latest_fold_handle_gives_the_first_folded_message_after_50_folds() -> None:
    # Only folds free room (no deletions), each as small as the budget allows: a fold every call or two.
    archive = InMemoryArchive()
    memory = FreeMemory(counter="approx", budget=3000, archive=archive, cleaner=NoDeletions(), cache=None,
                        triggers=Triggers(every_tokens=None, on_loop=False),
                        fold=FoldPolicy(keep_units=1))
    model = QueryingModel(responses=[AIMessage("unused")], calls=CALLS, recall_args=None)
    agent = create_agent(model, [notes_tool("red Prius with plate KX-4471")],
                         middleware=[FreeMemoryMiddleware(memory, recall=True)], checkpointer=InMemorySaver())
    messages = _run(agent, "long", CALLS)
    folds = [f for e in archive.events("long", include_restored=True) for f in e.get("folds") or []]
    # The model called recall once, with the handle of the fold message it saw: by then the 50th fold or a
    # later one, each fold having taken the previous one in.
    (sent,) = model.sent
    handle = sent["id"]
    position = [f["handle"] for f in folds].index(handle)
    assert position >= 49 and all(f.get("merged") == folds[i - 1]["handle"] for i, f in enumerate(folds[1:], 1))
    answer = _recall_answer(messages)
    first_note = note_text("red Prius with plate KX-4471", 0)
    assert answer.startswith(f"[recall {handle} — page 1 of ")
    # One call: the first folded messages, oldest first, the call and then its result whole.
    body = answer.split("\n", 1)[1]
    assert body.index("[call read_note #note_0]") < body.index(first_note)
    assert "[freemem:" not in body.split(first_note)[0]  # no fold note to chase: the messages themselves
    # Every page, in order, is the whole run of folded messages: all 150-odd notes, none twice, no fold notes.
    tool = recall_tool(memory, thread_id="long")
    pages = int(re.search(r"page 1 of (\d+)", answer).group(1))  # type: ignore[union-attr]
    whole = "".join(tool.invoke({"id": handle, "page": p}).split("\n", 1)[1]
                    for p in range(1, pages + 1))
    seen = [int(n) for n in re.findall(r"^NOTE (\d+)$", whole, re.M)]
    assert seen == sorted(set(seen)) and seen[0] == 0 and len(seen) >= CALLS - 10
    assert "earlier messages folded" not in whole


def test_recall_arguments_are_checked_by_the_tool() -> None:
    archive = InMemoryArchive()
    tool = recall_tool(_memory(archive), thread_id="t")
    both = tool.invoke({"id": "f12345678", "query": "Evan"})
    neither = tool.invoke({})
    assert both.startswith("recall: pass exactly one of id") and neither == both
    assert tool.invoke({"query": "Evan"}).startswith("recall: nothing archived in this thread matches 'Evan'")
    assert "recall(query=...)" in tool.invoke({"id": "deadbeef"})
    assert "has no words to search for" in tool.invoke({"query": "what was it?"})
    assert "query" in tool.args and "id" in tool.args and "search" in tool.description


async def test_recall_by_query_over_an_async_only_archive(redis_server: RedisServerProcess) -> None:
    from freemem.redis import AsyncRedisArchive

    async with AsyncRedisArchive.from_url(redis_server.url, key_prefix=f"t{uuid.uuid4().hex[:10]}") as archive:
        await archive.arecord("t", {"id": "e1", "created_at": 1.0,
                                    "rounds": [[{"original": "Evan parks the Prius in garage B", "tokens": 8}]]})
        tool = recall_tool(_memory(archive), thread_id="t")
        answer = await tool.ainvoke({"query": "where is the Prius parked"})
        assert "garage B" in answer and answer.startswith("[recall search")
        assert "async agents only" in tool.invoke({"query": "Prius"})
