"""The archive contract: what freemem needs of a store of cleaning events, sync and async.

An archive keeps every cleaning event (:meth:`freemem.core.ledger.CleanEvent.to_dict` with ``spans=True``: the
removed spans' original text and the folded messages whole) per thread, so a thread can be shown, audited,
paged back in (the ``recall`` tool) and restored exactly. :class:`Archive` is the sync contract,
:class:`AsyncArchive` its ``a``-prefixed twin; implementations:

* :class:`freemem.archives.InMemoryArchive` -- process memory (both contracts);
* :class:`freemem.archives.SqliteArchive` -- one SQLite file (both contracts; async in a worker thread);
* ``freemem.redis.RedisArchive`` (both: async in a worker thread) and ``AsyncRedisArchive`` (async only).

The rules every implementation keeps (one parametrized suite, ``tests/redis/test_archive_contract.py``, checks each):
``record`` returns the event's id (its ``"id"``, or a new one) and re-recording an id overwrites it; listings
are oldest first by ``created_at`` and carry ``restored_at`` (``None`` until restored); an unknown event is a
:class:`KeyError`; ``restore`` undoes one event (or every unrestored one, newest first), marks them only
when ``mark`` and returns :class:`Restored`; a named event already restored is left alone; undoing every event
skips (``Restored.skipped``, with the reason) those whose markers the messages do not hold -- another branch's
events -- instead of failing. ``search`` ranks the passages of the thread's events (:mod:`freemem.archives.search`)
and returns at most ``k`` :class:`~freemem.archives.search.SearchHit` objects, best first, one per recallable id,
never another thread's; re-recording an event replaces its passages and deleting the thread drops them.

Writing to an archive from the cleaning surfaces goes through :func:`persist_event` / :func:`apersist_event`:
fail closed for the edit (an edit whose removed text could not be stored is not kept), open for the caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from freemem.archives.search import SearchHit, check_search, rank_events
from freemem.core.archive import (
    MISMATCH,
    ArchiveMismatch,
    EventUndo,
    Lineage,
    Skipped,
    event_spans,
    find_refs,
    split_by_lineage,
)
from freemem.core.errors import FormatError

__all__ = [
    "DEFAULT_THREAD",
    "Archive",
    "ArchiveFailure",
    "AsyncArchive",
    "BaseArchive",
    "Restored",
    "SearchHit",
    "apersist_event",
    "dump_event",
    "event_time",
    "persist_event",
    "prepare_event",
    "undo_events",
]

logger = logging.getLogger("freemem")

#: The thread id events are recorded under when the caller names none.
DEFAULT_THREAD = "default"

T = TypeVar("T")


@dataclass
class Restored:
    """What a restore produced: the messages with the spans put back, which events were undone, and which
    were left out and why (``skipped``: events of a branch the messages are not on, or whose markers they do
    not hold; a restore of every event skips them instead of failing)."""

    messages: list[Any]
    event_ids: list[str] = field(default_factory=list)
    tokens_restored: int = 0
    skipped: list[Skipped] = field(default_factory=list)


@runtime_checkable
class Archive(Protocol):
    """A store of cleaning events per thread, sync (see the module docstring for the rules)."""

    def record(self, thread_id: str, event: Mapping[str, Any]) -> str:
        """Store an event; returns its id."""
        ...

    def list_events(self, thread_id: str, *, newest_first: bool = False,
                    limit: int | None = None) -> list[dict[str, Any]]:
        """Summaries (no removed text; ``n_spans``, ``span_tokens``, ``restored_at``) in time order."""
        ...

    def get_event(self, thread_id: str, event_id: str) -> dict[str, Any]:
        """The full event with ``restored_at``; :class:`KeyError` when absent."""
        ...

    def events(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]:
        """Full events oldest first (by default only those not restored yet)."""
        ...

    def mark_restored(self, thread_id: str, event_id: str, *, restored_at: float | None = None) -> None:
        """Mark one event restored; :class:`KeyError` when absent."""
        ...

    def mark_all_restored(self, thread_id: str, event_ids: Sequence[str]) -> None:
        """Mark several events restored; :class:`KeyError` when one is absent."""
        ...

    def original(self, thread_id: str, messages: Sequence[Any]) -> list[Any]:
        """``messages`` with every unrestored event undone; marks nothing."""
        ...

    def restore(self, thread_id: str, messages: Sequence[Any], event_id: str | None = None, *,
                mark: bool = True) -> Restored:
        """Undo one event (or every unrestored one) on ``messages``; mark them restored when ``mark``."""
        ...

    def find(self, thread_id: str, ref: str) -> list[str]:
        """The archived texts a marker's or fold message's id names (the ``recall`` tool's lookup)."""
        ...

    def search(self, thread_id: str, query: str, k: int = 5) -> list[SearchHit]:
        """The ``k`` archived passages of the thread that best match ``query``, best first, each with the id
        that recalls it whole (:class:`~freemem.archives.search.SearchHit`); never another thread's."""
        ...

    def delete_thread(self, thread_id: str) -> bool:
        """Delete the thread's events; ``True`` if there were any."""
        ...


@runtime_checkable
class AsyncArchive(Protocol):
    """The async twin of :class:`Archive`: the same methods, ``a``-prefixed and awaited."""

    async def arecord(self, thread_id: str, event: Mapping[str, Any]) -> str: ...

    async def alist_events(self, thread_id: str, *, newest_first: bool = False,
                           limit: int | None = None) -> list[dict[str, Any]]: ...

    async def aget_event(self, thread_id: str, event_id: str) -> dict[str, Any]: ...

    async def aevents(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]: ...

    async def amark_restored(self, thread_id: str, event_id: str, *, restored_at: float | None = None) -> None: ...

    async def amark_all_restored(self, thread_id: str, event_ids: Sequence[str]) -> None: ...

    async def aoriginal(self, thread_id: str, messages: Sequence[Any]) -> list[Any]: ...

    async def arestore(self, thread_id: str, messages: Sequence[Any], event_id: str | None = None, *,
                       mark: bool = True) -> Restored: ...

    async def afind(self, thread_id: str, ref: str) -> list[str]: ...

    async def asearch(self, thread_id: str, query: str, k: int = 5) -> list[SearchHit]: ...

    async def adelete_thread(self, thread_id: str) -> bool: ...


class BaseArchive:
    """A base for sync archives: given ``record``, ``list_events``, ``get_event``, ``events``,
    ``mark_restored``, ``mark_all_restored`` and ``delete_thread``, it provides ``original``, ``restore``,
    ``find`` (the same for every store) and ``search`` (ranking the thread's events in memory, for stores
    without an index of their own), and every :class:`AsyncArchive` method, each running its sync twin
    through :meth:`_acall` (a worker thread by default, so a blocking store does not stall the event loop; a
    store whose calls never block overrides it to call directly).

    Args of the provided methods as in :class:`Archive`; ``revive`` (an attribute, default None: the registered
    reviver) turns archived LangChain message dumps back into messages.
    """

    revive: Callable[[dict[str, Any]], Any] | None = None

    def original(self, thread_id: str, messages: Sequence[Any]) -> list[Any]:
        """``messages`` (the thread's pruned context) with every unrestored event undone; marks nothing."""
        events = self.events(thread_id)  # type: ignore[attr-defined]
        return undo_events(messages, events, str(thread_id), revive=self.revive).messages

    def restore(self, thread_id: str, messages: Sequence[Any], event_id: str | None = None, *,
                mark: bool = True) -> Restored:
        """Undo one event (or every unrestored one, newest first) on ``messages`` and, when ``mark``, mark them
        restored. A named event already restored is left alone. ``KeyError`` for an unknown event,
        :class:`~freemem.core.archive.ArchiveMismatch` when the messages no longer hold a named event's
        markers; undoing every event skips those whose markers the messages do not hold (another branch's,
        see :class:`~freemem.core.archive.Lineage`) and says so in :attr:`Restored.skipped`."""
        events = ([self.get_event(thread_id, event_id)] if event_id  # type: ignore[attr-defined]
                  else self.events(thread_id))  # type: ignore[attr-defined]
        if event_id and events[0]["restored_at"] is not None:
            return Restored(messages=list(messages))
        result = undo_events(messages, events, str(thread_id), revive=self.revive, strict=bool(event_id))
        if mark:
            self.mark_all_restored(thread_id, result.event_ids)  # type: ignore[attr-defined]
        return result

    def find(self, thread_id: str, ref: str) -> list[str]:
        """The archived texts a marker's or fold message's id names (the ``recall`` tool's lookup)."""
        return find_refs(self.events(thread_id, include_restored=True), ref)  # type: ignore[attr-defined]

    def search(self, thread_id: str, query: str, k: int = 5) -> list[SearchHit]:
        """The ``k`` archived passages of the thread that best match ``query`` (BM25), best first. This base
        reads the thread's events and ranks them in memory; stores with an index of their own override it."""
        query_terms = check_search(query, k)
        if not query_terms:
            return []
        return rank_events(self.events(thread_id, include_restored=True),  # type: ignore[attr-defined]
                           query_terms, k)

    async def _acall(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def arecord(self, thread_id: str, event: Mapping[str, Any]) -> str:
        return await self._acall(self.record, thread_id, event)  # type: ignore[attr-defined]

    async def alist_events(self, thread_id: str, *, newest_first: bool = False,
                           limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        paging = {"offset": offset} if offset else {}  # a subclass's list_events may not page
        return await self._acall(self.list_events, thread_id,  # type: ignore[attr-defined]
                                 newest_first=newest_first, limit=limit, **paging)

    async def acount_events(self, thread_id: str) -> tuple[int, int]:
        """How many events the thread has archived, and how many are not restored yet (the archives that
        count: ``count_events``; optional, outside the protocols: the inspector pages with it)."""
        return await self._acall(self.count_events, thread_id)  # type: ignore[attr-defined]

    async def aget_event(self, thread_id: str, event_id: str) -> dict[str, Any]:
        return await self._acall(self.get_event, thread_id, event_id)  # type: ignore[attr-defined]

    async def aevents(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]:
        return await self._acall(self.events, thread_id,  # type: ignore[attr-defined]
                                 include_restored=include_restored)

    async def amark_restored(self, thread_id: str, event_id: str, *, restored_at: float | None = None) -> None:
        await self._acall(self.mark_restored, thread_id, event_id,  # type: ignore[attr-defined]
                          restored_at=restored_at)

    async def amark_all_restored(self, thread_id: str, event_ids: Sequence[str]) -> None:
        await self._acall(self.mark_all_restored, thread_id, list(event_ids))  # type: ignore[attr-defined]

    async def aoriginal(self, thread_id: str, messages: Sequence[Any]) -> list[Any]:
        return await self._acall(self.original, thread_id, messages)  # type: ignore[attr-defined]

    async def arestore(self, thread_id: str, messages: Sequence[Any], event_id: str | None = None, *,
                       mark: bool = True) -> Restored:
        return await self._acall(self.restore, thread_id, messages, event_id,  # type: ignore[attr-defined]
                                 mark=mark)

    async def afind(self, thread_id: str, ref: str) -> list[str]:
        return await self._acall(self.find, thread_id, ref)  # type: ignore[attr-defined]

    async def asearch(self, thread_id: str, query: str, k: int = 5) -> list[SearchHit]:
        return await self._acall(self.search, thread_id, query, k)

    async def adelete_thread(self, thread_id: str) -> bool:
        return await self._acall(self.delete_thread, thread_id)  # type: ignore[attr-defined]


def event_time(created_at: Any) -> float:
    """Epoch seconds of an event's ``created_at`` (epoch seconds or an ISO 8601 string; naive means UTC), the
    order every archive lists events in; :class:`~freemem.core.errors.FormatError` for anything else."""
    if isinstance(created_at, bool):
        raise FormatError(f"created_at must be epoch seconds or ISO 8601, got {created_at!r}")
    if isinstance(created_at, (int, float)):
        return float(created_at)
    if isinstance(created_at, str):
        try:
            moment = datetime.fromisoformat(created_at.replace("Z", "+00:00"))
        except ValueError as exc:
            raise FormatError(f"created_at is not ISO 8601: {created_at!r}") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    raise FormatError(f"created_at must be epoch seconds or ISO 8601, got {created_at!r}")


def prepare_event(event: Any) -> tuple[dict[str, Any], float]:
    """What every archive's ``record`` stores: a copy of ``event`` with its ``id`` (a new uuid when it has
    none) and ``created_at`` (now when it has none), and that time in epoch seconds (what listings order by).
    :class:`~freemem.core.errors.FormatError` for an event that is not a mapping or a time that is not one."""
    if not isinstance(event, Mapping):
        raise FormatError(f"an archive event is a dict, got {type(event).__name__}")
    stored = dict(event)
    stored["id"] = str(stored.get("id") or uuid.uuid4().hex)
    if stored.get("created_at") is None:
        stored["created_at"] = time.time()
    return stored, event_time(stored["created_at"])


def dump_event(value: Any) -> bytes:
    """``value`` as compact JSON; :class:`~freemem.core.errors.FormatError` when it is not JSON-plain (every archive
    stores events as JSON, so what one accepts every one accepts)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise FormatError(f"archive events must be JSON-plain: {exc}") from exc


def undo_events(messages: Sequence[Any], events: Sequence[Mapping[str, Any]], thread_id: str, *,
                revive: Callable[[dict[str, Any]], Any] | None = None, lineage: Lineage | None = None,
                strict: bool = False) -> Restored:
    """Undo ``events`` (given oldest first) on ``messages``, newest event first; what every archive's
    ``restore`` and ``original`` do.

    ``lineage``: where ``messages`` stand in the thread's checkpoint tree; events of another branch are
    skipped without being tried (:class:`~freemem.core.archive.Lineage`). An event whose markers the messages
    do not hold is skipped (``Restored.skipped`` says which and why; the messages are left as they were
    before it), or, when ``strict`` (restoring one named event), an
    :class:`~freemem.core.archive.ArchiveMismatch` naming the thread and event and saying what to do."""
    undo = EventUndo(messages, revive=revive)
    done: list[str] = []
    tokens = 0
    chosen, skipped = split_by_lineage(events, lineage)
    for event in reversed(chosen):
        try:
            undo.undo(event)
        except ArchiveMismatch as exc:
            if strict:
                raise ArchiveMismatch(
                    f"thread {thread_id!r}, event {event.get('id')!r}: {exc} (a newer event edited the same "
                    "text; restore the newer events first, or restore all)"
                ) from exc
            skipped.append(Skipped(str(event.get("id")), MISMATCH,
                                   f"the messages do not hold its markers ({exc}): recorded on another branch "
                                   "of the thread, or the text was edited since", None))
            continue
        done.append(str(event["id"]))
        tokens += sum(int(s.get("tokens", 0) or 0) for r in event_spans(event) for s in r)
        tokens += sum(int(f.get("tokens", 0) or 0) for f in event.get("folds") or [] if isinstance(f, Mapping))
    order = {str(e.get("id")): i for i, e in enumerate(events)}
    skipped.sort(key=lambda sk: order.get(sk.event_id, 0))
    return Restored(messages=undo.messages, event_ids=done, tokens_restored=tokens, skipped=skipped)


# ------------------------------------------------------------------------------------- persisting edits


@dataclass(frozen=True)
class ArchiveFailure:
    """An event the archive could not take: the edit it describes must not be kept."""

    error: BaseException
    thread_id: str

    @property
    def message(self) -> str:
        return f"archive failed ({type(self.error).__name__}: {self.error}); the edit was not persisted"


def _payload(event: Any, checkpoint: Mapping[str, str] | None = None) -> dict[str, Any]:
    payload = event.to_dict(spans=True) if hasattr(event, "to_dict") else dict(event)
    if checkpoint:
        # The checkpoint the recording step ran on, per namespace (root graph: ""): a restore tells from it
        # whether the event belongs to the branch it restores (freemem.core.archive.Lineage).
        payload.setdefault("checkpoint_map", dict(checkpoint))
        if checkpoint.get(""):
            payload.setdefault("checkpoint_id", checkpoint[""])
    return payload


def _failed(exc: Exception, thread_id: str) -> ArchiveFailure:
    failure = ArchiveFailure(exc, thread_id)
    warnings.warn(f"freemem: {failure.message}", RuntimeWarning, stacklevel=4)
    logger.warning("%s", failure.message, exc_info=exc)
    return failure


def persist_event(archive: Archive | None, thread_id: str | None, event: Any, *,
                  checkpoint: Mapping[str, str] | None = None) -> ArchiveFailure | None:
    """Record ``event`` (a :class:`~freemem.core.ledger.CleanEvent` or its dict) under ``thread_id`` (default
    :data:`DEFAULT_THREAD`); ``checkpoint``: the ids of the checkpoints the recording step ran on, by
    namespace (``{"": id}`` for the root graph), stored as ``checkpoint_map`` / ``checkpoint_id`` (a restore
    tells the event's branch from them). Fail closed: ``None`` when it is stored (or there is no archive);
    otherwise a warning, a log line and the :class:`ArchiveFailure` -- the caller then keeps none of the edit
    (its removed text would be stored nowhere) and goes on."""
    if archive is None:
        return None
    thread = thread_id or DEFAULT_THREAD
    try:
        archive.record(thread, _payload(event, checkpoint))
    except Exception as exc:  # noqa: BLE001 - fail closed for the edit, open for the caller
        return _failed(exc, thread)
    return None


async def apersist_event(archive: Archive | AsyncArchive | None, thread_id: str | None, event: Any, *,
                         checkpoint: Mapping[str, str] | None = None) -> ArchiveFailure | None:
    """Async twin of :func:`persist_event`: the archive's ``arecord`` when it has one, else ``record`` in a
    worker thread."""
    if archive is None:
        return None
    thread = thread_id or DEFAULT_THREAD
    payload = _payload(event, checkpoint)
    try:
        if hasattr(archive, "arecord"):
            await archive.arecord(thread, payload)
        else:
            await asyncio.to_thread(archive.record, thread, payload)
    except Exception as exc:  # noqa: BLE001
        return _failed(exc, thread)
    return None
