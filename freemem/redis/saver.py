"""``RedisSaver``: the synchronous LangGraph checkpointer — a thin shell that runs :mod:`~freemem.redis.plans`.

The opt-in writer lease (``lease=True``; design in :mod:`freemem.redis._base`) is driven from here: reads and
writes take it, ``leased()`` holds it for a block with a heartbeat, ``release()`` and ``close()`` give it back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import redis
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol

from freemem.core.errors import StoreError
from freemem.redis import plans
from freemem.redis._base import RedisSaverBase
from freemem.redis._drivers import SyncDriver
from freemem.redis.connection import describe, describe_url, sync_client
from freemem.redis.protocol import LeaseError

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

    Two processes on one thread (``lease=True``, see :mod:`freemem.redis._base`)::

        saver = RedisSaver.from_url(url, lease=True, lease_ttl=30, lease_wait=60)
        with saver.leased("thread-1"):          # waits for another writer's turn, up to lease_wait
            graph.invoke(inputs, {"configurable": {"thread_id": "thread-1"}})

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
        lease: bool = False,
        lease_ttl: float = 30.0,
        lease_wait: float = 60.0,
    ) -> None:
        super().__init__(
            client,
            key_prefix=key_prefix,
            ttl=ttl,
            refresh_on_read=refresh_on_read,
            keep_last=keep_last,
            serde=serde,
            owns_client=owns_client,
            lease=lease,
            lease_ttl=lease_ttl,
            lease_wait=lease_wait,
        )
        self._driver = SyncDriver(client, describe(client))
        self._local_locks: dict[str, threading.Lock] = {}

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
        lease: bool = False,
        lease_ttl: float = 30.0,
        lease_wait: float = 60.0,
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
            lease=lease,
            lease_ttl=lease_ttl,
            lease_wait=lease_wait,
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
        """Release the writer leases this saver holds; close the client if this saver created it."""
        try:
            for thread_id in self._held_threads():
                try:
                    self.release(thread_id)
                except StoreError:
                    pass  # Redis is gone: the lease expires by itself
        finally:
            if self.owns_client:
                self.client.close()

    def __enter__(self) -> RedisSaver:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- BaseCheckpointSaver ---------------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        if self.lease_policy is not None:  # a run starts here: take the lease before seeing the state
            self.acquire(plans.thread_id_of(config))
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
        fence = self._fence_for(config)
        try:
            return self._driver.run(
                plans.put(self.context, self.serde, config, checkpoint, metadata, new_versions, fence))
        except LeaseError:
            self._mark_held(plans.thread_id_of(config), False)
            raise

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        fence = self._fence_for(config)
        try:
            self._driver.run(plans.put_writes(self.context, self.serde, config, writes, task_id, task_path, fence))
        except LeaseError:
            self._mark_held(plans.thread_id_of(config), False)
            raise

    def delete_thread(self, thread_id: str) -> None:
        self._driver.run(plans.delete_thread(self.context, thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._driver.run(plans.delete_for_runs(self.context, run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._driver.run(plans.copy_thread(self.context, source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._driver.run(plans.prune(self.context, thread_ids, strategy))

    # -- writer lease ----------------------------------------------------------------------------------------
    def _fence_for(self, config: RunnableConfig) -> plans.Fence | None:
        if self.lease_policy is None:
            return None
        thread_id = plans.thread_id_of(config)
        if not self._holds(thread_id):  # a write without a read first (update_state...): take it now
            self.acquire(thread_id)
        return self._fence()

    def acquire(self, thread_id: str, *, wait: float | None = None) -> None:
        """Take (or renew) the thread's writer lease, waiting up to ``wait`` s (default ``lease_wait``) while
        another writer holds it; :class:`StoreError` naming the thread and the holder when it does not come."""
        lease = self._lease()
        thread_id = str(thread_id)
        self._driver.run(plans.acquire_lease(self.context, thread_id, self.owner, lease, wait=wait))
        self._mark_held(thread_id, True)

    def release(self, thread_id: str) -> bool:
        """Give the thread's writer lease back (a waiting writer wakes at once); ``False`` if not held."""
        lease = self._lease()
        thread_id = str(thread_id)
        self._mark_held(thread_id, False)
        return self._driver.run(plans.release_lease(self.context, thread_id, self.owner, lease))

    def lease_holder(self, thread_id: str) -> tuple[str | None, float]:
        """Who holds the thread's writer lease and for how many seconds more (``(None, 0.0)``: free)."""
        return self._driver.run(plans.lease_holder(self.context, str(thread_id)))

    @contextmanager
    def leased(self, thread_id: str, *, wait: float | None = None) -> Iterator[None]:
        """Hold the thread's writer lease for the block: acquired on entry (waiting up to ``wait`` s, default
        ``lease_wait``; other threads of this process using this saver wait too), kept alive by a heartbeat
        every third of ``lease_ttl`` however long a step takes, released on exit (waking a waiting writer)."""
        lease = self._lease()
        thread_id = str(thread_id)
        budget = lease.wait if wait is None else wait
        started = time.monotonic()
        with self._held_lock:
            local = self._local_locks.setdefault(thread_id, threading.Lock())
        if not local.acquire(timeout=budget):
            raise StoreError(f"thread {thread_id!r} is leased by another thread of this process; waited "
                             f"{budget:g} s (lease_wait) and gives up")
        try:
            self.acquire(thread_id, wait=max(0.0, budget - (time.monotonic() - started)))
            stop = threading.Event()

            def heartbeat() -> None:
                while not stop.wait(lease.ttl / 3):
                    try:
                        if self._driver.run(plans.renew_lease(self.context, thread_id, self.owner, lease)):
                            return  # taken by another: this block's next write is refused (LeaseError)
                    except StoreError:
                        continue  # Redis unreachable for a moment: try again at the next beat

            beat = threading.Thread(target=heartbeat, name=f"freemem-lease-{thread_id}", daemon=True)
            beat.start()
            try:
                yield
            finally:
                stop.set()
                beat.join()
                try:
                    self.release(thread_id)
                except StoreError:
                    pass  # unreachable: the lease expires by itself
        finally:
            local.release()

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
