"""The opt-in writer lease of RedisSaver / AsyncRedisSaver (issue 12, item 14), against real redis-servers.

Two writers of one thread lose each other's turns without it (``freemem bench race`` measures that); with it a
second writer waits, then fails with a StoreError naming the thread, and a writer whose lease expired while
another wrote is refused instead of forking the thread. Nothing here waits for a clock: holders keep their lease
(TTL 60 s) until the test releases it, expiry is simulated by deleting the lease key (what expiry does), and
every wait has a generous bound.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import empty_checkpoint

from freemem.core.errors import ConfigError, StoreError
from freemem.redis import AsyncRedisSaver, KeyLayout, LeaseError, RedisSaver
from freemem_bench.race import build_graph, check_head, spawn_writers
from tests.support.redis_servers import RedisClusterProcess, RedisServerProcess


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def _turn(graph: Any, thread: str, turn: str) -> None:
    graph.invoke({"messages": [HumanMessage(f"turn {turn}", id=turn)]}, _config(thread))


def _expire(redis_server: RedisServerProcess, prefix: str, thread: str) -> None:
    """What a lease's expiry does, without waiting for it."""
    client = redis_server.client()
    try:
        assert client.delete(KeyLayout(prefix).lease(thread)) == 1
    finally:
        client.close()


def test_second_writer_waits_then_fails_naming_the_thread(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as a, \
            RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_wait=0.3) as b:
        _turn(build_graph(a), "t1", "A-0")  # A's run takes the lease and keeps it (TTL 60 s)
        assert a.lease_holder("t1")[0] == a.owner
        with pytest.raises(StoreError, match=r"thread 't1' is leased by another writer") as info:
            _turn(build_graph(b), "t1", "B-0")
        assert a.owner in str(info.value) and "lease_wait" in str(info.value)
        with pytest.raises(StoreError, match="'t1'"):
            b.acquire("t1")
        b.acquire("t2")  # other threads are not affected
        assert a.release("t1") and a.lease_holder("t1") == (None, 0.0)
        _turn(build_graph(b), "t1", "B-0")
        head = check_head(b, "t1", ["A-0", "B-0"])
        assert head["kept"] == 2 and head["forks"] == 0


def test_release_wakes_a_waiting_writer(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as a, \
            RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as b:
        a.acquire("t")
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(b.acquire("t", wait=120) or b.lease_holder("t")[0]))
        waiter.start()
        a.release("t")  # before or after the waiter blocks: either way it gets the lease, long before 60 s
        waiter.join(120)
        assert got == [b.owner]


def test_stale_writer_is_refused_not_forked(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as a, \
            RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as b:
        _turn(build_graph(a), "t", "A-0")
        head = a.get_tuple(_config("t"))  # A's next run read the thread ...
        assert head is not None
        _expire(redis_server, prefix, "t")  # ... and its lease expired during a long step
        _turn(build_graph(b), "t", "B-0")  # B took the thread and wrote it
        b.release("t")
        with pytest.raises(LeaseError, match=r"'t' was written by another writer .* run the turn again"):
            a.put(head.config, empty_checkpoint(), {"source": "loop", "step": 9}, {})
        with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as reader:  # reads without the lease
            head_now = check_head(reader, "t", ["A-0", "B-0"])
            assert head_now["kept"] == 2 and head_now["forks"] == 0

        # Held by another writer: refused too.
        head = a.get_tuple(_config("t"))
        _expire(redis_server, prefix, "t")
        b.acquire("t")
        with pytest.raises(LeaseError, match="is leased by another writer"):
            a.put(head.config, empty_checkpoint(), {"source": "loop", "step": 9}, {})
        b.release("t")


def test_expired_lease_nobody_wrote_the_writer_goes_on(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as a:
        _turn(build_graph(a), "t", "A-0")
        head = a.get_tuple(_config("t"))
        assert head is not None
        _expire(redis_server, prefix, "t")
        a.put(head.config, empty_checkpoint(), {"source": "loop", "step": 9}, {})  # its parent is still newest
        assert a.lease_holder("t")[0] == a.owner


def test_refused_pending_writes_store_nothing(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as a, \
            RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as b:
        _turn(build_graph(a), "t", "A-0")
        head = a.get_tuple(_config("t"))
        assert head is not None
        _expire(redis_server, prefix, "t")
        b.acquire("t")
        with pytest.raises(LeaseError):
            a.put_writes(head.config, [("messages", ["late"])], "task-late")
        with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as reader:  # reads without the lease
            assert not [w for w in reader.get_tuple(head.config).pending_writes if w[0] == "task-late"]
            b.release("t")
            a.put_writes(head.config, [("messages", ["on time"])], "task-ok")  # free again: A takes it, writes
            assert [w[2] for w in reader.get_tuple(head.config).pending_writes if w[0] == "task-ok"] == [["on time"]]


def test_two_processes_fifteen_turns_each_keep_every_turn(redis_server: RedisServerProcess, prefix: str) -> None:
    thread = f"{prefix}-race"
    results = spawn_writers("redis-lease", redis_server.url, thread, 15, step_ms=5, lease_wait=300, timeout=600)
    acked = [t for r in results for t in r["acked"]]
    assert not [e for r in results for e in r["errors"]] and len(acked) == 30
    with RedisSaver.from_url(redis_server.url) as saver:
        head = check_head(saver, thread, acked)
    assert head["kept"] == 30 and head["lost"] == [] and head["pairing_violations"] == 0 and head["forks"] == 0


def test_two_processes_plain_invoke_hand_over_when_the_holder_closes(redis_server: RedisServerProcess,
                                                                     prefix: str) -> None:
    thread = f"{prefix}-plain"
    results = spawn_writers("redis-lease-plain", redis_server.url, thread, 5, step_ms=5, lease_ttl=60,
                            lease_wait=300, timeout=600)
    acked = [t for r in results for t in r["acked"]]
    assert len(acked) == 10
    with RedisSaver.from_url(redis_server.url) as saver:
        head = check_head(saver, thread, acked)
    assert head["kept"] == 10 and head["forks"] == 0


def test_leased_block_excludes_threads_of_one_process(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as saver:
        graph = build_graph(saver)
        inside = threading.Event()
        leave = threading.Event()

        def first() -> None:
            with saver.leased("t"):
                _turn(graph, "t", "A-0")
                inside.set()
                leave.wait(120)

        holder = threading.Thread(target=first)
        holder.start()
        assert inside.wait(120)
        with pytest.raises(StoreError, match="another thread of this process"):
            with saver.leased("t", wait=0.2):
                pass
        leave.set()
        holder.join(120)
        with saver.leased("t", wait=120):
            _turn(graph, "t", "B-0")
        assert saver.lease_holder("t") == (None, 0.0)  # released at the end of the block
        assert check_head(saver, "t", ["A-0", "B-0"])["kept"] == 2


def test_lease_api_needs_lease_true(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver:
        with pytest.raises(ConfigError, match="lease=True"):
            saver.acquire("t")
    with pytest.raises(ConfigError):
        RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=0)


async def test_async_saver_lease(redis_server: RedisServerProcess, prefix: str) -> None:
    async with AsyncRedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60) as a, \
            AsyncRedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_wait=0.3) as b:
        graph_a, graph_b = build_graph(a), build_graph(b)
        async with a.aleased("t"):
            await graph_a.ainvoke({"messages": [HumanMessage("turn A-0", id="A-0")]}, _config("t"))
            with pytest.raises(StoreError, match="'t' is leased by another writer"):
                await graph_b.ainvoke({"messages": [HumanMessage("turn B-0", id="B-0")]}, _config("t"))
        assert await a.alease_holder("t") == (None, 0.0)
        waiter = asyncio.create_task(b.aacquire("t", wait=120))
        await waiter
        await graph_b.ainvoke({"messages": [HumanMessage("turn B-0", id="B-0")]}, _config("t"))
        tup = await b.aget_tuple(_config("t"))
        assert [m.id for m in tup.checkpoint["channel_values"]["messages"] if isinstance(m, HumanMessage)] == \
            ["A-0", "B-0"]


def test_lease_on_a_cluster(redis_cluster: RedisClusterProcess, prefix: str) -> None:
    url = redis_cluster.url
    with RedisSaver.from_url(url, key_prefix=prefix, cluster=True, lease=True, lease_ttl=60) as a, \
            RedisSaver.from_url(url, key_prefix=prefix, cluster=True, lease=True, lease_wait=0.3) as b:
        _turn(build_graph(a), "t", "A-0")
        with pytest.raises(StoreError, match="'t' is leased"):
            _turn(build_graph(b), "t", "B-0")
        a.release("t")
        _turn(build_graph(b), "t", "B-0")
        assert check_head(b, "t", ["A-0", "B-0"])["kept"] == 2


async def test_conformance_with_the_lease(redis_server: RedisServerProcess) -> None:
    """A lease saver is still a full LangGraph checkpointer (one writer holds its threads' leases)."""
    import uuid

    from langgraph.checkpoint.conformance import checkpointer_test, validate

    @checkpointer_test(name="freemem.AsyncRedisSaver(lease=True)")
    async def factory() -> Any:
        async with AsyncRedisSaver.from_url(redis_server.url, key_prefix=f"lease{uuid.uuid4().hex[:8]}",
                                            lease=True, lease_ttl=60) as saver:
            yield saver

    report = await validate(factory)
    failed = {n: r.failures for n, r in report.results.items() if not (r.detected and r.passed is True)}
    assert not failed and report.conformance_level() == "FULL"
