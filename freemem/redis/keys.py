"""Key layout: every Redis key freemem writes, in one place.

All keys of one thread share one hash tag, ``<prefix>:{<thread>}:...``, so Redis Cluster stores them in one
slot: a Lua script or a MULTI/EXEC can touch all of them atomically, on a single server and on a cluster alike.

Layout for prefix ``P`` and thread ``T`` (``N`` = checkpoint namespace, ``C`` = checkpoint id)::

    P:{T}:reg          SET   every other key of the thread's checkpoints (delete, copy, TTL refresh)
    P:{T}:fresh        STR   lives ``slack`` ms after a full TTL refresh (see :mod:`~freemem.redis.scripts`)
    P:{T}:ns           SET   the thread's checkpoint namespaces (escaped, as in key names)
    P:{T}:i:N          ZSET  checkpoint ids of namespace N, all scored 0, so ordered by id (uuid6: by time)
    P:{T}:b:N          HASH  channel values of namespace N, field "<channel>\\x1f<version>"
    P:{T}:c:N:C        HASH  one checkpoint: cp, md, p (parent id), r (JSON list of blob fields), run,
                             and its pending writes as fields "w:<task_id>\\x1f<idx>"
    P:{T}:m:N          HASH  element records of namespace N by digest: the elements of the lists stored
                             element by element (see :mod:`~freemem.redis.codec`), each once
    P:{T}:mc:N         HASH  digest -> how many records (channel values, pending writes) reference it
    P:{T}:a:ev         ZSET  archive event ids scored by creation time (ms)
    P:{T}:a:e          HASH  archive event id -> event JSON (with the freed spans)
    P:{T}:a:s          HASH  archive event id -> summary JSON (the event without its spans)
    P:{T}:a:r          HASH  archive event id -> restore mark JSON
    P:{T}:a:x:t        HASH  search postings: term -> 4 bytes per passage holding it (passage number, tf;
                             see :mod:`~freemem.redis.archive`)
    P:{T}:a:x:d        ZSET  archive event id scored by the number of its first passage (a passage's event)
    P:{T}:a:x:e        HASH  archive event id -> "<index digest> <first passage> <passages> <length>"
    P:{T}:a:x:n        HASH  v (index format, 3), docs (passages indexed), len (their total length in
                             terms), next (the next passage number)
    P:{T}:a:x:l        STR   each passage's length in terms, 2 bytes at twice its number
    P:{T}:a:x:z, a:x:p       the index of earlier versions (postings zset, passage JSON), wiped on first use
    P:{T}:lease        STR   owner token of the thread's writer lease (opt-in, see ``RedisSaver(lease=True)``)
    P:{T}:lease:wake   LIST  pushed when a lease is released, so a waiting writer wakes at once
    P:run:{R}          SET   threads that hold checkpoints of run R (its own slot; for ``delete_for_runs``)

``T`` and ``N`` are escaped (:func:`escape`) so that a thread id can never close the hash tag early or forge
another thread's keys, and a namespace can never contain the ``:`` that separates ``N`` from ``C``. ``C`` is
the last component and needs no escaping.
"""

from __future__ import annotations

from freemem.core.errors import ConfigError

__all__ = ["KeyLayout", "escape", "unescape"]

# Characters escaped as %XX in thread ids and namespaces: the escape char itself, the hash-tag braces,
# the component separator and every glob metacharacter (so SCAN patterns built from them stay literal).
_SPECIAL = frozenset("%{}:*?[]\\")
_EMPTY = "%"  # an escaped string never ends in a bare "%", so this cannot collide with a real value
_GLOB = frozenset("*?[]\\")


def escape(value: str) -> str:
    """Escape one key component; the result has no ``{``, ``}``, ``:`` or glob characters and is never empty."""
    if value == "":
        return _EMPTY
    if not any(ch in _SPECIAL for ch in value):
        return value
    return "".join(f"%{ord(ch):02X}" if ch in _SPECIAL else ch for ch in value)


def unescape(value: str) -> str:
    """Invert :func:`escape`."""
    if value == _EMPTY:
        return ""
    if "%" not in value:
        return value
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "%":
            out.append(chr(int(value[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _glob_literal(text: str) -> str:
    return "".join("\\" + ch if ch in _GLOB else ch for ch in text)


class KeyLayout:
    """Builds every key name for one key prefix (one tenant).

    Args:
        prefix: Key prefix, one per tenant. Must be non-empty and free of ``{``, ``}`` and glob characters,
            so the hash tag is always the thread's.
    """

    __slots__ = ("prefix",)

    def __init__(self, prefix: str = "freemem") -> None:
        if not prefix or any(ch in prefix for ch in "{}*?[]\\"):
            raise ConfigError(f"key prefix must be non-empty without braces or glob characters, got {prefix!r}")
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"KeyLayout({self.prefix!r})"

    # -- one thread ------------------------------------------------------------------------------------------
    def thread_base(self, thread_id: str) -> str:
        """``P:{T}:`` — the start of every key of the thread."""
        return f"{self.prefix}:{{{escape(thread_id)}}}:"

    def registry(self, thread_id: str) -> str:
        return self.thread_base(thread_id) + "reg"

    def namespaces(self, thread_id: str) -> str:
        return self.thread_base(thread_id) + "ns"

    def refresh_marker(self, thread_id: str) -> str:
        """Short-lived key saying the thread's TTL was fully refreshed recently (see ``scripts``)."""
        return self.thread_base(thread_id) + "fresh"

    def index(self, thread_id: str, checkpoint_ns: str) -> str:
        return f"{self.thread_base(thread_id)}i:{escape(checkpoint_ns)}"

    def blobs(self, thread_id: str, checkpoint_ns: str) -> str:
        return f"{self.thread_base(thread_id)}b:{escape(checkpoint_ns)}"

    def elements(self, thread_id: str, checkpoint_ns: str) -> str:
        """Element records of namespace N by digest (content-addressed; shared by its checkpoints)."""
        return f"{self.thread_base(thread_id)}m:{escape(checkpoint_ns)}"

    def element_counts(self, thread_id: str, checkpoint_ns: str) -> str:
        """How many stored records reference each element record of namespace N."""
        return f"{self.thread_base(thread_id)}mc:{escape(checkpoint_ns)}"

    def checkpoint_base(self, thread_id: str, checkpoint_ns: str) -> str:
        """``P:{T}:c:N:`` — append a checkpoint id to get that checkpoint's key (Lua scripts do)."""
        return f"{self.thread_base(thread_id)}c:{escape(checkpoint_ns)}:"

    def checkpoint(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> str:
        return self.checkpoint_base(thread_id, checkpoint_ns) + checkpoint_id

    def lease(self, thread_id: str) -> str:
        """The thread's writer lease (not in the registry: it outlives a ``delete_thread`` only by its TTL)."""
        return self.thread_base(thread_id) + "lease"

    def lease_wake(self, thread_id: str) -> str:
        """Where a released lease is announced to writers blocked waiting for it."""
        return self.thread_base(thread_id) + "lease:wake"

    def archive_keys(self, thread_id: str) -> tuple[str, str, str, str]:
        """``(events-by-time, event JSON, summary JSON, restore marks)`` of the thread's archive."""
        base = self.thread_base(thread_id)
        return (base + "a:ev", base + "a:e", base + "a:s", base + "a:r")

    def search_keys(self, thread_id: str) -> tuple[str, str, str, str, str, str, str]:
        """``(postings, docs, events indexed, stats, lengths, old postings, old passages)`` of the thread's
        archive search index (the last two: the format of earlier versions, wiped when the thread is next indexed)."""
        base = self.thread_base(thread_id)
        return (base + "a:x:t", base + "a:x:d", base + "a:x:e", base + "a:x:n", base + "a:x:l", base + "a:x:z",
                base + "a:x:p")

    def rebase(self, key: str, source_thread: str, target_thread: str) -> str:
        """The key of ``target_thread`` that plays the role ``key`` plays for ``source_thread``."""
        src = self.thread_base(source_thread)
        if not key.startswith(src):
            raise ValueError(f"{key!r} is not a key of thread {source_thread!r}")
        return self.thread_base(target_thread) + key[len(src) :]

    # -- across threads --------------------------------------------------------------------------------------
    def run_threads(self, run_id: str) -> str:
        """The set of (escaped) thread ids holding checkpoints of ``run_id``; a slot of its own."""
        return f"{self.prefix}:run:{{{escape(run_id)}}}"

    def all_namespace_sets_pattern(self) -> str:
        """SCAN MATCH pattern that finds one key (the namespace set) per thread of this prefix."""
        return _glob_literal(self.prefix) + ":{*}:ns"

    def thread_of(self, key: str) -> str:
        """The thread id of one of this layout's per-thread keys."""
        start = len(self.prefix) + 2  # "P:{"
        end = key.index("}", start)
        return unescape(key[start:end])
