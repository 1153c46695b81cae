"""An archive in process memory, bounded per thread: for tests, notebooks and single-process agents."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from freemem.archives.base import BaseArchive, dump_event, event_time, prepare_event
from freemem.archives.search import SearchHit, check_search, distinct_hits
from freemem.core.archive import summarize_event
from freemem.core.bm25 import BM25Index
from freemem.core.passages import Passage, event_passages, terms

__all__ = ["InMemoryArchive"]

T = TypeVar("T")


class InMemoryArchive(BaseArchive):
    """An :class:`~freemem.archives.Archive` (and :class:`~freemem.archives.AsyncArchive`) in process memory.
    Events are copied in as JSON (as every archive stores them), so later changes to the caller's objects do
    not reach them and an event that is not JSON-plain is refused (:class:`~freemem.core.errors.FormatError`).
    Each thread keeps a BM25 index of its events' passages (:mod:`freemem.core.passages`), updated as events are
    recorded, overwritten, evicted or deleted, so :meth:`search` reads only the postings of the query's words.

    Args:
        max_events: per thread; the oldest events go first past it (they can no longer be restored).
        revive: turns an archived LangChain message dump back into a message (default: the registered one,
            :func:`freemem.lc.revive_message`, once LangChain layers are imported).
    """

    def __init__(self, *, max_events: int = 100_000,
                 revive: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.max_events = max_events
        self.revive = revive
        self._threads: dict[str, dict[str, dict[str, Any]]] = {}
        self._restored: dict[tuple[str, str], float] = {}
        #: Per thread: the BM25 index over (event id, passage number) and the passages it ranks.
        self._indexes: dict[str, BM25Index[tuple[str, int]]] = {}
        self._passages: dict[str, dict[str, list[Passage]]] = {}
        self._lock = threading.Lock()

    async def _acall(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)  # memory and a lock: nothing blocks

    def record(self, thread_id: str, event: Mapping[str, Any]) -> str:
        stored, _ = prepare_event(event)
        stored = json.loads(dump_event(stored))  # a JSON-plain copy, as every archive stores it
        event_id = stored["id"]
        passages = event_passages(stored)
        indexed = [terms(p.indexed_text()) for p in passages]
        thread = str(thread_id)
        with self._lock:
            events = self._threads.setdefault(thread, {})
            events.pop(event_id, None)  # re-recorded: the newest version, at the end
            events[event_id] = stored
            self._unindex(thread, event_id)
            index = self._indexes.setdefault(thread, BM25Index())
            self._passages.setdefault(thread, {})[event_id] = passages
            for k, words in enumerate(indexed):
                index.add((event_id, k), words)
            while len(events) > self.max_events:
                self._unindex(thread, events.pop(next(iter(events)))["id"])
        return event_id

    def _unindex(self, thread: str, event_id: str) -> None:
        index = self._indexes.get(thread)
        for k in range(len(self._passages.get(thread, {}).pop(event_id, []))):
            if index is not None:
                index.remove((event_id, k))

    def search(self, thread_id: str, query: str, k: int = 5) -> list[SearchHit]:
        """The ``k`` archived passages of the thread that best match ``query`` (BM25), best first."""
        query_terms = check_search(query, k)
        thread = str(thread_id)
        if not query_terms:
            return []
        with self._lock:
            index = self._indexes.get(thread)
            if index is None:
                return []
            want = k
            while True:
                ranked = index.search(query_terms, want * 4)
                passages = self._passages[thread]
                hits = distinct_hits(((passages[eid][n], s) for (eid, n), s in ranked), query_terms, k)
                if len(hits) == k or len(ranked) < want * 4:
                    return hits
                want *= 4

    def _with_mark(self, thread_id: str, event: dict[str, Any], *, full: bool) -> dict[str, Any]:
        out = copy.deepcopy(event) if full else summarize_event(event)
        out["restored_at"] = self._restored.get((str(thread_id), event["id"]))
        return out

    def _ordered(self, thread_id: str) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._threads.get(str(thread_id), {}).values())
        return sorted(events, key=lambda e: event_time(e["created_at"]))

    def list_events(self, thread_id: str, *, newest_first: bool = False,
                    limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        events = self._ordered(thread_id)
        if newest_first:
            events.reverse()
        events = events[max(0, offset):]
        if limit is not None:
            events = events[:max(0, limit)]
        return [self._with_mark(thread_id, e, full=False) for e in events]

    def count_events(self, thread_id: str) -> tuple[int, int]:
        """How many events the thread has archived, and how many are not restored yet."""
        with self._lock:
            ids = list(self._threads.get(str(thread_id), {}))
            restored = sum(1 for eid in ids if (str(thread_id), eid) in self._restored)
        return len(ids), len(ids) - restored

    def get_event(self, thread_id: str, event_id: str) -> dict[str, Any]:
        with self._lock:
            event = self._threads.get(str(thread_id), {}).get(event_id)
        if event is None:
            raise KeyError(f"no archived event {event_id!r} in thread {thread_id!r}")
        return self._with_mark(thread_id, event, full=True)

    def events(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]:
        out = [self._with_mark(thread_id, e, full=True) for e in self._ordered(thread_id)]
        return out if include_restored else [e for e in out if e["restored_at"] is None]

    def mark_restored(self, thread_id: str, event_id: str, *, restored_at: float | None = None) -> None:
        self.get_event(thread_id, event_id)
        self._restored[(str(thread_id), event_id)] = time.time() if restored_at is None else restored_at

    def mark_all_restored(self, thread_id: str, event_ids: Sequence[str]) -> None:
        for event_id in event_ids:
            self.get_event(thread_id, event_id)  # all or none
        for event_id in event_ids:
            self.mark_restored(thread_id, event_id)

    def delete_thread(self, thread_id: str) -> bool:
        with self._lock:
            gone = self._threads.pop(str(thread_id), None) is not None
            self._indexes.pop(str(thread_id), None)
            self._passages.pop(str(thread_id), None)
            self._restored = {k: v for k, v in self._restored.items() if k[0] != str(thread_id)}
        return gone
