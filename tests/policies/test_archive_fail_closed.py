"""One fail-closed record helper for every surface that archives: an edit whose removed text the archive cannot
take is not kept (the reasoner kept it, SummarizeMemory.fold raised), the event says why, the caller goes on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from freemem import FreeMemory, InMemoryArchive
from freemem.config import Triggers
from freemem.policies.reasoner import FreeReasonerSteps
from freemem.policies.summarize import SummarizeMemory
from tests.policies.test_summarize import tool_transcript


class Down(InMemoryArchive):
    def record(self, thread_id: str, event: Any) -> str:
        raise ConnectionError("archive down")


LOOP = ("First I will add the numbers.\n" + "Wait, let me check the sum again: 2 + 2 = 4, so the total is 4.\n" * 120
        + "So the answer is 4.\n" + "More careful thought about other things here. " * 60)


def _reasoner(archive: Any) -> FreeReasonerSteps:
    memory = FreeMemory(counter="approx", archive=archive, triggers=Triggers(every_tokens=None, on_loop=False))
    return FreeReasonerSteps("http://127.0.0.1:9", model="m", memory=memory)


def _state() -> dict[str, Any]:
    return {"question": "What is 2 + 2?", "text": LOOP, "ledger": [{"round": 1, "clean": None}],
            "context_tokens": 900}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_reasoner_keeps_no_edit_the_archive_refused(mode: str) -> None:
    kept = InMemoryArchive()
    ok = _reasoner(kept)
    update = ok.clean(_state(), "t") if mode == "sync" else asyncio.run(ok.aclean(_state(), "t"))
    assert len(update["text"]) < len(LOOP) and kept.events("t")  # the loop was cut, and archived

    down = _reasoner(Down())
    with pytest.warns(RuntimeWarning, match="archive failed"):
        update = down.clean(_state(), "t") if mode == "sync" else asyncio.run(down.aclean(_state(), "t"))
    assert "text" not in update  # the thinking stays as it was
    clean = update["ledger"][-1]["clean"]
    assert "archive failed (ConnectionError: archive down)" in clean["error"]
    assert down.memory.stats.errors == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_fold_the_archive_refused_is_no_fold(mode: str) -> None:
    msgs = tool_transcript(12)
    memory = SummarizeMemory(None, budget=1500, keep_tokens=600, summary_tokens=100, counter="approx",
                             archive=Down())
    with pytest.warns(RuntimeWarning, match="archive failed"):
        result = memory.fold(msgs) if mode == "sync" else asyncio.run(memory.afold(msgs))
    assert not result.changed and result.messages == msgs
    assert "archive failed" in result.event.error and result.event.applied == 0
    stored = InMemoryArchive()
    memory.archive = stored
    result = memory.fold(msgs) if mode == "sync" else asyncio.run(memory.afold(msgs))
    assert result.changed and [e["policy"] for e in stored.events("default")] == ["summarize"]
