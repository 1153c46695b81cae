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

Long threads. :meth:`ThreadSource.thread` returns one page of events and one page of messages; the thread's
archived events are read and the original rebuilt once per thread state (latest checkpoint, newest archived
event) and kept for the next pages (``cache_threads``), in one pass linear in what the events removed
(:class:`~freemem.core.archive.EventUndo`); events of another branch of the thread are left out
(:func:`freemem.langgraph.threads.lineage`) and listed in ``ThreadPage.skipped``.

Locating removed spans in the original: the archive undoes events newest first, round by round; each undo
replaces markers by the original text at known offsets, so the positions of everything put back so far shift by
a computable amount. :func:`rebuild` replays exactly that with :class:`~freemem.core.archive.EventUndo` (the same
code the archive and ``freemem thread restore`` use) and :class:`FreedIntervals` carries the intervals along,
per field, when a page asks for them.
"""

from __future__ import annotations

import inspect
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from freemem import AppliedSpan, ArchiveMismatch, FreememError, FreeMemory, StoreError
from freemem.archives import event_time
from freemem.core.archive import (
    MISMATCH,
    EventUndo,
    Lineage,
    Skipped,
    event_refs,
    split_by_lineage,
    summarize_event,
)
from freemem.core.views import message_views
from freemem.langgraph.threads import freemem_refs, lineage

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
    freed: Mapping[Any, list[tuple[int, int, str]]]
    folded: dict[str, tuple[str, str]]
    #: The first event the messages no longer match (it and any like it were left out), else None.
    error: str | None = None
    #: Events left out, and why (another branch's, or not matching the messages).
    skipped: list[Skipped] = field(default_factory=list)


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
    #: Paging: ``events`` and ``pruned`` / ``original`` hold one page (``page_size``) of each.
    events_total: int = 0
    events_page: int = 1
    events_pages: int = 1
    restorable_total: int = 0
    messages_page: int = 1
    messages_pages: int = 1
    pruned_total: int = 0
    original_total: int = 0
    page_size: int = 50
    #: Unrestored events left out of the original, and why (another branch's; not matching the messages).
    skipped: list[Skipped] = field(default_factory=list)
    #: Whether the inspector has an archive (``False``: nothing was archived, which is not text that expired).
    has_archive: bool = True
    #: Removed spans located in the whole original, and messages folded away (all pages).
    freed_total: int = 0
    folded_total: int = 0
    #: Whether ``original`` holds the rebuilt original (False: a long thread's cheap page, which shows the
    #: context as the model sees it; :meth:`ThreadSource.thread` with ``original=True`` rebuilds it).
    original_rebuilt: bool = True
    #: Whether ``orphans`` was worked out (it needs every archived event's refs, read with the original).
    orphans_checked: bool = True
    #: Whether ``calls`` was walked from the checkpoint history (False: a long thread's cheap page, whose chart
    #: is drawn on its own request: :meth:`ThreadSource.thread` with ``chart=True``).
    chart_drawn: bool = True


@dataclass
class RestoreOutcome:
    """What :meth:`ThreadSource.restore` put back."""

    event_ids: list[str]
    tokens_restored: int
    checkpoint_id: str | None
    #: Events left out (another branch's, or not matching the messages), and why.
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class _Measured:
    """What the chart needs of one message of a checkpoint (:meth:`ThreadSource._measured`)."""

    role: str
    id: str | None
    fold: str | None
    tokens: int


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


def _span_key(span: AppliedSpan) -> Any:
    return span.message_id if span.message_id is not None else ("#", span.message_index)


class FreedIntervals(Mapping[Any, list[tuple[int, int, str]]]):
    """Where removed text sits in the rebuilt original: ``{(message key, field): [(start, end, event_id)]}``,
    worked out per field when first asked for (a page of a long thread locates only its own messages)."""

    def __init__(self) -> None:
        #: Per field, the rounds that put text back into it, in the order they were undone.
        self.rounds: dict[Any, list[tuple[str, list[AppliedSpan]]]] = {}
        self._done: dict[Any, list[tuple[int, int, str]]] = {}

    def add(self, event_id: str, spans: list[AppliedSpan]) -> None:
        groups: dict[tuple[Any, str], list[AppliedSpan]] = {}
        for sp in spans:
            groups.setdefault((_span_key(sp), sp.field), []).append(sp)
        for key, group in groups.items():
            self.rounds.setdefault(key, []).append((event_id, sorted(group, key=lambda sp: sp.pruned_start)))
            self._done.pop(key, None)

    def drop(self, event_id: str) -> None:
        """Forget what ``event_id`` put back (an event that did not match, rolled back)."""
        for key, rounds in self.rounds.items():
            if rounds and rounds[-1][0] == event_id:
                while rounds and rounds[-1][0] == event_id:
                    rounds.pop()
                self._done.pop(key, None)

    def __getitem__(self, key: Any) -> list[tuple[int, int, str]]:
        if key not in self.rounds:
            raise KeyError(key)
        done = self._done.get(key)
        if done is None:
            done = []
            for eid, group in self.rounds[key]:
                moved = [(_shift(a, group), _shift(b, group), who) for a, b, who in done]
                delta = 0
                for sp in group:
                    start = sp.pruned_start + delta
                    moved.append((start, start + len(sp.original), eid))
                    delta += len(sp.original) - len(sp.marker)
                done = moved
            self._done[key] = done
        return done

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rounds)

    def __len__(self) -> int:
        return len(self.rounds)

    def count(self) -> int:
        """How many removed spans are located, over every field."""
        return sum(len(group) for rounds in self.rounds.values() for _, group in rounds)

    def keys_of(self, event_id: str) -> set[Any]:
        """The fields ``event_id`` put text back into."""
        return {key for key, rounds in self.rounds.items() if any(eid == event_id for eid, _ in rounds)}


def rebuild(pruned: Sequence[Any], events: Sequence[Mapping[str, Any]], *,
            revive: Callable[[dict[str, Any]], Any] | None = None, lineage: Lineage | None = None) -> Rebuilt:
    """Undo ``events`` (full archived events, oldest first) on ``pruned``, newest first, tracking where each
    removed span and each folded message lands in the result.

    Events of another branch (``lineage``: a concurrent run's that lost the race, a fork) are left out, and so
    is an event the messages no longer match (:class:`~freemem.ArchiveMismatch`): ``skipped`` says which and
    why, and ``error`` names the first mismatch. Linear in what the events removed
    (:class:`~freemem.core.archive.EventUndo`; intervals are located per field when asked for), so a thread of
    thousands of events rebuilds in one pass.
    """
    chosen, skipped = split_by_lineage(events, lineage)
    undo = EventUndo(pruned, revive=revive)
    freed = FreedIntervals()
    folded: dict[str, tuple[str, str]] = {}
    error: str | None = None
    for event in reversed(chosen):
        eid = str(event.get("id"))
        added_folded: list[str] = []

        def on_fold(fold: Mapping[str, Any], eid: str = eid, added: list[str] = added_folded) -> None:
            ids = fold.get("message_ids") or [m.get("id") for m in fold.get("messages") or []
                                               if isinstance(m, Mapping)]
            for mid in ids:
                if mid is not None and str(mid) not in folded:
                    folded[str(mid)] = (eid, str(fold.get("handle")))
                    added.append(str(mid))

        def on_round(spans: list[AppliedSpan], eid: str = eid) -> None:
            freed.add(eid, spans)

        try:
            undo.undo(event, on_round=on_round, on_fold=on_fold)
        except ArchiveMismatch as exc:
            freed.drop(eid)
            for mid in added_folded:
                folded.pop(mid, None)
            skipped.append(Skipped(eid, MISMATCH, f"the messages do not hold its markers ({exc})"))
            error = error or f"event {eid}: {exc}"
    return Rebuilt(undo.messages, freed, folded, error=error, skipped=skipped)


def _texts(messages: Sequence[Any], freed: Mapping[Any, list[tuple[int, int, str]]] | None = None,
           folded: Mapping[str, tuple[str, str]] | None = None, *, start: int = 0,
           stop: int | None = None) -> list[MessageText]:
    """``messages[start:stop]`` reduced to what the page shows (only those are read: a page of a long thread
    costs its own messages)."""
    out = []
    for view in message_views(list(messages[start:stop])):
        view.index += start
        key = _msg_key(view)
        fields = [FieldText(name, text, sorted((freed or {}).get((key, name), []), key=lambda iv: (iv[0], -iv[1])))
                  for name, text in view.all_fields().items()]
        out.append(MessageText(index=view.index, id=view.id, role=view.role, name=view.name, fields=fields,
                               tool_calls=list(view.tool_calls), tool_call_id=view.tool_call_id, fold=view.fold,
                               folded_by=(folded or {}).get(view.id) if view.id is not None else None))
    return out


def _message_id(message: Any) -> str | None:
    found = message.get("id") if isinstance(message, Mapping) else getattr(message, "id", None)
    return None if found is None else str(found)


def _msg_id_key(message: Any, index: int) -> Any:
    mid = _message_id(message)
    return mid if mid is not None else ("#", index)


def _time(value: Any) -> float:
    try:
        return event_time(value)
    except FreememError:
        return 0.0


def _pages(total: int, size: int) -> int:
    return max(1, -(-total // size))


def _page_of(page: int, total: int, size: int) -> tuple[int, int]:
    """``page`` clamped to 1..pages, and the number of pages."""
    pages = _pages(total, size)
    return min(max(1, page), pages), pages


def _takes(method: Callable[..., Any], name: str) -> bool:
    """Whether ``method`` accepts the keyword argument ``name`` (named, or through ``**kwargs``)."""
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) or p.kind is p.VAR_KEYWORD
               for p in params)


@dataclass
class _Rebuild:
    """A thread's rebuilt original and what it needed: every archived event read in full."""

    events: list[EventRow]
    unrestored: set[str]
    rebuilt: Rebuilt
    orphans: list[str]


@dataclass
class _ThreadState:
    """What :meth:`ThreadSource.thread` keeps of a thread between pages: the cheap parts (the latest checkpoint,
    the archive's event summaries) at once, the chart's calls and the rebuilt original when first asked for."""

    tup: Any
    pruned: list[Any]
    ledger: list[Any]
    #: The chart's model calls (walked from the checkpoint history); None until a page asks for the chart.
    calls: list[Call] | None = None
    truncated: bool = False
    #: Rows over every archived event's summary (no removed text), when the archive cannot page; else None.
    listed: list[EventRow] | None = None
    #: Whether every event of the state ledger is in the archive (then the archive's pages are the list's).
    ledger_archived: bool | None = None
    #: The rebuilt original and rows over full events; None until a page or the event view asks for it.
    full: _Rebuild | None = None


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
        page_size: events per page of the event list, and messages per page of the context.
        hint: where else threads may live, said when none are found here (a string, or a callable called
            then: the CLI names the key prefix it looked under and the prefixes that hold threads).
        cache_threads: how many threads' rebuilt originals are kept between page views (each is kept for one
            latest checkpoint and newest archived event: a new checkpoint or event rebuilds it).
        rebuild_events: a thread of more archived events than this is first shown without its original
            rebuilt (the context as the model sees it, the events' summaries: no event read in full), the
            original on request (:meth:`thread` with ``original=True``; the page links to it).
    """

    def __init__(self, saver: Any, archive: Any = None, *, channel: str = "messages", checkpoint_ns: str = "",
                 counter: Any = "auto", max_history: int = 5000, max_threads: int = 500,
                 describe: str = "", page_size: int = 50, hint: str | Callable[[], str] = "",
                 cache_threads: int = 8, rebuild_events: int = 1000) -> None:
        self.saver = saver
        self.archive = archive
        self.channel = channel
        self.checkpoint_ns = checkpoint_ns
        self.memory = FreeMemory(counter=counter)
        self.max_history = max_history
        self.max_threads = max_threads
        self.describe = describe or type(saver).__name__
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        self.page_size = page_size
        self.hint = hint
        self.cache_threads = cache_threads
        if rebuild_events < 0:
            raise ValueError(f"rebuild_events must be at least 0, got {rebuild_events}")
        self.rebuild_events = rebuild_events
        self._cache: OrderedDict[Any, _ThreadState] = OrderedDict()
        self._pages_events: bool | None = None  # whether the archive's list_events takes offset=
        self._cache_lock = threading.Lock()
        self._lock = threading.Lock()  # one restore at a time per source (read-modify-write of a thread)

    # -- threads -----------------------------------------------------------------------------------------
    def empty_hint(self) -> str:
        """Where else to look, when the picker finds no threads (see ``hint``)."""
        try:
            return self.hint() if callable(self.hint) else self.hint
        except Exception as exc:  # noqa: BLE001 - a hint must not turn an empty page into an error
            return f"(could not look elsewhere: {type(exc).__name__}: {exc})"

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
        prev_sent: int | None = None  # tokens of the previous checkpoint's messages (None: it had none)
        prev_ledger: set[str] = set()
        pending: list[str] = []
        memo: dict[Any, tuple[Any, _Measured]] = {}  # per message id: the message last measured, and its measure
        for tup in history:
            values = tup.checkpoint.get("channel_values") or {}
            msgs = values.get(self.channel)
            msgs = list(msgs) if isinstance(msgs, list) else []
            ledger = values.get(LEDGER_KEY) or []
            ledger_ids = {str(e.get("id")) for e in ledger if isinstance(e, Mapping)}
            pending.extend(sorted(ledger_ids - prev_ledger))
            prev_ledger |= ledger_ids
            measured = self._measured(msgs, memo)
            new_ai = [m for m in measured if m.role == "assistant" and m.id is not None and m.id not in prev_ids]
            if new_ai and prev_sent is not None:
                without = sum(largest.values())
                calls.append(Call(index=len(calls) + 1, tokens_sent=prev_sent,
                                  tokens_without=max(without, prev_sent),
                                  checkpoint_id=str(tup.config["configurable"].get("checkpoint_id")),
                                  events=pending))
                pending = []
            for i, m in enumerate(measured):
                if m.fold is not None:
                    continue
                key = m.id if m.id is not None else ("#", i)
                if m.tokens > largest.get(key, 0):
                    largest[key] = m.tokens
            prev_ids = {m.id for m in measured if m.id is not None}
            # Their sum is the list's count: what the next model call sent.
            prev_sent = sum(m.tokens for m in measured) if msgs else None
        return calls, truncated

    def _measured(self, msgs: Sequence[Any], memo: dict[Any, tuple[Any, _Measured]]) -> list[_Measured]:
        """Each message's role, id, fold handle and tokens (as :meth:`FreeMemory.message_tokens` counts them).
        Consecutive checkpoints hold mostly the same messages: one equal (``==``) to the message last measured
        under its id is not read again (none of these depends on the messages around it), so a walk of the
        history costs about its new messages, not every checkpoint's whole list."""
        out: list[_Measured | None] = []
        fresh: list[int] = []
        raws: list[Any] = []
        for i, msg in enumerate(msgs):
            raw = msg.get("id") if isinstance(msg, Mapping) else getattr(msg, "id", None)
            raws.append(raw)
            hit = memo.get(raw) if isinstance(raw, str) else None
            if hit is not None and (hit[0] is msg or hit[0] == msg):
                out.append(hit[1])
            else:
                out.append(None)
                fresh.append(i)
        if fresh:
            snap = self.memory.snapshot([msgs[i] for i in fresh])  # each new message read once
            for i, view, n in zip(fresh, snap.views, snap.tokens, strict=True):
                out[i] = measure = _Measured(role=view.role, id=view.id, fold=view.fold, tokens=n)
                if isinstance(raws[i], str):
                    memo[raws[i]] = (msgs[i], measure)
        return out  # type: ignore[return-value]

    def events(self, thread_id: str, state_ledger: Sequence[Mapping[str, Any]] = (), *,
               archived: Sequence[Mapping[str, Any]] | None = None) -> list[EventRow]:
        """The thread's cleaning events, oldest first: the archive's (``archived``: its full events, already
        read, else its summaries), and the state ledger's it lacks. Rows over full events hold them as they
        are (:meth:`thread` summarises the rows of the page it shows)."""
        rows: dict[str, EventRow] = {}
        listed = self._archive_events(thread_id, full=False) if archived is None else archived
        for ev in listed:  # list_events' summaries are fresh dicts, full events are kept as they are
            rows[str(ev.get("id"))] = EventRow(ev if isinstance(ev, dict) else dict(ev), in_state=False,
                                               in_archive=True)
        for ev in state_ledger:
            if not isinstance(ev, Mapping):
                continue
            row = rows.get(str(ev.get("id")))
            if row is None:
                rows[str(ev.get("id"))] = EventRow(dict(ev), in_state=True, in_archive=False)
            else:
                row.in_state = True
        out = list(rows.values())
        if any(not r.in_archive for r in out):
            out.sort(key=lambda r: _time(r.data.get("created_at")))  # archives list in time order already
        return out

    def _fingerprint(self, thread_id: str) -> Any:
        """What changes when the archive gains an event (the newest one's id and time)."""
        if self.archive is None:
            return None
        newest = self.archive.list_events(thread_id, newest_first=True, limit=1)
        return tuple((str(e.get("id")), e.get("created_at"), e.get("restored_at")) for e in newest)

    def _state(self, thread_id: str, *, full: bool = False, chart: bool = False) -> _ThreadState:
        """The thread's parts a page needs, kept per (latest checkpoint, newest archived event): a later page of
        the same thread state reads only those two. The cheap parts (the latest checkpoint, the archive's
        event summaries) are read at once; the chart's calls (a walk of the checkpoint history) only when
        ``chart``; every archived event in full, their lineage and the rebuilt original only when ``full``
        (the original's view, the event view); each kept once read."""
        tup, pruned, values = self._latest(thread_id)
        if tup is None:
            raise KeyError(f"no thread {thread_id!r} in {self.describe}")
        key = (thread_id, tup.config["configurable"].get("checkpoint_id"), self._fingerprint(thread_id))
        with self._cache_lock:
            state = self._cache.get(key)
            if state is not None:
                self._cache.move_to_end(key)
        if state is None:
            ledger = values.get(LEDGER_KEY) or []
            state = _ThreadState(tup=tup, pruned=pruned, ledger=ledger if isinstance(ledger, list) else [])
        self._fill(thread_id, state, full=full, chart=chart)
        with self._cache_lock:
            self._cache[key] = state
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_threads:
                self._cache.popitem(last=False)
        return state

    def _fill(self, thread_id: str, state: _ThreadState, *, full: bool, chart: bool) -> None:
        """Read into ``state`` (kept in the cache as it is) the chart's calls when ``chart`` and the rebuilt
        original when ``full``, unless read already."""
        if chart and state.calls is None:
            state.calls, state.truncated = self.calls(thread_id)
        if full and state.full is None:
            state.full = self._rebuild(thread_id, state)

    def _rebuild(self, thread_id: str, state: _ThreadState) -> _Rebuild:
        """Every archived event of the thread read in full, its branch found, and the original rebuilt."""
        full = self._archive_events(thread_id, full=True)
        unrestored = [e for e in full if not e.get("restored_at")]
        branch = (lineage(self.saver, state.tup, unrestored, checkpoint_ns=self.checkpoint_ns)
                  if unrestored else None)
        rebuilt = rebuild(state.pruned, unrestored, revive=getattr(self.archive, "revive", None), lineage=branch)
        known: set[str] = set()
        for ev in full:
            known.update(event_refs(ev))
        return _Rebuild(events=self.events(thread_id, state.ledger, archived=full),
                        unrestored={str(e.get("id")) for e in unrestored}, rebuilt=rebuilt,
                        orphans=self._orphans(state.pruned, known))

    @staticmethod
    def _orphans(pruned: Sequence[Any], known: set[str]) -> list[str]:
        return list(dict.fromkeys(r for r in freemem_refs(pruned) if r not in known))

    def forget(self, thread_id: str) -> None:
        """Drop what is kept of ``thread_id`` (after a write through this source)."""
        with self._cache_lock:
            for key in [k for k in self._cache if k[0] == thread_id]:
                del self._cache[key]

    def _pageable(self, thread_id: str, state: _ThreadState) -> bool:
        """Whether the event list can be read a page at a time from the archive: it counts and pages
        (``count_events``, ``list_events(offset=)``) and holds every event of the state ledger (checked once
        per thread state against the archive's newest events: the ledger keeps the newest)."""
        if self.archive is None or not callable(getattr(self.archive, "count_events", None)):
            return False
        if self._pages_events is None:  # an archive of one's own may count without paging
            self._pages_events = _takes(self.archive.list_events, "offset")
        if not self._pages_events:
            return False
        if state.ledger_archived is None:
            ids = {str(e.get("id")) for e in state.ledger if isinstance(e, Mapping)}
            newest = (self.archive.list_events(thread_id, newest_first=True, limit=len(ids)) if ids else [])
            state.ledger_archived = ids <= {str(e.get("id")) for e in newest}
        return state.ledger_archived

    def _listed(self, thread_id: str, state: _ThreadState) -> list[EventRow]:
        if state.full is not None:
            return state.full.events
        if state.listed is None:
            state.listed = self.events(thread_id, state.ledger)
        return state.listed

    def thread(self, thread_id: str, *, events_page: int = 1, messages_page: int = 1,
               original: bool | None = None, chart: bool | None = None) -> ThreadPage:
        """The thread view, one page of events and one page of messages (``page_size`` each; 1 is the
        oldest; a page past the end shows the last); ``KeyError`` when the checkpointer has no such thread.

        ``original``: whether to rebuild the original (every archived event read in full: the cost of a long
        thread's first view); ``None`` rebuilds it for threads of at most ``rebuild_events`` archived events.
        Without it the page shows the context as the model sees it and one page of the events' summaries
        (read a page at a time when the archive can), ``original_rebuilt`` is False, and ``original=True``
        rebuilds it (kept for the next pages, like the rest of the thread's state).

        ``chart``: whether to walk the checkpoint history for the chart's ``calls`` (up to ``max_history``
        checkpoints, each read in full: seconds for a long history); ``None`` walks it with the original.
        Without it ``calls`` is empty and ``chart_drawn`` False (the inspector draws it on its own request)."""
        state = self._state(thread_id)
        size = self.page_size
        pageable = self._pageable(thread_id, state)
        counted = self.archive.count_events(thread_id) if pageable and not original else None  # (all, not restored yet)
        if original is None:
            count = counted[0] if counted is not None else len(self._listed(thread_id, state))
            original = count <= self.rebuild_events
        if chart is None:
            chart = original
        if original or chart:
            self._fill(thread_id, state, full=original, chart=chart)
        pruned = state.pruned
        common: dict[str, Any] = dict(
            thread_id=thread_id, checkpoint_id=state.tup.config["configurable"].get("checkpoint_id"),
            calls=list(state.calls or []) if chart else [], history_truncated=chart and state.truncated,
            chart_drawn=chart, pruned_total=len(pruned), page_size=size, has_archive=self.archive is not None)
        if not original or state.full is None:
            # The cheap page: the context as the model sees it and one page of event summaries, no archived
            # event read in full. Markers whose text the archive lacks are told only with the original (that
            # needs every event's refs) -- or at once when there is no archive (then no marker's text is here).
            if counted is not None:
                total, restorable = counted
                ev_page, ev_pages = _page_of(events_page, total, size)
                in_state = {str(e.get("id")) for e in state.ledger if isinstance(e, Mapping)}
                shown = [EventRow(ev, in_state=str(ev.get("id")) in in_state, in_archive=True)
                         for ev in self.archive.list_events(thread_id, offset=(ev_page - 1) * size, limit=size)]
            else:
                rows = self._listed(thread_id, state)
                total, restorable = len(rows), sum(1 for e in rows if e.restorable)
                ev_page, ev_pages = _page_of(events_page, total, size)
                shown = [EventRow(summarize_event(r.data) if r.in_archive and state.full is not None else r.data,
                                  r.in_state, r.in_archive) for r in rows[(ev_page - 1) * size: ev_page * size]]
            msg_page, msg_pages = _page_of(messages_page, len(pruned), size)
            lo, hi = (msg_page - 1) * size, msg_page * size
            return ThreadPage(**common, events=shown, events_total=total, events_page=ev_page,
                              events_pages=ev_pages, pruned=_texts(pruned, start=lo, stop=hi), original=[],
                              orphans=self._orphans(pruned, set()) if self.archive is None else [],
                              rebuild_error=None, restorable_total=restorable,
                              messages_page=msg_page, messages_pages=msg_pages, original_total=0,
                              original_rebuilt=False, orphans_checked=self.archive is None)
        events = state.full.events
        ev_page, ev_pages = _page_of(events_page, len(events), size)
        shown = [EventRow(summarize_event(r.data) if r.in_archive else r.data, r.in_state, r.in_archive)
                 for r in events[(ev_page - 1) * size: ev_page * size]]
        built = state.full
        rebuilt = built.rebuilt
        msg_pages = max(_pages(len(rebuilt.messages), size), _pages(len(pruned), size))
        msg_page = min(max(1, messages_page), msg_pages)
        lo, hi = (msg_page - 1) * size, msg_page * size
        freed = rebuilt.freed
        return ThreadPage(**common, events=shown, events_total=len(events), events_page=ev_page,
                          events_pages=ev_pages, pruned=_texts(pruned, start=lo, stop=hi),
                          original=_texts(rebuilt.messages, freed, rebuilt.folded, start=lo, stop=hi),
                          orphans=built.orphans, rebuild_error=rebuilt.error,
                          restorable_total=sum(1 for e in events if e.restorable) - len(rebuilt.skipped),
                          messages_page=msg_page, messages_pages=msg_pages,
                          original_total=len(rebuilt.messages), skipped=rebuilt.skipped,
                          freed_total=freed.count() if isinstance(freed, FreedIntervals) else len(freed),
                          folded_total=len(rebuilt.folded))

    def event_context(self, thread_id: str, event_id: str) -> tuple[list[MessageText], bool]:
        """The messages of the rebuilt original that ``event_id`` touched (spans it removed, messages it
        folded), and whether the event can still be restored (archived, not restored yet, on the branch)."""
        state = self._state(thread_id, full=True)
        assert state.full is not None
        rebuilt = state.full.rebuilt
        freed = rebuilt.freed
        keys = (freed.keys_of(event_id) if isinstance(freed, FreedIntervals)
                else {k for k, ivs in freed.items() if any(iv[2] == event_id for iv in ivs)})
        messages_of = {k for k, _ in keys}
        wanted = [i for i, m in enumerate(rebuilt.messages)
                  if _msg_id_key(m, i) in messages_of
                  or rebuilt.folded.get(str(_message_id(m)), ("",))[0] == event_id]
        touched = [t for i in wanted for t in _texts(rebuilt.messages, freed, rebuilt.folded, start=i, stop=i + 1)]
        skipped = {sk.event_id for sk in rebuilt.skipped}
        return touched, event_id in state.full.unrestored and event_id not in skipped

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
        """Put one event's removed text (or every unrestored event's of the thread's branch, newest first) back
        into the thread's latest messages, store them as a new checkpoint (``source: "update"``), then mark the
        events restored in the archive (after the checkpoint, so a failure in between leaves them restorable):
        :func:`freemem.langgraph.restore_thread`. Events of another branch are skipped (``skipped`` says why).

        Raises ``KeyError`` (no such thread or event), :class:`~freemem.StoreError` (no archive), and
        :class:`~freemem.ArchiveMismatch` when a newer event edited the same text (restore that one first).
        """
        if self.archive is None:
            raise StoreError("no archive: this inspector was started without one, so there is nothing to restore")
        from freemem.langgraph.threads import restore_thread

        with self._lock:
            tup, _, _ = self._latest(thread_id)
            if tup is None:
                raise KeyError(f"no thread {thread_id!r} in {self.describe}")
            try:
                result = restore_thread(self.saver, self.archive, thread_id, event_id, channel=self.channel,
                                        checkpoint_ns=self.checkpoint_ns)
            finally:
                self.forget(thread_id)
            after, _, _ = self._latest(thread_id) if result.event_ids else (tup, None, None)
            return RestoreOutcome(result.event_ids, result.tokens_restored,
                                  after.config["configurable"].get("checkpoint_id"), skipped=result.skipped)
