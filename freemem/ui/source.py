"""What the inspector shows of a thread, read from any LangGraph checkpointer and any freemem archive.

:class:`ThreadSource` pairs a checkpointer (``InMemorySaver``, ``SqliteSaver``, freemem's ``RedisSaver``, any
``BaseCheckpointSaver``) with an archive (:class:`freemem.InMemoryArchive`, ``freemem.redis.RedisArchive``, any
object with the archive protocol, or none) and answers the inspector's questions in plain data, no HTML:

* which threads exist (:meth:`ThreadSource.threads`);
* per thread (:meth:`ThreadSource.thread`): the tokens of messages sent at each model call, walked from the
  checkpoint history (a model call is a checkpoint that adds an assistant message; what it was sent is the
  state one checkpoint earlier, after freemem's ``before_model`` step), next to what the whole history would
  have weighed; the cleaning events, from the ledger in state (``freemem_ledger``, bounded, no removed text)
  merged with the archive's (every event, with the removed text); the pruned messages as the model sees them;
  the original rebuilt from the archive with every removed span and every folded message located in it;
* the archived texts a marker or fold handle names (:meth:`ThreadSource.recall`);
* putting one event's text back, or every unrestored event's, as a new checkpoint the next ``invoke`` continues
  from (:meth:`ThreadSource.restore`: the only method that writes).

Locating removed spans in the original: the archive undoes events newest first, round by round; each undo
replaces markers by the original text at known offsets, so the positions of everything put back so far shift by
a computable amount. :func:`rebuild` replays exactly that with :func:`freemem.restore_event` (the same code the
archive and ``freemem thread restore`` use) and carries the intervals along.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from freemem import AppliedSpan, ArchiveMismatch, FreeMemory, StoreError, restore_event
from freemem.core.views import message_views
from freemem.langgraph.threads import freemem_refs

__all__ = [
    "Call",
    "EventRow",
    "FieldText",
    "MessageText",
    "Rebuilt",
    "RestoreOutcome",
    "ThreadPage",
    "ThreadSource",
    "ThreadSummary",
    "rebuild",
]

#: freemem's default message marker (``[freemem: #3fa2c1d0 412 tokens freed]``), naming its span's ref.
MARKER_RE = re.compile(r"\[freemem: #([0-9a-f]{8}) \d+ tokens freed\]")
LEDGER_KEY = "freemem_ledger"  # freemem.langgraph.LEDGER_KEY (not imported: this module needs no agent layer)
FOLD_PREFIX = "freemem-fold-"


@dataclass
class ThreadSummary:
    """One row of the thread picker."""

    thread_id: str
    checkpoint_id: str | None
    updated: str | None
    n_messages: int
    n_events: int
    tokens: int


@dataclass
class Call:
    """One model call: the tokens of messages it was sent, and what the unpruned history weighed then."""

    index: int
    tokens_sent: int
    tokens_without: int
    checkpoint_id: str
    #: Ids of the cleaning events made right before this call (by the ``before_model`` step).
    events: list[str] = field(default_factory=list)


@dataclass
class EventRow:
    """A cleaning event as the inspector lists it: the ledger/archive dict plus where it was found."""

    data: dict[str, Any]
    in_state: bool
    in_archive: bool

    @property
    def id(self) -> str:
        return str(self.data.get("id"))

    @property
    def restored(self) -> bool:
        return bool(self.data.get("restored_at"))

    @property
    def restorable(self) -> bool:
        return self.in_archive and not self.restored


@dataclass
class FieldText:
    """One text field of a message, with ``(start, end, event_id)`` intervals of text freemem removed."""

    name: str
    text: str
    freed: list[tuple[int, int, str]] = field(default_factory=list)


@dataclass
class MessageText:
    """A message reduced to what the page shows."""

    index: int
    id: str | None
    role: str
    name: str | None
    fields: list[FieldText]
    tool_calls: list[tuple[str, str, str]]
    tool_call_id: str | None
    fold: str | None = None
    #: ``(event_id, fold handle)`` when this message was folded away (it is only in the original).
    folded_by: tuple[str, str] | None = None


@dataclass
class Rebuilt:
    """The original rebuilt from pruned messages and archived events, with what was removed located in it."""

    messages: list[Any]
    freed: dict[tuple[Any, str], list[tuple[int, int, str]]]
    folded: dict[str, tuple[str, str]]
    #: Why the rebuild stopped early (an event the messages no longer match), else None.
    error: str | None = None


@dataclass
class ThreadPage:
    """Everything the thread view shows."""

    thread_id: str
    checkpoint_id: str | None
    calls: list[Call]
    events: list[EventRow]
    pruned: list[MessageText]
    original: list[MessageText]
    orphans: list[str]
    rebuild_error: str | None
    history_truncated: bool


@dataclass
class RestoreOutcome:
    """What :meth:`ThreadSource.restore` put back."""

    event_ids: list[str]
    tokens_restored: int
    checkpoint_id: str | None


def _msg_key(view: Any) -> Any:
    return view.id if view.id is not None else ("#", view.index)


def _config(thread_id: str, ns: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}


def _event_spans(event: Mapping[str, Any]) -> list[list[AppliedSpan]]:
    rounds = event.get("rounds")
    if rounds is None and event.get("spans") is not None:
        rounds = [event["spans"]]
    out = []
    for spans in rounds or []:
        out.append([s if isinstance(s, AppliedSpan) else AppliedSpan.from_dict(s) for s in spans])
    return out


def _shift(pos: int, spans: Sequence[AppliedSpan]) -> int:
    """Where ``pos`` of a pruned field lands once ``spans`` (sorted) are put back."""
    delta = 0
    for sp in spans:
        if sp.pruned_start + len(sp.marker) <= pos:
            delta += len(sp.original) - len(sp.marker)
        else:
            break
    return pos + delta


def rebuild(pruned: Sequence[Any], events: Sequence[Mapping[str, Any]], *,
            revive: Callable[[dict[str, Any]], Any] | None = None) -> Rebuilt:
    """Undo ``events`` (full archived events, oldest first) on ``pruned``, newest first, tracking where each
    removed span and each folded message lands in the result.

    An event the messages no longer match (:class:`~freemem.ArchiveMismatch`) stops the rebuild there: the
    result is the original as far as it could be rebuilt, and ``error`` says why.
    """
    current = list(pruned)
    freed: dict[tuple[Any, str], list[tuple[int, int, str]]] = {}
    folded: dict[str, tuple[str, str]] = {}
    for event in reversed(list(events)):
        eid = str(event.get("id"))
        try:
            for fold in reversed(list(event.get("folds") or [])):
                current = restore_event(current, {"id": eid, "folds": [fold]}, revive=revive)
                ids = fold.get("message_ids") or [m.get("id") for m in fold.get("messages") or []
                                                   if isinstance(m, Mapping)]
                for mid in ids:
                    if mid is not None:
                        folded.setdefault(str(mid), (eid, str(fold.get("handle"))))
            for spans in reversed(_event_spans(event)):
                views = message_views(current)
                by_id = {v.id: v for v in views if v.id is not None}
                groups: dict[tuple[Any, str], list[AppliedSpan]] = {}
                for sp in spans:
                    view = by_id.get(sp.message_id) if sp.message_id is not None else None
                    if view is None and sp.message_index is not None and sp.message_index < len(views):
                        view = views[sp.message_index]
                    if view is not None:
                        groups.setdefault((_msg_key(view), sp.field), []).append(sp)
                current = restore_event(current, {"id": eid, "rounds": [[s.to_dict() for s in spans]]},
                                        revive=revive)
                for key, group in groups.items():
                    group.sort(key=lambda s: s.pruned_start)
                    moved = [(_shift(s, group), _shift(e, group), who) for s, e, who in freed.get(key, [])]
                    delta = 0
                    for sp in group:
                        start = sp.pruned_start + delta
                        moved.append((start, start + len(sp.original), eid))
                        delta += len(sp.original) - len(sp.marker)
                    freed[key] = moved
        except ArchiveMismatch as exc:
            return Rebuilt(current, freed, folded, error=f"event {eid}: {exc}")
    return Rebuilt(current, freed, folded)


def _texts(messages: Sequence[Any], freed: Mapping[tuple[Any, str], list[tuple[int, int, str]]] | None = None,
           folded: Mapping[str, tuple[str, str]] | None = None) -> list[MessageText]:
    out = []
    for view in message_views(messages):
        key = _msg_key(view)
        fields = [FieldText(name, text, sorted((freed or {}).get((key, name), []), key=lambda iv: (iv[0], -iv[1])))
                  for name, text in view.all_fields().items()]
        out.append(MessageText(index=view.index, id=view.id, role=view.role, name=view.name, fields=fields,
                               tool_calls=list(view.tool_calls), tool_call_id=view.tool_call_id, fold=view.fold,
                               folded_by=(folded or {}).get(view.id) if view.id is not None else None))
    return out


class ThreadSource:
    """A checkpointer and an archive, read for the inspector (and written only by :meth:`restore`).

    Args:
        saver: any LangGraph checkpointer holding the threads.
        archive: the freemem archive the threads' memory recorded into (``None``: the ledger in state only, no
            removed text, nothing to restore).
        channel: the state channel holding the messages.
        checkpoint_ns: the checkpoint namespace (default: the root graph).
        counter: the token counter for the per-call chart (a name for :func:`freemem.get_counter`, or a
            counter); use the memory's, so the chart and the ledger's ``tokens_before`` agree.
        max_history: the most checkpoints of a thread walked for the chart (newest kept).
        max_threads: the most threads the picker lists.
        describe: how the page names where the data lives (e.g. ``redis://127.0.0.1:6379/0``).
    """

    def __init__(self, saver: Any, archive: Any = None, *, channel: str = "messages", checkpoint_ns: str = "",
                 counter: Any = "auto", max_history: int = 5000, max_threads: int = 500,
                 describe: str = "") -> None:
        self.saver = saver
        self.archive = archive
        self.channel = channel
        self.checkpoint_ns = checkpoint_ns
        self.memory = FreeMemory(counter=counter)
        self.max_history = max_history
        self.max_threads = max_threads
        self.describe = describe or type(saver).__name__
        self._lock = threading.Lock()  # one restore at a time per source (read-modify-write of a thread)

    # -- threads -----------------------------------------------------------------------------------------
    def thread_ids(self) -> list[str]:
        """The thread ids the checkpointer holds (at most ``max_threads``), sorted."""
        saver = self.saver
        ids: Iterable[str]
        storage = getattr(saver, "storage", None)
        conn = getattr(saver, "conn", None)
        client, context = getattr(saver, "client", None), getattr(saver, "context", None)
        if isinstance(storage, Mapping):  # InMemorySaver
            ids = [str(t) for t in storage]
        elif isinstance(conn, sqlite3.Connection):  # SqliteSaver
            with getattr(saver, "lock", threading.Lock()):
                saver.setup()
                rows = conn.execute("SELECT DISTINCT thread_id FROM checkpoints LIMIT ?",
                                    (self.max_threads,)).fetchall()
            ids = [str(r[0]) for r in rows]
        elif client is not None and hasattr(getattr(context, "layout", None), "all_namespace_sets_pattern"):
            layout = context.layout  # freemem's RedisSaver: one namespace set per thread, found by SCAN
            found: set[str] = set()
            for key in client.scan_iter(match=layout.all_namespace_sets_pattern(), count=500):
                found.add(layout.thread_of(key.decode() if isinstance(key, bytes) else key))
                if len(found) >= self.max_threads:
                    break
            ids = found
        else:  # any other checkpointer: every checkpoint, deduplicated (slow on big stores, bounded)
            seen: dict[str, None] = {}
            for tup in saver.list(None):
                seen.setdefault(str(tup.config["configurable"]["thread_id"]), None)
                if len(seen) >= self.max_threads:
                    break
            ids = list(seen)
        return sorted(ids)[: self.max_threads]

    def _latest(self, thread_id: str) -> tuple[Any, list[Any], dict[str, Any]]:
        tup = self.saver.get_tuple(_config(thread_id, self.checkpoint_ns))
        if tup is None:
            return None, [], {}
        values = tup.checkpoint.get("channel_values") or {}
        messages = values.get(self.channel)
        if messages is None:
            messages = []
        if not isinstance(messages, list):
            raise StoreError(f"thread {thread_id!r}: channel {self.channel!r} holds a "
                             f"{type(messages).__name__}, not messages")
        return tup, list(messages), values

    def threads(self) -> list[ThreadSummary]:
        """The picker's rows, most recently updated first."""
        out = []
        for tid in self.thread_ids():
            tup, messages, values = self._latest(tid)
            if tup is None:
                continue
            ledger = values.get(LEDGER_KEY) or []
            out.append(ThreadSummary(thread_id=tid, checkpoint_id=tup.config["configurable"].get("checkpoint_id"),
                                     updated=tup.checkpoint.get("ts"), n_messages=len(messages),
                                     n_events=len(ledger) if isinstance(ledger, list) else 0,
                                     tokens=self.memory.count(messages) if messages else 0))
        out.sort(key=lambda t: t.updated or "", reverse=True)
        return out

    # -- one thread --------------------------------------------------------------------------------------
    def _archive_events(self, thread_id: str, *, full: bool) -> list[dict[str, Any]]:
        if self.archive is None:
            return []
        if full:
            return list(self.archive.events(thread_id, include_restored=True))
        return list(self.archive.list_events(thread_id))

    def calls(self, thread_id: str) -> tuple[list[Call], bool]:
        """The model calls of the thread, oldest first, and whether the history walked was cut short."""
        history = list(self.saver.list(_config(thread_id, self.checkpoint_ns), limit=self.max_history + 1))
        truncated = len(history) > self.max_history
        history = history[: self.max_history]
        history.reverse()
        calls: list[Call] = []
        largest: dict[Any, int] = {}  # per message id, its largest version seen: the history without freemem
        prev_ids: set[Any] = set()
        prev_msgs: list[Any] = []
        prev_ledger: set[str] = set()
        pending: list[str] = []
        for tup in history:
            values = tup.checkpoint.get("channel_values") or {}
            msgs = values.get(self.channel)
            msgs = list(msgs) if isinstance(msgs, list) else []
            ledger = values.get(LEDGER_KEY) or []
            ledger_ids = {str(e.get("id")) for e in ledger if isinstance(e, Mapping)}
            pending.extend(sorted(ledger_ids - prev_ledger))
            prev_ledger |= ledger_ids
            views = message_views(msgs)
            new_ai = [v for v in views if v.role == "assistant" and v.id is not None and v.id not in prev_ids]
            if new_ai and prev_msgs:
                sent = self.memory.count(prev_msgs)
                without = sum(largest.values())
                calls.append(Call(index=len(calls) + 1, tokens_sent=sent, tokens_without=max(without, sent),
                                  checkpoint_id=str(tup.config["configurable"].get("checkpoint_id")),
                                  events=pending))
                pending = []
            for view, msg in zip(views, msgs):
                if view.fold is not None:
                    continue
                key = _msg_key(view)
                n = self.memory.count([msg])
                if n > largest.get(key, 0):
                    largest[key] = n
            prev_ids = {v.id for v in views if v.id is not None}
            prev_msgs = msgs
        return calls, truncated

    def events(self, thread_id: str, state_ledger: Sequence[Mapping[str, Any]] = ()) -> list[EventRow]:
        """The thread's cleaning events, oldest first: the archive's, and the state ledger's it lacks."""
        rows: dict[str, EventRow] = {}
        for ev in self._archive_events(thread_id, full=False):
            rows[str(ev.get("id"))] = EventRow(dict(ev), in_state=False, in_archive=True)
        for ev in state_ledger:
            if not isinstance(ev, Mapping):
                continue
            row = rows.get(str(ev.get("id")))
            if row is None:
                rows[str(ev.get("id"))] = EventRow(dict(ev), in_state=True, in_archive=False)
            else:
                row.in_state = True
        return sorted(rows.values(), key=lambda r: float(r.data.get("created_at") or 0))

    def thread(self, thread_id: str) -> ThreadPage:
        """The whole thread view; ``KeyError`` when the checkpointer has no such thread."""
        tup, pruned, values = self._latest(thread_id)
        if tup is None:
            raise KeyError(f"no thread {thread_id!r} in {self.describe}")
        ledger = values.get(LEDGER_KEY) or []
        events = self.events(thread_id, ledger if isinstance(ledger, list) else [])
        full = [e for e in self._archive_events(thread_id, full=True) if not e.get("restored_at")]
        rebuilt = rebuild(pruned, full, revive=getattr(self.archive, "revive", None))
        known = self._known_refs(thread_id)
        orphans = list(dict.fromkeys(r for r in freemem_refs(pruned) if r not in known))
        calls, truncated = self.calls(thread_id)
        return ThreadPage(thread_id=thread_id, checkpoint_id=tup.config["configurable"].get("checkpoint_id"),
                          calls=calls, events=events, pruned=_texts(pruned),
                          original=_texts(rebuilt.messages, rebuilt.freed, rebuilt.folded), orphans=orphans,
                          rebuild_error=rebuilt.error, history_truncated=truncated)

    def event_context(self, thread_id: str, event_id: str) -> tuple[list[MessageText], bool]:
        """The messages of the rebuilt original that ``event_id`` touched (spans it removed, messages it
        folded), and whether the event can still be restored (archived, not restored yet)."""
        tup, pruned, _ = self._latest(thread_id)
        if tup is None:
            raise KeyError(f"no thread {thread_id!r} in {self.describe}")
        full = [e for e in self._archive_events(thread_id, full=True) if not e.get("restored_at")]
        rebuilt = rebuild(pruned, full, revive=getattr(self.archive, "revive", None))
        touched = [m for m in _texts(rebuilt.messages, rebuilt.freed, rebuilt.folded)
                   if any(iv[2] == event_id for f in m.fields for iv in f.freed)
                   or (m.folded_by is not None and m.folded_by[0] == event_id)]
        return touched, any(str(e.get("id")) == event_id for e in full)

    def _known_refs(self, thread_id: str) -> set[str]:
        from freemem.core.archive import event_refs

        known: set[str] = set()
        for ev in self._archive_events(thread_id, full=True):
            known.update(event_refs(ev))
        return known

    def event(self, thread_id: str, event_id: str) -> dict[str, Any]:
        """One archived event in full (spans, folds); ``KeyError`` when absent. Without an archive, the state
        ledger's summary of it."""
        if self.archive is not None:
            try:
                return dict(self.archive.get_event(thread_id, event_id))
            except KeyError:
                pass
        _, _, values = self._latest(thread_id)
        for ev in values.get(LEDGER_KEY) or []:
            if isinstance(ev, Mapping) and str(ev.get("id")) == event_id:
                return dict(ev)
        raise KeyError(f"no cleaning event {event_id!r} in thread {thread_id!r}")

    def recall(self, thread_id: str, ref: str) -> list[str]:
        """The archived texts a marker's ``#ref`` or a fold handle names (what the ``recall`` tool pages in)."""
        if self.archive is None:
            return []
        return list(self.archive.find(thread_id, ref))

    # -- the one write -----------------------------------------------------------------------------------
    def restore(self, thread_id: str, event_id: str | None = None) -> RestoreOutcome:
        """Put one event's removed text (or every unrestored event's, newest first) back into the thread's
        latest messages, store them as a new checkpoint (``source: "update"``), then mark the events restored
        in the archive (after the checkpoint, so a failure in between leaves them restorable).

        Raises ``KeyError`` (no such thread or event), :class:`~freemem.StoreError` (no archive), and
        :class:`~freemem.ArchiveMismatch` when a newer event edited the same text (restore that one first).
        """
        if self.archive is None:
            raise StoreError("no archive: this inspector was started without one, so there is nothing to restore")
        from freemem.langgraph.threads import write_messages

        with self._lock:
            tup, pruned, _ = self._latest(thread_id)
            if tup is None:
                raise KeyError(f"no thread {thread_id!r} in {self.describe}")
            if event_id is not None:
                chosen = [dict(self.archive.get_event(thread_id, event_id))]
            else:
                chosen = list(self.archive.events(thread_id))
            chosen = [e for e in chosen if not e.get("restored_at")]
            if not chosen:
                return RestoreOutcome([], 0, tup.config["configurable"].get("checkpoint_id"))
            current = list(pruned)
            revive = getattr(self.archive, "revive", None)
            for ev in reversed(chosen):
                try:
                    current = restore_event(current, ev, revive=revive)
                except ArchiveMismatch as exc:
                    raise ArchiveMismatch(f"event {ev.get('id')}: {exc} (a newer event edited the same text: "
                                          "restore the newer events first, or restore all)") from exc
            ids = [str(e["id"]) for e in chosen]
            config = write_messages(self.saver, tup, current, channel=self.channel,
                                    note={"freemem_restored": ids})
            marks = getattr(self.archive, "mark_all_restored", None)
            if marks is not None:
                marks(thread_id, ids)
            else:
                for eid in ids:
                    self.archive.mark_restored(thread_id, eid)
            tokens = sum(int(s.tokens or 0) for e in chosen for r in _event_spans(e) for s in r)
            tokens += sum(int(f.get("tokens") or 0) for e in chosen for f in e.get("folds") or []
                          if isinstance(f, Mapping))
            return RestoreOutcome(ids, tokens, config["configurable"].get("checkpoint_id"))
