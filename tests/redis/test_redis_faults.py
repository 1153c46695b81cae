"""Faults on a real redis-server: SIGKILL mid-session and restart with AOF (appendfsync always), connections
killed with CLIENT KILL, two workers writing the same thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from freemem.core.errors import FreememError, StoreConnectionError
from freemem.redis import AsyncRedisSaver, RedisSaver
from tests.redis.helpers import checkpoint, config, metadata, new_thread, put_chain
from tests.support.redis_servers import RedisServerProcess, start_server


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[RedisServerProcess]:
    server = start_server(tmp_path / "aof", aof=True)
    try:
        yield server
    finally:
        server.stop()


def test_sigkill_restart_loses_nothing_acknowledged(aof_server: RedisServerProcess) -> None:
    with RedisSaver.from_url(aof_server.url, socket_connect_timeout=0.3, socket_timeout=1) as saver:
        thread = new_thread()
        acked = put_chain(saver, thread, 20)
        saver.put_writes(acked[-1], [("v", "pending")], task_id="t1")
        aof_server.kill()  # SIGKILL: no shutdown save, only fsynced AOF survives
        with pytest.raises(StoreConnectionError) as info:
            saver.put(acked[-1], checkpoint({"v": 99}, {"v": 99}), metadata(step=99), {"v": 99})
        assert isinstance(info.value, FreememError)
        assert "unreachable" in str(info.value)
        with pytest.raises(StoreConnectionError):
            saver.get_tuple(config(thread))
        aof_server.start()
        # Everything acknowledged came back, in order, with its pending writes.
        got = [t.checkpoint["channel_values"]["v"] for t in saver.list(config(thread, ""))]
        assert got == list(range(19, -1, -1))
        head = saver.get_tuple(config(thread))
        assert head is not None and head.pending_writes == [("t1", "v", "pending")]
        # The failed put may or may not have reached the server; retrying it is safe (idempotent).
        cp = checkpoint({"v": 99}, {"v": 99})
        for _ in range(2):
            saver.put(acked[-1], cp, metadata(step=99), {"v": 99})
            saver.put_writes(config(thread, "", cp["id"]), [("v", "w")], task_id="t2")
        head = saver.get_tuple(config(thread))
        assert head is not None and head.checkpoint["id"] == cp["id"]
        assert head.pending_writes == [("t2", "v", "w")]
        assert len(list(saver.list(config(thread, "")))) == 21


async def test_async_saver_survives_restart(aof_server: RedisServerProcess) -> None:
    async with AsyncRedisSaver.from_url(aof_server.url, socket_connect_timeout=0.3, socket_timeout=1) as saver:
        thread = new_thread()
        cp = checkpoint({"v": 1})
        stored = await saver.aput(config(thread), cp, metadata(), {"v": 1})
        aof_server.kill()
        with pytest.raises(StoreConnectionError):
            await saver.aget_tuple(stored)
        await asyncio.to_thread(aof_server.start)
        tup = await saver.aget_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"] == {"v": 1}


def test_client_kill_is_handled(redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    """A dropped connection is retried transparently (writes are idempotent, so a replay is safe)."""
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver:
        thread = new_thread()
        stored = put_chain(saver, thread, 3)
        for _ in range(3):
            raw.client_kill_filter(_type="normal", skipme=True)
            stored += put_chain(saver, thread, 1)[-1:]
            assert saver.get_tuple(config(thread)) is not None
        assert len(list(saver.list(config(thread, "")))) == 6


async def test_client_kill_async(redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    async with AsyncRedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver:
        thread = new_thread()
        cp = checkpoint({"v": 1})
        stored = await saver.aput(config(thread), cp, metadata(), {"v": 1})
        raw.client_kill_filter(_type="normal", skipme=True)
        assert await saver.aget_tuple(stored) is not None


def test_two_workers_same_thread_never_corrupt(redis_server: RedisServerProcess, prefix: str) -> None:
    """Two savers (two connection pools) race on one thread with retention on: every read stays whole."""
    thread = new_thread()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            with RedisSaver.from_url(redis_server.url, key_prefix=prefix, keep_last=5) as saver:
                parent = config(thread)
                version = None
                for i in range(150):
                    # Versions as LangGraph makes them (get_next_version): the random suffix keeps two
                    # writers from ever sharing a (channel, version).
                    version = saver.get_next_version(version, None)
                    versions = {"who": version, "i": version, "blob": version}
                    cp = checkpoint({"who": name, "i": i, "blob": [name] * 50}, versions)
                    parent = saver.put(parent, cp, metadata(step=i, worker=name), versions)
                    saver.put_writes(parent, [("i", i)], task_id=name)
                    head = saver.get_tuple(config(thread))
                    assert head is not None
                    values = head.checkpoint["channel_values"]
                    assert values["blob"] == [values["who"]] * 50  # never a mix of two workers' values
                    assert head.metadata["worker"] == values["who"]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, keep_last=5) as saver:
        tups = list(saver.list(config(thread, "")))
        assert len(tups) == 5
        for tup in tups:
            values = tup.checkpoint["channel_values"]
            assert values["blob"] == [values["who"]] * 50
            assert tup.pending_writes and tup.pending_writes[0][0] == values["who"]
