"""The archive of freed spans (RedisArchive / AsyncRedisArchive) and ``freemem thread list|show|restore``:
events from real freemem cleans, pruned vs original, restoring one event or all into the thread."""

from __future__ import annotations

import json
from typing import Any

import pytest

from freemem import FreeMemory
from freemem.cli.main import main
from freemem.config import Triggers
from freemem.core.archive import ArchiveMismatch
from freemem.core.errors import FormatError, StoreError
from freemem.langgraph import restore_thread, show_thread
from freemem.redis import AsyncRedisArchive, RedisArchive, RedisSaver
from freemem_bench.store import build_graph, tool_turn
from tests.redis.helpers import scripted_transcript
from tests.support.redis_servers import RedisServerProcess


def _clean_twice(archive: Any, thread: str) -> tuple[list[Any], list[Any], list[str]]:
    """Two cleaning rounds (two events) on a growing transcript, recorded in the archive."""
    memory = FreeMemory(budget=3000, counter="approx", triggers=Triggers(every_tokens=None, on_loop=False))
    original = scripted_transcript(8)
    first = memory.clean(original)
    assert first.changed
    archive.record(thread, first.event.to_dict(spans=True))
    grown = first.messages + tool_turn(8) + tool_turn(9)
    second = memory.clean(grown)
    assert second.changed
    archive.record(thread, second.event.to_dict(spans=True))
    return original + tool_turn(8) + tool_turn(9), second.messages, [first.event.id, second.event.id]


def test_record_list_get_restore(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        thread = "t-archive"
        original, pruned, ids = _clean_twice(archive, thread)
        assert pruned != original
        events = archive.list_events(thread)
        assert [e["id"] for e in events] == ids
        assert all("rounds" not in e and e["n_spans"] > 0 and e["span_tokens"] > 0 for e in events)
        assert all(e["restored_at"] is None for e in events)
        full = archive.get_event(thread, ids[0])
        spans = [s for r in full["rounds"] for s in r]
        assert spans and all({"message_id", "field", "original", "tokens"} <= set(s) for s in spans)
        # every freed span's original text really came from the original transcript
        texts = "\n".join(m["content"] for m in original)
        assert all(s["original"] in texts for s in spans)
        assert archive.list_events(thread, newest_first=True, limit=1)[0]["id"] == ids[1]

        assert archive.original(thread, pruned) == original  # nothing marked
        assert archive.list_events(thread)[0]["restored_at"] is None
        one = archive.restore(thread, pruned, ids[1])  # undo the newest event only
        assert one.event_ids == [ids[1]] and one.tokens_restored > 0
        assert archive.restore(thread, one.messages).messages == original  # then the rest
        assert all(e["restored_at"] for e in archive.list_events(thread))
        assert archive.restore(thread, original).event_ids == []  # nothing left to undo
        with pytest.raises(KeyError):
            archive.get_event(thread, "nope")
        with pytest.raises(FormatError):
            archive.record(thread, {"id": "x", "payload": object()})
        assert archive.delete_thread(thread) is True
        assert archive.list_events(thread) == []


def test_restoring_an_older_event_under_a_newer_one_is_refused(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        thread = "t-order"
        _, pruned, ids = _clean_twice(archive, thread)
        try:
            archive.restore(thread, pruned, ids[0])
        except ArchiveMismatch as exc:
            assert "newer" in str(exc)
            assert archive.get_event(thread, ids[0])["restored_at"] is None  # failed restores mark nothing
        else:  # the two events touched different text: undoing the older one alone is exact
            assert archive.get_event(thread, ids[0])["restored_at"] is not None


async def test_async_archive_and_freememory_arecord(redis_server: RedisServerProcess, prefix: str) -> None:
    async with AsyncRedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        memory = FreeMemory(budget=3000, counter="approx", archive=archive,
                            triggers=Triggers(every_tokens=None, on_loop=False))
        original = scripted_transcript(8)
        result = await memory.aclean(original)
        await memory.archive.arecord("t", result.event.to_dict(spans=True))
        assert [e["id"] for e in await archive.alist_events("t")] == [result.event.id]
        assert await archive.aoriginal("t", result.messages) == original
        restored = await archive.arestore("t", result.messages)
        assert restored.messages == original
        with pytest.raises(StoreError, match="RedisArchive"):
            archive.record("t", {})


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_thread_cli_list_show_restore(redis_server: RedisServerProcess, prefix: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    thread = "cli-thread"
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        memory = FreeMemory(budget=3000, counter="approx", archive=archive,
                            triggers=Triggers(every_tokens=None, on_loop=False))
        graph = build_graph(saver, memory)
        conf = {"configurable": {"thread_id": thread}}
        for turn in range(10):
            graph.invoke({"turn": turn}, conf)
        pruned = graph.get_state(conf).values["messages"]
        full = scripted_transcript(10)
        view = show_thread(saver, archive, thread)
        assert view.pruned == pruned and view.original == full and len(view.events) >= 2

        common = ("--redis", redis_server.url, "--key-prefix", prefix)
        code, out, _ = _run_cli(capsys, "thread", "list", thread, *common, "--json")
        assert code == 0
        listed = json.loads(out)["events"]
        assert [e["id"] for e in listed] == [e["id"] for e in view.events]
        code, out, _ = _run_cli(capsys, "thread", "list", thread, *common)
        assert code == 0 and listed[0]["id"] in out
        code, out, _ = _run_cli(capsys, "thread", "show", thread, *common, "--json")
        shown = json.loads(out)
        assert code == 0 and shown["pruned"] == pruned and shown["original"] == full
        code, out, _ = _run_cli(capsys, "thread", "show", thread, *common)
        assert code == 0 and "messages pruned" in out
        code, out, _ = _run_cli(capsys, "thread", "show", thread, *common, "--event", listed[0]["id"])
        assert code == 0 and "original text" in out

        code, out, _ = _run_cli(capsys, "thread", "restore", thread, *common, "--dry-run", "--json")
        assert code == 0 and json.loads(out)["dry_run"] and graph.get_state(conf).values["messages"] == pruned
        code, out, _ = _run_cli(capsys, "thread", "restore", thread, *common, "--json")
        report = json.loads(out)
        assert code == 0 and sorted(report["restored_events"]) == sorted(e["id"] for e in listed)
        state = graph.get_state(conf)
        assert state.values["messages"] == full  # the thread continues from the original context
        assert state.metadata["source"] == "update" and state.metadata["freemem_restored"]
        assert restore_thread(saver, archive, thread).event_ids == []  # idempotent: nothing left

        code, _, err = _run_cli(capsys, "thread", "show", "no-such-thread", *common)
        assert code == 1 and "no checkpoints" in err and "Traceback" not in err
        code, _, err = _run_cli(capsys, "thread", "restore", thread, *common, "--event", "nope")
        assert code == 1 and "nope" in err
        code, _, err = _run_cli(capsys, "thread", "list", thread, "--redis", "http://x")
        assert code == 1 and "redis://" in err
