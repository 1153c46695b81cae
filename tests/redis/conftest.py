"""Fixtures: real redis-server processes (session-scoped) and a fresh key prefix per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests.support` is imported as a package from the repository root
    sys.path.insert(0, str(_ROOT))

from freemem.redis import AsyncRedisSaver, RedisSaver  # noqa: E402
from tests.support.redis_servers import (  # noqa: E402
    REDIS_CLI,
    REDIS_SERVER,
    RedisClusterProcess,
    RedisServerProcess,
    start_cluster,
)

requires_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (apt: redis-server)")
requires_cluster = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None, reason="redis-server/redis-cli not installed (apt: redis-server)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(requires_redis)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcess]:
    """A 3-master Redis Cluster on loopback ports for the whole session."""
    if REDIS_CLI is None:
        pytest.skip("redis-cli is not installed")
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses (one tenant per test)."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def raw(redis_server: RedisServerProcess) -> Iterator[redis.Redis]:
    """A plain client for inspecting what the savers wrote."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def saver(redis_server: RedisServerProcess, prefix: str) -> Iterator[RedisSaver]:
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as s:
        yield s


@pytest.fixture
async def async_saver(redis_server: RedisServerProcess, prefix: str) -> AsyncIterator[AsyncRedisSaver]:
    async with AsyncRedisSaver.from_url(redis_server.url, key_prefix=prefix) as s:
        yield s
