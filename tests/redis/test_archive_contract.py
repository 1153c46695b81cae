"""The Archive contract (freemem.archives), one suite over every implementation, sync and async:
InMemoryArchive, SqliteArchive, RedisArchive (sync; async through worker threads) and AsyncRedisArchive.
Events come from real freemem cleans, so restoring is checked exactly against the original transcript."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from freemem import FreeMemory
from freemem.archives import Archive, AsyncArchive, InMemoryArchive, Restored, SqliteArchive
from freemem.config import Triggers
from freemem.core.errors import FormatError
from freemem.redis import AsyncRedisArchive, RedisArchive
from freemem_bench.store import tool_turn
from tests.redis.helpers import scripted_transcript
from tests.support.redis_servers import RedisServerProcess

CASES = [("memory", "sync"), ("memory", "async"), ("sqlite", "sync"), ("sqlite", "async"),
         ("redis", "sync"), ("redis", "async"), ("aioredis", "async")]


class Calls:
    """One archive seen through one mode: ``await calls.name(...)`` is ``archive.name(...)`` (sync) or
    ``await archive.aname(...)`` (async)."""

    def __init__(self, archive: Any, mode: str) -> None:
        self.archive = archive
        self.mode = mode

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.archive, name if self.mode == "sync" else "a" + name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call


@pytest.fixture(params=CASES, ids=[f"{kind}-{mode}" for kind, mode in CASES])
async def archive(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> AsyncIterator[Calls]:
    kind, mode = request.param
    if kind == "memory":
        yield Calls(InMemoryArchive(), mode)
    elif kind == "sqlite":
        with SqliteArchive(tmp_path / "archive.sqlite") as store:
            yield Calls(store, mode)
    else:
        server: RedisServerProcess = request.getfixturevalue("redis_server")
        if kind == "redis":
            with RedisArchive.from_url(server.url, key_prefix=prefix) as store:
                yield Calls(store, mode)
        else:
            async with AsyncRedisArchive.from_url(server.url, key_prefix=prefix) as store:
                yield Calls(store, mode)


def _two_events() -> tuple[list[Any], list[Any], list[dict[str, Any]]]:
    """Two real cleaning events on a growing transcript: (original, pruned, [event dicts])."""
    memory = FreeMemory(budget=3000, counter="approx", triggers=Triggers(every_tokens=None, on_loop=False))
    first = memory.clean(scripted_transcript(8))
    grown = first.messages + tool_turn(8) + tool_turn(9)
    second = memory.clean(grown)
    assert first.changed and second.changed
    return (scripted_transcript(8) + tool_turn(8) + tool_turn(9), second.messages,
            [first.event.to_dict(spans=True), second.event.to_dict(spans=True)])


def test_every_archive_implements_its_protocols() -> None:
    for cls in (InMemoryArchive, SqliteArchive, RedisArchive):
        for name in [n for n in dir(Archive) if not n.startswith("_")]:
            assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}"
    for cls in (InMemoryArchive, SqliteArchive, RedisArchive, AsyncRedisArchive):
        for name in [n for n in dir(AsyncArchive) if not n.startswith("_")]:
            assert inspect.iscoroutinefunction(getattr(cls, name, None)), f"{cls.__name__}.{name} is not async"
    assert isinstance(InMemoryArchive(), Archive) and isinstance(InMemoryArchive(), AsyncArchive)


async def test_record_list_get(archive: Calls) -> None:
    _, _, (first, second) = _two_events()
    # Recorded newest first, listed oldest first (by created_at).
    assert await archive.record("t", second) == second["id"]
    assert await archive.record("t", first) == first["id"]
    listed = await archive.list_events("t")
    assert [e["id"] for e in listed] == [first["id"], second["id"]]
    assert all("rounds" not in e and e["n_spans"] > 0 and e["span_tokens"] > 0 for e in listed)
    assert all(e["restored_at"] is None for e in listed)
    assert [e["id"] for e in await archive.list_events("t", newest_first=True, limit=1)] == [second["id"]]
    assert await archive.list_events("t", limit=0) == []
    full = await archive.get_event("t", first["id"])
    assert full["rounds"] == first["rounds"] and full["restored_at"] is None
    with pytest.raises(KeyError):
        await archive.get_event("t", "no-such-event")
    assert await archive.list_events("other-thread") == []  # threads are apart
    # An id without one gets a new id; re-recording an id overwrites it.
    new_id = await archive.record("t", {"trigger": "manual", "created_at": second["created_at"] + 1})
    assert new_id and new_id not in (first["id"], second["id"])
    await archive.record("t", {**first, "trigger": "rewritten"})
    assert (await archive.get_event("t", first["id"]))["trigger"] == "rewritten"
    assert len(await archive.list_events("t")) == 3
    with pytest.raises(FormatError):
        await archive.record("t", {"id": "x", "payload": object()})


async def test_restore_original_mark_find_delete(archive: Calls) -> None:
    original, pruned, events = _two_events()
    for event in events:
        await archive.record("t", event)
    first, second = (e["id"] for e in events)
    assert await archive.original("t", pruned) == original  # marks nothing
    assert [e["id"] for e in await archive.events("t")] == [first, second]

    one = await archive.restore("t", pruned, second)  # the newest event only
    assert isinstance(one, Restored) and one.event_ids == [second] and one.tokens_restored > 0
    assert [e["id"] for e in await archive.events("t")] == [first]
    assert len(await archive.events("t", include_restored=True)) == 2
    again = await archive.restore("t", one.messages, second)  # already restored: left alone
    assert again.event_ids == [] and again.messages == one.messages
    rest = await archive.restore("t", one.messages)
    assert rest.messages == original and rest.event_ids == [first]
    assert all(e["restored_at"] for e in await archive.list_events("t"))
    assert (await archive.restore("t", original)).event_ids == []

    dry = await archive.restore("u", pruned, mark=False)
    assert dry.event_ids == []  # thread u has nothing
    span = events[0]["rounds"][0][0]
    marker_ref = span["original"]
    from freemem.core.apply import span_ref

    assert marker_ref in await archive.find("t", span_ref(marker_ref))
    assert await archive.find("t", "deadbeef") == []

    with pytest.raises(KeyError):
        await archive.mark_all_restored("t", [first, "no-such-event"])
    with pytest.raises(KeyError):
        await archive.mark_restored("t", "no-such-event")
    await archive.mark_restored("t", first, restored_at=123.0)
    assert (await archive.get_event("t", first))["restored_at"] == 123.0

    assert await archive.delete_thread("t") is True
    assert await archive.list_events("t") == [] and await archive.delete_thread("t") is False


# -- search ----------------------------------------------------------------------------------------------------


def _lc(kind: str, content: str, mid: str, **extra: Any) -> dict[str, Any]:
    """An archived LangChain message dump (the form folds hold)."""
    return {"format": "langchain", "message": {"type": kind, "content": content, "id": mid, **extra}}


def _chat_event(event_id: str, *, car: str, plate: str, created_at: float = 1000.0) -> dict[str, Any]:
    """An event holding a fold (utterances with a date, a tool call and its result, a digest) and a freed span."""
    long_log = "\n".join(f"line {i}: nothing to see here" for i in range(300)) + "\nFINAL: checksum zebra-42 ok"
    messages = [
        _lc("human", f"My brother Evan drives a {car} with plate {plate}.", f"{event_id}-u1",
            additional_kwargs={"date": "2023-05-14"}),
        _lc("ai", "Noted. Let me look up the parking rules.", f"{event_id}-a1",
            tool_calls=[{"name": "read_file", "args": {"path": "parking.txt"}, "id": f"{event_id}-c1",
                         "type": "tool_call"}]),
        _lc("tool", "Residents park in garage B; visitors pay 3 euros an hour.", f"{event_id}-t1",
            tool_call_id=f"{event_id}-c1", name="read_file"),
        _lc("ai", "", f"{event_id}-a2",
            tool_calls=[{"name": "read_log", "args": {"service": "gate"}, "id": f"{event_id}-c2",
                         "type": "tool_call"}]),
        _lc("tool", long_log, f"{event_id}-t2", tool_call_id=f"{event_id}-c2", name="read_log"),
    ]
    return {"id": event_id, "created_at": created_at,
            "rounds": [[{"original": "The old gym membership lapsed in March.", "tokens": 9, "marker": "[x]",
                         "pruned_start": 0, "field": "content", "message_id": "m9"}]],
            "folds": [{"handle": f"f{event_id[-8:]:0>8}", "index": 1, "message_id": f"freemem-fold-f{event_id[-8:]:0>8}",
                       "messages": messages, "message_ids": [m["message"]["id"] for m in messages],
                       "positions": [1, 2, 3, 4, 5], "tokens": 900,
                       "digest": "[freemem: 5 earlier messages folded]\n- user: asked about weekend hiking trails"}]}


async def test_search_finds_utterances_tool_outputs_digests_and_spans(archive: Calls) -> None:
    from freemem.archives import SearchHit
    from freemem.core.errors import ConfigError

    await archive.record("t", _chat_event("e1", car="red Toyota Prius", plate="KX-4471"))
    await archive.record("u", _chat_event("e2", car="blue Honda Civic", plate="ZZ-9999", created_at=2000.0))

    hits = await archive.search("t", "What car does Evan drive?", k=3)
    assert hits and all(isinstance(h, SearchHit) for h in hits)
    best = hits[0]
    assert (best.ref, best.kind, best.role, best.date) == ("e1-u1", "message", "user", "2023-05-14")
    assert "Prius" in best.text and best.event_id == "e1" and best.score > 0
    assert best.fold == "f000000e1"
    # The id recalls the whole text (the utterance) in the same thread.
    (whole,) = await archive.find("t", best.ref)
    assert "plate KX-4471" in whole
    # A tool output is found with the call that made it.
    (tool_hit, *_) = await archive.search("t", "garage visitors", k=2)
    assert tool_hit.kind == "tool" and tool_hit.ref == "e1-t1"
    assert tool_hit.call is not None and tool_hit.call.startswith("read_file(") and "parking.txt" in tool_hit.call
    (recalled,) = await archive.find("t", tool_hit.ref)
    assert "answering read_file(" in recalled and "garage B" in recalled
    # Searching by the call finds its output too.
    assert (await archive.search("t", "parking.txt", k=1))[0].ref == "e1-t1"
    # A match deep in a long output: one hit for that text, its bounded window holds the match.
    (deep,) = await archive.search("t", "zebra-42 checksum", k=1)
    assert deep.ref == "e1-t2" and "zebra" in deep.text and len(deep.text) <= 700
    assert len({h.ref for h in await archive.search("t", "nothing line", k=5)}) == len(
        await archive.search("t", "nothing line", k=5))
    # A digest, by its fold's handle; a freed span, by its marker's id.
    (digest,) = await archive.search("t", "hiking trails", k=1)
    assert digest.kind == "digest" and digest.ref == "f000000e1"
    (span,) = await archive.search("t", "gym membership", k=1)
    from freemem.core.apply import span_ref

    assert span.kind == "span" and span.ref == span_ref("The old gym membership lapsed in March.")
    assert await archive.find("t", span.ref) == ["The old gym membership lapsed in March."]

    # Never another thread's passages, even for that thread's words.
    for query in ("Honda Civic ZZ-9999", "Evan car plate", "garage"):
        for hit in await archive.search("t", query, k=10):
            assert hit.event_id == "e1" and "ZZ-9999" not in hit.text and "Civic" not in hit.text
    assert (await archive.search("u", "Evan car plate", k=1))[0].ref == "e2-u1"
    assert await archive.search("t", "Civic", k=5) == []
    assert await archive.search("nobody", "Evan", k=5) == []

    # Words that rank nothing, and bad arguments.
    assert await archive.search("t", "the of and", k=5) == []
    assert await archive.search("t", "", k=5) == []
    with pytest.raises(ConfigError):
        await archive.search("t", "Evan", k=0)
    with pytest.raises(FormatError):
        await archive.search("t", None, k=3)

    # Re-recording an event replaces its passages; deleting a thread drops them.
    await archive.record("t", _chat_event("e1", car="green Kia Soul", plate="KX-4471"))
    assert await archive.search("t", "Prius", k=5) == []
    assert "Kia Soul" in (await archive.search("t", "Evan car", k=1))[0].text
    assert await archive.delete_thread("t") is True
    assert await archive.search("t", "Evan", k=5) == []
    assert (await archive.search("u", "Civic", k=1))[0].ref == "e2-u1"


async def test_search_over_real_cleaning_events(archive: Calls) -> None:
    _, _, events = _two_events()
    for event in events:
        await archive.record("t", event)
    span = events[0]["rounds"][0][0]["original"]
    words = " ".join(span.split()[:12])
    hits = await archive.search("t", words, k=5)
    assert hits and all(h.event_id in {e["id"] for e in events} for h in hits)
    texts = [t for h in hits for t in await archive.find("t", h.ref)]
    assert span in texts


def test_stores_written_before_search_are_indexed(tmp_path: Path, redis_server: RedisServerProcess,
                                                  prefix: str) -> None:
    event = _chat_event("e1", car="red Toyota Prius", plate="KX-4471")
    # SQLite: a file without the search tables (as an older freemem wrote it) is indexed when opened.
    path = tmp_path / "old.sqlite"
    with SqliteArchive(path) as store:
        store.record("t", event)
        store._rows("DROP TABLE freemem_passages_fts")
        store._rows("DROP TABLE freemem_passages")
    with SqliteArchive(path) as store:
        assert store.search("t", "Evan Prius", 1)[0].ref == "e1-u1"
    # Redis: a thread archived without its index is indexed on its first search.
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as store:
        store.record("t", event)
        store.client.delete(*store.context.layout.search_keys("t"))
        assert store.search("t", "Evan Prius", 1)[0].ref == "e1-u1"
        assert store.search("t", "Evan Prius", 1)[0].ref == "e1-u1"
        assert store.get_event("t", "e1")["restored_at"] is None
