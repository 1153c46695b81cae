"""Apply deletion commands to a :class:`~freemem.Context` safely, in one pass.

Semantics (docs/applying.md, "How applying works"), for every command on the *same* snapshot of the text:

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
6. a round that would free more than ``max_freed_share`` of the editable characters is refused whole (with a
   rendering that showed repeated passages once, their copies after the first count once on both sides).

Nothing here raises on bad cleaner output: the :class:`Outcome` lists what was applied and what was
rejected, and why. A flood of commands is bounded too: identical commands are examined once (the repeats are
rejected ``"duplicate"``), at most ``max_commands`` distinct ones per call (``"over_cap"``), and locating
stops at a deadline (``"deadline"``); a prefix that is frequent in protected text costs one step per
protected region it occurs in, not one per occurrence, and each distinct prefix is searched once.

Given ``shown`` (what a model cleaner was shown, :mod:`freemem.core.rendering`), anchors are located in that text and
each span is mapped back exactly to the context. In a passage the model was shown once for its copies
(``RenderOptions.collapse_repeats``), ``"all"`` and ``"first"`` match a command on the copies' real text (every
match, or the first), so a command means there what it would mean in the raw text; under ``"reject"`` a span
inside the shown copy is removed from every copy (byte-identical text, so each is exactly what was named).

Tool-call argument strings are edited in place in their JSON: only the bytes of the removed range change,
and each :class:`AppliedSpan` keeps the range as it was encoded (``raw_original``), so restoring is
byte-exact (escapes as written, ``\\/``, uppercase hex).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

from freemem.core.commands import Command
from freemem.core.context import Context, Region
from freemem.core.edits import ArgPiece
from freemem.core.errors import ConfigError
from freemem.core.finder import Finder, locate, locate_matches
from freemem.core.json_args import arg_strings, encoded_offsets, parse_arg_field
from freemem.core.outcome import AppliedSpan, Outcome, Rejection
from freemem.core.rendering import RenderedContext

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_MAX_COMMANDS",
    "DEFAULT_MAX_MATCHES",
    "DEFAULT_MESSAGE_MARKER",
    "DEFAULT_TEXT_MARKER",
    "REPEATED_MODES",
    "RepeatedMode",
    "apply_commands",
    "span_ref",
]

DEFAULT_TEXT_MARKER = "<Del>"
#: ``{ref}`` names the removed text (:func:`span_ref`): the ``recall`` tool pages it back in by that id.
DEFAULT_MESSAGE_MARKER = "[freemem: #{ref} {tokens} tokens freed]"


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


#: A marker is a string (``{tokens}`` is replaced by the piece's token count) or a function of
#: ``(original_text, tokens)``.
Marker = str | Callable[[str, int], str]


# ---------------------------------------------------------------------------------------------------------
# applying


def span_ref(original: str) -> str:
    """The short id a marker names for the text it replaced: 8 hex digits of the text's SHA-1, so the same
    text always gets the same id and an archive can find it again (the ``recall`` tool)."""
    return hashlib.sha1(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _copies(shown: RenderedContext | None, span: tuple[int, int]) -> list[tuple[int, int]]:
    """The same span in the copies of a repeated passage the model was shown once (``collapse_repeats``;
    ``repeated="reject"``, whose one span names the passage in every copy). Byte-identical text, same field."""
    return shown.repeats(*span) if shown is not None and shown.collapsed else []


def _distinct_share(shown: RenderedContext | None, pieces: Sequence[tuple[int, int, Any, Any]], freed: int,
                    editable: int) -> tuple[int, int]:
    """``(freed, editable)`` characters as ``max_freed_share`` weighs them: with a rendering that showed
    repeated passages once (``collapse_repeats``), the copies after the first count once — they say nothing
    the first does not, so removing a verbatim loop whole is not the "delete everything" the cap guards
    against, while removing most of what the text says still is."""
    if shown is None or not shown.collapsed:
        return freed, editable
    redundant_removed = 0
    for c in shown.collapsed:
        removed = sum(max(0, min(e, c.end) - max(s, c.source)) for s, e, _, _ in pieces)
        redundant_removed += min(removed, c.hidden)
    return freed - redundant_removed, max(1, editable - shown.repeated_chars)


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
    finder = Finder(shown.index, shown) if shown is not None else Finder(context)
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
        anchors = (cmd.prefix, cmd.suffix)
        if anchors in first_of:
            # The same anchors name the same span: examining it again could only repeat the answer.
            rejected.append(Rejection(i, cmd, "duplicate", f"same as command {first_of[anchors]}"))
            continue
        first_of[anchors] = i
        if max_commands is not None and len(first_of) > max_commands:
            rejected.append(Rejection(i, cmd, "over_cap",
                                      f"more than max_commands={max_commands} distinct commands in one round"))
            continue
        if deadline is not None and time.monotonic() > deadline:
            rejected.append(Rejection(i, cmd, "deadline", f"not examined: the round's {deadline_s:g} s to locate "
                                                          "commands had passed"))
            continue
        if repeated == "reject":
            located = locate(finder, i, cmd)
            if isinstance(located, Rejection):
                rejected.append(located)
            else:
                spans.append((located[0], located[1], i))
                spans.extend((s_, e_, i) for s_, e_ in _copies(shown, located))
            continue
        matches = locate_matches(finder, i, cmd, first=repeated == "first", max_matches=max_matches,
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
    freed_distinct, distinct = _distinct_share(shown, pieces, freed, editable)
    if pieces and freed_distinct > max_freed_share * distinct:
        what = "" if distinct == editable else (
            f"; {freed_distinct} of {distinct} counting each repeated passage's copies once")
        reason = (f"round would free {freed} of {editable} editable characters{what} "
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
