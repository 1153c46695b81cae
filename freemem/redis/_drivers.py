"""Run plans (see :mod:`freemem.redis.protocol`) against a sync or an asyncio Redis client.

The two drivers are the only place where sync and async code differ: each sends a batch as one command or a
non-transactional pipeline, retries a batch with the script source when the server does not know a script's
SHA yet (every step is idempotent, so a replay is safe), and turns redis-py errors into freemem errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from redis import exceptions as rex

from freemem.errors import StoreError
from freemem.redis.protocol import Batch, Emit, Plan, Scan, translate_error, wire

__all__ = ["AsyncDriver", "SyncDriver"]

R = TypeVar("R")

_REDIS_ERRORS = (rex.RedisError, rex.RedisClusterException, OSError)


class SyncDriver:
    """Executes plans with a ``redis.Redis`` or ``redis.RedisCluster`` client."""

    __slots__ = ("client", "where")

    def __init__(self, client: Any, where: str) -> None:
        self.client = client
        self.where = where

    def _send(self, batch: Batch, by_sha: bool) -> list[Any]:
        commands = batch.commands
        if len(commands) == 1:
            return [self.client.execute_command(*wire(commands[0], by_sha))]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*wire(command, by_sha))
        return list(pipe.execute())

    def execute(self, batch: Batch) -> list[Any]:
        """One round trip; replies in command order."""
        if not batch.commands:
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

    __slots__ = ("client", "where")

    def __init__(self, client: Any, where: str) -> None:
        self.client = client
        self.where = where

    async def _send(self, batch: Batch, by_sha: bool) -> list[Any]:
        commands = batch.commands
        if len(commands) == 1:
            return [await self.client.execute_command(*wire(commands[0], by_sha))]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*wire(command, by_sha))
        return list(await pipe.execute())

    async def execute(self, batch: Batch) -> list[Any]:
        """One round trip; replies in command order."""
        if not batch.commands:
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
