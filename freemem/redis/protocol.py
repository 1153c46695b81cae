"""The protocol between command plans and the sync/async shells that execute them.

A *plan* is a generator. It yields a :class:`Batch` (commands that go to Redis in one round trip, results
sent back in order), a :class:`Scan` (keys matching a pattern, on every primary of a cluster) or an
:class:`Emit` (an item for the caller of an iterating operation such as ``list``), and finally returns its
result. Plans hold all the logic — keys, serialization, which commands, how replies become LangGraph
objects — and never do I/O, so the sync and the async shell share every line of it and differ only in how
they wait (see :mod:`freemem.redis._drivers`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from redis import exceptions as rex

from freemem.core.errors import StoreConnectionError, StoreError

__all__ = ["Batch", "Command", "Emit", "Eval", "LeaseError", "Plan", "Scan", "Script", "translate_error"]

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, run by SHA1 and sent in full only when the server does not know it yet."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class Eval:
    """One script call; ``keys[0]`` decides the cluster slot."""

    script: Script
    keys: tuple[str, ...]
    args: tuple[Any, ...]

    def wire(self, by_sha: bool) -> tuple[Any, ...]:
        head = ("EVALSHA", self.script.sha) if by_sha else ("EVAL", self.script.source)
        return (*head, len(self.keys), *self.keys, *self.args)


Command: TypeAlias = "tuple[Any, ...] | Eval"
"""A raw command (``("HGET", key, field)``) or a script call."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent in one round trip; each reply in order.

    By default a non-transactional pipeline. ``atomic=True`` runs ``commands`` in MULTI/EXEC; they must then
    share one cluster slot (one thread's keys). ``before`` holds commands of *other* slots (the run index) that
    must run first: on a standalone server they join the same transaction (one round trip), on a cluster they
    go ahead as their own pipeline. Replies: ``before``'s, then ``commands``'.
    """

    commands: tuple[Command, ...]
    atomic: bool
    before: tuple[Command, ...]

    def __init__(self, *commands: Command, atomic: bool = False, before: tuple[Command, ...] = ()) -> None:
        object.__setattr__(self, "commands", tuple(commands))
        object.__setattr__(self, "atomic", atomic)
        object.__setattr__(self, "before", tuple(before))


@dataclass(frozen=True, slots=True)
class Scan:
    """All keys matching ``match`` (on every primary of a cluster); replies with a list of ``bytes``."""

    match: str
    count: int = 1000


@dataclass(frozen=True, slots=True)
class Emit:
    """An item for the caller of an iterating plan."""

    item: Any


Plan: TypeAlias = Generator["Batch | Scan | Emit", Any, R]


def wire(command: Command, by_sha: bool) -> tuple[Any, ...]:
    """The argument tuple for ``execute_command``."""
    return command.wire(by_sha) if isinstance(command, Eval) else command


class LeaseError(StoreError):
    """A write refused by the thread's writer lease: another writer holds it, or wrote after this writer's
    lease expired (see ``RedisSaver(lease=True)``)."""


_LEASE_REPLY = "FREEMEM_LEASE "


def translate_error(exc: BaseException, where: str) -> StoreError:
    """Map a redis-py (or socket) error onto freemem's :class:`~freemem.core.errors.StoreError` hierarchy."""
    text = str(exc)
    if isinstance(exc, rex.ResponseError) and _LEASE_REPLY in text:
        return LeaseError(text[text.index(_LEASE_REPLY) + len(_LEASE_REPLY):])
    if isinstance(exc, rex.AuthenticationError):
        return StoreConnectionError(f"Redis at {where} refused the credentials: {exc}")
    if isinstance(exc, rex.BusyLoadingError):
        return StoreConnectionError(f"Redis at {where} is still loading its data set; retry shortly: {exc}")
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError, OSError)):
        return StoreConnectionError(f"Redis at {where} is unreachable: {exc}")
    if isinstance(exc, (rex.ClusterDownError, rex.TryAgainError, rex.MasterDownError)):
        return StoreConnectionError(f"Redis cluster at {where} cannot serve the request now: {exc}")
    if isinstance(exc, rex.ReadOnlyError):
        return StoreConnectionError(f"Redis at {where} is a read-only replica: {exc}")
    if isinstance(exc, rex.RedisClusterException) and "connection" in str(exc).lower():
        return StoreConnectionError(f"Redis cluster at {where} is unreachable: {exc}")
    return StoreError(f"Redis at {where} failed: {exc}")
