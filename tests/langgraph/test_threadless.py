"""An agent whose memory has an archive but whose invocations name no ``thread_id`` (issue 24): every such
invocation records into the archive's thread ``"default"``, so ``recall`` in one may return another's private
tool output. One RuntimeWarning says so, once; nothing is said with a thread id, or without an archive."""

from __future__ import annotations

import warnings
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from lgfakes import TOOLS, make_memory, scripted_model

from freemem import InMemoryArchive
from freemem.langgraph import FreeMemoryMiddleware


def _run(memory: Any, config: dict[str, Any] | None, runs: int = 2) -> list[warnings.WarningMessage]:
    middleware = FreeMemoryMiddleware(memory)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(runs):
            agent = create_agent(scripted_model([5]), TOOLS, middleware=[middleware])
            agent.invoke({"messages": [HumanMessage("Survey the service.")]}, config)
    return [w for w in caught if "thread_id" in str(w.message)]


def test_missing_thread_id_with_an_archive_warns_once() -> None:
    archive = InMemoryArchive()
    found = _run(make_memory(archive=archive), None)
    assert len(found) == 1 and issubclass(found[0].category, RuntimeWarning)
    text = str(found[0].message)
    assert "'default'" in text and "recall" in text and "another invocation" in text
    assert archive.list_events("default")  # the risk is real: both invocations recorded there


def test_no_warning_with_a_thread_id_or_without_an_archive() -> None:
    assert _run(make_memory(archive=InMemoryArchive()), {"configurable": {"thread_id": "t1"}}) == []
    assert _run(make_memory(), None) == []
