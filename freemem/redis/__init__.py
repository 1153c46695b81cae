"""Redis persistence for freemem: a LangGraph checkpointer and the archive of freed spans.

Core Redis commands only (Redis >= 7.0, no JSON/Search modules), standalone or Redis Cluster: all keys of a
thread share one hash tag, so every multi-key write is a single atomic script on one slot. ``redis://`` and
``rediss://`` URLs with credentials, a key prefix per tenant, TTL and retention to bound storage per thread.

Modules: :mod:`~freemem.redis.keys` (key layout), :mod:`~freemem.redis.codec` (serialization),
:mod:`~freemem.redis.scripts` (Lua), :mod:`~freemem.redis.plans` (command plans, shared by sync and async),
:mod:`~freemem.redis.saver` / :mod:`~freemem.redis.aio` (thin shells), :mod:`~freemem.redis.archive` (an
:class:`~freemem.archives.Archive`; a thread's pruned vs original context over any saver and archive is
:mod:`freemem.langgraph.threads`).
An opt-in per-thread writer lease (``RedisSaver(lease=True)``) keeps two processes on one thread from losing
each other's turns; its design is in :mod:`freemem.redis._base`.
"""

from freemem.optional import require_extra

require_extra("redis", "redis", "langgraph", "langchain_core", what="freemem.redis")

from freemem.redis.aio import AsyncRedisSaver
from freemem.redis.archive import AsyncRedisArchive, RedisArchive
from freemem.redis.keys import KeyLayout
from freemem.redis.plans import LeasePolicy, StoragePolicy
from freemem.redis.protocol import LeaseError
from freemem.redis.saver import RedisSaver

__all__ = [
    "AsyncRedisArchive",
    "AsyncRedisSaver",
    "KeyLayout",
    "LeaseError",
    "LeasePolicy",
    "RedisArchive",
    "RedisSaver",
    "StoragePolicy",
]
