"""What a cleaner sees: one text plus a map of editable and protected regions.

A :class:`Context` is built from plain reasoning text (:meth:`Context.from_text`) or from a list of chat
messages (:meth:`Context.from_messages`: OpenAI-format dicts or LangChain ``BaseMessage`` objects). Messages
are rendered with short role headers (``[tool read_file #call_3]``); headers, separators and every other
protected piece are listed as protected regions, so :func:`freemem.apply_commands` can refuse edits that touch
them and cut spans that cross message boundaries.

The core stays free of LangGraph, LangChain, Redis and HTTP imports: LangChain messages are read through
duck-typed attributes and written back in :mod:`freemem.lc` behind a lazy import.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from freemem.core.errors import FormatError
from freemem.core.json_args import (
    ARG_FIELD_MIN_CHARS,
    ArgString,
    arg_field_name,
    arg_strings,
)
from freemem.core.views import (
    MessageView,
    message_views,
)

__all__ = [
    "Context",
    "Protection",
    "Region",
    "answer_line_ranges",
    "protected_messages",
]

RegionKind = Literal["header", "text", "content", "reasoning", "arguments", "part"]

#: Lines that state a final answer; protected in what the model wrote (plain reasoning text, reasoning fields,
#: assistant content and tool-call arguments), never in tool output (see :attr:`Protection.answer_lines`).
ANSWER_LINE = re.compile(
    r"^[^\n]*(?:\\boxed\{|\bfinal answer\b|^[ \t]*\**answer\**[ \t]*[:：])[^\n]*$", re.IGNORECASE | re.MULTILINE
)

#: The reason given for the messages of the most recent turn (folding stops there).
RECENT_TURN = "most recent turn"

_HUMAN_ROLES = frozenset({"user", "human"})
_SYSTEM_ROLES = frozenset({"system", "developer"})





@dataclass(frozen=True, slots=True)
class Region:
    """A half-open range ``[start, end)`` of :attr:`Context.text`.

    ``field`` names where an editable region's text lives in its message (``"content"``, ``"content[2]"``
    for a text part, ``"reasoning_content"``), or ``"text"`` for plain text; ``field_offset`` is the offset
    of ``start`` inside that field's text. ``reason`` says why a protected region is protected.
    """

    start: int
    end: int
    editable: bool
    kind: RegionKind
    message_index: int | None = None
    field: str | None = None
    field_offset: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class Protection:
    """Which parts of a context a cleaner may never touch. All on by default (docs/guarantees.md)."""

    system: bool = True
    first_human: bool = True
    last_human: bool = True
    #: The last assistant message and everything after it (its tool results, a newer human message).
    recent_turn: bool = True
    #: ``\\boxed{...}`` and "final answer" lines, in text the model wrote: plain reasoning text, reasoning
    #: fields, assistant content and tool-call arguments. Never in tool results (untrusted output that says
    #: "final answer" anywhere would pin a whole line: one line is a whole 150 KB JSON) nor in human text.
    answer_lines: bool = True
    #: Message ids (or indexes as ``"#3"``) the caller pins, in addition to messages that pin themselves
    #: (dict key ``"pinned": True``; LangChain ``additional_kwargs`` or ``response_metadata`` key
    #: ``"freemem_pinned"``).
    pinned_ids: frozenset[str] = frozenset()
    #: Plain text: the last ``recent_chars`` characters (snapped to a line start) stay, since the model
    #: continues from there.
    recent_chars: int = 2000
    #: Tool-call arguments whole. When False (the default), long string values (``ARG_FIELD_MIN_CHARS`` and
    #: more: a file body in ``new_str``, a script in ``code``) of calls outside protected messages are
    #: editable as decoded text and written back re-encoded, so the arguments stay valid JSON; the JSON
    #: structure, keys and short values stay protected either way.
    tool_arguments: bool = False

    def is_pinned(self, view: MessageView) -> bool:
        return view.pinned or (view.id is not None and view.id in self.pinned_ids) or (
            f"#{view.index}" in self.pinned_ids
        )


def protected_messages(views: list[MessageView], protection: Protection) -> dict[int, str]:
    """Index → reason, for the messages ``protection`` protects whole (system, first and latest human
    message, the most recent turn, pinned and fold messages)."""
    return _protected_messages(views, protection)


def _protected_messages(views: list[MessageView], protection: Protection) -> dict[int, str]:
    """Index → reason, for messages protected whole."""
    reasons: dict[int, str] = {}
    # A fold message is freemem's own digest of folded messages: never edited (a later fold merges it
    # whole), and not the user's first or latest message.
    for view in views:
        if view.fold is not None:
            reasons[view.index] = "fold message"
    human = [v.index for v in views if v.role in _HUMAN_ROLES and v.fold is None]
    if protection.first_human and human:
        reasons.setdefault(human[0], "first human message")
    if protection.last_human and human:
        reasons.setdefault(human[-1], "latest human message")
    assistants = [v.index for v in views if v.role == "assistant"]
    # The latest assistant turn stays whole when it carries signed blocks, whatever the protection says:
    # a provider continuing a tool loop checks that turn's thinking (freemem.core.blocks).
    if assistants and (protection.recent_turn or views[assistants[-1]].signed):
        for i in range(assistants[-1], len(views)):
            reasons.setdefault(i, RECENT_TURN)
    for view in views:
        if protection.system and view.role in _SYSTEM_ROLES:
            reasons.setdefault(view.index, f"{view.role} message")
        if protection.is_pinned(view):
            reasons.setdefault(view.index, "pinned message")
    return reasons


class _Builder:
    """Accumulates text pieces and their regions."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.regions: list[Region] = []
        self.pos = 0

    def add(self, text: str, *, editable: bool, kind: RegionKind, message_index: int | None = None,
            field: str | None = None, field_offset: int = 0, reason: str | None = None) -> None:
        if not text:
            return
        self.parts.append(text)
        self.regions.append(Region(self.pos, self.pos + len(text), editable, kind, message_index, field,
                                   field_offset, reason))
        self.pos += len(text)

    def add_field_text(self, text: str, *, kind: RegionKind, message_index: int | None, field: str,
                       protected: list[tuple[int, int, str]]) -> None:
        """Add an editable field, carving out protected sub-ranges (sorted, non-overlapping)."""
        at = 0
        for start, end, reason in protected:
            if start > at:
                self.add(text[at:start], editable=True, kind=kind, message_index=message_index, field=field,
                         field_offset=at)
            self.add(text[max(start, at):end], editable=False, kind=kind, message_index=message_index,
                     field=field, field_offset=max(start, at), reason=reason)
            at = max(at, end)
        if at < len(text):
            self.add(text[at:], editable=True, kind=kind, message_index=message_index, field=field,
                     field_offset=at)


_ANSWER_LEAD = re.compile(r"[ \t]*\**")
_ANSWER_TAIL = re.compile(r"\**[ \t]*[:：]")


def _is_word(ch: str) -> bool:
    return bool(ch) and (ch.isalnum() or ch == "_")


def answer_line_ranges(text: str) -> list[tuple[int, int]]:
    """Line ranges matching :data:`ANSWER_LINE`, found with ``str.find`` (a regex over a long transcript is
    ~100x slower): lines with ``\\boxed{``, "final answer", or starting with "answer:" / "**Answer**:"."""
    low = text.lower()
    hits: set[int] = set()
    at = low.find("\\boxed{")
    while at >= 0:
        hits.add(at)
        at = low.find("\\boxed{", at + 1)
    at = low.find("final answer")
    while at >= 0:
        before = low[at - 1:at] if at else ""
        after = low[at + 12:at + 13]
        if not _is_word(before) and not _is_word(after):
            hits.add(at)
        at = low.find("final answer", at + 1)
    at = low.find("answer")
    while at >= 0:
        line_start = low.rfind("\n", 0, at) + 1
        if _ANSWER_LEAD.fullmatch(low, line_start, at) and _ANSWER_TAIL.match(low, at + 6):
            hits.add(at)
        at = low.find("answer", at + 6)
    ranges: list[tuple[int, int]] = []
    for at in sorted(hits):
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        if not ranges or start >= ranges[-1][1]:
            ranges.append((start, end))
    return ranges


def _answer_ranges(text: str) -> list[tuple[int, int, str]]:
    return [(s, e, "answer line") for s, e in answer_line_ranges(text)]


def _merge_ranges(ranges: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for start, end, reason in sorted(ranges):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            prev = out[-1]
            out[-1] = (prev[0], max(prev[1], end), prev[2])
        else:
            out.append((start, end, reason))
    return out


def _shown_arg_strings(args: str) -> list[ArgString]:
    """The string values of an editable call's arguments that render decoded: the long ones (editable), and
    short ones holding escapes (protected). A value's rendering must not depend on its length: a long value
    pruned below :data:`ARG_FIELD_MIN_CHARS` renders as it did (decoded), so the pruned messages render to
    exactly the pruned text. Short values without escapes read the same raw, and stay in the structure."""
    if len(args) < ARG_FIELD_MIN_CHARS and "\\" not in args:
        return []
    return [a for a in arg_strings(args, min_chars=0)
            if len(a.value) >= ARG_FIELD_MIN_CHARS or "\\" in args[a.start:a.end]]


def _answers_count(protection: Protection, view: MessageView, kind: RegionKind) -> bool:
    """Whether answer lines in this field are protected: only in what the model wrote (its reasoning and an
    assistant message's content; arguments are checked at their own call site), never in tool output."""
    return protection.answer_lines and (kind == "reasoning" or view.role == "assistant")


class Context:
    """A rendered text with its region map. Build with :meth:`from_text` or :meth:`from_messages`."""

    kind: Literal["text", "messages"]

    def __init__(self, text: str, regions: list[Region], *, kind: Literal["text", "messages"],
                 messages: Sequence[Any] | None = None, views: list[MessageView] | None = None,
                 protection: Protection | None = None) -> None:
        self.text = text
        self.regions = regions
        self.kind = kind
        self.messages = list(messages) if messages is not None else None
        self.views = views
        self.protection = protection or Protection()
        self._starts = [r.start for r in regions]

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, *, question: str | None = None, protection: Protection | None = None,
                  protect: Iterable[tuple[int, int]] = ()) -> Context:
        """Plain reasoning text. Protected: ``question`` where the text starts with it (or wherever it occurs
        first), the recency window at the end, answer lines, and any ``protect`` ranges."""
        if not isinstance(text, str):
            raise FormatError(f"expected text, got {type(text).__name__}")
        protection = protection or Protection()
        ranges: list[tuple[int, int, str]] = [(s, e, "caller") for s, e in protect]
        if question:
            at = text.find(question)
            if at >= 0:
                ranges.append((at, at + len(question), "question"))
        if protection.recent_chars > 0 and text:
            cut = max(0, len(text) - protection.recent_chars)
            line = text.rfind("\n", max(0, cut - 500), cut)  # snap to a line start when one is near
            if line >= 0:
                cut = line + 1
            ranges.append((cut, len(text), "recency window"))
        if protection.answer_lines:
            ranges.extend(_answer_ranges(text))
        b = _Builder()
        b.add_field_text(text, kind="text", message_index=None, field="text", protected=_merge_ranges(ranges))
        return cls(text, b.regions, kind="text", protection=protection)

    @classmethod
    def from_messages(cls, messages: Sequence[Any], *, protection: Protection | None = None,
                      views: Sequence[MessageView] | None = None) -> Context:
        """Chat messages (OpenAI-format dicts or LangChain messages), rendered with protected headers::

            [assistant #msg_7]
            Let me look at the file.
            [call read_file #call_3] {"path": "a.py"}

            [tool read_file #call_3]
            ...file contents...

        ``views``: the messages' views when the caller has read them already (a clean's
        :class:`~freemem.core.snapshot.Snapshot`); they are read here otherwise.
        """
        protection = protection or Protection()
        views = list(views) if views is not None else message_views(messages)
        whole = _protected_messages(views, protection)
        b = _Builder()
        for view in views:
            reason = whole.get(view.index)
            if view.index:
                b.add("\n\n", editable=False, kind="header", message_index=view.index, reason="separator")
            b.add(_header(view), editable=False, kind="header", message_index=view.index, reason="header")
            first = True
            for fname, ftext in view.fields:
                if not first:
                    b.add("\n", editable=False, kind="header", message_index=view.index, reason="separator")
                first = False
                if fname == "part":
                    b.add(ftext, editable=False, kind="part", message_index=view.index, reason="non-text part")
                    continue
                kind: RegionKind = "reasoning" if fname.startswith("reasoning") else "content"
                if fname.startswith("reasoning"):
                    b.add("<think>\n", editable=False, kind="header", message_index=view.index, reason="header")
                kept = reason or view.kept.get(fname)
                if kept is not None:
                    b.add(ftext, editable=False, kind=kind, message_index=view.index, field=fname, reason=kept)
                else:
                    sub = _answer_ranges(ftext) if _answers_count(protection, view, kind) else []
                    b.add_field_text(ftext, kind=kind, message_index=view.index, field=fname, protected=sub)
                if fname.startswith("reasoning"):
                    b.add("\n</think>", editable=False, kind="header", message_index=view.index, reason="header")
            for k, (call_id, name, args) in enumerate(view.tool_calls):
                b.add(f"\n[call {name} #{call_id}] ", editable=False, kind="header", message_index=view.index,
                      reason="tool call id and name")
                # Arguments are JSON a provider must parse: the structure is protected; long string values
                # of calls outside protected messages are editable as decoded text.
                signed = k in view.signed_calls  # a provider signed this call (Gemini): arguments whole
                shown = (_shown_arg_strings(args) if reason is None and not signed and not protection.tool_arguments
                         else [])
                editable = any(len(a.value) >= ARG_FIELD_MIN_CHARS for a in shown)
                # The JSON around an editable value is structure, like a header: kept when a span is cut, and
                # (with the call header before it) it makes anchors unique.
                structure: RegionKind = "header" if editable else "arguments"
                at = 0
                for a in shown:
                    b.add(args[at:a.start + 1], editable=False, kind=structure, message_index=view.index,
                          reason="tool-call arguments")
                    if len(a.value) >= ARG_FIELD_MIN_CHARS:
                        sub = _answer_ranges(a.value) if protection.answer_lines else []
                        b.add_field_text(a.value, kind="arguments", message_index=view.index,
                                         field=arg_field_name(k, a.key), protected=sub)
                    else:
                        b.add(a.value, editable=False, kind=structure, message_index=view.index,
                              reason="tool-call arguments")
                    at = a.end - 1
                b.add(args[at:], editable=False, kind=structure if shown else "arguments",
                      message_index=view.index,
                      reason=reason or ("signed tool call" if signed else "tool-call arguments"))
        return cls("".join(b.parts), b.regions, kind="messages", messages=messages, views=views,
                   protection=protection)

    # -- queries ----------------------------------------------------------------------------------------
    def regions_in(self, start: int, end: int) -> list[Region]:
        """Regions overlapping ``[start, end)``, in order."""
        i = bisect.bisect_right(self._starts, start) - 1
        i = max(i, 0)
        out = []
        regions = self.regions
        while i < len(regions) and regions[i].start < end:
            if regions[i].end > start:
                out.append(regions[i])
            i += 1
        return out

    def region_at(self, pos: int) -> Region | None:
        i = bisect.bisect_right(self._starts, pos) - 1
        if 0 <= i < len(self.regions) and self.regions[i].start <= pos < self.regions[i].end:
            return self.regions[i]
        return None

    @property
    def editable_chars(self) -> int:
        return sum(r.end - r.start for r in self.regions if r.editable)

    def __len__(self) -> int:
        return len(self.text)

    def __repr__(self) -> str:
        n = len(self.views) if self.views is not None else 0
        return (f"Context(kind={self.kind!r}, chars={len(self.text)}, editable={self.editable_chars}, "
                f"messages={n})")


def _header(view: MessageView) -> str:
    bits = [view.role]
    if view.name:
        bits.append(view.name)
    ref = view.tool_call_id if view.role == "tool" else view.id
    if ref:
        bits.append(f"#{ref}")
    return "[" + " ".join(bits) + "]\n"
