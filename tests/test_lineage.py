"""The archive follows a thread's lineage, at the core level (issue 24): two writers clean their own branch of
one thread from the same base messages, their events interleave in one archive, and a restore of either
branch's latest checkpoint puts back exactly that branch's original text -- whatever the interleaving, whatever
each branch cleaned -- and skips the other branch's events (never an ``ArchiveMismatch``).

Checkpoint ids are made time-ordered like LangGraph's uuid6 (zero-padded counters), each event names the
checkpoint its step ran on (``checkpoint_id``), and the lineage is what ``restore_thread`` builds from the
checkpointer: the head's ancestors, possibly cut at a ``floor`` (older checkpoints pruned by ``keep_last``).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freemem import FreeMemory, InMemoryArchive, Triggers
from freemem.archives import undo_events
from freemem.core.archive import LOST_BRANCH, MISMATCH, Lineage, event_checkpoint, split_by_lineage
from freemem.core.errors import FormatError


def _tool_output(branch: str, step: int, size: int) -> str:
    lines = [f"{branch}:{step} line {i}: value_{(step * 31 + i * 7) % 97} = compute(item_{i}, {branch!r})"
             for i in range(size)]
    return "\n".join(lines)


def _turn(branch: str, step: int, size: int) -> list[dict[str, Any]]:
    call = f"call_{branch}_{step}"
    return [{"role": "assistant", "id": f"ai_{branch}_{step}", "content": f"Step {step} of {branch}: reading.",
             "tool_calls": [{"id": call, "type": "function",
                             "function": {"name": "read", "arguments": f'{{"path": "/{branch}/{step}"}}'}}]},
            {"role": "tool", "id": f"tool_{branch}_{step}", "tool_call_id": call,
             "content": _tool_output(branch, step, size)}]


@dataclass
class Branch:
    """One writer: the messages it carries (pruned), what they would be without freemem, its checkpoints."""

    name: str
    pruned: list[dict[str, Any]]
    original: list[dict[str, Any]]
    chain: list[str]
    steps: int = 0
    events: list[str] = field(default_factory=list)


class Writers:
    def __init__(self, memory: FreeMemory, archive: InMemoryArchive) -> None:
        self.memory = memory
        self.archive = archive
        self.ids = (f"{n:012d}" for n in itertools.count(1))  # time-ordered, like uuid6
        self.clock = itertools.count(1)

    def step(self, branch: Branch, *, clean: bool, size: int) -> None:
        """One step on the branch's latest checkpoint: a tool turn, maybe a clean (archived with the checkpoint
        the step ran on), then the step's result as a new checkpoint."""
        turn = _turn(branch.name, branch.steps, size)
        branch.steps += 1
        branch.pruned = branch.pruned + copy.deepcopy(turn)
        branch.original = branch.original + copy.deepcopy(turn)
        if clean:
            result = self.memory.clean(branch.pruned)
            if result.changed and result.messages is not None:
                event = result.event.to_dict(spans=True)
                event.update(id=f"ev_{branch.name}_{branch.steps}", created_at=float(next(self.clock)),
                             checkpoint_id=branch.chain[-1])
                self.archive.record("t", event)
                branch.events.append(event["id"])
                branch.pruned = list(result.messages)
        branch.chain.append(next(self.ids))


def _lineage(branch: Branch, pruned_below: int) -> Lineage:
    ancestors = branch.chain[:-1]
    floor = ancestors[pruned_below - 1] if pruned_below else None
    return Lineage(head=branch.chain[-1], ancestors=frozenset(ancestors[pruned_below:]), floor=floor)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(base_steps=st.integers(1, 4), order=st.lists(st.booleans(), min_size=2, max_size=14),
       cleans=st.lists(st.booleans(), min_size=20, max_size=20), survivor=st.sampled_from("ab"),
       size=st.integers(20, 60), pruned=st.integers(0, 3), data=st.data())
def test_two_writers_never_lose_the_surviving_branchs_text(base_steps: int, order: list[bool], cleans: list[bool],
                                                           survivor: str, size: int, pruned: int,
                                                           data: st.DataObject) -> None:
    memory = FreeMemory(budget=900, counter="approx", triggers=Triggers(every_tokens=None, on_loop=False))
    archive = InMemoryArchive()
    writers = Writers(memory, archive)
    head = [{"role": "system", "id": "sys", "content": "You are a careful agent."},
            {"role": "user", "id": "u0", "content": "Read everything, then summarise."}]
    base = Branch("base", list(head), copy.deepcopy(head), [next(writers.ids)])
    flags = iter(cleans)
    for _ in range(base_steps):
        writers.step(base, clean=next(flags, True), size=size)
    # Both writers start on the same checkpoint (two concurrent invokes read the same latest state) and, like
    # LangGraph, first write their input as a checkpoint of their own.
    a = Branch("a", list(base.pruned), list(base.original), [*base.chain, next(writers.ids)])
    b = Branch("b", list(base.pruned), list(base.original), [*base.chain, next(writers.ids)])
    for turn_of_a in order:
        writers.step(a if turn_of_a else b, clean=next(flags, True), size=size)
    won, lost = (a, b) if survivor == "a" else (b, a)
    # keep_last may have pruned the oldest checkpoints, but only of the shared part (before the fork).
    cut = min(pruned, len(base.chain) - 1)

    events = archive.events("t")
    result = undo_events(won.pruned, events, "t", lineage=_lineage(won, cut))
    assert result.messages == won.original
    assert set(result.event_ids) == set(base.events) | set(won.events)
    assert {sk.event_id for sk in result.skipped} == set(lost.events)
    assert all(sk.kind == LOST_BRANCH for sk in result.skipped)

    # Without lineage (events recorded by an older freemem, or outside a graph) a restore never raises: another
    # branch's events whose markers are not in the messages are skipped as a mismatch.
    loose = undo_events(won.pruned, events, "t")
    assert all(sk.kind == MISMATCH for sk in loose.skipped)
    assert set(loose.event_ids) | {sk.event_id for sk in loose.skipped} == {e["id"] for e in events}
    if not lost.events:
        assert loose.messages == won.original


def test_lineage_verdicts() -> None:
    lineage = Lineage(head="000000000009", ancestors=frozenset({"000000000005", "000000000007"}),
                      floor="000000000004")
    on, pending, lost, unknown = ({"id": i, "checkpoint_id": c} for i, c in
                                  (("on", "000000000007"), ("pending", "000000000009"),
                                   ("lost", "000000000006"), ("old", "000000000002")))
    keep, skipped = split_by_lineage([on, pending, lost, unknown, {"id": "none"}], lineage)
    assert [e["id"] for e in keep] == ["on", "old", "none"]  # "old" is below the floor: it cannot be placed
    assert [(s.event_id, s.kind) for s in skipped] == [("pending", "pending"), ("lost", "lost_branch")]
    nested = {"id": "n", "checkpoint_id": "root-1", "checkpoint_map": {"": "root-1", "agent:x": "sub-1"}}
    assert event_checkpoint(nested) == "root-1" and event_checkpoint(nested, "agent:x") == "sub-1"
    assert event_checkpoint(nested, "other") is None


# ------------------------------------------------------------------------------------- duplicate message ids


def _duplicated(kind: str) -> list[Any]:
    msgs: list[dict[str, Any]] = [{"role": "system", "id": "s", "content": "sys"},
                                  {"role": "user", "id": "u", "content": "go"}]
    for step in range(8):
        msgs += _turn("d", step, 60)
    msgs[5]["id"] = msgs[3]["id"]  # two tool results share an id
    if kind == "dict":
        return msgs
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    out: list[Any] = [SystemMessage("sys", id="s"), HumanMessage("go", id="u")]
    for m in msgs[2:]:
        if m["role"] == "assistant":
            call = m["tool_calls"][0]
            out.append(AIMessage(m["content"], id=m["id"], tool_calls=[
                {"name": "read", "args": {"path": "/x"}, "id": call["id"], "type": "tool_call"}]))
        else:
            out.append(ToolMessage(m["content"], id=m["id"], tool_call_id=m["tool_call_id"]))
    return out


@pytest.mark.parametrize("kind", ["dict", "langchain"])
@pytest.mark.parametrize("fold", [True, False])
def test_duplicate_message_ids_are_refused_before_any_edit(kind: str, fold: bool) -> None:
    messages = _duplicated(kind)
    snapshot = copy.deepcopy(messages)
    archive = InMemoryArchive()
    memory = FreeMemory(budget=1500, counter="approx", archive=archive, fold=fold)
    with pytest.raises(FormatError, match="share the id") as info:
        memory.clean(messages)
    assert "Nothing was cleaned" in str(info.value)
    assert messages == snapshot and archive.events("default") == []
    with pytest.raises(FormatError, match="share the id"):
        memory.maybe_clean(messages)
