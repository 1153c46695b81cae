"""Rebuild originals from pruned text plus the archived spans (the inverse of :func:`apply_commands`).

Every :class:`~freemem.core.outcome.AppliedSpan` knows its field, its original text, its marker and where the marker
sits in the pruned field, so one round is undone exactly; a tool-call argument string gets back its bytes as
they were encoded in the arguments JSON (``AppliedSpan.raw_original``). Several rounds are undone newest first
(:func:`restore_rounds`); persisting the spans is the job of a store (``freemem.redis.RedisArchive``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from freemem.core.apply import span_ref
from freemem.core.edits import ArgPiece, edit_messages
from freemem.core.errors import FormatError, FreememError
from freemem.core.folding import FoldMismatch, unfold
from freemem.core.json_args import parse_arg_field
from freemem.core.outcome import AppliedSpan
from freemem.core.views import message_views

__all__ = [
    "Archive",
    "ArchiveMismatch",
    "InMemoryArchive",
    "arecord_event",
    "event_refs",
    "event_spans",
    "find_refs",
    "normalize_ref",
    "record_event",
    "render_folded",
    "restore_event",
    "restore_messages",
    "restore_rounds",
    "restore_text",
    "summarize_event",
]


class ArchiveMismatch(FreememError):
    """The pruned text no longer holds a span's marker where the archive says it is."""


def _as_spans(spans: Iterable[AppliedSpan | dict[str, Any]]) -> list[AppliedSpan]:
    return [s if isinstance(s, AppliedSpan) else AppliedSpan.from_dict(s) for s in spans]


def _restore_field(pruned: str, spans: list[AppliedSpan]) -> str:
    out: list[str] = []
    at = 0
    for span in sorted(spans, key=lambda s: s.pruned_start):
        end = span.pruned_start + len(span.marker)
        if pruned[span.pruned_start:end] != span.marker or span.pruned_start < at:
            raise ArchiveMismatch(
                f"marker {span.marker!r} not found at offset {span.pruned_start} of field {span.field!r}"
            )
        out.append(pruned[at:span.pruned_start])
        out.append(span.original)
        at = end
    out.append(pruned[at:])
    return "".join(out)


def restore_text(pruned: str, spans: Iterable[AppliedSpan | dict[str, Any]]) -> str:
    """Undo one round on plain text."""
    return _restore_field(pruned, _as_spans(spans))


def restore_messages(messages: Sequence[Any], spans: Iterable[AppliedSpan | dict[str, Any]]) -> list[Any]:
    """Undo one round on messages. Spans find their message by id when it has one, else by index."""
    spans = _as_spans(spans)
    if not spans:
        return list(messages)
    views = message_views(messages)
    by_id = {v.id: v for v in views if v.id is not None}
    groups: dict[tuple[int, str], list[AppliedSpan]] = {}
    for span in spans:
        view = by_id.get(span.message_id) if span.message_id is not None else None
        if view is None:
            if span.message_index is None or span.message_index >= len(views):
                raise ArchiveMismatch(f"message {span.message_id or span.message_index} is gone")
            view = views[span.message_index]
        groups.setdefault((view.index, span.field), []).append(span)
    edits: dict[tuple[int | None, str], str] = {}
    pieces: dict[tuple[int | None, str], list[ArgPiece]] = {}
    for (index, fname), group in groups.items():
        fields = views[index].all_fields()
        if fname not in fields:
            raise ArchiveMismatch(f"message {index} has no field {fname!r}")
        edits[(index, fname)] = _restore_field(fields[fname], group)
        if parse_arg_field(fname) is not None:
            # Each marker's bytes in the arguments JSON give way to the original as it was encoded (spans
            # archived before ``raw_original`` existed: encoded like the string, JSON-equal).
            pieces[(index, fname)] = [(sp.pruned_start, sp.pruned_start + len(sp.marker), sp.original,
                                       sp.raw_original) for sp in sorted(group, key=lambda sp: sp.pruned_start)]
    return edit_messages(messages, edits, arg_pieces=pieces)


def restore_rounds(pruned: Any, rounds: Sequence[Iterable[AppliedSpan | dict[str, Any]]]) -> Any:
    """Undo several rounds, given oldest first: text (str) or messages (list)."""
    current = pruned
    for spans in reversed(list(rounds)):
        current = restore_text(current, spans) if isinstance(current, str) else restore_messages(current, spans)
    return current


# ------------------------------------------------------------------------------------------------ events
# An archived event (``CleanEvent.to_dict(spans=True)``) holds its deletion rounds and, after them, its folds.


def event_spans(event: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    """An event's removed spans, one list per round (``rounds``; a flat ``spans`` list is one round)."""
    rounds = event.get("rounds")
    if rounds is None and event.get("spans") is not None:
        rounds = [event["spans"]]
    if rounds is None:
        return []
    if not isinstance(rounds, list) or not all(isinstance(r, list) for r in rounds):
        raise FormatError(f"event {event.get('id')!r}: 'rounds' must be a list of span lists")
    return rounds


def summarize_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event without its removed text or folded messages, plus ``n_spans``, ``span_tokens``, ``n_folds``
    and each fold's summary (handle, size, tokens)."""
    summary = {k: v for k, v in event.items() if k not in ("rounds", "spans", "folds")}
    folds = [f for f in event.get("folds") or [] if isinstance(f, Mapping)]
    if folds:
        summary["folds"] = [{k: v for k, v in f.items() if k not in ("messages", "message_ids", "digest")}
                            for f in folds]
    summary["n_folds"] = len(folds)
    spans = [s for r in event_spans(event) for s in r]
    summary["n_spans"] = len(spans)
    summary["span_tokens"] = sum(int(s.get("tokens", 0) or 0) for s in spans if isinstance(s, Mapping))
    return summary


def normalize_ref(ref: str) -> str:
    """The id a marker or fold message names, as given by a model or a user: ``#3fa2c1d0``, ``"f1a2b3c4d"``."""
    return str(ref).strip().strip("\"'").lstrip("#").strip()


def restore_event(messages: Sequence[Any], event: Mapping[str, Any], *,
                  revive: Callable[[dict[str, Any]], Any] | None = None) -> list[Any]:
    """Undo one archived event on ``messages``: its folds newest first, then its rounds newest first (the
    reverse of the order it made them in, so message indexes and marker offsets line up at every step)."""
    current: list[Any] = list(messages)
    for fold in reversed(list(event.get("folds") or [])):
        try:
            current = unfold(current, fold, revive=revive)
        except FoldMismatch as exc:
            raise ArchiveMismatch(str(exc)) from exc
    return restore_rounds(current, event_spans(event))


def event_refs(event: Mapping[str, Any]) -> dict[str, list[str]]:
    """What an event can page back in, by the id a marker or fold message names: ``{ref: [texts]}`` (a span's
    original text under its :func:`~freemem.core.apply.span_ref`; a fold's folded messages, rendered, under its
    handle)."""
    out: dict[str, list[str]] = {}
    for spans in event.get("rounds") or []:
        for span in spans:
            original = span.get("original") if isinstance(span, Mapping) else None
            if isinstance(original, str):
                out.setdefault(span_ref(original), []).append(original)
    for fold in event.get("folds") or []:
        if isinstance(fold, Mapping) and fold.get("messages") is not None:
            out.setdefault(str(fold["handle"]), []).append(render_folded(fold["messages"]))
    return out


def render_folded(records: Sequence[Mapping[str, Any]]) -> str:
    """Folded messages (archived form) as readable text: a ``[role name #id]`` header and the text of each."""
    parts: list[str] = []
    for rec in records:
        msg = rec.get("message") if isinstance(rec, Mapping) else None
        if not isinstance(msg, Mapping):
            continue
        role = msg.get("role") or {"human": "user", "ai": "assistant"}.get(str(msg.get("type")), msg.get("type"))
        content = msg.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") if isinstance(p, Mapping) else str(p) for p in content)
        head = f"[{role}"
        if msg.get("name"):
            head += f" {msg['name']}"
        ref = msg.get("tool_call_id") or msg.get("id")
        if ref:
            head += f" #{ref}"
        calls = []
        for call in msg.get("tool_calls") or []:
            if isinstance(call, Mapping):
                fn = call.get("function") if isinstance(call.get("function"), Mapping) else None
                name = fn.get("name") if fn else call.get("name")
                args = fn.get("arguments") if fn else json.dumps(call.get("args"), ensure_ascii=False)
                calls.append(f"\n[call {name} #{call.get('id')}] {args}")
        parts.append(head + "]\n" + str(content or "") + "".join(calls))
    return "\n\n".join(parts)


class Archive(Protocol):
    """What freemem needs of an archive: store an event per thread, list and read them back, mark restored.

    :class:`InMemoryArchive` (process memory) and ``freemem.redis.RedisArchive`` implement it; async callers
    use ``arecord`` when the archive has it (see :func:`arecord_event`).
    """

    def record(self, thread_id: str, event: Mapping[str, Any]) -> str: ...

    def list_events(self, thread_id: str, *, newest_first: bool = False,
                    limit: int | None = None) -> list[dict[str, Any]]: ...

    def get_event(self, thread_id: str, event_id: str) -> dict[str, Any]: ...

    def events(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]: ...


def record_event(archive: Any, thread_id: str, event: Any) -> str:
    """Store a :class:`~freemem.core.ledger.CleanEvent` (or its dict) in ``archive``; raises what the archive
    raises (callers decide: the LangGraph surfaces then persist no edit)."""
    payload = event.to_dict(spans=True) if hasattr(event, "to_dict") else dict(event)
    return archive.record(thread_id, payload)


async def arecord_event(archive: Any, thread_id: str, event: Any) -> str:
    """Async twin of :func:`record_event`: the archive's ``arecord`` when it has one, else ``record`` in a
    worker thread."""
    payload = event.to_dict(spans=True) if hasattr(event, "to_dict") else dict(event)
    if hasattr(archive, "arecord"):
        return await archive.arecord(thread_id, payload)
    return await asyncio.to_thread(archive.record, thread_id, payload)


def find_refs(events: Iterable[Mapping[str, Any]], ref: str) -> list[str]:
    """The archived texts an id names, over ``events`` (newest match last)."""
    ref = normalize_ref(ref)
    out: list[str] = []
    for event in events:
        out.extend(event_refs(event).get(ref, []))
    return out


class InMemoryArchive:
    """An :class:`Archive` in process memory (bounded per thread): for tests, notebooks and single-process
    agents. Events are copied in (JSON-plain), so later changes to the caller's objects do not reach them.

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

    def record(self, thread_id: str, event: Mapping[str, Any]) -> str:
        stored = copy.deepcopy(dict(event))
        event_id = str(stored.get("id") or uuid.uuid4().hex)
        stored["id"] = event_id
        stored.setdefault("created_at", time.time())
        with self._lock:
            events = self._threads.setdefault(str(thread_id), {})
            events[event_id] = stored
            while len(events) > self.max_events:
                events.pop(next(iter(events)))
        return event_id

    async def arecord(self, thread_id: str, event: Mapping[str, Any]) -> str:
        return self.record(thread_id, event)

    def _with_mark(self, thread_id: str, event: dict[str, Any], *, full: bool) -> dict[str, Any]:
        out = copy.deepcopy(event) if full else summarize_event(event)
        out["restored_at"] = self._restored.get((str(thread_id), event["id"]))
        return out

    def _ordered(self, thread_id: str) -> list[dict[str, Any]]:
        with self._lock:
            events = list(self._threads.get(str(thread_id), {}).values())
        return sorted(events, key=lambda e: float(e.get("created_at") or 0))

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
            self.mark_restored(thread_id, event_id)

    def original(self, thread_id: str, messages: Sequence[Any]) -> list[Any]:
        """``messages`` with every unrestored event undone; marks nothing."""
        current = list(messages)
        for event in reversed(self.events(thread_id)):
            current = restore_event(current, event, revive=self.revive)
        return current

    def restore(self, thread_id: str, messages: Sequence[Any], event_id: str | None = None, *,
                mark: bool = True) -> list[Any]:
        """Undo one event (or every unrestored one, newest first) on ``messages``; mark them restored."""
        events = [self.get_event(thread_id, event_id)] if event_id else self.events(thread_id)
        current = list(messages)
        for event in reversed(events):
            current = restore_event(current, event, revive=self.revive)
        if mark:
            self.mark_all_restored(thread_id, [e["id"] for e in events])
        return current

    def find(self, thread_id: str, ref: str) -> list[str]:
        """The archived texts a marker's or fold message's id names (see :func:`find_refs`)."""
        return find_refs(self._ordered(thread_id), ref)

    def delete_thread(self, thread_id: str) -> bool:
        with self._lock:
            return self._threads.pop(str(thread_id), None) is not None
