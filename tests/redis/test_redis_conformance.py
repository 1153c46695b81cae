"""The official langgraph-checkpoint-conformance suite against AsyncRedisSaver on a real redis-server and a
real 3-master Redis Cluster. Every base *and* extended capability must be detected and pass."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
import redis.asyncio.cluster
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import CapabilityReport

from freemem.redis import AsyncRedisSaver, RedisSaver
from tests.support.redis_servers import RedisClusterProcess, RedisServerProcess


def _assert_full(report: CapabilityReport, capsys: pytest.CaptureFixture[str]) -> None:
    problems = [
        f"{name}: detected={r.detected} passed={r.passed} failures={r.failures}"
        for name, r in report.results.items()
        if not (r.detected and r.passed is True)
    ]
    missing = {c.value for c in ALL_CAPABILITIES} - set(report.results)
    if problems or missing:
        report.print_report()
        with capsys.disabled():
            report.print_report()
        pytest.fail(f"conformance not FULL ({report.conformance_level()}): {problems} missing={sorted(missing)}")
    assert report.passed_all_base()
    assert report.passed_all()
    assert report.conformance_level() == "FULL"
    assert sum(r.tests_passed for r in report.results.values()) >= 80


async def test_conformance_standalone(redis_server: RedisServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    clients: list[redis.asyncio.Redis] = []

    @checkpointer_test(name="freemem.AsyncRedisSaver")
    async def factory() -> AsyncIterator[AsyncRedisSaver]:
        client = redis.asyncio.Redis.from_url(redis_server.url)
        clients.append(client)
        yield AsyncRedisSaver(client, key_prefix=f"conf{uuid.uuid4().hex[:8]}")
        await client.aclose()

    report = await validate(factory)
    assert len(clients) == len(ALL_CAPABILITIES)  # a fresh saver per capability
    _assert_full(report, capsys)


async def test_conformance_standalone_with_ttl_and_retention(
    redis_server: RedisServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """TTL and a generous retention change nothing the suite can observe (it keeps at most 4 per thread)."""

    @checkpointer_test(name="freemem.AsyncRedisSaver(ttl, keep_last)")
    async def factory() -> AsyncIterator[AsyncRedisSaver]:
        async with AsyncRedisSaver.from_url(
            redis_server.url, key_prefix=f"conf{uuid.uuid4().hex[:8]}", ttl=600, keep_last=10, refresh_on_read=True
        ) as saver:
            yield saver

    _assert_full(await validate(factory), capsys)


async def test_conformance_sync_saver_async_twins(
    redis_server: RedisServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """RedisSaver's a* methods (worker threads) satisfy the suite too."""

    @checkpointer_test(name="freemem.RedisSaver")
    async def factory() -> AsyncIterator[RedisSaver]:
        with RedisSaver.from_url(redis_server.url, key_prefix=f"conf{uuid.uuid4().hex[:8]}") as saver:
            yield saver

    _assert_full(await validate(factory), capsys)


@pytest.mark.cluster
async def test_conformance_cluster(redis_cluster: RedisClusterProcess, capsys: pytest.CaptureFixture[str]) -> None:
    @checkpointer_test(name="freemem.AsyncRedisSaver(cluster)")
    async def factory() -> AsyncIterator[AsyncRedisSaver]:
        client = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url)
        yield AsyncRedisSaver(client, key_prefix=f"conf{uuid.uuid4().hex[:8]}")
        await client.aclose()

    _assert_full(await validate(factory), capsys)
