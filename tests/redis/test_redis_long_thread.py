"""The README's persisted session at length (``create_agent`` + ``FreeMemoryMiddleware(recall=True)`` +
``RedisSaver`` + ``RedisArchive``, defaults, one thread, ~10 KB tool outputs, budget 16k, every checkpoint
kept): what the thread costs per tool call stays about what is new, and its history and forks read exactly.
``freemem bench store --thread-calls 1000`` runs the long version and times it."""

from __future__ import annotations

import redis

from freemem.redis import AsyncRedisArchive, AsyncRedisSaver, RedisArchive, RedisSaver
from freemem_bench.long_thread import arun_session, build_session_agent, output_text, run_session
from tests.redis.helpers import assert_counts_exact, new_thread
from tests.support.redis_servers import RedisServerProcess

CALLS = 1_000
"""Tool calls in the sync session: the issue's acceptance session (``freemem bench store --thread-only --thread-calls 3000`` runs 3,000)."""
BOUND = 30_000
"""Bytes of Redis per tool call, the whole thread: checkpoints, archived events and the archive's search index
(issue 24's bound; the same session stored ~240 KB a call before)."""


def _thread_bytes(raw: redis.Redis, prefix: str, thread: str, *, search_index: bool | None = None) -> int:
    """``MEMORY USAGE`` over the thread's keys: all of them; with ``search_index`` only the archive's search
    index (``a:x:*``, recall search), or (``False``) all but it."""
    keys = [k for k in raw.scan_iter(match=f"{prefix}:{{{thread}}}:*", count=1000)
            if search_index is None or (b":a:x:" in k) == search_index]
    return sum(int(raw.memory_usage(k, samples=0) or 0) for k in keys)


def test_long_session_costs_what_is_new(redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    thread = new_thread()
    used_before = int(raw.info("memory")["used_memory"])
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        session = build_session_agent(saver, archive)
        result = run_session(session, thread, CALLS, get_state_samples=3)
        index = _thread_bytes(raw, prefix, thread, search_index=True)
        used = int(raw.info("memory")["used_memory"]) - used_before
        stored = _thread_bytes(raw, prefix, thread)
        assert result.tool_calls == CALLS and result.checkpoints > 2 * CALLS  # every checkpoint kept
        assert result.history_exact and result.fork_exact, result.notes
        assert stored / CALLS <= BOUND, (stored / CALLS, used / CALLS, index / CALLS)
        assert used / CALLS <= BOUND, (stored / CALLS, used / CALLS, index / CALLS)
        assert (stored - index) / CALLS >= 3_000  # the outputs really are stored (compressed), once
        # the index is there and finds a tool output by its words
        assert index > 0 and archive.search(thread, " ".join(output_text(7).split()[1:5]), k=3)
        assert_counts_exact(raw, saver.context.layout, thread)
        # each message once: the element records are a few per tool call, not the context per checkpoint
        assert raw.hlen(saver.context.layout.elements(thread, "")) < 8 * CALLS
        # a cold reader (another process) reads the same history
        with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as cold:
            cfg = {"configurable": {"thread_id": thread}}
            warm_list = list(saver.list(cfg, limit=40))
            cold_list = list(cold.list(cfg, limit=40))
            assert [t.checkpoint["channel_values"] for t in cold_list] == [t.checkpoint["channel_values"] for t in warm_list]
        saver.delete_thread(thread)
        archive.delete_thread(thread)
    assert raw.keys(f"{prefix}:*") == []


async def test_long_session_async(redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    """The same session through ``AsyncRedisSaver`` (the same plans): history and fork exact, counts exact."""
    thread = new_thread()
    async with AsyncRedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver:
        archive = AsyncRedisArchive.from_url(redis_server.url, key_prefix=prefix)
        try:
            session = build_session_agent(saver, archive)
            result = await arun_session(session, thread, 60, get_state_samples=3)
        finally:
            await archive.aclose()
        assert result.tool_calls == 60 and result.history_exact and result.fork_exact, result.notes
        assert_counts_exact(raw, saver.context.layout, thread)
        assert _thread_bytes(raw, prefix, thread) / 60 <= BOUND
