"""A per-round deadline for any cleaner, and garbage answers (issue 12, items 12 and 13).

The hung cleaners block on an event nobody sets until the test is over, so no assertion depends on how fast the
machine is: the round must come back because of the deadline, not because the cleaner finished.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from typing import Any

import pytest

from freemem import FreeMemory
from freemem.config import RoundPolicy
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.commands import Command
from freemem.core.context import Context
from freemem.core.errors import ConfigError


def transcript() -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "sys"}, {"role": "user", "content": "task"}]
    for i in range(4):
        msgs.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]})
        msgs.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"OUT{i} " + "x" * 400 + f" END{i}"})
    msgs.append({"role": "assistant", "content": "done"})
    return msgs


class Hung(Cleaner):
    """A cleaner that never answers until ``release`` is set."""

    name = "hung"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def propose(self, context: Context) -> Proposal:
        self.calls += 1
        self.release.wait(600)
        return Proposal(commands=[], cleaner=self.name)

    async def apropose(self, context: Context) -> Proposal:
        self.calls += 1
        await asyncio.Event().wait()  # never set: only cancellation ends it
        raise AssertionError("unreachable")


class Returns(Cleaner):
    name = "returns"

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def propose(self, context: Context) -> Any:
        return self.answer

    async def apropose(self, context: Context) -> Any:
        return self.answer


def test_hung_sync_cleaner_is_abandoned_at_the_deadline() -> None:
    cleaner = Hung()
    memory = FreeMemory(cleaner, counter="approx", rounds=RoundPolicy(timeout=0.5))
    msgs = transcript()
    try:
        with pytest.warns(RuntimeWarning, match=r"hung exceeded 0\.5 s"):
            result = memory.clean(msgs)
        assert cleaner.calls == 1 and not cleaner.release.is_set()  # it is still hung: we did not wait for it
        assert result.messages == msgs and not result.changed
        assert result.event.error is not None and "exceeded 0.5 s" in result.event.error
        assert memory.stats.errors == 1
    finally:
        cleaner.release.set()


def test_hung_async_cleaner_is_cancelled_at_the_deadline() -> None:
    cleaner = Hung()
    memory = FreeMemory(cleaner, counter="approx", rounds=RoundPolicy(timeout=0.5))
    msgs = transcript()
    with pytest.warns(RuntimeWarning, match=r"exceeded 0\.5 s"):
        result = asyncio.run(memory.aclean(msgs))
    assert result.messages == msgs and result.event.error and "round_timeout" in result.event.error


def test_default_deadline_and_validation() -> None:
    assert FreeMemory(counter="approx").rounds.timeout == 660.0
    assert FreeMemory(counter="approx", rounds=RoundPolicy(timeout=None)).rounds.timeout is None
    with pytest.raises(ConfigError):
        FreeMemory(counter="approx", rounds=RoundPolicy(timeout=0))


def test_a_quick_cleaner_still_works_with_the_deadline_and_keeps_contextvars() -> None:
    import contextvars

    seen: list[Any] = []
    var: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")

    class Quick(Cleaner):
        name = "quick"

        def propose(self, context: Context) -> Proposal:
            seen.append(var.get())
            return Proposal(commands=[Command(prefix="OUT0 ", suffix=" END0")], cleaner=self.name)

    var.set("caller")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = FreeMemory(Quick(), counter="approx", rounds=RoundPolicy(timeout=30)).clean(transcript())
    assert result.event.applied == 1 and result.event.error is None and seen == ["caller"]


@pytest.mark.parametrize("answer", [
    None,
    "[{'prefix': 'a', 'suffix': 'b'}]",
    {"commands": []},
    Proposal(commands=[5], cleaner="x"),  # type: ignore[list-item]
    Proposal(commands=None, cleaner="x"),  # type: ignore[arg-type]
    Proposal(commands=[], cleaner="x", usage={"prompt_tokens": "many"}),  # type: ignore[dict-item]
    [Command(prefix="OUT0 ", suffix=" END0"), "junk"],
])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_garbage_answer_fails_the_round_with_a_warning(answer: Any, mode: str) -> None:
    memory = FreeMemory(Returns(answer), counter="approx")
    msgs = transcript()
    with pytest.warns(RuntimeWarning, match="round skipped"):
        result = memory.clean(msgs) if mode == "sync" else asyncio.run(memory.aclean(msgs))
    assert result.messages == msgs and result.event.error and "returns" in result.event.error


def test_a_list_of_commands_is_a_proposal() -> None:
    result = FreeMemory(Returns([Command(prefix="OUT1 ", suffix=" END1")]), counter="approx").clean(transcript())
    assert result.event.applied == 1 and result.event.error is None
    assert "OUT1" not in result.messages[5]["content"]


def test_deadline_bounds_the_turn_even_with_several_rounds() -> None:
    cleaner = Hung()
    memory = FreeMemory(cleaner, counter="approx", budget=50, fold=False,
                        rounds=RoundPolicy(max_rounds=3, timeout=0.5))
    t0 = time.monotonic()
    try:
        with pytest.warns(RuntimeWarning):
            memory.clean(transcript())
        assert cleaner.calls == 1  # a failed round ends the clean: no second wait
    finally:
        cleaner.release.set()
    assert time.monotonic() - t0 < 300  # the cleaner alone would hold it 600 s
