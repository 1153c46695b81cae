"""``freemem thread show|restore`` when the archive lost events the pruned messages still point to (issue 12,
item 10): a warning on stderr naming the lost refs, and ``restore`` with nothing restorable exits 1 -- never
"0 pruned" or "nothing to restore" with exit 0 while markers remain. Against a real redis-server; the archive's
keys are deleted the way expiry deletes them."""

from __future__ import annotations

import json

import pytest

from freemem import FreeMemory
from freemem.cli.main import main
from freemem.config import Triggers
from freemem.langgraph import show_thread
from freemem.langgraph.threads import freemem_refs
from freemem.redis import KeyLayout, RedisArchive, RedisSaver
from freemem_bench.store import build_graph
from tests.support.redis_servers import RedisServerProcess


def _pruned_thread(url: str, prefix: str, thread: str) -> list[str]:
    """Run the scripted agent until freemem pruned the thread twice or more; the archived event ids."""
    with RedisSaver.from_url(url, key_prefix=prefix) as saver, RedisArchive.from_url(url, key_prefix=prefix) as archive:
        # Cost-blind (cache=None): deletion markers of every event stay in the thread; scheduled by cache cost,
        # a deep fold can take the oldest event's markers into its own archived messages.
        memory = FreeMemory(budget=3000, counter="approx", archive=archive, cache=None,
                            triggers=Triggers(every_tokens=None, on_loop=False))
        graph = build_graph(saver, memory)
        for turn in range(10):
            graph.invoke({"turn": turn}, {"configurable": {"thread_id": thread}})
        events = [e["id"] for e in archive.list_events(thread)]
        pruned = graph.get_state({"configurable": {"thread_id": thread}}).values["messages"]
        assert len(events) >= 2 and freemem_refs(pruned)
        return events


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_expired_archive_is_reported_by_show_and_restore(redis_server: RedisServerProcess, prefix: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    thread = "lost-archive"
    _pruned_thread(redis_server.url, prefix, thread)
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        assert archive.delete_thread(thread)  # what an archive TTL shorter than the checkpoints' does
    common = ("--redis", redis_server.url, "--key-prefix", prefix)

    code, out, err = _cli(capsys, "thread", "show", thread, *common)
    assert code == 0 and "warning" in err and "archive no longer holds" in err
    assert "whose text the archive lost" in out
    code, out, err = _cli(capsys, "thread", "show", thread, *common, "--json")
    shown = json.loads(out)
    assert shown["orphaned_refs"] and shown["events"] == [] and "warning" in err

    code, out, err = _cli(capsys, "thread", "restore", thread, *common)
    assert code == 1 and "nothing to restore" in err and "archive holds none" in err and "Traceback" not in err
    code, out, err = _cli(capsys, "thread", "restore", thread, *common, "--json")
    assert code == 1 and json.loads(out)["orphaned_refs"] == shown["orphaned_refs"]


def test_one_lost_event_restores_the_rest_and_names_what_is_gone(redis_server: RedisServerProcess, prefix: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    thread = "half-lost"
    events = _pruned_thread(redis_server.url, prefix, thread)
    client = redis_server.client()
    try:
        by_time, full, summary, marks = KeyLayout(prefix).archive_keys(thread)
        lost = events[0]  # the oldest event went (e.g. a retention cap); the newer ones stay
        client.zrem(by_time, lost)
        client.hdel(full, lost)
        client.hdel(summary, lost)
    finally:
        client.close()
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        view = show_thread(saver, archive, thread)
        assert view.orphans and len(view.events) == len(events) - 1
    common = ("--redis", redis_server.url, "--key-prefix", prefix)
    code, out, err = _cli(capsys, "thread", "restore", thread, *common, "--json")
    report = json.loads(out)
    assert code == 0 and sorted(report["restored_events"]) == sorted(events[1:])
    assert report["orphaned_refs"] and "warning" in err


def test_intact_archive_warns_nothing(redis_server: RedisServerProcess, prefix: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    thread = "intact"
    _pruned_thread(redis_server.url, prefix, thread)
    common = ("--redis", redis_server.url, "--key-prefix", prefix)
    code, out, err = _cli(capsys, "thread", "show", thread, *common, "--json")
    assert code == 0 and json.loads(out)["orphaned_refs"] == [] and err == ""
    code, out, err = _cli(capsys, "thread", "restore", thread, *common)
    assert code == 0 and err == ""
    code, out, err = _cli(capsys, "thread", "restore", thread, *common)
    assert code == 0 and "nothing to restore" in err and "warning" not in err  # restored: no markers left
