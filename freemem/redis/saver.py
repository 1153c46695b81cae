"""``RedisSaver``: the synchronous LangGraph checkpointer — a thin shell that runs :mod:`~freemem.redis.plans`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import redis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol

from freemem.redis import plans
from freemem.redis._base import RedisSaverBase
from freemem.redis._drivers import SyncDriver
from freemem.redis.connection import describe, describe_url, sync_client

__all__ = ["RedisSaver"]


class RedisSaver(RedisSaverBase):
    """LangGraph checkpointer on core Redis commands (Redis >= 7.0; no modules), standalone or cluster.

    Every key of a thread shares one hash tag, so each write is one atomic Lua script on one slot and the
    same code runs on Redis Cluster. ``get_tuple`` and ``put`` are one round trip each.

    Args:
        client: ``redis.Redis`` or ``redis.RedisCluster`` with ``decode_responses=False``.
        key_prefix, ttl, refresh_on_read, keep_last, serde, owns_client: see
            :class:`~freemem.redis._base.RedisSaverBase`.

    Example::

        with RedisSaver.from_url("redis://localhost:6379/0", ttl=7 * 86400, keep_last=20) as saver:
            graph = builder.compile(checkpointer=saver)

    The ``a*`` methods run the sync ones in a worker thread; prefer :class:`AsyncRedisSaver` in async code.
    """

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        *,
        key_prefix: str = "freemem",
        ttl: float | None = None,
        refresh_on_read: bool = False,
        keep_last: int | None = None,
        serde: SerializerProtocol | None = None,
        owns_client: bool = False,
    ) -> None:
        super().__init__(
            client,
            key_prefix=key_prefix,
            ttl=ttl,
            refresh_on_read=refresh_on_read,
            keep_last=keep_last,
            serde=serde,
            owns_client=owns_client,
        )
        self._driver = SyncDriver(client, describe(client))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "freemem",
        ttl: float | None = None,
        refresh_on_read: bool = False,
        keep_last: int | None = None,
        serde: SerializerProtocol | None = None,
        cluster: bool = False,
        **client_kwargs: Any,
    ) -> RedisSaver:
        """A saver that owns a new client for ``url`` (``redis://``, ``rediss://``; user/password in the URL).

        ``cluster=True`` builds a ``RedisCluster`` from any node's URL; ``client_kwargs`` go to redis-py
        (``ssl_ca_certs=...``, ``socket_timeout=...``, ``retry=...``).
        """
        saver = cls(
            sync_client(url, cluster=cluster, **client_kwargs),
            key_prefix=key_prefix,
            ttl=ttl,
            refresh_on_read=refresh_on_read,
            keep_last=keep_last,
            serde=serde,
            owns_client=True,
        )
        saver._driver.where = describe_url(url)
        return saver

    @classmethod
    @contextmanager
    def from_conn_string(cls, url: str, **kwargs: Any) -> Iterator[RedisSaver]:
        """Context-manager twin of :meth:`from_url` (the name LangGraph's own savers use)."""
        saver = cls.from_url(url, **kwargs)
        try:
            yield saver
        finally:
            saver.close()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Nothing to create: keys appear on first write. Kept for parity with other savers."""

    def close(self) -> None:
        """Close the client if this saver created it."""
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> RedisSaver:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- BaseCheckpointSaver ---------------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._driver.run(plans.get_tuple(self.context, self.serde, config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        yield from self._driver.iterate(
            plans.list_checkpoints(self.context, self.serde, config, filter=filter, before=before, limit=limit)
        )

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._driver.run(plans.put(self.context, self.serde, config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._driver.run(plans.put_writes(self.context, self.serde, config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._driver.run(plans.delete_thread(self.context, thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._driver.run(plans.delete_for_runs(self.context, run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._driver.run(plans.copy_thread(self.context, source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._driver.run(plans.prune(self.context, thread_ids, strategy))

    # -- freemem extras --------------------------------------------------------------------------------------
    def touch(self, thread_id: str) -> bool:
        """Re-arm a thread's TTL without writing; ``False`` if the thread has no checkpoints."""
        return self._driver.run(plans.touch(self.context, thread_id))

    def thread_keys(self, thread_id: str) -> list[str]:
        """Every Redis key holding the thread's checkpoints."""
        return self._driver.run(plans.thread_keys(self.context, thread_id))

    def memory_usage(self, thread_id: str) -> int:
        """Bytes Redis uses for the thread's checkpoints (``MEMORY USAGE`` summed over its keys)."""
        return self._driver.run(plans.memory_usage(self.context, thread_id))

    # -- async twins (worker thread) -------------------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(lambda: [*self.list(config, filter=filter, before=before, limit=limit)])
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(self.prune, thread_ids, strategy=strategy)
