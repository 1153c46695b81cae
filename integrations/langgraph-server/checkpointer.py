"""The LangGraph server's checkpointer: freemem's ``AsyncRedisSaver`` (``langgraph.json``'s ``checkpointer``).

The server imports ``redis_checkpointer`` from this file and enters it once per event loop, at startup; it
yields the saver every run, the thread API and the state API read and write, and closes it at shutdown.

``FREEMEM_REDIS_URL`` (``redis://127.0.0.1:6379/0``; ``rediss://user:password@host:port/0`` for TLS and AUTH),
``FREEMEM_KEY_PREFIX`` (``freemem``), ``FREEMEM_TTL`` (seconds a thread lives after its last write; none by
default) and ``FREEMEM_KEEP_LAST`` (checkpoints kept per thread; all by default) configure it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from freemem import ConfigError
from freemem.redis import AsyncRedisSaver

__all__ = ["redis_checkpointer"]


def _number(name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


@asynccontextmanager
async def redis_checkpointer() -> AsyncIterator[AsyncRedisSaver]:
    """An ``AsyncRedisSaver`` on ``FREEMEM_REDIS_URL``, closed when the server stops."""
    url = os.environ.get("FREEMEM_REDIS_URL", "redis://127.0.0.1:6379/0")
    async with AsyncRedisSaver.from_url(
        url,
        key_prefix=os.environ.get("FREEMEM_KEY_PREFIX", "freemem"),
        ttl=_number("FREEMEM_TTL", float),
        keep_last=_number("FREEMEM_KEEP_LAST", int),  # type: ignore[arg-type]
    ) as saver:
        yield saver
