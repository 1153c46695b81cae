"""Apply deletion commands to a :class:`~freemem.Context` safely, in one pass.

Semantics (DESIGN.md §3), for every command on the *same* snapshot of the text:

1. the prefix is looked for in editable text — exact match first, then whitespace-insensitive. What a prefix
   that occurs more than once means is ``repeated``: ``"reject"`` (the default: it must occur exactly once),
   ``"all"`` (every non-overlapping match, as the Free()LM paper's substitution of ``prefix.*?suffix``; a
   match that touches protected text is skipped, the others apply) or ``"first"``;
2. a span ends at the first occurrence of the suffix after its prefix, both anchors included;
3. a span that touches protected text, or whose anchors are ambiguous or absent, is *rejected* with a reason;
4. accepted spans that overlap (or touch) merge; a span that crosses message boundaries is cut per message
   and the headers between stay;
5. every piece becomes a marker (``<Del>`` for plain text, ``[freemem: N tokens freed]`` for messages, or
   whatever ``marker`` says);
6. a round that would free more than ``max_freed_share`` of the editable characters is refused whole.

Nothing here raises on bad cleaner output: the :class:`Outcome` lists what was applied and what was
rejected, and why. A flood of commands is bounded too: identical commands are examined once (the repeats are
rejected ``"duplicate"``), at most ``max_commands`` distinct ones per call (``"over_cap"``), and locating
stops at a deadline (``"deadline"``); a prefix that is frequent in protected text costs one step per
protected region it occurs in, not one per occurrence, and each distinct prefix is searched once.

Given ``shown`` (what a model cleaner was shown, :mod:`freemem.core.rendering`), anchors are located in that text and
each span is mapped back exactly to the context.

Tool-call argument strings are edited in place in their JSON: only the bytes of the removed range change,
and each :class:`AppliedSpan` keeps the range as it was encoded (``raw_original``), so restoring is
byte-exact (escapes as written, ``\\/``, uppercase hex).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from freemem.core.commands import Command
from freemem.core.context import Context, Region
from freemem.core.errors import ConfigError
from freemem.core.json_args import (
    arg_strings,
    decode_literal,
    encode_like,
    encoded_offsets,
    parse_arg_field,
    splice_literal,
)
from freemem.core.rendering import RenderedContext

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_MAX_COMMANDS",
    "DEFAULT_MAX_MATCHES",
    "DEFAULT_MESSAGE_MARKER",
    "DEFAULT_TEXT_MARKER",
    "AppliedSpan",
    "ArgPiece",
    "Outcome",
    "REPEATED_MODES",
    "Rejection",
    "RepeatedMode",
    "apply_commands",
    "span_ref",
]

DEFAULT_TEXT_MARKER = "<Del>"
#: ``{ref}`` names the removed text (:func:`span_ref`): the ``recall`` tool pages it back in by that id.
DEFAULT_MESSAGE_MARKER = "[freemem: #{ref} {tokens} tokens freed]"

RejectReason = Literal[
    "empty_prefix",
    "prefix_not_found",
    "ambiguous_prefix",
    "suffix_not_found",
    "protected",
    "round_refused",
    "duplicate",
    "over_cap",
    "deadline",
    "too_many_matches",
    "frees_nothing",
]

#: What a prefix that occurs more than once in editable text means (see :func:`apply_commands`):
#: ``reject`` — the command is ambiguous and rejected (anchors must name one span: the heuristic's verified
#: commands); ``all`` — every non-overlapping ``prefix ... suffix`` match is removed, as the Free()LM paper's
#: substitution of ``prefix.*?suffix`` does (a loop is named once and cut everywhere); ``first`` — the first
#: match only.
RepeatedMode = Literal["reject", "all", "first"]
REPEATED_MODES: tuple[str, ...] = get_args(RepeatedMode)

#: Matches one command may remove under ``repeated="all"``; past that the command is rejected
#: ``"too_many_matches"``. A loop in a cleaning window repeats tens of times, rarely hundreds; anchors that
#: match more often are a word or a punctuation mark, not a passage.
DEFAULT_MAX_MATCHES = 500

#: Distinct commands one :func:`apply_commands` call examines; the rest are rejected ``"over_cap"``. A model
#: cleaner answers a few dozen; a flood (a hostile or looping model) must not stall the agent's turn.
DEFAULT_MAX_COMMANDS = 256

#: Seconds one :func:`apply_commands` call spends locating commands; those not examined by then are rejected
#: ``"deadline"``. Far above what a real round takes (milliseconds), so it only bounds pathological input.
DEFAULT_DEADLINE_S = 5.0

#: One replaced range of a tool-call argument string: ``(start, end, text, encoded)`` — decoded offsets in the
#: field's value before the edit, the decoded replacement, and the replacement as JSON-encoded text to write
#: (None: encode ``text`` the way the string was encoded).
ArgPiece = tuple[int, int, str, str | None]

#: A marker is a string (``{tokens}`` is replaced by the piece's token count) or a function of
#: ``(original_text, tokens)``.
Marker = str | Callable[[str, int], str]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command that was not applied, and why."""

    command_index: int
    command: Command
    reason: RejectReason
    detail: str = ""

    def to_dict(self, *, brief: bool = False) -> dict[str, Any]:
        """JSON-plain; ``brief`` cuts the anchors to 80 characters (for ledgers)."""
        n = 80 if brief else None
        return {"command_index": self.command_index, "prefix": self.command.prefix[:n],
                "suffix": self.command.suffix[:n], "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class AppliedSpan:
    """One removed piece: its original text, where it was, and the marker that replaced it.

    ``start``/``end`` are offsets in the original :attr:`Context.text`; ``field_start`` is the offset in the
    original text of its field (a message's ``content``, ``content[i]``, ``reasoning_content``; ``"text"``
    for plain text) and ``pruned_start`` the marker's offset in the pruned field. With those the original is
    rebuilt exactly (:func:`freemem.core.archive.restore_text` / :func:`~freemem.core.archive.restore_messages`).
    """

    command_indexes: tuple[int, ...]
    start: int
    end: int
    original: str
    marker: str
    tokens: int
    field: str
    field_start: int
    pruned_start: int
    message_index: int | None = None
    message_id: str | None = None
    #: For a tool-call argument string: ``original`` as it was *encoded* in the arguments JSON (escapes such
    #: as ``\\u00E9`` or ``\\/`` as written), so restoring gives back the arguments byte for byte. None for
    #: text fields, and in events archived before it existed (those restore JSON-equal).
    raw_original: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["command_indexes"] = list(self.command_indexes)
        if d["raw_original"] is None:
            del d["raw_original"]  # text fields: the archived form stays what it was
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AppliedSpan:
        data = dict(data)
        data["command_indexes"] = tuple(data.get("command_indexes", ()))
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Outcome:
    """The result of :func:`apply_commands`."""

    context: Context
    text: str
    applied: list[AppliedSpan] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: Why the whole round was refused (then nothing is applied), else None.
    refused: str | None = None
    #: ``(message_index, field) -> new field text`` for messages; ``(None, "text")`` for plain text.
    field_edits: dict[tuple[int | None, str], str] = field(default_factory=dict)
    #: For argument-string fields: the replaced ranges (see :data:`ArgPieces`), so the write-back touches
    #: only those bytes of the arguments JSON.
    arg_pieces: dict[tuple[int | None, str], list[ArgPiece]] = field(default_factory=dict)
    #: ``repeated="all"`` / ``"first"``: for commands that were applied, the matches left out (touching
    #: protected text, or no longer than their marker), one entry per command with the counts in ``detail``.
    #: Those commands are not in :attr:`rejected`.
    skipped: list[Rejection] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.applied)

    @property
    def tokens_removed(self) -> int:
        """Tokens of original text taken out (markers not subtracted)."""
        return sum(s.tokens for s in self.applied)

    @property
    def chars_freed(self) -> int:
        return sum(len(s.original) - len(s.marker) for s in self.applied)

    @property
    def messages(self) -> list[Any]:
        """The pruned messages: edited ones are copies, the rest the same objects. Ids never change."""
        if self.context.kind != "messages" or self.context.messages is None:
            raise ConfigError("this outcome is for plain text: use .text")
        return edit_messages(self.context.messages, self.field_edits, arg_pieces=self.arg_pieces)

    def summary(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for r in self.rejected:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
        return {"applied": len(self.applied), "rejected": len(self.rejected), "rejected_by_reason": reasons,
                "skipped": len(self.skipped), "refused": self.refused, "tokens_removed": self.tokens_removed,
                "chars_freed": self.chars_freed}


# ---------------------------------------------------------------------------------------------------------
# finding anchors


def _ws_pattern(anchor: str) -> re.Pattern[str] | None:
    words = anchor.split()
    if not words:
        return None
    return re.compile(r"\s+".join(re.escape(w) for w in words))


#: How many editable occurrences of an ambiguous prefix a rejection counts (and names up to 3 of).
_AMBIGUITY_COUNT = 100


class _Finder:
    """Anchor search on one snapshot: exact first, then whitespace-insensitive.

    ``context`` is what is searched: the :class:`~freemem.Context` itself, or the ``index`` of what a model
    was shown (:class:`~freemem.core.rendering.RenderedContext`); ``shown`` maps found ranges back (see
    :meth:`source`)."""

    def __init__(self, context: Context, shown: RenderedContext | None = None) -> None:
        self.ctx = context
        self.text = context.text
        self.shown = shown
        # Commands that share a prefix (a cleaner varying only the suffix) search it once per snapshot.
        self._prefixes: dict[str, tuple[int, int] | RejectReason | tuple[RejectReason, str]] = {}

    def _editable(self, start: int, end: int) -> tuple[bool, Region | None]:
        """(may this occurrence anchor a span?, the first protected region it touches).

        An anchor lies in editable text, or runs from a structural header into editable text (headers such
        as ``[tool read_file #call_3]`` make anchors unique; they stay when the span is cut). It may not
        touch protected content.
        """
        region = self.ctx.region_at(start)
        if region is not None and region.editable and end <= region.end:
            return True, None
        for r in self.ctx.regions_in(start, end):
            if not r.editable and r.kind != "header":
                return False, r
        return True, None

    def _next_start(self, pos: int, prot: Region | None) -> int:
        """Where to look for the next occurrence after a refused one at ``pos``: past the protected region
        it starts in, since every occurrence starting there touches it too (a prefix frequent in a system
        prompt or a pinned message costs one step per region, not one per occurrence)."""
        if prot is not None and prot.start <= pos < prot.end:
            return prot.end
        return pos + 1

    def occurrences(self, prefix: str, protected: list[Region]) -> Iterator[tuple[int, int]]:
        """Occurrences of ``prefix`` that may anchor a span, left to right: the exact ones, or when there is
        none the whitespace-insensitive ones (non-overlapping, as ``finditer`` gives them). The first
        protected region a refused occurrence touches is appended to ``protected``."""
        text = self.text
        exact = False
        pos = text.find(prefix)
        while pos >= 0:
            ok, prot = self._editable(pos, pos + len(prefix))
            if ok:
                exact = True
                yield pos, pos + len(prefix)
            elif prot is not None and not protected:
                protected.append(prot)
            pos = text.find(prefix, pos + 1 if ok else self._next_start(pos, prot))
        if exact:
            return
        pattern = _ws_pattern(prefix)
        if pattern is None or pattern.pattern == re.escape(prefix):
            return
        m = pattern.search(text)
        while m is not None:
            ok, prot = self._editable(m.start(), m.end())
            if ok:
                yield m.start(), m.end()
            elif prot is not None and not protected:
                protected.append(prot)
            m = pattern.search(text, m.end() if ok else max(m.end(), self._next_start(m.start(), prot)))

    def find_prefix(self, prefix: str) -> tuple[int, int] | RejectReason | tuple[RejectReason, str]:
        """The one occurrence of ``prefix`` that may anchor a span (``repeated="reject"``), or why not."""
        found = self._prefixes.get(prefix)
        if found is None:
            found = self._prefixes[prefix] = self._find_prefix(prefix)
        return found

    def _find_prefix(self, prefix: str) -> tuple[int, int] | RejectReason | tuple[RejectReason, str]:
        protected: list[Region] = []
        hits = list(itertools.islice(self.occurrences(prefix, protected), _AMBIGUITY_COUNT + 1))
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            many = f"more than {_AMBIGUITY_COUNT}" if len(hits) > _AMBIGUITY_COUNT else str(len(hits))
            return ("ambiguous_prefix", f"prefix occurs {many} times in editable text ({self.where(hits)}); "
                                        "this cleaner needs a prefix that occurs once (repeated='reject')")
        if protected:
            return ("protected", f"prefix only occurs in protected text ({protected[0].reason})")
        return "prefix_not_found"

    def find_suffix(self, suffix: str, after: int) -> tuple[int, int] | None:
        """First occurrence at or after ``after``: exact first, whitespace-insensitive only when none."""
        pos = self.text.find(suffix, after)
        if pos >= 0:
            return pos, pos + len(suffix)
        pattern = _ws_pattern(suffix)
        if pattern is not None:
            m = pattern.search(self.text, after)
            if m is not None:
                return m.start(), m.end()
        return None

    def span_problem(self, start: int, end: int) -> str | None:
        """Why ``[start, end)`` may not be removed (it touches protected text, or holds only headers), or
        None when it may."""
        editable = False
        for r in self.ctx.regions_in(start, end):
            if r.editable:
                editable = True
            elif r.kind != "header":
                return f"span touches protected text ({r.reason})"
        if not editable:
            return "span holds only message headers"
        return None

    def source(self, start: int, end: int) -> tuple[int, int] | None:
        """``[start, end)`` of the searched text as a range of the context's text (itself without ``shown``)."""
        if self.shown is None:
            return start, end
        return self.shown.to_source(start, end)

    def where(self, hits: Sequence[tuple[int, int]], limit: int = 3) -> str:
        """Where the first ``limit`` of ``hits`` are, for a rejection's detail: message and field for
        messages, character offsets (in the context's text) for plain text."""
        out: list[str] = []
        for start, end in hits[:limit]:
            region = self.ctx.region_at(start)
            if region is not None and region.message_index is not None:
                out.append(f"message {region.message_index} {region.field or region.kind}")
            else:
                src = self.source(start, end)
                out.append(f"char {src[0] if src is not None else start}")
        more = f", ... ({len(hits) - limit} more)" if len(hits) > limit else ""
        return "at " + ", ".join(out) + more


def _snippet(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _prefix_detail(text: str, prefix: str) -> str:
    """Why a prefix anchored nothing (not found), for the rejection's ``detail``: what was searched and where
    it failed (ambiguous and protected prefixes get theirs from the finder, which saw the matches)."""
    n = len(prefix)
    # Not found: the longest leading part that does occur shows where the copy went wrong (a paraphrase, an
    # escape, a changed digit) -- found by bisection, since every shorter leading part of a found one is found.
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text.find(prefix[:mid]) >= 0:
            lo = mid
        else:
            hi = mid - 1
    searched = (f"the {n}-char prefix {_snippet(prefix)} is not found: nowhere in the text, exactly or ignoring "
                "whitespace")
    if lo == 0:
        return searched
    at = text.find(prefix[:lo])
    return (f"{searched}; its first {lo} chars occur (at offset {at}), then the text has "
            f"{_snippet(text[at + lo:at + lo + 20], 20)} where the prefix has {_snippet(prefix[lo:lo + 20], 20)}")


def _locate(finder: _Finder, index: int, cmd: Command) -> tuple[int, int] | Rejection:
    """The span of ``cmd`` under ``repeated="reject"``: a unique prefix, the first suffix after it."""
    if not cmd.prefix.strip():
        return Rejection(index, cmd, "empty_prefix", "prefix is empty")
    found = finder.find_prefix(cmd.prefix)
    if isinstance(found, str):
        return Rejection(index, cmd, found, _prefix_detail(finder.text, cmd.prefix))  # type: ignore[arg-type]
    if isinstance(found[0], str):
        return Rejection(index, cmd, found[0], found[1])  # type: ignore[arg-type]
    start, end = found  # type: ignore[misc]
    if cmd.suffix.strip():
        suffix = finder.find_suffix(cmd.suffix, end)
        if suffix is None:
            return Rejection(index, cmd, "suffix_not_found",
                             f"no occurrence of the {len(cmd.suffix)}-char suffix {_snippet(cmd.suffix)} after the "
                             f"prefix (found at offset {start}), exactly or ignoring whitespace")
        end = suffix[1]
    problem = finder.span_problem(start, end)
    if problem is not None:
        return Rejection(index, cmd, "protected", problem)
    source = finder.source(start, end)
    if source is None:
        return Rejection(index, cmd, "protected", "span runs through text shown differently from the context")
    return source




@dataclass
class _Matches:
    """What ``repeated="all"`` / ``"first"`` found for one command: the spans to remove (context offsets),
    and the matches skipped because they touch protected text or would free nothing."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    protected: int = 0
    protected_reason: str = ""
    frees_nothing: int = 0

    def skip_note(self) -> str:
        bits = []
        if self.protected:
            bits.append(f"{self.protected} skipped ({self.protected_reason})")
        if self.frees_nothing:
            bits.append(f"{self.frees_nothing} no longer than the marker that would replace them")
        return "; ".join(bits)


def _locate_matches(finder: _Finder, index: int, cmd: Command, *, first: bool, max_matches: int | None,
                    frees_nothing: Callable[[int, int], bool]) -> _Matches | Rejection:
    """Every non-overlapping ``prefix ... suffix`` match in editable text, left to right — what the Free()LM
    paper's substitution of ``prefix.*?suffix`` removes — or the first one (``first``).

    A match ends at the first suffix after its prefix. One that touches protected text (or holds only
    headers) is skipped and does not consume text: the next occurrence of the prefix may still match. When
    a command matches more than once, a match no longer than the marker that would replace it is skipped
    too (``{"prefix": "e", "suffix": ""}`` must not shred a text into markers; a single match is the
    cleaner's explicit choice, as under ``"reject"``). More than ``max_matches`` matches reject the command
    ``"too_many_matches"``: anchors that generic name no loop."""
    if not cmd.prefix.strip():
        return Rejection(index, cmd, "empty_prefix", "prefix is empty")
    has_suffix = bool(cmd.suffix.strip())
    out = _Matches()
    protected: list[Region] = []
    suffix: tuple[int, int] | None = None
    consumed = 0
    seen_prefix = False
    # A skipped match blocks every later prefix occurrence before the same protected region that ends at the
    # same suffix: they are skipped in one step each, without re-reading the regions between.
    blocked: tuple[int, tuple[int, int] | None] | None = None
    for start, end in finder.occurrences(cmd.prefix, protected):
        seen_prefix = True
        if start < consumed:
            continue
        if has_suffix:
            if suffix is None or suffix[0] < end:
                suffix = finder.find_suffix(cmd.suffix, end)
                if suffix is None:
                    break  # no suffix after this prefix, so none after any later one
            stop = suffix[1]
        else:
            stop = end
        if has_suffix and blocked is not None and start < blocked[0] and blocked[1] == suffix:
            out.protected += 1
            continue
        problem = finder.span_problem(start, stop)
        source = finder.source(start, stop) if problem is None else None
        if problem is None and source is None:
            problem = "span runs through text shown differently from the context"
        if problem is not None:
            out.protected += 1
            out.protected_reason = out.protected_reason or problem
            block = next((r for r in finder.ctx.regions_in(start, stop) if not r.editable and r.kind != "header"),
                         None)
            blocked = (block.start, suffix) if block is not None and block.start > start else None
            continue
        assert source is not None
        out.spans.append(source)
        consumed = stop
        if first:
            break
        if max_matches is not None and len(out.spans) > max_matches:
            return Rejection(index, cmd, "too_many_matches",
                             f"prefix...suffix matches more than max_matches={max_matches} times in editable "
                             "text: anchors that generic name no repeated passage")
    if len(out.spans) > 1:
        kept = [span for span in out.spans if not frees_nothing(*span)]
        out.frees_nothing = len(out.spans) - len(kept)
        out.spans = kept
    if out.spans:
        return out
    if not seen_prefix:
        if protected:
            return Rejection(index, cmd, "protected", f"prefix only occurs in protected text ({protected[0].reason})")
        return Rejection(index, cmd, "prefix_not_found", _prefix_detail(finder.text, cmd.prefix))
    if out.protected or out.frees_nothing:
        reason: RejectReason = "protected" if out.protected else "frees_nothing"
        return Rejection(index, cmd, reason, "no match can be removed: " + out.skip_note())
    return Rejection(index, cmd, "suffix_not_found", "no suffix occurrence after the prefix")


# ---------------------------------------------------------------------------------------------------------
# applying


def span_ref(original: str) -> str:
    """The short id a marker names for the text it replaced: 8 hex digits of the text's SHA-1, so the same
    text always gets the same id and an archive can find it again (the ``recall`` tool)."""
    return hashlib.sha1(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _marker_fn(marker: Marker | None, kind: str) -> Callable[[str, int], str]:
    if marker is None:
        marker = DEFAULT_TEXT_MARKER if kind == "text" else DEFAULT_MESSAGE_MARKER
    if callable(marker):
        return marker
    template = marker
    if "{tokens}" in template or "{ref}" in template:
        return lambda original, tokens: template.replace("{tokens}", str(tokens)).replace(
            "{ref}", span_ref(original) if "{ref}" in template else "")
    return lambda _original, _tokens: template


def _frees_nothing(text: str, make_marker: Callable[[str, int], str]) -> Callable[[int, int], bool]:
    """Whether removing ``text[start:end]`` frees nothing: its marker (with the approximate token count) is
    at least as long. Only commands with several matches are checked (one span is the cleaner's choice)."""
    from freemem.tokens import ApproxCounter

    approx = ApproxCounter()

    def check(start: int, end: int) -> bool:
        original = text[start:end]
        return len(make_marker(original, approx.count(original))) >= end - start

    return check


def _count(counter: Any, texts: list[str]) -> list[int]:
    if counter is None:
        from freemem.tokens import ApproxCounter

        counter = ApproxCounter()
    many = getattr(counter, "count_many", None)
    if many is not None:
        return list(many(texts))
    return [counter.count(t) for t in texts]


def _span_tokens(context: Context, counter: Any, pieces: list[tuple[int, int, Region, tuple[int, ...]]],
                 originals: list[str]) -> list[int]:
    """Tokens of each removed piece. A piece of a field whose count a :class:`CachedCounter` already holds
    (the message was counted when the context was measured) is estimated in proportion to its share of the
    field's characters — re-tokenizing large removed spans would dominate a round; others are counted."""
    cached = getattr(counter, "cached", None)
    out: list[int | None] = [None] * len(pieces)
    if cached is not None:
        fields: dict[tuple[int | None, str], tuple[str, int | None]] = {}
        for i, (s, e, region, _) in enumerate(pieces):
            if region.field is None or region.message_index is None:
                continue
            key = (region.message_index, region.field)
            if key not in fields:
                try:
                    ftext = _field_text(context, key)
                except KeyError:
                    continue
                fields[key] = (ftext, cached(ftext))
            ftext, n = fields[key]
            if n is not None and ftext:
                out[i] = max(1, round(n * (e - s) / len(ftext)))
    missing = [i for i, n in enumerate(out) if n is None]
    if missing:
        for i, n in zip(missing, _count(counter, [originals[i] for i in missing])):
            out[i] = n
    return [int(n or 0) for n in out]


def apply_commands(
    context: Context,
    commands: Sequence[Command | dict[str, Any]],
    *,
    marker: Marker | None = None,
    max_freed_share: float = 0.9,
    counter: Any = None,
    max_commands: int | None = DEFAULT_MAX_COMMANDS,
    deadline_s: float | None = DEFAULT_DEADLINE_S,
    repeated: RepeatedMode = "reject",
    max_matches: int | None = DEFAULT_MAX_MATCHES,
    shown: RenderedContext | None = None,
) -> Outcome:
    """Apply ``commands`` to ``context`` and return the :class:`Outcome`. Never raises on bad commands.

    ``counter`` (a :class:`~freemem.tokens.TokenCounter`) measures the removed pieces for markers and the
    ledger; the fast approximate counter is used when none is given. ``max_freed_share`` bounds the share of
    editable characters one round may remove. A command identical to an earlier one is rejected
    ``"duplicate"``; past ``max_commands`` distinct commands (None: no cap, for a cleaner whose commands are
    verified, like the heuristic's) the rest are rejected ``"over_cap"``, and those not examined within
    ``deadline_s`` seconds (None: no deadline) ``"deadline"``.

    ``repeated`` says what a prefix that occurs more than once means (:data:`RepeatedMode`): ``"reject"``
    (the default; the rejection's detail counts the occurrences and says where they are), ``"all"`` (every
    non-overlapping ``prefix ... suffix`` match in editable text is removed, at most ``max_matches`` per
    command; a match touching protected text is skipped and the others apply) or ``"first"``. Every other
    rule holds in every mode: protected text and answer lines stay, spans are cut per message, the round
    share and the caps bound the round, and restoring gives back the original exactly. Matches left out of
    an applied command are listed in :attr:`Outcome.skipped`.

    ``shown`` is what the cleaner showed the model (:func:`~freemem.core.rendering.render_context` of this
    ``context``): anchors are then looked for in that text — protected parts marked or elided, protected
    arguments decoded — and each span is mapped back exactly to ``context``.
    """
    if not 0 < max_freed_share <= 1:
        raise ConfigError("max_freed_share must be in (0, 1]")
    if max_commands is not None and (isinstance(max_commands, bool) or not isinstance(max_commands, int)
                                     or max_commands < 1):
        raise ConfigError(f"max_commands must be a positive int or None, got {max_commands!r}")
    if max_matches is not None and (isinstance(max_matches, bool) or not isinstance(max_matches, int)
                                    or max_matches < 1):
        raise ConfigError(f"max_matches must be a positive int or None, got {max_matches!r}")
    if deadline_s is not None and not deadline_s > 0:
        raise ConfigError(f"deadline_s must be positive or None, got {deadline_s!r}")
    if repeated not in REPEATED_MODES:
        raise ConfigError(f"repeated must be one of {REPEATED_MODES}, got {repeated!r}")
    if shown is not None and shown.context is not context:
        raise ConfigError("shown= must be the rendering of this very context (render_context(context))")
    finder = _Finder(shown.index, shown) if shown is not None else _Finder(context)
    make_marker = _marker_fn(marker, context.kind)
    frees_nothing = _frees_nothing(context.text, make_marker)
    rejected: list[Rejection] = []
    skipped: list[Rejection] = []
    spans: list[tuple[int, int, int]] = []  # (start, end, command index)
    first_of: dict[tuple[str, str], int] = {}
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    for i, raw in enumerate(commands):
        try:
            cmd = raw if isinstance(raw, Command) else Command.model_validate(raw)
        except (ValueError, TypeError) as exc:
            rejected.append(Rejection(i, Command(prefix="", suffix=""), "empty_prefix", f"invalid command: {exc}"))
            continue
        key = (cmd.prefix, cmd.suffix)
        if key in first_of:
            # The same anchors name the same span: examining it again could only repeat the answer.
            rejected.append(Rejection(i, cmd, "duplicate", f"same as command {first_of[key]}"))
            continue
        first_of[key] = i
        if max_commands is not None and len(first_of) > max_commands:
            rejected.append(Rejection(i, cmd, "over_cap",
                                      f"more than max_commands={max_commands} distinct commands in one round"))
            continue
        if deadline is not None and time.monotonic() > deadline:
            rejected.append(Rejection(i, cmd, "deadline", f"not examined: the round's {deadline_s:g} s to locate "
                                                          "commands had passed"))
            continue
        if repeated == "reject":
            located = _locate(finder, i, cmd)
            if isinstance(located, Rejection):
                rejected.append(located)
            else:
                spans.append((located[0], located[1], i))
            continue
        matches = _locate_matches(finder, i, cmd, first=repeated == "first", max_matches=max_matches,
                                  frees_nothing=frees_nothing)
        if isinstance(matches, Rejection):
            rejected.append(matches)
            continue
        spans.extend((s_, e_, i) for s_, e_ in matches.spans)
        if matches.protected or matches.frees_nothing:
            skipped.append(Rejection(i, cmd, "protected" if matches.protected else "frees_nothing",
                                     f"{len(matches.spans)} match(es) applied; " + matches.skip_note()))

    # Merge overlapping or touching spans.
    spans.sort()
    merged: list[list[Any]] = []
    for start, end, i in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            if i not in merged[-1][2]:  # repeated="all": one command's matches may merge
                merged[-1][2].append(i)
        else:
            merged.append([start, end, [i]])

    # Cut per editable region (i.e. per message field); headers between pieces stay.
    pieces: list[tuple[int, int, Region, tuple[int, ...]]] = []
    for start, end, idxs in merged:
        for r in context.regions_in(start, end):
            if not r.editable:
                continue
            s, e = max(start, r.start), min(end, r.end)
            if pieces and pieces[-1][1] == s and pieces[-1][2].field == r.field and (
                pieces[-1][2].message_index == r.message_index
            ):
                prev = pieces[-1]
                pieces[-1] = (prev[0], e, prev[2], prev[3])
            else:
                pieces.append((s, e, r, tuple(idxs)))

    text = context.text
    freed = sum(e - s for s, e, _, _ in pieces)
    editable = context.editable_chars
    if pieces and freed > max_freed_share * editable:
        reason = (f"round would free {freed} of {editable} editable characters "
                  f"(> max_freed_share={max_freed_share})")
        seen = {i for _, _, _, idxs in pieces for i in idxs}
        for i in sorted(seen):
            raw = commands[i]
            cmd = raw if isinstance(raw, Command) else Command.model_validate(raw)
            rejected.append(Rejection(i, cmd, "round_refused", reason))
        rejected.sort(key=lambda r: r.command_index)
        return Outcome(context=context, text=text, rejected=rejected, refused=reason)

    originals = [text[s:e] for s, e, _, _ in pieces]
    tokens = _span_tokens(context, counter, pieces, originals) if originals else []

    out: list[str] = []
    applied: list[AppliedSpan] = []
    arg_pieces: dict[tuple[int | None, str], list[ArgPiece]] = {}
    raw_args = _RawArguments(context)
    at = 0
    # Per field: running shift between original and pruned field offsets, and the field's pieces.
    shift: dict[tuple[int | None, str], int] = {}
    field_pieces: dict[tuple[int | None, str], list[tuple[int, int, str]]] = {}
    views = context.views
    for (s, e, region, idxs), original, n_tokens in zip(pieces, originals, tokens):
        mark = make_marker(original, n_tokens)
        out.append(text[at:s])
        out.append(mark)
        at = e
        key = (region.message_index, region.field or "text")
        field_start = region.field_offset + (s - region.start)
        delta = shift.get(key, 0)
        pruned_start = field_start + delta
        shift[key] = delta + len(mark) - (e - s)
        field_pieces.setdefault(key, []).append((field_start, field_start + (e - s), mark))
        message_id = views[region.message_index].id if views is not None and region.message_index is not None else None
        raw_original = None
        if region.message_index is not None and parse_arg_field(key[1]) is not None:
            raw_original = raw_args.slice(region.message_index, key[1], field_start, field_start + (e - s))
            arg_pieces.setdefault(key, []).append((field_start, field_start + (e - s), mark, None))
        applied.append(AppliedSpan(idxs, s, e, original, mark, n_tokens, key[1], field_start, pruned_start,
                                   region.message_index, message_id, raw_original))
    out.append(text[at:])

    field_edits: dict[tuple[int | None, str], str] = {}
    for key, plist in field_pieces.items():
        source = _field_text(context, key)
        buf: list[str] = []
        pos = 0
        for fs, fe, mark in plist:
            buf.append(source[pos:fs])
            buf.append(mark)
            pos = fe
        buf.append(source[pos:])
        field_edits[key] = "".join(buf)

    rejected.sort(key=lambda r: r.command_index)
    return Outcome(context=context, text="".join(out), applied=applied, rejected=rejected,
                   field_edits=field_edits, arg_pieces=arg_pieces, skipped=skipped)


def _field_text(context: Context, key: tuple[int | None, str]) -> str:
    index, fname = key
    if index is None:
        return context.text
    assert context.views is not None
    view = context.views[index]
    for name, value in view.fields:
        if name == fname:
            return value
    if parse_arg_field(fname) is not None:
        for name, value in view.arg_fields(min_chars=0):
            if name == fname:
                return value
    raise KeyError(key)


class _RawArguments:
    """The arguments JSON a message will be written back into (a dict message's ``function.arguments``; a
    LangChain message's provider form in ``additional_kwargs``), to slice removed ranges as encoded."""

    def __init__(self, context: Context) -> None:
        self.ctx = context
        self._strings: dict[tuple[int, int], dict[str, Any] | None] = {}

    def _found(self, index: int, k: int) -> dict[str, Any] | None:
        if (index, k) not in self._strings:
            raw = _call_raw(self.ctx.messages[index], k) if self.ctx.messages is not None else None
            self._strings[(index, k)] = ({a.key: (raw, a) for a in arg_strings(raw, min_chars=0)}
                                         if raw is not None else None)
        return self._strings[(index, k)]

    def slice(self, index: int, fname: str, start: int, end: int) -> str | None:
        """The encoded text of decoded ``[start, end)`` of argument field ``fname``, or None when the message
        keeps no raw JSON for it (LangChain ``args`` dicts) or its raw JSON says something else."""
        parsed = parse_arg_field(fname)
        assert parsed is not None and self.ctx.views is not None
        found = self._found(index, parsed[0])
        hit = found.get(parsed[1]) if found is not None else None
        if hit is None:
            return None
        raw, a = hit
        value = dict(self.ctx.views[index].arg_fields(min_chars=0)).get(fname)
        if a.value != value:
            return None
        body = raw[a.start + 1:a.end - 1]
        s, e = encoded_offsets(body, [start, end])
        return body[s:e]


def _call_raw(msg: Any, k: int) -> str | None:
    """The ``k``-th tool call's arguments as the JSON text that is written back, if the message has one."""
    if isinstance(msg, dict):
        calls = msg.get("tool_calls") or []
        fn = calls[k].get("function") if k < len(calls) and isinstance(calls[k], dict) else None
        args = fn.get("arguments") if isinstance(fn, dict) else None
        return args if isinstance(args, str) else None
    calls = getattr(msg, "tool_calls", None) or []
    if k >= len(calls):
        return None
    for raw in (getattr(msg, "additional_kwargs", None) or {}).get("tool_calls") or []:
        fn = raw.get("function") if isinstance(raw, dict) else None
        if raw.get("id") == calls[k].get("id") and isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            return fn["arguments"]
    return None


# ---------------------------------------------------------------------------------------------------------
# writing field edits back into messages

_PART = re.compile(r"content\[(\d+)\]")


def edit_messages(messages: Sequence[Any], field_edits: dict[tuple[int | None, str], str], *,
                  arg_pieces: dict[tuple[int | None, str], list[ArgPiece]] | None = None) -> list[Any]:
    """Return ``messages`` with the edited fields replaced. Edited messages are copies; others are shared.

    ``arg_pieces`` names, for argument-string fields, the ranges that changed: only their bytes of the
    arguments JSON are rewritten (others keep their escapes as written). Without them a changed argument
    string is re-encoded whole (JSON-equal)."""
    by_index: dict[int, dict[str, str]] = {}
    for (index, fname), value in field_edits.items():
        if index is None:
            raise ConfigError("plain-text edits cannot be written into messages")
        by_index.setdefault(index, {})[fname] = value
    pieces_by_index: dict[int, dict[str, list[ArgPiece]]] = {}
    for (index, fname), plist in (arg_pieces or {}).items():
        if index is not None:
            pieces_by_index.setdefault(index, {})[fname] = plist
    out = list(messages)
    for index, edits in by_index.items():
        msg = messages[index]
        pieces = pieces_by_index.get(index, {})
        out[index] = _edit_dict(msg, edits, pieces) if isinstance(msg, dict) else _edit_langchain(msg, edits, pieces)
    return out


def _split_arg_edits(edits: dict[str, str]) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """Text-field edits, and argument-string edits grouped by tool-call index."""
    text: dict[str, str] = {}
    args: dict[int, dict[str, str]] = {}
    for name, value in edits.items():
        parsed = parse_arg_field(name)
        if parsed is None:
            text[name] = value
        else:
            args.setdefault(parsed[0], {})[parsed[1]] = value
    return text, args


def _call_pieces(pieces: dict[str, list[ArgPiece]], k: int) -> dict[str, list[ArgPiece]]:
    """The argument pieces of tool call ``k``, by key."""
    out: dict[str, list[ArgPiece]] = {}
    for name, plist in pieces.items():
        parsed = parse_arg_field(name)
        if parsed is not None and parsed[0] == k:
            out[parsed[1]] = plist
    return out


def _splice_args(raw: str, values: dict[str, str], pieces: dict[str, list[ArgPiece]] | None = None) -> str:
    """``raw`` JSON with the named top-level string values replaced, everything else byte-identical.

    With ``pieces`` for a key only those ranges of its encoded string are rewritten (the replacement's given
    encoding, else encoded like the string) — checked to decode to ``values[key]``; otherwise, or without
    pieces, the whole string is re-encoded like the original."""
    found = {a.key: a for a in arg_strings(raw, min_chars=0)}
    missing = set(values) - set(found)
    if missing:
        raise ConfigError(f"tool-call arguments have no string value {sorted(missing)}")
    for key in sorted(values, key=lambda k: -found[k].start):
        a = found[key]
        literal = raw[a.start:a.end]
        new = _splice_pieces(literal, (pieces or {}).get(key))
        if new is None or decode_literal(new) != values[key]:
            new = encode_like(values[key], literal)
        raw = raw[:a.start] + new + raw[a.end:]
    return raw


def _splice_pieces(literal: str, plist: list[ArgPiece] | None) -> str | None:
    if not plist:
        return None
    ordered = sorted(plist, key=lambda p: p[0])
    try:
        return splice_literal(literal, [(s, e, enc if enc is not None else encode_like(text, literal)[1:-1])
                                        for s, e, text, enc in ordered])
    except ValueError:  # offsets past the string: it is not the one the pieces were made on
        return None


def _edit_dict_calls(calls: list[Any], arg_edits: dict[int, dict[str, str]],
                     pieces: dict[str, list[ArgPiece]]) -> list[Any]:
    calls = list(calls)
    for k, values in arg_edits.items():
        call = dict(calls[k])
        fn = call.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            call["function"] = {**fn, "arguments": _splice_args(fn["arguments"], values, _call_pieces(pieces, k))}
        elif isinstance(call.get("args"), dict):
            call["args"] = {**call["args"], **values}
        else:
            raise ConfigError(f"tool call {k} has no editable arguments")
        calls[k] = call
    return calls


def _new_content(content: Any, edits: dict[str, str]) -> Any:
    if "content" in edits:
        return edits["content"]
    parts = [(int(m.group(1)), v) for k, v in edits.items() if (m := _PART.fullmatch(k))]
    if not parts:
        return content
    content = copy.copy(content)
    for i, value in parts:
        part = content[i]
        if isinstance(part, str):
            content[i] = value
        else:
            part = dict(part)
            key = "text" if part.get("type") == "text" else ("reasoning" if "reasoning" in part else "thinking")
            part[key] = value
            content[i] = part
    return content


def _edit_dict(msg: dict[str, Any], edits: dict[str, str], pieces: dict[str, list[ArgPiece]]) -> dict[str, Any]:
    edits, arg_edits = _split_arg_edits(edits)
    new = dict(msg)
    if arg_edits:
        new["tool_calls"] = _edit_dict_calls(msg.get("tool_calls") or [], arg_edits, pieces)
    if not edits:
        return new
    new["content"] = _new_content(msg.get("content"), edits)
    for key in ("reasoning_content", "reasoning"):
        if key in edits:
            new[key] = edits[key]
    return new


def _edit_langchain(msg: Any, edits: dict[str, str], pieces: dict[str, list[ArgPiece]]) -> Any:
    edits, arg_edits = _split_arg_edits(edits)
    update: dict[str, Any] = {"content": _new_content(msg.content, edits)}
    if arg_edits:
        calls = list(msg.tool_calls)
        raw_calls = list((msg.additional_kwargs or {}).get("tool_calls") or [])
        for k, values in arg_edits.items():
            call = dict(calls[k])
            call["args"] = {**call["args"], **values}
            calls[k] = call
            # The provider's raw form, when the message keeps one, follows (same call id).
            for j, raw in enumerate(raw_calls):
                fn = raw.get("function") if isinstance(raw, dict) else None
                if raw.get("id") == call.get("id") and isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    try:
                        raw_calls[j] = {**raw, "function": {**fn, "arguments": _splice_args(
                            fn["arguments"], values, _call_pieces(pieces, k))}}
                    except ConfigError:
                        pass
        update["tool_calls"] = calls
        if raw_calls:
            update["additional_kwargs"] = {**msg.additional_kwargs, "tool_calls": raw_calls}
    if "reasoning_content" in edits:
        kwargs = dict(update.get("additional_kwargs", msg.additional_kwargs))
        kwargs["reasoning_content"] = edits["reasoning_content"]
        update["additional_kwargs"] = kwargs
    return msg.model_copy(update=update)
