"""Run plans (see :mod:`freemem.redis.protocol`) against a sync or an asyncio Redis client.

The two drivers are the only place where sync and async code differ: each sends a batch as one command or a
non-transactional pipeline, retries a batch with the script source when the server does not know a script's
SHA yet (every step is idempotent, so a replay is safe), and turns redis-py errors into freemem errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from redis import exceptions as rex

from freemem.core.errors import StoreError
from freemem.redis.protocol import Batch, Emit, Eval, Plan, Scan, translate_error, wire

__all__ = ["AsyncDriver", "SyncDriver"]


def _is_cluster(client: Any) -> bool:
    return hasattr(client, "get_nodes")

R = TypeVar("R")

_REDIS_ERRORS = (rex.RedisError, rex.RedisClusterException, OSError)


class SyncDriver:
    """Executes plans with a ``redis.Redis`` or ``redis.RedisCluster`` client."""

    __slots__ = ("client", "cluster", "where")

    def __init__(self, client: Any, where: str) -> None:
        self.client = client
        self.cluster = _is_cluster(client)
        self.where = where

    def _pipeline(self, commands: tuple[Any, ...], by_sha: bool, transaction: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=transaction)
        for command in commands:
            pipe.execute_command(*wire(command, by_sha))
        return list(pipe.execute())

    def _transaction(self, commands: tuple[Any, ...], by_sha: bool) -> list[Any]:
        """MULTI/EXEC on one pooled connection of a standalone client, sent with a single ``sendall``.

        redis-py's pipeline sends a large value as its own ``sendall`` and every socket call releases and
        re-takes the GIL; under LangGraph, whose saves run on worker threads beside a busy main thread, each
        re-take waits, so one buffer per transaction is measurably faster than the generic pipeline. Replays
        after a dropped connection follow the client's retry policy (every batch is idempotent).
        """
        pool = self.client.connection_pool
        wired = [("MULTI",), *(wire(command, by_sha) for command in commands), ("EXEC",)]
        connection = pool.get_connection()

        def attempt() -> Any:
            connection.send_packed_command([b"".join(connection.pack_commands(wired))])
            errors: list[BaseException] = []
            for _ in range(len(wired) - 1):  # +OK for MULTI, then +QUEUED (or a queue-time error) per command
                try:
                    connection.read_response()
                except rex.ResponseError as exc:
                    errors.append(exc)
            try:
                return connection.read_response()
            except rex.ResponseError as exc:  # EXECABORT: report the queue-time error that caused it
                raise (errors[0] if errors else exc) from None

        try:
            retry = getattr(connection, "retry", None)
            if retry is None:
                replies = attempt()
            else:
                replies = retry.call_with_retry(attempt, lambda _error: connection.disconnect())
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return list(replies)

    def _send(self, batch: Batch, by_sha: bool) -> list[Any]:
        commands = batch.commands
        if batch.atomic:
            if not self.cluster:
                return self._transaction((*batch.before, *commands), by_sha)
            before = self._pipeline(batch.before, by_sha, False) if batch.before else []
            return before + self._pipeline(commands, by_sha, True)
        commands = (*batch.before, *commands)
        if len(commands) == 1:
            return [self.client.execute_command(*wire(commands[0], by_sha))]
        return self._pipeline(commands, by_sha, False)

    def execute(self, batch: Batch) -> list[Any]:
        """One round trip; replies in command order."""
        if not batch.commands and not batch.before:
            return []
        try:
            try:
                return self._send(batch, by_sha=True)
            except rex.NoScriptError:
                return self._send(batch, by_sha=False)
        except StoreError:
            raise
        except _REDIS_ERRORS as exc:
            raise translate_error(exc, self.where) from exc

    def scan(self, request: Scan) -> list[bytes]:
        try:
            return list(self.client.scan_iter(match=request.match, count=request.count))
        except _REDIS_ERRORS as exc:
            raise translate_error(exc, self.where) from exc

    def iterate(self, plan: Plan[R]) -> Iterator[Any]:
        """Drive ``plan``, yielding what it emits; the generator's return value is the plan's."""
        try:
            request = next(plan)
            while True:
                if isinstance(request, Emit):
                    yield request.item
                    request = next(plan)
                elif isinstance(request, Scan):
                    request = plan.send(self.scan(request))
                else:
                    request = plan.send(self.execute(request))
        except StopIteration as stop:
            return stop.value
        finally:
            plan.close()

    def run(self, plan: Plan[R]) -> R:
        """Drive a plan that emits nothing and return its result."""
        steps = self.iterate(plan)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


class AsyncDriver:
    """Executes plans with a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` client."""

    __slots__ = ("client", "cluster", "where")

    def __init__(self, client: Any, where: str) -> None:
        self.client = client
        self.cluster = _is_cluster(client)
        self.where = where

    async def _pipeline(self, commands: tuple[Any, ...], by_sha: bool, transaction: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=transaction)
        for command in commands:
            pipe.execute_command(*wire(command, by_sha))
        return list(await pipe.execute())

    async def _cluster_transaction(self, commands: tuple[Any, ...], by_sha: bool) -> list[Any]:
        """MULTI/EXEC on the node owning the (single) slot of ``commands``, on one of its pooled connections.

        redis-py 8.1's asyncio ``ClusterPipeline(transaction=True)`` leaves a connection behind that breaks
        ``RedisCluster.aclose()`` ("Event loop is closed"), so the transaction is sent by hand here.
        """
        first = commands[0]
        key = first.keys[0] if isinstance(first, Eval) else first[1]
        if getattr(self.client, "_initialize", False):
            await self.client.initialize()  # slots are unknown until the first command
        node = self.client.get_node_from_key(key)
        wired = [wire(command, by_sha) for command in commands]
        connection = node.acquire_connection()
        try:
            await connection.send_packed_command(connection.pack_commands([("MULTI",), *wired, ("EXEC",)]))
            errors: list[BaseException] = []
            for _ in range(len(wired) + 1):  # +OK for MULTI, then +QUEUED (or a queue-time error) per command
                try:
                    await connection.read_response()
                except rex.ResponseError as exc:
                    errors.append(exc)
            try:
                replies = await connection.read_response()
            except rex.ResponseError as exc:  # EXECABORT: report the queue-time error that caused it
                raise (errors[0] if errors else exc) from None
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            node.release(connection)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return list(replies)

    async def _send(self, batch: Batch, by_sha: bool) -> list[Any]:
        commands = batch.commands
        if batch.atomic:
            if self.cluster:
                before = await self._pipeline(batch.before, by_sha, False) if batch.before else []
                return before + await self._cluster_transaction(commands, by_sha)
            return await self._pipeline((*batch.before, *commands), by_sha, True)
        commands = (*batch.before, *commands)
        if len(commands) == 1:
            return [await self.client.execute_command(*wire(commands[0], by_sha))]
        return await self._pipeline(commands, by_sha, False)

    async def execute(self, batch: Batch) -> list[Any]:
        """One round trip; replies in command order."""
        if not batch.commands and not batch.before:
            return []
        try:
            try:
                return await self._send(batch, by_sha=True)
            except rex.NoScriptError:
                return await self._send(batch, by_sha=False)
        except StoreError:
            raise
        except _REDIS_ERRORS as exc:
            raise translate_error(exc, self.where) from exc

    async def scan(self, request: Scan) -> list[bytes]:
        try:
            return [key async for key in self.client.scan_iter(match=request.match, count=request.count)]
        except _REDIS_ERRORS as exc:
            raise translate_error(exc, self.where) from exc

    async def iterate(self, plan: Plan[Any]) -> AsyncIterator[Any]:
        """Drive ``plan``, yielding what it emits."""
        try:
            request = next(plan)
            while True:
                if isinstance(request, Emit):
                    yield request.item
                    request = next(plan)
                elif isinstance(request, Scan):
                    request = plan.send(await self.scan(request))
                else:
                    request = plan.send(await self.execute(request))
        except StopIteration:
            return
        finally:
            plan.close()

    async def run(self, plan: Plan[R]) -> R:
        """Drive a plan that emits nothing and return its result."""
        try:
            request = next(plan)
            while True:
                if isinstance(request, Emit):
                    raise TypeError("use iterate() for plans that emit items")
                if isinstance(request, Scan):
                    request = plan.send(await self.scan(request))
                else:
                    request = plan.send(await self.execute(request))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        finally:
            plan.close()
