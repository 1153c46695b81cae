"""Rebuild originals from pruned text plus the archived spans (the inverse of :func:`apply_commands`).

Every :class:`~freemem.core.outcome.AppliedSpan` knows its field, its original text, its marker and where the marker
sits in the pruned field, so one round is undone exactly; a tool-call argument string gets back its bytes as
they were encoded in the arguments JSON (``AppliedSpan.raw_original``). Several rounds are undone newest first
(:func:`restore_rounds`); persisting the spans is the job of a store (:mod:`freemem.archives`: the
``Archive`` contract, in memory, SQLite; ``freemem.redis.RedisArchive``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from freemem.core.apply import span_ref
from freemem.core.edits import ArgPiece, edit_messages
from freemem.core.errors import FormatError, FreememError
from freemem.core.folding import FOLD_ID_PREFIX, FoldMismatch, unfold
from freemem.core.json_args import parse_arg_field
from freemem.core.outcome import AppliedSpan
from freemem.core.passages import tool_calls
from freemem.core.views import message_views

__all__ = [
    "ArchiveMismatch",
    "EventUndo",
    "Lineage",
    "Skipped",
    "event_checkpoint",
    "event_refs",
    "event_spans",
    "find_refs",
    "flatten_fold",
    "normalize_ref",
    "render_folded",
    "restore_event",
    "restore_messages",
    "restore_rounds",
    "restore_text",
    "split_by_lineage",
    "summarize_event",
    "thread_folds",
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


def _message_id(message: Any) -> str | None:
    found = message.get("id") if isinstance(message, Mapping) else getattr(message, "id", None)
    return None if found is None else str(found)


class EventUndo:
    """Undo archived events on a message list one at a time (newest first), touching only the messages each
    names: the same result as :func:`restore_event` in turn, in time linear in what the events removed rather
    than in events x messages (a long thread's inspector page, a restore of thousands of events).

    An event that does not match (:class:`ArchiveMismatch`) leaves the messages as they were before it.
    ``on_round(spans)`` and ``on_fold(fold)`` are called as each round and fold of an event is undone (the
    inspector locates removed text with them); ``messages`` is the current list.
    """

    def __init__(self, messages: Sequence[Any], *, revive: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.messages: list[Any] = list(messages)
        self.revive = revive
        self._pos: dict[str, int] | None = None

    def _index(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = {}
            for i, message in enumerate(self.messages):
                mid = _message_id(message)
                if mid is not None:
                    self._pos.setdefault(mid, i)
        return self._pos

    def undo(self, event: Mapping[str, Any], *,
             on_round: Callable[[list[AppliedSpan]], None] | None = None,
             on_fold: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        """Undo ``event`` (its folds newest first, then its rounds newest first)."""
        log: list[tuple[int, Any] | list[Any]] = []  # (index, message before) or the whole list before
        try:
            for fold in reversed(list(event.get("folds") or [])):
                log.append(self.messages)
                try:
                    self.messages = unfold(self.messages, fold, revive=self.revive)
                except FoldMismatch as exc:
                    raise ArchiveMismatch(str(exc)) from exc
                self._pos = None
                if on_fold is not None:
                    on_fold(fold)
            for raw in reversed(event_spans(event)):
                spans = _as_spans(raw)
                self._undo_round(spans, log)
                if on_round is not None:
                    on_round(spans)
        except ArchiveMismatch:
            for entry in reversed(log):
                if isinstance(entry, list):
                    self.messages = entry
                    self._pos = None
                else:
                    self.messages[entry[0]] = entry[1]
            raise

    def _undo_round(self, spans: list[AppliedSpan], log: list[tuple[int, Any] | list[Any]]) -> None:
        if not spans:
            return
        pos = self._index()
        groups: dict[str, list[AppliedSpan]] = {}
        for span in spans:
            if span.message_id is None or span.message_id not in pos:
                break  # a span placed by index (or a message that is gone): the whole list, as restore_messages
            groups.setdefault(span.message_id, []).append(span)
        else:
            for mid, group in groups.items():
                at = pos[mid]
                (restored,) = _restore_one(self.messages[at], group)
                log.append((at, self.messages[at]))
                self.messages[at] = restored
            return
        log.append(self.messages)
        self.messages = restore_messages(self.messages, spans)
        self._pos = None


def _restore_one(message: Any, spans: list[AppliedSpan]) -> list[Any]:
    """:func:`restore_messages` on one message; a string ``content`` (by far the most common field) is spliced
    without reading the message's other fields."""
    if all(span.field == "content" for span in spans):
        content = message.get("content") if isinstance(message, Mapping) else getattr(message, "content", None)
        if isinstance(content, str):
            return edit_messages([message], {(0, "content"): _restore_field(content, spans)})
    return restore_messages([message], spans)


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


def render_folded(records: Sequence[Mapping[str, Any]], *,
                  calls: Mapping[str, tuple[str, str]] | None = None) -> str:
    """Folded messages (archived form) as readable text: a ``[role name #id]`` header and the text of each, an
    assistant's tool calls after its text. ``calls`` (tool-call id to ``(name, arguments)``) names the call a
    tool result answers when that call is not among ``records`` (a single message recalled by its id)."""
    made = {cid for rec in records if isinstance(rec, Mapping) and isinstance(rec.get("message"), Mapping)
            for cid, _, _ in tool_calls(rec["message"])}
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
        answered = calls.get(str(msg.get("tool_call_id"))) if calls and msg.get("tool_call_id") else None
        if answered and str(msg.get("tool_call_id")) not in made:
            head += f", answering {answered[0]}({answered[1]})"
        lines = [f"\n[call {name} #{cid}] {args}" for cid, name, args in tool_calls(msg)]
        parts.append(head + "]\n" + str(content or "") + "".join(lines))
    return "\n\n".join(parts)


def _folded_handle(msg: Mapping[str, Any]) -> str | None:
    """The handle of the fold an archived message was the fold message of (a fold merged into a later one)."""
    mid = str(msg.get("id") or "")
    return mid[len(FOLD_ID_PREFIX):] if mid.startswith(FOLD_ID_PREFIX) else None


def flatten_fold(fold: Mapping[str, Any], folds: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The archived messages a fold covers, oldest first, with every earlier fold merged into it replaced by the
    messages that fold covers (``folds``: every fold of the thread by handle), however deep the merging went. A
    merged fold the archive no longer holds stays as its fold message."""
    out: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    stack: list[tuple[list[Any], int]] = [(list(fold.get("messages") or []), 0)]
    seen.add(str(fold.get("handle")))
    while stack:  # iterative: 50 folds deep must not need 50 frames
        records, at = stack.pop()
        while at < len(records):
            rec = records[at]
            at += 1
            msg = rec.get("message") if isinstance(rec, Mapping) else None
            inner = _folded_handle(msg) if isinstance(msg, Mapping) else None
            if inner is not None and inner in folds and inner not in seen:
                seen.add(inner)
                stack.append((records, at))
                records, at = list(folds[inner].get("messages") or []), 0
                continue
            out.append(rec)
    return out


def thread_folds(events: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Every fold of a thread's events, by handle (a handle folded twice: the later record)."""
    return {str(f["handle"]): f for event in events for f in event.get("folds") or []
            if isinstance(f, Mapping) and f.get("handle") is not None}


def find_refs(events: Iterable[Mapping[str, Any]], ref: str) -> list[str]:
    """The archived texts an id names, over ``events`` (a thread's, oldest first; newest match last): a freed
    span's original text by the 8 hex digits its marker names; by a fold's handle (or its fold message's id),
    every message the fold covers, earlier folds merged into it included (:func:`flatten_fold`), rendered oldest
    first; by a folded message's id, that message (a tool result with the call it answers)."""
    ref = normalize_ref(ref)
    events = list(events)
    out: list[str] = []
    for event in events:
        for spans in event_spans(event):
            for span in spans:
                original = span.get("original") if isinstance(span, Mapping) else None
                if isinstance(original, str) and span_ref(original) == ref:
                    out.append(original)
    folds = thread_folds(events)
    handle = ref[len(FOLD_ID_PREFIX):] if ref.startswith(FOLD_ID_PREFIX) else ref
    if handle in folds:
        out.append(render_folded(flatten_fold(folds[handle], folds)))
    elif not out:
        calls = {cid: (name, args) for fold in folds.values() for rec in fold.get("messages") or []
                 if isinstance(rec, Mapping) and isinstance(rec.get("message"), Mapping)
                 for cid, name, args in tool_calls(rec["message"])}
        for fold in folds.values():
            for rec in fold.get("messages") or []:
                msg = rec.get("message") if isinstance(rec, Mapping) else None
                if isinstance(msg, Mapping) and str(msg.get("id") or "") == ref and _folded_handle(msg) is None:
                    out.append(render_folded([rec], calls=calls))
                    break
            if out:
                break
    return out


# ----------------------------------------------------------------------------------------------- lineage
# A thread's checkpoints form a tree: two runs started on the same checkpoint (two concurrent ``invoke``s on
# one thread, a fork from an old checkpoint) each write their own branch, and the thread's latest checkpoint
# is on one of them. The archive keeps every branch's events; each names the checkpoint its step ran on
# (``checkpoint_id``, and ``checkpoint_map`` for nested graphs: ``{checkpoint_ns: id}``), so a restore applies
# only the events whose step result is in the checkpoint it restores.

#: Why an event was left out of a restore (:attr:`Skipped.kind`).
LOST_BRANCH = "lost_branch"
PENDING = "pending"
MISMATCH = "mismatch"


@dataclass(frozen=True)
class Skipped:
    """An event a restore left out, and why: ``kind`` is ``"lost_branch"`` (recorded on a branch of the
    thread the restored checkpoint does not descend from: a concurrent run that lost the race, or a fork),
    ``"pending"`` (recorded by a step on the restored checkpoint itself, whose result was never saved: the run
    stopped or is still running) or ``"mismatch"`` (the messages do not hold its markers where it left them)."""

    event_id: str
    kind: str
    reason: str
    checkpoint_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "kind": self.kind, "reason": self.reason,
                "checkpoint_id": self.checkpoint_id}


def event_checkpoint(event: Mapping[str, Any], checkpoint_ns: str = "") -> str | None:
    """The id of the checkpoint (of namespace ``checkpoint_ns``) the step that recorded ``event`` ran on, or
    None when the event does not say (recorded outside a graph, or by an older freemem)."""
    mapping = event.get("checkpoint_map")
    if isinstance(mapping, Mapping) and mapping.get(checkpoint_ns):
        return str(mapping[checkpoint_ns])
    found = event.get("checkpoint_id")
    return str(found) if found and checkpoint_ns == "" else None


@dataclass(frozen=True)
class Lineage:
    """Where a restore stands in a thread's checkpoint tree.

    Args:
        head: the checkpoint whose messages are restored.
        ancestors: its ancestors (parent, grandparent, ...) back to ``floor``.
        floor: None when ``ancestors`` is complete back to the thread's first checkpoint, or as far back as
            any event's checkpoint; else the first ancestor the checkpointer no longer holds (pruned by
            ``keep_last`` or a TTL). Checkpoint ids order by time (LangGraph's uuid6), so an event recorded on
            a checkpoint newer than the floor that is not an ancestor is on another branch; one older than
            the floor cannot be placed: it is tried, and skipped if its markers are not in the messages.
        checkpoint_ns: the namespace of these checkpoints.
    """

    head: str
    ancestors: frozenset[str]
    floor: str | None = None
    checkpoint_ns: str = ""

    def verdict(self, event: Mapping[str, Any]) -> Skipped | None:
        """None when ``event`` belongs to the restored branch (or cannot be placed), else why it does not."""
        checkpoint = event_checkpoint(event, self.checkpoint_ns)
        if checkpoint is None or checkpoint in self.ancestors:
            return None
        eid = str(event.get("id"))
        if checkpoint == self.head:
            return Skipped(eid, PENDING, f"recorded by a step on checkpoint {checkpoint}, the one restored: that "
                           "step's result was never saved (its run stopped or is still running)", checkpoint)
        if self.floor is None or checkpoint > self.floor:
            return Skipped(eid, LOST_BRANCH, f"recorded on checkpoint {checkpoint}, which checkpoint {self.head} "
                           "does not descend from: a branch of the thread that lost the race to a concurrent "
                           "run, or a fork", checkpoint)
        return None


def split_by_lineage(events: Sequence[Mapping[str, Any]], lineage: Lineage | None
                     ) -> tuple[list[Mapping[str, Any]], list[Skipped]]:
    """``events`` (oldest first) split into those of the restored branch (order kept) and those skipped."""
    if lineage is None:
        return list(events), []
    keep: list[Mapping[str, Any]] = []
    skipped: list[Skipped] = []
    for event in events:
        verdict = lineage.verdict(event)
        if verdict is None:
            keep.append(event)
        else:
            skipped.append(verdict)
    return keep, skipped
