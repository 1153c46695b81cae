"""Rebuild originals from pruned text plus the archived spans (the inverse of :func:`apply_commands`).

Every :class:`~freemem.apply.AppliedSpan` knows its field, its original text, its marker and where the marker
sits in the pruned field, so one round is undone exactly. Several rounds are undone newest first
(:func:`restore_rounds`); persisting the spans is the job of a store (``freemem.redis.RedisArchive``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from freemem.apply import AppliedSpan, edit_messages
from freemem.context import message_views
from freemem.errors import FreememError

__all__ = ["ArchiveMismatch", "restore_messages", "restore_rounds", "restore_text"]


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
    for (index, fname), group in groups.items():
        fields = views[index].all_fields()
        if fname not in fields:
            raise ArchiveMismatch(f"message {index} has no field {fname!r}")
        edits[(index, fname)] = _restore_field(fields[fname], group)
    return edit_messages(messages, edits)


def restore_rounds(pruned: Any, rounds: Sequence[Iterable[AppliedSpan | dict[str, Any]]]) -> Any:
    """Undo several rounds, given oldest first: text (str) or messages (list)."""
    current = pruned
    for spans in reversed(list(rounds)):
        current = restore_text(current, spans) if isinstance(current, str) else restore_messages(current, spans)
    return current
