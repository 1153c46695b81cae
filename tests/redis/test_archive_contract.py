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
