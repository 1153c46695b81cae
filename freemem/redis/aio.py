"""``AsyncRedisSaver``: the asyncio LangGraph checkpointer — a thin shell that runs :mod:`~freemem.redis.plans`.

The opt-in writer lease (``lease=True``; design in :mod:`freemem.redis._base`) works as in
:class:`~freemem.redis.RedisSaver`, with ``aleased()``, ``aacquire()`` and ``arelease()``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

import redis.asyncio
import redis.asyncio.cluster
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.checkpoint.serde.base import SerializerProtocol

from freemem.core.errors import StoreError
from freemem.redis import plans
from freemem.redis._base import RedisSaverBase
from freemem.redis._drivers import AsyncDriver
from freemem.redis.connection import async_client, describe, describe_url
from freemem.redis.protocol import LeaseError

__all__ = ["AsyncRedisSaver"]

T = TypeVar("T")


class AsyncRedisSaver(RedisSaverBase):
    """Asyncio LangGraph checkpointer on core Redis commands; same storage as :class:`RedisSaver`.

    Args:
        client: ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` (``decode_responses=False``).
        key_prefix, ttl, refresh_on_read, keep_last, serde, owns_client: see
            :class:`~freemem.redis._base.RedisSaverBase`.

    Example::

        async with AsyncRedisSaver.from_url("rediss://user:pw@redis:6380/0", keep_last=20) as saver:
            graph = builder.compile(checkpointer=saver)
            await graph.ainvoke(inputs, {"configurable": {"thread_id": "t1"}})

    The sync methods work from other threads (they are scheduled on the saver's event loop, as
    ``AsyncSqliteSaver`` does) and raise ``asyncio.InvalidStateError`` if called on that loop's thread.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster,
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
        self._driver = AsyncDriver(client, describe(client))
        self._local_locks: dict[str, asyncio.Lock] = {}
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None

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
    ) -> AsyncRedisSaver:
        """A saver that owns a new asyncio client for ``url`` (connects lazily; see ``RedisSaver.from_url``)."""
        saver = cls(
            async_client(url, cluster=cluster, **client_kwargs),
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
    @asynccontextmanager
    async def from_conn_string(cls, url: str, **kwargs: Any) -> AsyncIterator[AsyncRedisSaver]:
        """Async context-manager twin of :meth:`from_url`."""
        saver = cls.from_url(url, **kwargs)
        try:
            yield saver
        finally:
            await saver.aclose()

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def asetup(self) -> None:
        """Nothing to create: keys appear on first write."""

    def setup(self) -> None:
        """Nothing to create: keys appear on first write."""

    async def aclose(self) -> None:
        """Release the writer leases this saver holds; close the client if this saver created it."""
        try:
            for thread_id in self._held_threads():
                try:
                    await self.arelease(thread_id)
                except StoreError:
                    pass  # Redis is gone: the lease expires by itself
        finally:
            if self.owns_client:
                await self.client.aclose()

    async def __aenter__(self) -> AsyncRedisSaver:
        self.loop = asyncio.get_running_loop()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _bind_loop(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()

    # -- BaseCheckpointSaver (async) -------------------------------------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        self._bind_loop()
        if self.lease_policy is not None:  # a run starts here: take the lease before seeing the state
            await self.aacquire(plans.thread_id_of(config))
        return await self._driver.run(plans.get_tuple(self.context, self.serde, config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        self._bind_loop()
        plan = plans.list_checkpoints(self.context, self.serde, config, filter=filter, before=before, limit=limit)
        async for item in self._driver.iterate(plan):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        self._bind_loop()
        fence = await self._afence_for(config)
        try:
            return await self._driver.run(
                plans.put(self.context, self.serde, config, checkpoint, metadata, new_versions, fence))
        except LeaseError:
            self._mark_held(plans.thread_id_of(config), False)
            raise

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._bind_loop()
        fence = await self._afence_for(config)
        try:
            await self._driver.run(
                plans.put_writes(self.context, self.serde, config, writes, task_id, task_path, fence))
        except LeaseError:
            self._mark_held(plans.thread_id_of(config), False)
            raise

    async def adelete_thread(self, thread_id: str) -> None:
        await self._driver.run(plans.delete_thread(self.context, thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._driver.run(plans.delete_for_runs(self.context, run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._driver.run(plans.copy_thread(self.context, source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._driver.run(plans.prune(self.context, thread_ids, strategy))

    # -- writer lease ----------------------------------------------------------------------------------------
    async def _afence_for(self, config: RunnableConfig) -> plans.Fence | None:
        if self.lease_policy is None:
            return None
        thread_id = plans.thread_id_of(config)
        if not self._holds(thread_id):  # a write without a read first (aupdate_state...): take it now
            await self.aacquire(thread_id)
        return self._fence()

    async def aacquire(self, thread_id: str, *, wait: float | None = None) -> None:
        """Take (or renew) the thread's writer lease, waiting up to ``wait`` s (see ``RedisSaver.acquire``)."""
        lease = self._lease()
        thread_id = str(thread_id)
        await self._driver.run(plans.acquire_lease(self.context, thread_id, self.owner, lease, wait=wait))
        self._mark_held(thread_id, True)

    async def arelease(self, thread_id: str) -> bool:
        """Give the thread's writer lease back (a waiting writer wakes at once); ``False`` if not held."""
        lease = self._lease()
        thread_id = str(thread_id)
        self._mark_held(thread_id, False)
        return await self._driver.run(plans.release_lease(self.context, thread_id, self.owner, lease))

    async def alease_holder(self, thread_id: str) -> tuple[str | None, float]:
        """Who holds the thread's writer lease and for how many seconds more (``(None, 0.0)``: free)."""
        return await self._driver.run(plans.lease_holder(self.context, str(thread_id)))

    @asynccontextmanager
    async def aleased(self, thread_id: str, *, wait: float | None = None) -> AsyncIterator[None]:
        """Hold the thread's writer lease for the block (see ``RedisSaver.leased``): acquired on entry, kept
        alive by a heartbeat task, released on exit; other tasks using this saver wait for it too."""
        lease = self._lease()
        thread_id = str(thread_id)
        budget = lease.wait if wait is None else wait
        started = time.monotonic()
        local = self._local_locks.setdefault(thread_id, asyncio.Lock())
        try:
            await asyncio.wait_for(local.acquire(), budget)
        except asyncio.TimeoutError:
            raise StoreError(f"thread {thread_id!r} is leased by another task using this saver; waited "
                             f"{budget:g} s (lease_wait) and gives up") from None
        try:
            await self.aacquire(thread_id, wait=max(0.0, budget - (time.monotonic() - started)))

            async def heartbeat() -> None:
                while True:
                    await asyncio.sleep(lease.ttl / 3)
                    try:
                        if await self._driver.run(plans.renew_lease(self.context, thread_id, self.owner, lease)):
                            return  # taken by another: this block's next write is refused (LeaseError)
                    except StoreError:
                        continue

            beat = asyncio.create_task(heartbeat())
            try:
                yield
            finally:
                beat.cancel()
                try:
                    await beat
                except (asyncio.CancelledError, StoreError):
                    pass
                try:
                    await self.arelease(thread_id)
                except StoreError:
                    pass
        finally:
            local.release()

    # -- freemem extras --------------------------------------------------------------------------------------
    async def atouch(self, thread_id: str) -> bool:
        """Re-arm a thread's TTL without writing; ``False`` if the thread has no checkpoints."""
        return await self._driver.run(plans.touch(self.context, thread_id))

    async def athread_keys(self, thread_id: str) -> list[str]:
        """Every Redis key holding the thread's checkpoints."""
        return await self._driver.run(plans.thread_keys(self.context, thread_id))

    async def amemory_usage(self, thread_id: str) -> int:
        """Bytes Redis uses for the thread's checkpoints (``MEMORY USAGE`` summed over its keys)."""
        return await self._driver.run(plans.memory_usage(self.context, thread_id))

    # -- sync twins (scheduled on the saver's loop from another thread) -------------------------------------
    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop.is_closed() or not loop.is_running():
            coro.close()
            raise asyncio.InvalidStateError(
                "AsyncRedisSaver's sync methods need its event loop running in another thread; "
                "use the async methods (ainvoke, aget_state...) or RedisSaver for sync code"
            )
        if running is loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "Synchronous calls to AsyncRedisSaver are only allowed from a different thread. From the main "
                "thread, use the async interface. For example, use `checkpointer.alist(...)` or "
                "`await graph.ainvoke(...)`."
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._sync(collect())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._sync(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync(self.aprune(thread_ids, strategy=strategy))
