"""Bounded storage (TTL refreshed on write and optionally on read, keep_last retention, bytes per thread under
freemem pruning) and connecting (AUTH user/password, TLS with rediss://, errors)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from freemem import FreeMemory, pairing_violations
from freemem.config import Triggers
from freemem.core.errors import ConfigError, StoreConnectionError
from freemem.redis import AsyncRedisSaver, RedisSaver
from freemem_bench.store import build_graph
from tests.redis.helpers import config, new_thread, put_chain
from tests.support.redis_servers import RedisServerProcess, make_tls_files, start_server


def _ttls(raw: redis.Redis, keys: list[str]) -> list[int]:
    return [int(raw.pttl(k)) for k in keys]


def test_ttl_set_on_write_and_refreshed_by_writes(redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, ttl=1.0) as saver:
        thread = new_thread()
        stored = put_chain(saver, thread, 3)
        saver.put_writes(stored[-1], [("v", 1)], task_id="t")
        keys = saver.thread_keys(thread)
        assert len(keys) >= 5
        assert all(0 < t <= 1100 for t in _ttls(raw, keys))  # ttl + 10% slack at most
        for _ in range(4):  # keep writing for 2 s: the thread outlives its ttl
            time.sleep(0.5)
            stored.append(saver.put(stored[-1], *_next(saver, stored[-1])))
        assert saver.get_tuple(config(thread, "", stored[0]["configurable"]["checkpoint_id"])) is not None
        time.sleep(1.3)  # silence: everything expires, nothing is left behind
        assert saver.get_tuple(config(thread)) is None
        assert raw.keys(f"{prefix}:*") == []


def _next(saver: RedisSaver, parent: dict) -> tuple:
    from tests.redis.helpers import checkpoint, metadata

    tup = saver.get_tuple(parent)
    version = tup.checkpoint["channel_versions"]["v"] + 1 if tup else 1
    return checkpoint({"v": version}, {"v": version}), metadata(step=version), {"v": version}


def test_ttl_refresh_on_read_only_when_asked(redis_server: RedisServerProcess, prefix: str) -> None:
    thread_a, thread_b = new_thread(), new_thread()
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, ttl=1.0, refresh_on_read=True) as reader, \
            RedisSaver.from_url(redis_server.url, key_prefix=prefix, ttl=1.0) as plain:
        put_chain(reader, thread_a, 2)
        put_chain(plain, thread_b, 2)
        for _ in range(5):  # read both for 2 s
            time.sleep(0.4)
            reader.get_tuple(config(thread_a))
            plain.get_tuple(config(thread_b))
        assert reader.get_tuple(config(thread_a)) is not None
        assert plain.get_tuple(config(thread_b)) is None
        assert reader.touch(thread_a) is True and reader.touch(thread_b) is False


def test_keep_last_bounds_checkpoints_and_values(redis_server: RedisServerProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix + "k", keep_last=3) as kept:
        thread = new_thread()
        stored = put_chain(kept, thread, 30, channel="v")
        put_chain(kept, thread, 5, channel="x", checkpoint_ns="sub")
        tups = list(kept.list(config(thread, "")))
        assert [t.checkpoint["channel_values"]["v"] for t in tups] == [29, 28, 27]
        assert len(list(kept.list(config(thread, "sub")))) == 3
        assert kept.get_tuple(stored[0]) is None
        # 3 checkpoint hashes per namespace plus index, blobs, namespace set, registry
        assert len(kept.thread_keys(thread)) == 3 + 3 + 2 * 2 + 2
        blob_fields = kept.client.hlen(f"{prefix}k:{{{thread}}}:b:%")
        assert blob_fields == 3  # the values of dropped checkpoints went with them


def _bytes_after(saver: RedisSaver, turns: int) -> int:
    memory = FreeMemory(budget=24_000, counter="approx", triggers=Triggers(every_tokens=None, on_loop=False))
    graph = build_graph(saver, memory)
    thread = new_thread()
    for turn in range(turns):
        graph.invoke({"turn": turn}, {"configurable": {"thread_id": thread}})
    state = graph.get_state({"configurable": {"thread_id": thread}})
    messages = state.values["messages"]
    # pruning edits messages and folds the oldest units into one fold message
    assert sum(1 for m in messages if m["id"].startswith("freemem-fold-")) <= 1
    assert len(messages) <= 2 + 2 * turns and pairing_violations(messages) == []
    return saver.memory_usage(thread)


@pytest.mark.slow
def test_bytes_per_thread_bounded_with_pruning_and_retention(redis_server: RedisServerProcess, prefix: str) -> None:
    """500 turns of ~2 KB with freemem pruning + keep_last stay within 2x of the bytes after 50 turns."""
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, keep_last=2) as saver:
        after_50 = _bytes_after(saver, 50)
        after_500 = _bytes_after(saver, 500)
    assert after_500 < 2 * after_50, (after_50, after_500)
    assert after_500 < 1_000_000


def test_unpruned_bytes_grow_with_what_is_new(redis_server: RedisServerProcess, prefix: str) -> None:
    """Without pruning or retention every checkpoint is kept, yet storage grows linearly: each message is stored
    once, and a checkpoint adds its new messages and a digest per chunk of the list (the whole list was stored
    again at every checkpoint before: 40 turns then cost 30x what 10 did)."""
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver:
        graph = build_graph(saver)
        sizes = []
        thread = new_thread()
        for turn in range(40):
            graph.invoke({"turn": turn}, {"configurable": {"thread_id": thread}})
            if turn + 1 in (10, 40):
                sizes.append(saver.memory_usage(thread))
        state = graph.get_state({"configurable": {"thread_id": thread}})
        assert len(state.values["messages"]) == 2 + 2 * 40
    assert 3 * sizes[0] < sizes[1] < 5 * sizes[0], sizes
    # ~2.2 KB of new messages a turn, ~5 KB for its three checkpoint records (versions, metadata, writes)
    assert (sizes[1] - sizes[0]) / 30 < 12_000, sizes


# -- connecting ------------------------------------------------------------------------------------------------


def test_auth_user_password_url(tmp_path: Path) -> None:
    server = start_server(tmp_path / "auth", username="agent", password="s3cret")
    try:
        with RedisSaver.from_url(server.url) as saver:
            put_chain(saver, "t", 2)
            assert saver.get_tuple(config("t")) is not None
            assert "s3cret" not in repr(saver)
        bad = server.url.replace("s3cret", "wrong")
        with RedisSaver.from_url(bad) as saver, pytest.raises(StoreConnectionError, match="credentials"):
            saver.get_tuple(config("t"))
    finally:
        server.stop()


async def test_tls_rediss_url(tmp_path: Path) -> None:
    try:
        tls = make_tls_files(tmp_path / "tls")
        server = start_server(tmp_path / "tls-server", tls=tls)
    except RuntimeError as exc:  # no openssl, or a redis-server built without TLS
        pytest.skip(f"TLS not available: {exc}")
    try:
        assert server.url.startswith("rediss://")
        async with AsyncRedisSaver.from_url(server.url, ssl_ca_certs=str(tls.ca)) as saver:
            from tests.redis.helpers import checkpoint, metadata

            cp = checkpoint({"v": 1})
            await saver.aput(config("t"), cp, metadata(), {"v": 1})
            tup = await saver.aget_tuple(config("t"))
            assert tup is not None and tup.checkpoint["channel_values"] == {"v": 1}
        with RedisSaver.from_url(server.url, ssl_ca_certs=str(tls.ca)) as sync_saver:
            assert sync_saver.get_tuple(config("t")) is not None
    finally:
        server.stop()


def test_unreachable_server_is_a_store_connection_error() -> None:
    from tests.support.redis_servers import free_port

    with RedisSaver.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2) as saver:
        t0 = time.monotonic()
        with pytest.raises(StoreConnectionError, match="unreachable"):
            saver.get_tuple(config("t"))
        assert time.monotonic() - t0 < 5


def test_decode_responses_refused(redis_server: RedisServerProcess) -> None:
    with pytest.raises(ConfigError, match="decode_responses"):
        RedisSaver(redis.Redis.from_url(redis_server.url, decode_responses=True))
    with pytest.raises(ConfigError):
        RedisSaver.from_url(redis_server.url, ttl=0)
    with pytest.raises(ConfigError):
        RedisSaver.from_url(redis_server.url, keep_last=0)
