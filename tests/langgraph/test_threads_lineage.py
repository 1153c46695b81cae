"""Placing archived events on a thread's branches when the thread is long: ``restore_thread`` reads at most
``LINEAGE_MAX_CHECKPOINTS`` checkpoints (newest first); an event recorded on an older checkpoint is tried (it
applies when the messages hold its markers), an event of a recent other branch is still skipped."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from freemem import FreeMemory, InMemoryArchive, Triggers
from freemem.core.archive import LOST_BRANCH
from freemem.langgraph import restore_thread
from freemem.langgraph import threads as threads_module
from freemem.langgraph.threads import load_messages, write_messages

THREAD = "long"


def _seed(saver: InMemorySaver) -> Any:
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    messages = [{"role": "system", "id": "s", "content": "sys"}, {"role": "user", "id": "u", "content": "go"}]
    for k in range(6):
        messages += [{"role": "assistant", "id": f"a{k}", "content": f"step {k}", "tool_calls": [
                         {"id": f"c{k}", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
                     {"role": "tool", "id": f"t{k}", "tool_call_id": f"c{k}",
                      "content": "\n".join(f"row {k}.{i}: value {i * k} unchanged since the last deploy"
                                           for i in range(80))}]
    root = empty_checkpoint()
    root["id"] = str(uuid6(clock_seq=-1))
    root["channel_values"] = {"messages": messages}
    root["channel_versions"] = {"messages": saver.get_next_version(None, None)}
    config = {"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}
    saver.put(config, root, {"source": "input", "step": -1, "parents": {}}, dict(root["channel_versions"]))
    return messages


def _clean_on_head(saver: InMemorySaver, archive: InMemoryArchive, memory: FreeMemory) -> None:
    """One step on the latest checkpoint: clean, archive (naming that checkpoint), write the result."""
    tup, messages = load_messages(saver, THREAD)
    result = memory.clean(messages)
    assert result.changed and result.messages is not None
    archive.record(THREAD, {**result.event.to_dict(spans=True),
                            "checkpoint_id": tup.config["configurable"]["checkpoint_id"]})
    write_messages(saver, tup, result.messages)


def test_a_long_thread_reads_a_bounded_number_of_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads_module, "LINEAGE_PAGE", 4)
    monkeypatch.setattr(threads_module, "LINEAGE_MAX_CHECKPOINTS", 8)
    saver, archive = InMemorySaver(), InMemoryArchive()
    original = _seed(saver)
    memory = FreeMemory(budget=2500, counter="approx", fold=False,
                        triggers=Triggers(every_tokens=None, on_loop=False))
    _clean_on_head(saver, archive, memory)  # an event on the oldest checkpoint: beyond what is read later
    for _ in range(20):  # a long history of steps that change nothing freemem archived
        tup, messages = load_messages(saver, THREAD)
        write_messages(saver, tup, messages)
    fork, _ = load_messages(saver, THREAD)
    write_messages(saver, fork, load_messages(saver, THREAD)[1])  # the other branch's checkpoint ...
    sibling, sibling_messages = load_messages(saver, THREAD)
    archive.record(THREAD, {**memory.clean(sibling_messages + [{"role": "user", "id": "x", "content": "more"}])
                            .event.to_dict(spans=True), "id": "lost-one",
                            "checkpoint_id": sibling.config["configurable"]["checkpoint_id"]})
    write_messages(saver, fork, fork.checkpoint["channel_values"]["messages"])  # ... and the winner's
    for _ in range(2):
        tup, messages = load_messages(saver, THREAD)
        write_messages(saver, tup, messages)

    pages: list[int] = []
    real_page = threads_module._Pages.page

    def counted(self: Any, *args: Any) -> Any:
        out = real_page(self, *args)
        pages.append(len(out))
        return out

    monkeypatch.setattr(threads_module._Pages, "page", counted)
    result = restore_thread(saver, archive, THREAD, dry_run=True)
    assert sum(pages) <= 8  # bounded, though the thread has 26 checkpoints
    assert [(sk.event_id, sk.kind) for sk in result.skipped] == [("lost-one", LOST_BRANCH)]
    assert len(result.event_ids) == 1  # the old event could not be placed: tried, and it applies
    assert result.messages == original
