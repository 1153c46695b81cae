"""The archive of freed spans: every cleaning event with the original text it removed, per thread.

Events are JSON-plain dicts as :meth:`freemem.core.ledger.CleanEvent.to_dict` writes them with ``spans=True``:
``id``, ``created_at``, ``tokens_before``, ``tokens_after``, ... and ``rounds``, one list of removed spans per
cleaning round (``{message_id, field, original, tokens, marker, pruned_start, ...}``). They live under the
thread's hash tag next to its checkpoints (see :mod:`freemem.redis.keys`), ordered by ``created_at``; each
write is one atomic script. Summaries (the event without its spans) are stored apart, so listing a long
thread's history never moves the removed text.

Search (:meth:`RedisArchive.search`) works on core Redis 7, no module needed: recording an event also indexes
its passages (:func:`freemem.core.passages.event_passages`) in the same script, under the thread's hash tag
(per term one hash field of packed postings, 4 bytes a passage, see :data:`POSTING_BYTES` and
:mod:`freemem.redis.keys`; the passages themselves are not stored again, a hit is cut from its archived event);
a query is one script that ranks its words' postings with BM25 on the server (the formula of
:mod:`freemem.core.bm25`, over the words of :func:`freemem.core.passages.terms` as every archive) and returns
only the events of the best passages: one round trip. A thread archived before search existed, or indexed in
the earlier format, is indexed on its first search.

Restoring is the core's :func:`freemem.core.archive.restore_event` over the archived spans and folds: :meth:`RedisArchive.restore`
undoes one event or every event not yet restored (newest first) and marks them restored;
:meth:`RedisArchive.original` rebuilds the unpruned messages without marking anything.

:class:`RedisArchive` and :class:`AsyncRedisArchive` are thin shells over the plans below, like the savers.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import freemem.lc  # noqa: F401 - registers the LangChain reviver for folded messages
from freemem.archives.base import BaseArchive, Restored, dump_event, prepare_event, undo_events
from freemem.archives.search import SearchHit, check_search, distinct_hits
from freemem.core.archive import find_refs, summarize_event
from freemem.core.errors import ConfigError, StoreError
from freemem.core.passages import event_passages, terms
from freemem.lc import revive_message
from freemem.redis import scripts
from freemem.redis._drivers import AsyncDriver, SyncDriver
from freemem.redis.connection import async_client, describe, describe_url, ensure_binary, sync_client
from freemem.redis.keys import KeyLayout
from freemem.redis.protocol import Batch, Eval, Plan
from freemem.redis.scripts import INDEX_VERSION, MAX_PASSAGES

__all__ = ["ArchiveContext", "AsyncRedisArchive", "RedisArchive", "summarize"]


class ArchiveContext:
    """Key layout and TTL policy of an archive (what its plans need)."""

    __slots__ = ("layout", "refresh_on_read", "ttl")

    def __init__(self, key_prefix: str = "freemem", ttl: float | None = None, refresh_on_read: bool = False) -> None:
        if ttl is not None and not ttl > 0:
            raise ConfigError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
        self.layout = KeyLayout(key_prefix)
        self.ttl = ttl
        self.refresh_on_read = refresh_on_read

    @property
    def ttl_ms(self) -> int:
        return 0 if self.ttl is None else max(1, math.ceil(self.ttl * 1000))


# -- pure helpers ----------------------------------------------------------------------------------------------


#: The archive's summary of an event (no removed text) and its span lists are the core's, shared with
#: :class:`freemem.core.archive.InMemoryArchive`.
summarize = summarize_event


_dumps = dump_event

COMPRESS_MIN_BYTES = 1024
"""Full events (with the freed text) of at least this many bytes are stored zlib-compressed when that saves a
tenth: the freed text is most of a thread's archive, and tool output compresses well. A stored JSON record
starts with ``{``, a zlib stream with ``x``, so records written either way read back."""


def _dumps_event(value: Any) -> bytes:
    data = dump_event(value)
    if len(data) >= COMPRESS_MIN_BYTES:
        packed = zlib.compress(data, 6)
        if len(packed) * 10 <= len(data) * 9:
            return packed
    return data


def _loads(raw: bytes | str) -> Any:
    try:
        if isinstance(raw, bytes) and raw[:1] == b"x":
            raw = zlib.decompress(raw)
        return json.loads(raw)
    except (ValueError, zlib.error) as exc:
        raise StoreError(f"corrupt archive record: {exc}") from exc


def _with_mark(record: dict[str, Any], mark: bytes | None) -> dict[str, Any]:
    record["restored_at"] = _loads(mark)["restored_at"] if mark else None
    return record


def _refresh(ctx: ArchiveContext, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    if not (ctx.refresh_on_read and ctx.ttl_ms):
        return []
    return [("PEXPIRE", key, ctx.ttl_ms) for key in keys]


# -- plans -----------------------------------------------------------------------------------------------------


def _all_keys(ctx: ArchiveContext, thread_id: str) -> tuple[str, ...]:
    return ctx.layout.archive_keys(str(thread_id)) + ctx.layout.search_keys(str(thread_id))


POSTING_BYTES = 4
"""One passage in a term's postings (``a:x:t``): its number (3 bytes, big-endian; per thread, or per event in
what the caller sends) and how often the term occurs in it (1 byte, at most 255)."""

LENGTH = struct.Struct(">H")
"""A passage's length in terms (at most 65,535), in ``a:x:l`` at twice its number: BM25 needs it once per
passage, not once per term."""

# MAX_PASSAGES: the passage numbers a thread's index can give (an event re-recorded with other text takes new
# ones); INDEX_VERSION: the index format (``v`` in ``a:x:n``), an index of another is rebuilt. Both are defined
# once, with the scripts that check them.


def posting(n: int, tf: int) -> bytes:
    """A posting: passage ``n`` holds the term ``tf`` times (see :data:`POSTING_BYTES`)."""
    return n.to_bytes(3, "big") + bytes((min(tf, 0xFF),))


def read_postings(packed: bytes) -> list[tuple[int, int]]:
    """``(passage number, tf)`` of each posting in a term's packed postings."""
    return [(int.from_bytes(packed[i:i + 3], "big"), packed[i + 3]) for i in range(0, len(packed), POSTING_BYTES)]


def index_entry(event: Mapping[str, Any]) -> tuple[str, int, int, bytes, dict[str, bytes]]:
    """The search index of a stored event (what ``ARCHIVE_RECORD`` adds): a digest of it, its passages' count,
    their total length in terms, their lengths packed (:data:`LENGTH` each) and per distinct term the postings
    of the passages holding it, numbered from 0 within the event (the script renumbers them). Passages are not
    stored: a hit is cut from its event again."""
    postings: dict[str, list[bytes]] = {}
    lengths: list[bytes] = []
    total = 0
    count = 0
    for count, passage in enumerate(event_passages(event), start=1):
        words = terms(passage.indexed_text())
        lengths.append(LENGTH.pack(min(len(words), 0xFFFF)))
        for word, tf in Counter(words).items():
            postings.setdefault(word, []).append(posting(count - 1, tf))
        total += len(words)
    if count > MAX_PASSAGES:
        raise StoreError(f"an archived event of {count:,} passages is more than the search index numbers")
    packed = {word: b"".join(parts) for word, parts in sorted(postings.items())}
    lens = b"".join(lengths)
    digest = hashlib.blake2b(lens + b"\x00" + b"".join(w.encode() + b"\x00" + p for w, p in packed.items()),
                             digest_size=12).hexdigest()
    return f"{digest}:{count}:{total}", count, total, lens, packed


def record_plan(ctx: ArchiveContext, thread_id: str, event: Mapping[str, Any]) -> Plan[str]:
    """Store one event and index its passages (atomically, idempotent per id); returns its id."""
    stored, at = prepare_event(event)
    event_id = stored["id"]
    score = int(round(at * 1000))
    summary = summarize(stored)
    digest, count, total, lengths, postings = index_entry(stored)
    archive_keys, index_keys = ctx.layout.archive_keys(str(thread_id)), ctx.layout.search_keys(str(thread_id))
    keys, events, evx = archive_keys + index_keys, archive_keys[1], index_keys[2]
    flat = [x for item in postings.items() for x in item]
    head = (event_id, score, _dumps_event(stored), _dumps(summary), ctx.ttl_ms)
    seen: str = ""
    old_terms: tuple[str, ...] | None = ()
    while True:
        told = (-1,) if old_terms is None else (len(old_terms), *old_terms)
        (done, *_) = yield Batch(Eval(scripts.ARCHIVE_RECORD, keys, (*head, seen, digest, count, total, lengths, *told, *flat)))
        if int(done):
            return event_id
        # Re-recorded with other text: the old event says which terms its postings are under (when this version
        # indexes it as the index holds it; else the script looks through every term).
        entry, raw = yield Batch(("HGET", evx, event_id), ("HGET", events, event_id))
        if entry is None:
            seen, old_terms = "", ()
            continue
        seen = entry.decode().split(" ")[0]
        old_digest, _, _, _, old_postings = index_entry(_loads(raw)) if raw is not None else ("", 0, 0, b"", {})
        old_terms = tuple(old_postings) if old_digest == seen else None


def search_plan(ctx: ArchiveContext, thread_id: str, query: str, k: int) -> Plan[list[SearchHit]]:
    """The ``k`` best passages of the thread for ``query``: one script ranks its words' postings with BM25 on
    the server and sends back the events of the best passages (more only when several pieces of one text crowd
    them); the passages are cut from those events again."""
    query_terms = check_search(query, k)
    if not query_terms:
        return []
    thread = str(thread_id)
    by_time, events = ctx.layout.archive_keys(thread)[:2]
    postings, docs, _, stats, lengths, *_ = index_keys = ctx.layout.search_keys(thread)
    words = [x for word, times in Counter(query_terms).items() for x in (word, times)]
    want = k * 4
    while True:
        reply, *_ = yield Batch(Eval(scripts.ARCHIVE_SEARCH, (postings, docs, stats, by_time, events, lengths), (want, *words)),
                                *_refresh(ctx, _all_keys(ctx, thread)))
        if int(reply[0]) < 0:
            if not int(reply[1]):
                return []
            # Archived before this index existed: index its events once (re-recording is idempotent), then search.
            yield Batch(("DEL", *index_keys), ("HSET", stats, "v", INDEX_VERSION, "docs", 0, "len", 0, "next", 0))
            for event in (yield from events_plan(ctx, thread, include_restored=True)):
                event.pop("restored_at", None)
                yield from record_plan(ctx, thread, event)
            continue
        best = int(reply[1])
        tail = reply[2 + 3 * best:]
        cut = {tail[i]: event_passages(_loads(tail[i + 1])) for i in range(0, len(tail), 2) if tail[i + 1] is not None}
        ranked = []
        for i in range(2, 2 + 3 * best, 3):
            pieces = cut.get(reply[i])
            n = int(reply[i + 1])
            if pieces is not None and 0 <= n < len(pieces):
                ranked.append((pieces[n], float(reply[i + 2])))
        hits = distinct_hits(ranked, query_terms, k)
        if len(hits) == k or best < want:
            return hits
        want *= 4


def list_plan(
    ctx: ArchiveContext, thread_id: str, *, newest_first: bool = False, limit: int | None = None, offset: int = 0
) -> Plan[list[dict[str, Any]]]:
    """Event summaries in time order, each with ``restored_at`` (``None`` until restored); ``offset`` skips
    that many first (in the order asked for)."""
    if limit is not None and limit <= 0:
        return []
    by_time, _, summaries, marks = keys = ctx.layout.archive_keys(str(thread_id))
    start = max(0, offset)
    stop = -1 if limit is None else start + limit - 1
    order = ("ZRANGE", by_time, start, stop, "REV") if newest_first else ("ZRANGE", by_time, start, stop)
    replies = yield Batch(order, *_refresh(ctx, keys))
    ids = replies[0]
    if not ids:
        return []
    values, restored = yield Batch(("HMGET", summaries, *ids), ("HMGET", marks, *ids))
    return [_with_mark(_loads(v), m) for v, m in zip(values, restored, strict=True) if v is not None]


def count_plan(ctx: ArchiveContext, thread_id: str) -> Plan[tuple[int, int]]:
    """How many events the thread has archived, and how many of them are not restored yet."""
    by_time, _, _, marks = keys = ctx.layout.archive_keys(str(thread_id))
    total, restored, *_ = yield Batch(("ZCARD", by_time), ("HLEN", marks), *_refresh(ctx, keys))
    return int(total), max(0, int(total) - int(restored))


def get_plan(ctx: ArchiveContext, thread_id: str, event_id: str) -> Plan[dict[str, Any]]:
    """The full event with its spans; ``KeyError`` when the thread has no such event."""
    _, events, _, marks = keys = ctx.layout.archive_keys(str(thread_id))
    value, mark, *_ = yield Batch(("HGET", events, event_id), ("HGET", marks, event_id), *_refresh(ctx, keys))
    if value is None:
        raise KeyError(f"no archived event {event_id!r} in thread {thread_id!r}")
    return _with_mark(_loads(value), mark)


def events_plan(
    ctx: ArchiveContext, thread_id: str, event_id: str | None = None, *, include_restored: bool = False
) -> Plan[list[dict[str, Any]]]:
    """Full events, oldest first: the one named (``KeyError`` if absent), else every one not yet restored."""
    if event_id is not None:
        event = yield from get_plan(ctx, thread_id, event_id)
        return [event]
    by_time, events, _, marks = keys = ctx.layout.archive_keys(str(thread_id))
    ids, *_ = yield Batch(("ZRANGE", by_time, 0, -1), *_refresh(ctx, keys))
    if not ids:
        return []
    values, restored = yield Batch(("HMGET", events, *ids), ("HMGET", marks, *ids))
    out = [_with_mark(_loads(v), m) for v, m in zip(values, restored, strict=True) if v is not None]
    return out if include_restored else [e for e in out if e["restored_at"] is None]


def mark_plan(ctx: ArchiveContext, thread_id: str, event_ids: Sequence[str], restored_at: float | None = None) -> Plan[None]:
    """Record that events' spans were put back; ``KeyError`` when one of them does not exist."""
    mark = _dumps({"restored_at": time.time() if restored_at is None else restored_at})
    keys = ctx.layout.archive_keys(str(thread_id))
    if not event_ids:
        return
    found = yield Batch(*(Eval(scripts.ARCHIVE_MARK, keys + ctx.layout.search_keys(str(thread_id)),
                               (eid, mark, ctx.ttl_ms)) for eid in event_ids))
    missing = [eid for eid, ok in zip(event_ids, found, strict=True) if not ok]
    if missing:
        raise KeyError(f"no archived event {missing[0]!r} in thread {thread_id!r}")


def restore_plan(
    ctx: ArchiveContext, thread_id: str, messages: Sequence[Any], event_id: str | None = None, *, mark: bool = True
) -> Plan[Restored]:
    """Undo one event (or every event not restored yet) on ``messages``; mark them restored when ``mark``."""
    events = yield from events_plan(ctx, thread_id, event_id)
    if event_id is not None and events[0]["restored_at"] is not None:
        return Restored(messages=list(messages))
    result = undo_events(messages, events, str(thread_id), revive=revive_message, strict=event_id is not None)
    if mark:
        yield from mark_plan(ctx, thread_id, result.event_ids)
    return result


def delete_plan(ctx: ArchiveContext, thread_id: str) -> Plan[bool]:
    """Delete a thread's archive; ``True`` if it had one."""
    (deleted,) = yield Batch(("DEL", *_all_keys(ctx, thread_id)))
    return bool(deleted)


# -- shells ----------------------------------------------------------------------------------------------------


class _ArchiveShell:
    """What the sync and async archives share: the client, the key layout and TTL policy, the driver."""

    _driver_class: Any = SyncDriver
    _connect: Any = staticmethod(sync_client)

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = "freemem",
        ttl: float | None = None,
        refresh_on_read: bool = False,
        owns_client: bool = False,
    ) -> None:
        ensure_binary(client)
        self.client = client
        self.owns_client = owns_client
        self.context = ArchiveContext(key_prefix, ttl, refresh_on_read)
        self._driver = self._driver_class(client, describe(client))

    @classmethod
    def from_url(
        cls: type[_Shell],
        url: str,
        *,
        key_prefix: str = "freemem",
        ttl: float | None = None,
        refresh_on_read: bool = False,
        cluster: bool = False,
        **client_kwargs: Any,
    ) -> _Shell:
        """An archive owning a new client for ``url`` (``redis://`` or ``rediss://``, credentials in the URL)."""
        archive = cls(
            cls._connect(url, cluster=cluster, **client_kwargs),
            key_prefix=key_prefix,
            ttl=ttl,
            refresh_on_read=refresh_on_read,
            owns_client=True,
        )
        archive._driver.where = describe_url(url)
        return archive


_Shell = TypeVar("_Shell", bound=_ArchiveShell)


class RedisArchive(_ArchiveShell, BaseArchive):
    """Synchronous archive of freed spans; pass it as ``FreeMemory(archive=...)``. An
    :class:`~freemem.archives.Archive`, and an :class:`~freemem.archives.AsyncArchive` whose methods run the
    sync ones in a worker thread (native asyncio: :class:`AsyncRedisArchive`).

    Args:
        client: ``redis.Redis`` or ``redis.RedisCluster`` (``decode_responses=False``).
        key_prefix: Same prefix as the thread's checkpointer, so a thread's data shares one hash tag.
        ttl: Seconds the archive of a thread lives after its last write (``None``: forever). A checkpointer
            with a TTL on the same prefix also extends archive keys that have one.
        refresh_on_read: Re-arm the TTL on reads too.
        owns_client: Close the client on :meth:`close`.
    """

    def close(self) -> None:
        """Close the client if this archive created it."""
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> RedisArchive:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def record(self, thread_id: str, event: Mapping[str, Any]) -> str:
        """Store an event (its ``"id"``, or a new uuid); returns the id. Re-recording an id overwrites it."""
        return self._driver.run(record_plan(self.context, thread_id, event))

    def list_events(self, thread_id: str, *, newest_first: bool = False, limit: int | None = None,
                    offset: int = 0) -> list[dict[str, Any]]:
        """Summaries (events without spans, with ``n_spans``, ``span_tokens``, ``restored_at``) in time order
        (``offset``: skip that many first)."""
        return self._driver.run(list_plan(self.context, thread_id, newest_first=newest_first, limit=limit,
                                          offset=offset))

    def count_events(self, thread_id: str) -> tuple[int, int]:
        """How many events the thread has archived, and how many are not restored yet (two O(1) reads)."""
        return self._driver.run(count_plan(self.context, thread_id))

    def get_event(self, thread_id: str, event_id: str) -> dict[str, Any]:
        """The full event, spans included; raises ``KeyError`` if absent."""
        return self._driver.run(get_plan(self.context, thread_id, event_id))

    def events(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]:
        """Full events oldest first (by default only those not restored yet)."""
        return self._driver.run(events_plan(self.context, thread_id, include_restored=include_restored))

    def mark_restored(self, thread_id: str, event_id: str, *, restored_at: float | None = None) -> None:
        """Mark an event as restored (now, or at ``restored_at`` epoch seconds); ``KeyError`` if absent."""
        self._driver.run(mark_plan(self.context, thread_id, [event_id], restored_at))

    def original(self, thread_id: str, messages: Sequence[Any]) -> list[Any]:
        """``messages`` (the thread's pruned context) with every unrestored event undone; marks nothing."""
        return self._driver.run(restore_plan(self.context, thread_id, messages, mark=False)).messages

    def restore(
        self, thread_id: str, messages: Sequence[Any], event_id: str | None = None, *, mark: bool = True
    ) -> Restored:
        """Undo one event (or all not restored yet) on ``messages`` and, when ``mark``, mark them restored.

        Raises ``KeyError`` for an unknown event and :class:`~freemem.core.archive.ArchiveMismatch` when the
        messages no longer hold an event's markers where the archive says (e.g. a newer event edited them).
        """
        return self._driver.run(restore_plan(self.context, thread_id, messages, event_id, mark=mark))

    def mark_all_restored(self, thread_id: str, event_ids: Sequence[str]) -> None:
        """Mark several events restored in one round trip; ``KeyError`` if one is absent."""
        self._driver.run(mark_plan(self.context, thread_id, list(event_ids)))

    def find(self, thread_id: str, ref: str) -> list[str]:
        """The archived texts a marker's or fold message's id names (the ``recall`` tool's lookup)."""
        return find_refs(self.events(thread_id, include_restored=True), ref)

    def search(self, thread_id: str, query: str, k: int = 5) -> list[SearchHit]:
        """The ``k`` archived passages of the thread that best match ``query`` (BM25 over the thread's index
        in Redis), best first; never another thread's."""
        return self._driver.run(search_plan(self.context, thread_id, query, k))

    def delete_thread(self, thread_id: str) -> bool:
        """Delete the thread's archive; ``True`` if there was one."""
        return self._driver.run(delete_plan(self.context, thread_id))


class AsyncRedisArchive(_ArchiveShell):
    """Asyncio twin of :class:`RedisArchive` (same arguments, ``redis.asyncio`` clients, ``a``-prefixed methods):
    an :class:`~freemem.archives.AsyncArchive`."""

    _driver_class = AsyncDriver
    _connect = staticmethod(async_client)

    async def aclose(self) -> None:
        """Close the client if this archive created it."""
        if self.owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> AsyncRedisArchive:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def record(self, thread_id: str, event: Mapping[str, Any]) -> str:
        """Not available: an asyncio client cannot serve sync callers. Use :class:`RedisArchive` there."""
        raise StoreError(
            "AsyncRedisArchive is for async code (arecord); give sync agents a RedisArchive instead"
        )

    async def arecord(self, thread_id: str, event: Mapping[str, Any]) -> str:
        """Store an event (its ``"id"``, or a new uuid); returns the id."""
        return await self._driver.run(record_plan(self.context, thread_id, event))

    async def alist_events(
        self, thread_id: str, *, newest_first: bool = False, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Summaries in time order (see :meth:`RedisArchive.list_events`)."""
        return await self._driver.run(list_plan(self.context, thread_id, newest_first=newest_first, limit=limit,
                                                offset=offset))

    async def acount_events(self, thread_id: str) -> tuple[int, int]:
        """How many events the thread has archived, and how many are not restored yet."""
        return await self._driver.run(count_plan(self.context, thread_id))

    async def aget_event(self, thread_id: str, event_id: str) -> dict[str, Any]:
        """The full event, spans included; raises ``KeyError`` if absent."""
        return await self._driver.run(get_plan(self.context, thread_id, event_id))

    async def aevents(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]:
        """Full events oldest first (by default only those not restored yet)."""
        return await self._driver.run(events_plan(self.context, thread_id, include_restored=include_restored))

    async def amark_restored(self, thread_id: str, event_id: str, *, restored_at: float | None = None) -> None:
        """Mark an event as restored; ``KeyError`` if absent."""
        await self._driver.run(mark_plan(self.context, thread_id, [event_id], restored_at))

    async def aoriginal(self, thread_id: str, messages: Sequence[Any]) -> list[Any]:
        """See :meth:`RedisArchive.original`."""
        return (await self._driver.run(restore_plan(self.context, thread_id, messages, mark=False))).messages

    async def arestore(
        self, thread_id: str, messages: Sequence[Any], event_id: str | None = None, *, mark: bool = True
    ) -> Restored:
        """See :meth:`RedisArchive.restore`."""
        return await self._driver.run(restore_plan(self.context, thread_id, messages, event_id, mark=mark))

    async def amark_all_restored(self, thread_id: str, event_ids: Sequence[str]) -> None:
        """Mark several events restored in one round trip; ``KeyError`` if one is absent."""
        await self._driver.run(mark_plan(self.context, thread_id, list(event_ids)))

    async def afind(self, thread_id: str, ref: str) -> list[str]:
        """Async twin of :meth:`RedisArchive.find`."""
        return find_refs(await self.aevents(thread_id, include_restored=True), ref)

    async def asearch(self, thread_id: str, query: str, k: int = 5) -> list[SearchHit]:
        """Async twin of :meth:`RedisArchive.search`."""
        return await self._driver.run(search_plan(self.context, thread_id, query, k))

    async def adelete_thread(self, thread_id: str) -> bool:
        """Delete the thread's archive; ``True`` if there was one."""
        return await self._driver.run(delete_plan(self.context, thread_id))
