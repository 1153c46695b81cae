"""``freemem bench inspector``: the inspector's pages of a long thread, cold and warm (the figures themselves come
from the full run; here: that it runs on a small thread, with a checkpoint history the chart walks, and reports
every page it names)."""

from __future__ import annotations

import json
from pathlib import Path

from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver

from freemem import FreeMemory, InMemoryArchive
from freemem.cli.main import main
from freemem.ui import ThreadSource
from freemem_bench.inspector import build_thread


def test_bench_inspector_reports_cold_and_warm_pages(tmp_path: Path) -> None:
    out = tmp_path / "inspector.json"
    assert main(["bench", "inspector", "--events", "60", "--tool-messages", "10", "--history", "4",
                 "--repeat", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["events"] == 60 and result["messages"] == 22 and result["checkpoints"] == 6
    assert [(p["path"], p["params"]) for p in result["pages"]] == [
        ("/thread", {}), ("/thread", {"epage": 100}), ("/thread", {"mpage": 10}), ("/chart", {}),
        ("/thread", {"context": "original"}), ("/thread", {"context": "original", "mpage": 10})]
    assert result["pages"][3]["after"] == {} and result["pages"][5]["after"] == {"context": "original"}
    for page in result["pages"]:
        assert page["cold_ms"] > 0 and page["warm_median_ms"] > 0 and 0 < page["bytes"] < 300_000
    assert len(result["load_average"]) == 3 and isinstance(result["first_page_ok"], bool)


def test_history_is_the_transcript_as_it_grew() -> None:
    saver, archive = InMemorySaver(), InMemoryArchive()
    built = build_thread(saver, archive, "t", events=20, tool_messages=10, history=5)
    history = list(saver.list({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}))[::-1]
    sizes = [len(c.checkpoint["channel_values"].get("messages", [])) for c in history]
    assert sizes == [0, 6, 10, 14, 18, 22, 22] and built["checkpoints"] == 7
    assert [m["id"] for m in history[3].checkpoint["channel_values"]["messages"]] == \
        [m["id"] for m in built["original"][:14]]
    # The chart counts one model call per checkpoint that added an assistant message.
    calls, truncated = ThreadSource(saver, archive, counter="approx").calls("t")
    assert len(calls) == 4 and not truncated
    counter = FreeMemory(counter="approx")
    assert [c.tokens_sent for c in calls] == [counter.count(h.checkpoint["channel_values"]["messages"])
                                              for h in history[1:5]]
    # The latest checkpoint holds the same ids, pruned: a call after it sent the pruned ones (each message is
    # measured again when it changed, not taken for its earlier version).
    answer = empty_checkpoint()
    answer["id"] = str(uuid6(clock_seq=-1))
    answer["channel_values"] = {"messages": [*built["pruned"], {"role": "assistant", "id": "end", "content": "ok"}]}
    answer["channel_versions"] = {"messages": saver.get_next_version(None, None)}
    saver.put(history[-1].config, answer, {"source": "loop", "step": 9, "parents": {}},
              dict(answer["channel_versions"]))
    calls, _ = ThreadSource(saver, archive, counter="approx").calls("t")
    assert len(calls) == 5 and calls[-1].tokens_sent == counter.count(built["pruned"])
    assert counter.count(built["pruned"]) < counter.count(built["original"]) <= calls[-1].tokens_without
