"""Rebuild originals from pruned text plus the archived spans (the inverse of :func:`apply_commands`).

Every :class:`~freemem.core.outcome.AppliedSpan` knows its field, its original text, its marker and where the marker
sits in the pruned field, so one round is undone exactly; a tool-call argument string gets back its bytes as
they were encoded in the arguments JSON (``AppliedSpan.raw_original``). Several rounds are undone newest first
(:func:`restore_rounds`); persisting the spans is the job of a store (:mod:`freemem.archives`: the
``Archive`` contract, in memory, SQLite; ``freemem.redis.RedisArchive``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from freemem.core.apply import span_ref
from freemem.core.edits import ArgPiece, edit_messages
from freemem.core.errors import FormatError, FreememError
from freemem.core.folding import FoldMismatch, unfold
from freemem.core.json_args import parse_arg_field
from freemem.core.outcome import AppliedSpan
from freemem.core.views import message_views

__all__ = [
    "ArchiveMismatch",
    "event_refs",
    "event_spans",
    "find_refs",
    "normalize_ref",
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


def find_refs(events: Iterable[Mapping[str, Any]], ref: str) -> list[str]:
    """The archived texts an id names, over ``events`` (newest match last)."""
    ref = normalize_ref(ref)
    out: list[str] = []
    for event in events:
        out.extend(event_refs(event).get(ref, []))
    return out
