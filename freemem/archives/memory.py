"""An archive in process memory, bounded per thread: for tests, notebooks and single-process agents."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from freemem.archives.base import BaseArchive, dump_event, event_time, prepare_event
from freemem.core.archive import summarize_event

__all__ = ["InMemoryArchive"]

T = TypeVar("T")


class InMemoryArchive(BaseArchive):
    """An :class:`~freemem.archives.Archive` (and :class:`~freemem.archives.AsyncArchive`) in process memory.
    Events are copied in as JSON (as every archive stores them), so later changes to the caller's objects do
    not reach them and an event that is not JSON-plain is refused (:class:`~freemem.core.errors.FormatError`).

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
        self._lock = threading.Lock()

    async def _acall(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return fn(*args, **kwargs)  # memory and a lock: nothing blocks

    def record(self, thread_id: str, event: Mapping[str, Any]) -> str:
        stored, _ = prepare_event(event)
        stored = json.loads(dump_event(stored))  # a JSON-plain copy, as every archive stores it
        event_id = stored["id"]
        with self._lock:
            events = self._threads.setdefault(str(thread_id), {})
            events.pop(event_id, None)  # re-recorded: the newest version, at the end
            events[event_id] = stored
            while len(events) > self.max_events:
                events.pop(next(iter(events)))
        return event_id

    def _with_mark(self, thread_id: str, event: dict[str, Any], *, full: bool) -> dict[str, Any]:
        out = copy.deepcopy(event) if full else summarize_event(event)
        out["restored_at"] = self._restored.get((str(thread_id), event["id"]))
        return out

    def _ordered(self, thread_id: str) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._threads.get(str(thread_id), {}).values())
        return sorted(events, key=lambda e: event_time(e["created_at"]))

    def list_events(self, thread_id: str, *, newest_first: bool = False,
                    limit: int | None = None) -> list[dict[str, Any]]:
        events = self._ordered(thread_id)
        if newest_first:
            events.reverse()
        if limit is not None:
            events = events[:max(0, limit)]
        return [self._with_mark(thread_id, e, full=False) for e in events]

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
            self._restored = {k: v for k, v in self._restored.items() if k[0] != str(thread_id)}
        return gone
