"""What every command plan shares: the storage and lease policies, the ref cache, the plan context, and small
helpers for configs and replies."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from langchain_core.runnables import RunnableConfig

from freemem.core.errors import ConfigError
from freemem.redis import codec
from freemem.redis.keys import KeyLayout

__all__ = [
    "LEASE_BLOCK_S",
    "DigestCache",
    "ElementCache",
    "ExpansionCache",
    "Fence",
    "LeasePolicy",
    "PlanContext",
    "RefCache",
    "StoragePolicy",
    "as_hash",
    "as_text",
    "checkpoint_config",
    "config_namespace",
    "config_thread_id",
    "thread_id_of",
]


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    """How long threads live and how much history they keep.

    Attributes:
        ttl: Seconds a thread lives after its last write (``None``: forever). Every key of the thread expires
            between ``ttl`` and ``ttl * 1.1`` after the last write (the 10% slack bounds how often a write
            re-arms the TTL of every key of the thread).
        refresh_on_read: Whether reading a checkpoint re-arms the TTL too.
        keep_last: Keep only the newest N checkpoints per (thread, namespace), with their writes and the
            channel values they reference (``None``: keep all).
    """

    ttl: float | None = None
    refresh_on_read: bool = False
    keep_last: int | None = None

    def __post_init__(self) -> None:
        if self.ttl is not None and not self.ttl > 0:
            raise ConfigError(f"ttl must be a positive number of seconds or None, got {self.ttl!r}")
        if self.keep_last is not None and (not isinstance(self.keep_last, int) or self.keep_last < 1):
            raise ConfigError(f"keep_last must be a positive int or None, got {self.keep_last!r}")

    @property
    def ttl_ms(self) -> int:
        return 0 if self.ttl is None else max(1, math.ceil(self.ttl * 1000))

    @property
    def slack_ms(self) -> int:
        return 0 if self.ttl is None else max(1, self.ttl_ms // 10)

    @property
    def expire_ms(self) -> int:
        """The lifetime given to keys on a write (``ttl + slack``)."""
        return self.ttl_ms + self.slack_ms


class RefCache:
    """What this saver knows about checkpoints it wrote or read: the newest id per (thread, namespace) and each
    checkpoint's ``r`` field (its blob refs, immutable once written).

    It only lets ``get_tuple`` fetch a checkpoint and its channel values with plain commands in one MULTI/EXEC
    instead of a Lua script (large values cost far more through Lua). Every hit is verified in the same
    transaction -- the index still names that id first, the checkpoint still has those refs -- and a miss or a
    stale entry falls back to the LOAD script, so other writers, deletes and retention never make it wrong.
    Bounded (oldest entries go first); safe to share between threads.
    """

    __slots__ = ("latest", "max_entries", "refs")

    def __init__(self, max_entries: int = 8192) -> None:
        self.max_entries = max_entries
        self.latest: dict[tuple[str, str], str] = {}
        self.refs: dict[tuple[str, str, str], bytes] = {}

    @staticmethod
    def _trim(table: dict[Any, Any], limit: int) -> None:
        while len(table) > limit:
            try:
                table.pop(next(iter(table)), None)
            except (RuntimeError, StopIteration):  # changed by another thread meanwhile: good enough
                return

    def remember(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, refs: bytes, *, newest: bool) -> None:
        self.refs[(thread_id, checkpoint_ns, checkpoint_id)] = refs
        self._trim(self.refs, self.max_entries)
        if newest:
            key = (thread_id, checkpoint_ns)
            current = self.latest.get(key)
            if current is None or checkpoint_id >= current:
                self.latest[key] = checkpoint_id
                self._trim(self.latest, self.max_entries)

    def lookup(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None) -> tuple[str, bytes] | None:
        if checkpoint_id is None:
            checkpoint_id = self.latest.get((thread_id, checkpoint_ns))
            if checkpoint_id is None:
                return None
        refs = self.refs.get((thread_id, checkpoint_ns, checkpoint_id))
        return None if refs is None else (checkpoint_id, refs)


V = TypeVar("V")


class DigestCache(Generic[V]):
    """Values named by a content digest, most recent last, bounded by the bytes they hold (``size_of``).

    A digest names the bytes it was computed from, so an entry is never stale, whoever writes or deletes the
    thread. Safe to share between threads."""

    __slots__ = ("_entries", "_lock", "max_bytes", "size", "size_of")

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        self.max_bytes = max_bytes
        self.size_of = size_of
        self.size = 0
        self._entries: OrderedDict[bytes, V] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entries: Mapping[bytes, V]) -> None:
        if self.max_bytes <= 0 or not entries:
            return
        with self._lock:
            for digest, value in entries.items():
                if digest in self._entries:
                    self._entries.move_to_end(digest)
                    continue
                self._entries[digest] = value
                self.size += self.size_of(value)
            while self.size > self.max_bytes and self._entries:
                _, dropped = self._entries.popitem(last=False)
                self.size -= self.size_of(dropped)

    def split(self, digests: Iterable[bytes]) -> tuple[dict[bytes, V], list[bytes]]:
        """``(entries found here, digests not here)``; each digest once."""
        found: dict[bytes, V] = {}
        missing: list[bytes] = []
        seen: set[bytes] = set()
        with self._lock:
            for digest in digests:
                if digest in seen:
                    continue
                seen.add(digest)
                value = self._entries.get(digest)
                if value is None:
                    missing.append(digest)
                else:
                    self._entries.move_to_end(digest)
                    found[digest] = value
        return found, missing


class ElementCache(DigestCache[bytes]):
    """Element records (see :mod:`~freemem.redis.codec`) this saver wrote or read, by digest: saves fetching a
    checkpoint's messages again (``get_tuple`` is then one round trip when the ref cache knows the checkpoint
    too)."""

    __slots__ = ()

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        super().__init__(max_bytes, len)


class ExpansionCache(DigestCache[codec.Expanded]):
    """The :class:`~freemem.redis.codec.Expanded` form of the elements (chunks, mostly) a checkpoint's lists name
    directly, by digest, for the checkpoints this saver wrote or read: reading a thread's messages again then
    decompresses, unpacks and walks no element record, and the serde gets each run of messages in one call."""

    __slots__ = ()

    def __init__(self, max_bytes: int = 32 << 20) -> None:
        super().__init__(max_bytes, _expanded_size)


def _expanded_size(value: codec.Expanded) -> int:
    return value.size


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The opt-in writer lease of a thread (see :class:`~freemem.redis.RedisSaver`).

    Attributes:
        ttl: Seconds the lease lives after its holder's last read or write of the thread (renewed by each).
        wait: Seconds a writer waits for another writer's lease before failing with a :class:`StoreError`.
    """

    ttl: float = 30.0
    wait: float = 60.0

    def __post_init__(self) -> None:
        if not self.ttl > 0 or not self.wait >= 0:
            raise ConfigError(f"lease_ttl must be > 0 and lease_wait >= 0, got {self.ttl!r} and {self.wait!r}")

    @property
    def ttl_ms(self) -> int:
        return max(1, math.ceil(self.ttl * 1000))


@dataclass(frozen=True, slots=True)
class Fence:
    """What a write carries to prove it may write a thread under the writer lease."""

    owner: str
    ttl_ms: int


LEASE_BLOCK_S = 1.0
"""Longest single wait (BLPOP) for a lease: well under the client's socket timeout; a release wakes it at once."""


@dataclass(frozen=True, slots=True)
class PlanContext:
    """Everything a plan needs besides the serializer: where keys live, the storage policy, the
    (verified-on-use) :class:`RefCache` and the (content-addressed) :class:`ElementCache` and
    :class:`ExpansionCache` of this saver."""

    layout: KeyLayout = field(default_factory=KeyLayout)
    policy: StoragePolicy = field(default_factory=StoragePolicy)
    cache: RefCache = field(default_factory=RefCache)
    elements: ElementCache = field(default_factory=ElementCache)
    expanded: ExpansionCache = field(default_factory=ExpansionCache)




def config_thread_id(config: RunnableConfig) -> str:
    """The config's ``thread_id``; ``ConfigError`` when it has none."""
    try:
        return str(config["configurable"]["thread_id"])
    except KeyError:
        raise ConfigError("config['configurable'] needs a 'thread_id'") from None


def thread_id_of(config: RunnableConfig) -> str:
    """The thread a LangGraph config names (``ConfigError`` when it names none)."""
    return config_thread_id(config)


def config_namespace(config: RunnableConfig) -> str:
    """The config's ``checkpoint_ns`` (the root graph: ``""``)."""
    return str(config["configurable"].get("checkpoint_ns") or "")


def checkpoint_config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    """The config naming one checkpoint."""
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}}


def as_hash(reply: Any) -> dict[bytes, bytes]:
    """An HGETALL reply as a dict (RESP2 gives a flat list)."""
    if isinstance(reply, dict):
        return reply
    items = iter(reply)
    return dict(zip(items, items, strict=True))


def as_text(value: bytes | str) -> str:
    """A reply value as text."""
    return value.decode() if isinstance(value, bytes) else value


