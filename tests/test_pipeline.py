"""One clean as a pipeline of stages over one snapshot: a step reads each message into a view once, the
in-process heuristic runs on the caller's thread, and the memory-policy protocol carries ``idle_s``."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, convert_to_messages

import freemem.core.views as views_module
from freemem import CachePolicy, FoldPolicy, FreeMemory, HeuristicCleaner, Triggers
from freemem.core.cleaner import Cleaner, Proposal
from freemem.core.snapshot import Snapshot
from freemem.langgraph import LAST_CALL_KEY, CleanStep
from tests.test_folding import build_transcript


def _langchain_transcript(seed: int, units: int) -> list[Any]:
    return convert_to_messages([{k: v for k, v in m.items() if k != "pinned"} for m in build_transcript(seed, units)])


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How many times each message object (by id) is read into a view."""
    seen: Counter[int] = Counter()
    keep: list[Any] = []  # the messages counted stay alive, so their ids stay theirs
    real = views_module.read_message

    def counting(index: int, msg: Any) -> Any:
        seen[id(msg)] += 1
        keep.append(msg)
        return real(index, msg)

    monkeypatch.setattr(views_module, "read_message", counting)
    return seen


@pytest.mark.parametrize("cache", [True, False], ids=["scheduled", "cost-blind"])
def test_a_cleaning_step_reads_each_message_once(reads: Counter[int], cache: bool) -> None:
    messages = _langchain_transcript(3, 60)
    memory = FreeMemory(counter="approx", budget=3000, cache="anthropic" if cache else None)
    step = CleanStep(memory)
    update = step.run({"messages": messages})
    assert update is not None and update["freemem_ledger"][0]["applied"] > 0  # edits landed
    assert update["freemem_ledger"][0].get("folds")  # and a fold: messages left and one was made
    assert reads and max(reads.values()) == 1, f"{sum(reads.values())} reads of {len(reads)} messages"
    # Every message the step was given was read (once), and so was each new one it wrote.
    assert {id(m) for m in messages} <= set(reads)
    written = [m for m in update["messages"][1:] if all(m is not old for old in messages)]
    assert written and {id(m) for m in written} <= set(reads)


def test_the_async_step_and_a_repeated_request_read_each_message_once(reads: Counter[int]) -> None:
    messages = _langchain_transcript(5, 50)
    step = CleanStep(FreeMemory(counter="approx", budget=3000))
    assert asyncio.run(step.arun({"messages": messages})) is not None
    assert max(reads.values()) == 1
    reads.clear()
    # The model call's own fit (a request whose fixed part grew) is one step too.
    step.fit_request(messages, fixed=500)
    assert max(reads.values()) == 1


def test_the_snapshot_rereads_only_new_messages(reads: Counter[int]) -> None:
    memory = FreeMemory(counter="approx")
    messages = _langchain_transcript(7, 10)
    snap = memory.snapshot(messages)
    assert snap.total == memory.count_messages(messages) and len(snap) == len(messages)
    reads.clear()
    edited = list(messages)
    edited[3] = edited[3].model_copy(update={"content": "shorter"})
    after = snap.after(edited)
    assert list(reads.values()) == [1] and after.views[4] is snap.views[4]
    assert after.total == memory.count_messages(edited)
    reads.clear()
    folded = edited[:2] + edited[5:]  # positions move: views are re-indexed, not re-read
    moved = after.after(folded)
    assert not reads and [v.index for v in moved.views] == list(range(len(folded)))
    assert moved.total == memory.count_messages(folded)
    # The edits from message m on (the schedule's partial option): from 3 on is the edit, from 4 on is none.
    assert snap.mixed(after, 3).messages == tuple(edited) and snap.mixed(after, 3).total == after.total
    assert snap.mixed(after, 4).messages == tuple(messages) and snap.mixed(after, 4).total == snap.total
    assert memory.snapshot([]).total == 0 and Snapshot.read([], len).tokens == ()


class ThreadRecording(HeuristicCleaner):
    """The heuristic, noting the thread each proposal runs on."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.threads: list[str] = []

    def propose(self, context: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        return super().propose(context)


def test_the_heuristic_runs_on_the_callers_thread_without_a_deadline() -> None:
    cleaner = ThreadRecording(budget=2000)
    assert cleaner.in_process
    memory = FreeMemory(cleaner, counter="approx", budget=2000, fold=False)
    assert memory.rounds.timeout == 660.0  # the deadline exists, for cleaners that are not in process
    messages = build_transcript(11, 40)
    memory.clean(messages)
    asyncio.run(memory.aclean(messages))
    me = threading.current_thread().name
    assert cleaner.threads and set(cleaner.threads) == {me}


class Dropping(Cleaner):
    """A cleaner of one's own (no apropose of its own): proposes nothing, and notes the thread it runs on."""

    name = "dropping"

    def __init__(self, in_process: bool) -> None:
        self.in_process = in_process
        self.threads: list[str] = []

    def propose(self, context: Any) -> Proposal:
        self.threads.append(threading.current_thread().name)
        return Proposal(commands=[], cleaner=self.name)


@pytest.mark.parametrize("in_process", [True, False])
def test_a_cleaner_says_whether_it_runs_in_process(in_process: bool) -> None:
    """An in-process cleaner of one's own runs on the caller's thread, sync and async (the base's apropose
    follows the flag); any other runs its sync calls in a worker thread, within the round's deadline."""
    cleaner = Dropping(in_process)
    memory = FreeMemory(cleaner, counter="approx", budget=2000, fold=False)
    messages = build_transcript(11, 40)
    memory.clean(messages)
    asyncio.run(memory.aclean(messages))
    me = threading.current_thread().name
    assert len(cleaner.threads) == 2
    assert (set(cleaner.threads) == {me}) is in_process


class Recording:
    """A memory policy (the protocol, no FreeMemory) that records what the surfaces pass it."""

    archive = None
    cache_ttl_s = 300.0

    def __init__(self) -> None:
        self.idle: list[float | None] = []
        self.clock = iter([1000.0, 1042.0, 1100.0]).__next__

    def count(self, messages: Any) -> int:
        return len(messages)

    def check(self, tokens: int, tokens_at_last_clean: int, newest_text: str = "", *,
              idle_s: float | None = None) -> str | None:
        self.idle.append(idle_s)
        return None


def test_the_step_passes_idle_s_to_a_policy_that_declares_a_cache_ttl() -> None:
    policy = Recording()
    step = CleanStep(policy)  # type: ignore[arg-type]
    assert step.uses_idle
    first = step.run({"messages": [HumanMessage("hi")]})
    assert first is not None
    step.run({"messages": [HumanMessage("hi")], LAST_CALL_KEY: first[LAST_CALL_KEY]})
    assert policy.idle == [None, 42.0]


def test_scheduled_and_cost_blind_cleans_agree_on_the_event_they_write() -> None:
    """The schedule stage decides, the event is written once: a manual clean (everything applied) and a
    scheduled one over budget describe the spans they kept, and those spans are what changed."""
    messages = build_transcript(13, 80)
    for memory in (FreeMemory(counter="approx", budget=4000, fold=FoldPolicy(keep_units=2)),
                   FreeMemory(counter="approx", budget=4000, cache=CachePolicy(low_water=0.8),
                              triggers=Triggers(every_tokens=None))):
        for trigger in ("manual", "over budget"):
            result = memory.clean(messages, trigger=trigger)
            event = result.event
            assert event.applied == sum(len(r) for r in event.rounds)
            edited = {s.message_index for r in event.rounds for s in r}
            if not event.folds:
                changed = {i for i, (a, b) in enumerate(zip(messages, result.messages)) if a is not b}
                assert changed == edited
            assert event.tokens_after == memory.count_messages(result.messages)
