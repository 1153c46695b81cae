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


#: Fixtures that start an outside program (redis-server, a llama.cpp server on a model the test writes, chromium,
#: the LangGraph server): a test that uses one, directly or through another fixture, is not in the fast lane.
SERVER_FIXTURES = frozenset({"redis_server", "tiny_model", "llama_server", "start_server", "browser", "ui_server",
                             "served"})
#: Markers of tests that are slow or need a real server or model: not in the fast lane either.
HEAVY_MARKERS = ("slow", "llamacpp", "real_model", "cluster", "redis")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true", default=False,
                     help="the fast lane (scripts/test --fast): unit and property tests only; deselect tests that "
                          "start redis-server, llama.cpp, chromium or the LangGraph server, and slow ones")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--fast"):
        return
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        uses_server = bool(SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        heavy = uses_server or any(item.get_closest_marker(m) is not None for m in HEAVY_MARKERS)
        (dropped if heavy else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


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
