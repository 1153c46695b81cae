"""Folds persisted in Redis: the folded messages archived whole in a real redis-server, shown and undone by
``freemem thread show|restore`` exactly (messages back in order, same ids, equal values)."""

from __future__ import annotations

import json

import pytest

from freemem import FreeMemory
from freemem.cli.main import main
from freemem.core.folding import FOLD_ID_PREFIX
from freemem.core.pairing import pairing_violations
from freemem.langgraph import show_thread
from freemem.redis import RedisArchive, RedisSaver
from freemem_bench.store import build_graph
from tests.redis.helpers import scripted_transcript
from tests.support.redis_servers import RedisServerProcess


def test_fold_restored_through_the_thread_cli(redis_server: RedisServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    thread, prefix = "fold-thread", "fm-fold"
    turns = 60
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        memory = FreeMemory(budget=3000, counter="approx", archive=archive)
        graph = build_graph(saver, memory)
        conf = {"configurable": {"thread_id": thread}}
        for turn in range(turns):
            graph.invoke({"turn": turn}, conf)
        pruned = graph.get_state(conf).values["messages"]
        full = scripted_transcript(turns)
        assert sum(1 for m in pruned if m["id"].startswith(FOLD_ID_PREFIX)) == 1
        assert len(pruned) < len(full) // 2 and pairing_violations(pruned) == []
        events = archive.list_events(thread)
        assert any(e.get("n_folds") for e in events)
        assert all("messages" not in f for e in events for f in e.get("folds") or [])  # summaries stay small
        view = show_thread(saver, archive, thread)
        assert view.original == full

        common = ("--redis", redis_server.url, "--key-prefix", prefix)
        assert main(["thread", "show", thread, *common]) == 0
        out = capsys.readouterr().out
        assert "fold message(s)" in out and "fold" in out
        assert main(["thread", "list", thread, *common]) == 0
        assert "msgs" in capsys.readouterr().out
        assert main(["thread", "restore", thread, *common, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["restored_events"] and report["tokens_restored"] > 0
        restored = graph.get_state(conf).values["messages"]
        assert restored == full
        assert [m["id"] for m in restored] == [m["id"] for m in full]
        # recall's lookup finds the folded messages by the handle the fold message names.
        handle = next(m for m in pruned if m["id"].startswith(FOLD_ID_PREFIX))["metadata"]["freemem_fold"]["handle"]
        (text,) = archive.find(thread, handle)
        assert "[assistant #a" in text and "[tool #call_" in text
        # A fold merges the previous fold message whole: recall pages back through the chain to the start.
        seen, ref = [], handle
        while ref:
            (text,) = archive.find(thread, ref)
            seen.append(text)
            nxt = [line for line in text.split("\n") if line.startswith("[user #freemem-fold-")]
            ref = nxt[0][len("[user #freemem-fold-"):-1] if nxt else None
        assert "[assistant #a0]" in seen[-1]
