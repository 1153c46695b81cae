"""Rebuild originals from pruned text plus the archived spans (the inverse of :func:`apply_commands`).

Every :class:`~freemem.core.outcome.AppliedSpan` knows its field, its original text, its marker and where the marker
sits in the pruned field, so one round is undone exactly; a tool-call argument string gets back its bytes as
they were encoded in the arguments JSON (``AppliedSpan.raw_original``). Several rounds are undone newest first
(:func:`restore_rounds`); persisting the spans is the job of a store (:mod:`freemem.archives`: the
``Archive`` contract, in memory, SQLite; ``freemem.redis.RedisArchive``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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
