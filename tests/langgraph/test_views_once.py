"""FreeMemoryMiddleware inside a real ``create_agent`` agent reads each message into a view once per step: the
step before each model call (``before_model``: measure, check, clean, fold, archive) and the model call's own fit
(``wrap_model_call``), sync and async."""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from lgfakes import TOOLS, assert_requests_ok, make_memory, scripted_model

import freemem.core.views as views_module
from freemem import InMemoryArchive
from freemem.langgraph import CleanStep, FreeMemoryMiddleware

#: The reads of the step running now (None: outside a step).
_STEP: contextvars.ContextVar[Counter[int] | None] = contextvars.ContextVar("step", default=None)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Counter[int]]]:
    """Each middleware step run (its CleanStep method) and how many times it read each message object."""
    seen: list[tuple[str, Counter[int]]] = []
    keep: list[Any] = []  # the messages counted stay alive, so their ids stay theirs
    real_read = views_module.read_message

    def counting(index: int, msg: Any) -> Any:
        reads = _STEP.get()
        if reads is not None:
            reads[id(msg)] += 1
            keep.append(msg)
        return real_read(index, msg)

    monkeypatch.setattr(views_module, "read_message", counting)
    for name in ("run", "fit_request"):
        real = getattr(CleanStep, name)

        def sync_step(self: CleanStep, *args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            seen.append((_name, Counter()))
            token = _STEP.set(seen[-1][1])
            try:
                return _real(self, *args, **kwargs)
            finally:
                _STEP.reset(token)

        monkeypatch.setattr(CleanStep, name, sync_step)
    for name in ("arun", "afit_request"):
        areal = getattr(CleanStep, name)

        async def async_step(self: CleanStep, *args: Any, _real: Any = areal, _name: str = name,
                             **kwargs: Any) -> Any:
            seen.append((_name, Counter()))
            token = _STEP.set(seen[-1][1])
            try:
                return await _real(self, *args, **kwargs)
            finally:
                _STEP.reset(token)

        monkeypatch.setattr(CleanStep, name, async_step)
    return seen


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_middleware_step_reads_each_message_once(steps: list[tuple[str, Counter[int]]], mode: str) -> None:
    calls = 40
    model = scripted_model([calls])
    memory = make_memory(archive=InMemoryArchive())
    middleware = FreeMemoryMiddleware(memory)
    agent = create_agent(model, TOOLS, middleware=[middleware], checkpointer=InMemorySaver(),
                         system_prompt="You are a careful site-reliability engineer.")
    ask = {"messages": [HumanMessage("why is the service down?")]}
    config = {"configurable": {"thread_id": mode}, "recursion_limit": 1000}
    if mode == "sync":
        agent.invoke(ask, config)
    else:
        asyncio.run(agent.ainvoke(ask, config))

    assert len(model.received) == calls + 1
    assert_requests_ok(model, memory)  # the steps did clean: every request fit the budget
    assert middleware.stats.changed > 0  # edits landed (and with them new message objects to read)
    names = {"sync": ("run", "fit_request"), "async": ("arun", "afit_request")}[mode]
    assert [name for name, _ in steps] == list(names) * (calls + 1)  # two steps per model call
    for i, (name, reads) in enumerate(steps):
        assert reads, (i, name)  # every step read the messages
        assert max(reads.values()) == 1, (i, name, sum(reads.values()), len(reads))
