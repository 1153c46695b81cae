"""Suite-wide settings and the one redis-server every suite shares (``redis_server``). Other server fixtures
live next to the tests that need them (tests/*/conftest.py) and in tests/support/."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `tests.support` is imported as a package from the repository root
    sys.path.insert(0, str(_ROOT))

from tests.support.redis_servers import REDIS_SERVER, RedisServerProcess, start_server  # noqa: E402

# CI machines are small and shared: no per-example deadline, a fixed, reproducible profile.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    """A standalone redis-server on a free loopback port for the whole session (no persistence); each test
    keeps to its own key prefix."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt: redis-server)")
    server = start_server(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
