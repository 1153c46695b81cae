"""What a model cleaner is shown: the context with its protected parts marked (or elided), tool-call arguments
readable, and the map that takes anchors copied from it back to the context.

A model cannot respect protection it cannot see: shown :attr:`Context.text` as it is, a real model spends
its commands on the question, the first human message or the latest turn (all protected, all rejected), and
copies anchors out of tool-call arguments written as escaped JSON (``\\n``, ``\\"``) that are then "not
found". :func:`render_context` renders the same context for a model:

* editable text and the structural headers (``[tool read_file #call_3]``, separators, the JSON around an
  editable argument value) appear exactly as they are in :attr:`Context.text`, so an anchor copied from them
  is the stored text itself. Long editable argument strings are already decoded there (and written back
  re-encoded by :func:`~freemem.apply_commands`, so an edit cannot break the JSON);
* each run of protected text is wrapped in ``<protected>`` ... ``</protected>`` (``mark``; a long run shows
  its head and tail around ``[... 1,204 protected chars not shown ...]``) or replaced by a short note such
  as ``[protected: 1,204 chars, not editable]`` (``elide``);
* protected tool-call arguments show their string values decoded (real newlines and quotes), so what the
  model reads is what the agent wrote;
* with ``collapse_repeats``, a passage of editable text written again and again verbatim (a repetition loop:
  the same lines, one after another, at least twice) is shown once between ``<repeated times="N">`` and
  ``</repeated>``. A small model shown 63 copies of a 140-character cycle brackets a sentence or two of it;
  shown one copy with its count it can name the passage whole, and the prompt is that much shorter. A command
  whose prefix lies in the shown copy is matched on the copies' real text (:meth:`Finder.run_matches
  <freemem.core.finder.Finder.run_matches>`), so it means there what it would mean in the raw text.

:func:`freemem.apply_commands` takes the :class:`RenderedContext` as ``shown=`` and locates anchors in the
text the model saw: an anchor in editable text maps back to the identical stored text, one that touches a
marker, a note or protected text (decoded or not) is rejected ``"protected"`` with the protected part's
reason — never silently mis-placed. Without ``shown`` anchors are looked for in :attr:`Context.text`, as
before (``render="raw"`` on the model cleaners: the text a released adapter may have been trained on).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from freemem.core.context import Context, Region
from freemem.core.errors import ConfigError
from freemem.core.loops import loop_runs, units

__all__ = ["RENDER_MODES", "Collapsed", "RenderMode", "RenderOptions", "RenderedContext", "prompt_text",
           "readable_arguments", "render_context", "repeated_runs"]

#: How a model cleaner is shown its context: ``raw`` (:attr:`Context.text` as it is), ``mark`` (protected
#: runs wrapped in tags, long ones shortened) or ``elide`` (protected runs replaced by a short note).
RenderMode = Literal["raw", "mark", "elide"]
RENDER_MODES: tuple[str, ...] = ("raw", "mark", "elide")


@dataclass(frozen=True)
class RenderOptions:
    """How :func:`render_context` shows protected text.

    ``protected="mark"`` wraps each protected run in ``open_tag`` / ``close_tag``; a run longer than
    ``max_shown`` characters keeps its first ``head_chars`` and last ``tail_chars`` around a note saying how
    much is not shown (the model still sees the question and what the agent is doing now, at a bounded cost
    in prompt tokens). ``protected="elide"`` replaces every protected run by ``[protected: N chars, not
    editable]``. ``decode_arguments`` shows protected tool-call arguments with their strings decoded.
    """

    protected: Literal["mark", "elide"] = "mark"
    max_shown: int = 1500
    head_chars: int = 500
    tail_chars: int = 500
    decode_arguments: bool = True
    open_tag: str = "<protected>"
    close_tag: str = "</protected>"
    collapse_repeats: bool = False
    min_repeat_chars: int = 200
    repeat_open: str = '<repeated times="{times}">'
    repeat_close: str = "</repeated>"

    def __post_init__(self) -> None:
        if self.protected not in ("mark", "elide"):
            raise ConfigError(f"RenderOptions.protected must be 'mark' or 'elide', got {self.protected!r}")
        for name in ("max_shown", "head_chars", "tail_chars", "min_repeat_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"RenderOptions.{name} must be an int >= 0, got {value!r}")
        if self.head_chars + self.tail_chars > self.max_shown:
            raise ConfigError("RenderOptions: head_chars + tail_chars must not exceed max_shown")
        if self.protected == "mark" and not (self.open_tag and self.close_tag):
            raise ConfigError("RenderOptions: open_tag and close_tag must be non-empty")
        if self.collapse_repeats and not (self.repeat_open.strip() and self.repeat_close.strip()):
            raise ConfigError("RenderOptions: repeat_open and repeat_close must be non-empty")

    @classmethod
    def of(cls, spec: RenderOptions | str, *, auto: str = "raw", collapse_repeats: bool = False
           ) -> RenderOptions | None:
        """Options from a mode name (``"mark"``, ``"elide"``; ``"raw"`` gives None; ``"auto"`` is ``auto``,
        the mode a prompt template declares) or options as they are. ``collapse_repeats`` is what the
        template declares (its instructions explain the tags), applied to a mode given by name."""
        if isinstance(spec, RenderOptions):
            return spec
        if spec == "auto":
            spec = auto
        if spec == "raw":
            return None
        if spec in ("mark", "elide"):
            return cls(protected=spec, collapse_repeats=collapse_repeats)  # type: ignore[arg-type]
        raise ConfigError(f"render must be one of {RENDER_MODES} or RenderOptions, got {spec!r}")


@dataclass(frozen=True, slots=True)
class _Segment:
    """``[start, end)`` of the rendered text; ``source`` is where it starts in :attr:`Context.text` when it
    is shown verbatim, None for markers, notes and re-rendered protected text. A repeat tag is a note a span
    may run through: ``resume`` is where the context's text goes on after it (the shown copy after an
    opening tag, the end of the copies not shown after a closing one)."""

    start: int
    end: int
    source: int | None
    resume: int | None = None


class RenderedContext:
    """A context as a model cleaner sees it (see :func:`render_context`).

    ``text`` is what the prompt holds; ``index`` is a :class:`~freemem.Context` over ``text`` whose regions
    classify it (editable and header text verbatim, each protected run one protected region), which is what
    :func:`~freemem.apply_commands` searches when given ``shown=``; :meth:`to_source` maps a range of ``text``
    back to :attr:`Context.text`.
    """

    def __init__(self, context: Context, text: str, regions: list[Region], segments: list[_Segment],
                 options: RenderOptions, protected_chars: int, hidden_chars: int,
                 collapsed: Sequence[Collapsed] = ()) -> None:
        self.context = context
        self.text = text
        self.index = Context(text, regions, kind=context.kind)
        self.options = options
        #: Characters of protected text in the context, and how many of them the model is not shown.
        self.protected_chars = protected_chars
        self.hidden_chars = hidden_chars
        self._segments = segments
        self._starts = [s.start for s in segments]
        #: The repeated passages shown once (``collapse_repeats``), in the order they are shown.
        self.collapsed: tuple[Collapsed, ...] = tuple(collapsed)
        #: Characters of editable text not shown because they repeat a passage shown once.
        self.repeated_chars = sum(c.hidden for c in self.collapsed)
        self._collapsed_starts = [c.source for c in self.collapsed]

    def to_source(self, start: int, end: int) -> tuple[int, int] | None:
        """``[start, end)`` of :attr:`text` as a range of the context's text, or None when any of it is not
        shown verbatim (a marker, a note, decoded or shortened protected text). Exact: the two ranges hold
        the same characters — except that a repeat tag (``collapse_repeats``) stands for what it hides: a
        range running through a closing tag covers the copies not shown, one starting or ending on a tag
        starts or ends where the context's text goes on."""
        if not 0 <= start < end <= len(self.text):
            return None
        i = bisect.bisect_right(self._starts, start) - 1
        seg = self._segments[i]
        if seg.source is not None:
            src_start = seg.source + (start - seg.start)
        elif seg.resume is not None:
            src_start = seg.resume
        else:
            return None
        while seg.end < end:
            expected = seg.source + (seg.end - seg.start) if seg.source is not None else seg.resume
            i += 1
            seg = self._segments[i]
            if seg.source is None:
                if seg.resume is None:
                    return None
            elif seg.source != expected:
                return None
        src_end = seg.source + (end - seg.start) if seg.source is not None else seg.resume
        assert src_end is not None
        return (src_start, src_end) if src_end > src_start else None

    def collapsed_holding(self, source: int) -> Collapsed | None:
        """The collapsed passage whose shown (first) copy holds offset ``source`` of the context's text."""
        i = bisect.bisect_right(self._collapsed_starts, source) - 1
        if i >= 0 and source < self.collapsed[i].source + self.collapsed[i].period:
            return self.collapsed[i]
        return None

    def repeats(self, start: int, end: int) -> list[tuple[int, int]]:
        """The other copies of ``[start, end)`` of the context's text when it lies inside the shown copy of a
        collapsed passage: the same offsets in each copy not shown (byte-identical text in the same editable
        field), in order; empty otherwise."""
        c = self.collapsed_holding(start)
        if c is None or end > c.source + c.period:
            return []
        return [(start + k * c.period, end + k * c.period) for k in range(1, c.copies)]

    def __len__(self) -> int:
        return len(self.text)

    def __repr__(self) -> str:
        return (f"RenderedContext(chars={len(self.text)}, source_chars={len(self.context.text)}, "
                f"protected={self.protected_chars}, hidden={self.hidden_chars}, mode={self.options.protected!r})")


@dataclass(frozen=True, slots=True)
class Collapsed:
    """A passage shown once for ``copies`` verbatim copies in a row: the first starts at ``source`` of the
    context's text, each is ``period`` characters long; the shown copy starts at ``shown`` of the rendered
    text."""

    source: int
    period: int
    copies: int
    shown: int = 0

    @property
    def end(self) -> int:
        """Where the copies end in the context's text."""
        return self.source + self.period * self.copies

    @property
    def hidden(self) -> int:
        """Characters of the copies not shown (every copy after the first)."""
        return self.period * (self.copies - 1)


def repeated_runs(text: str, min_hidden: int) -> list[tuple[int, int, int]]:
    """``(start, period, copies)`` of the passages of ``text`` written verbatim at least twice in a row (whole
    lines, as :func:`freemem.core.loops.units` cuts them), whose copies after the first hold at least
    ``min_hidden`` characters; left to right, not overlapping. Exact: each copy is ``text[start + k * period:
    start + (k + 1) * period]``, byte-identical to the first."""
    parts = units(text)
    if len(parts) < 2:
        return []
    keys = [text[a:b] if text[a:b].strip() else "" for a, b in parts]
    out: list[tuple[int, int, int]] = []
    for a, b, q in loop_runs(keys, 2):
        copies = (b - a) // q
        if copies < 2:
            continue
        start = parts[a][0]
        period = parts[a + q][0] - start
        if period <= 0 or period * (copies - 1) < min_hidden:
            continue
        first = text[start:start + period]
        if any(text[start + k * period:start + (k + 1) * period] != first for k in range(1, copies)):
            continue  # whitespace-only units share the key "" without being the same text
        out.append((start, period, copies))
    out.sort()
    return out


class _Raw(str):
    """A JSON number or constant kept as written."""


class _Pairs(list):
    """A JSON object's ``(key, value)`` pairs in order, duplicates kept."""


def _readable(value: object) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, _Pairs):
        return "{" + ", ".join(f"{_readable(k)}: {_readable(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_readable(v) for v in value) + "]"
    if value is None:
        return "null"
    return json.dumps(value)


def readable_arguments(raw: str) -> str | None:
    """Tool-call arguments ``raw`` (a JSON text) with every string written out decoded — real newlines and
    quotes instead of ``\\n`` and ``\\"`` — for reading, not parsing; None when ``raw`` has no escapes or is
    not JSON."""
    if "\\" not in raw:
        return None
    try:
        value = json.loads(raw, object_pairs_hook=_Pairs, parse_float=_Raw, parse_int=_Raw, parse_constant=_Raw)
    except (ValueError, RecursionError):
        return None
    return _readable(value)


def _is_protected(region: Region) -> bool:
    return not region.editable and region.kind != "header"


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.regions: list[Region] = []
        self.segments: list[_Segment] = []
        self.pos = 0

    def add(self, text: str, source: int | None, region: Region | None, resume: int | None = None) -> None:
        if not text:
            return
        end = self.pos + len(text)
        self.parts.append(text)
        if region is not None:
            self.regions.append(Region(self.pos, end, region.editable, region.kind, region.message_index,
                                       region.field, region.field_offset, region.reason))
        last = self.segments[-1] if self.segments else None
        if (last is not None and last.source is None and source is None and last.resume is None
                and resume is None):
            self.segments[-1] = _Segment(last.start, end, None)
        else:
            self.segments.append(_Segment(self.pos, end, source, resume))
        self.pos = end


def _reasons(run: Sequence[Region]) -> str:
    seen: list[str] = []
    for r in run:
        reason = r.reason or "protected"
        if reason not in seen:
            seen.append(reason)
    return "; ".join(seen)


def render_context(context: Context, options: RenderOptions | None = None) -> RenderedContext:
    """Render ``context`` for a model cleaner (see the module docstring). Linear in the text."""
    options = options or RenderOptions()
    text = context.text
    b = _Builder()
    regions = context.regions
    protected_chars = hidden_chars = 0
    collapsed: list[Collapsed] = []
    pos = 0
    i = 0
    while i < len(regions):
        r = regions[i]
        if r.start > pos:  # text outside every region (hand-built contexts): shown, never editable
            b.add(text[pos:r.start], pos, None)
        if not _is_protected(r):
            if options.collapse_repeats and r.editable:
                _add_collapsing(b, text, r, options, collapsed)
            else:
                b.add(text[r.start:r.end], r.start, r)
            pos = r.end
            i += 1
            continue
        j = i + 1
        while j < len(regions) and _is_protected(regions[j]) and regions[j].start == regions[j - 1].end:
            j += 1
        run = regions[i:j]
        pieces: list[str] = []
        for p in run:
            raw = text[p.start:p.end]
            shown = readable_arguments(raw) if options.decode_arguments and p.kind == "arguments" else None
            pieces.append(shown if shown is not None else raw)
        body = "".join(pieces)
        source_len = run[-1].end - run[0].start
        protected_chars += source_len
        if options.protected == "elide":
            shown_run = f"[protected: {source_len:,} chars, not editable]"
            hidden_chars += source_len
        else:
            if len(body) > options.max_shown:
                hidden = len(body) - options.head_chars - options.tail_chars
                hidden_chars += hidden
                tail = body[len(body) - options.tail_chars:] if options.tail_chars else ""
                body = (body[:options.head_chars] + f" [... {hidden:,} protected chars not shown ...] " + tail)
            shown_run = options.open_tag + body + options.close_tag
        b.add(shown_run, None, Region(0, 0, False, run[0].kind, run[0].message_index, run[0].field,
                                      run[0].field_offset, _reasons(run)))
        pos = run[-1].end
        i = j
    if pos < len(text):
        b.add(text[pos:], pos, None)
    return RenderedContext(context, "".join(b.parts), b.regions, b.segments, options, protected_chars,
                           hidden_chars, collapsed)


def _piece(r: Region, start: int, end: int) -> Region:
    """The part ``[start, end)`` of editable region ``r`` (offsets in the context's text)."""
    return Region(start, end, r.editable, r.kind, r.message_index, r.field, r.field_offset + (start - r.start),
                  r.reason)


def _add_collapsing(b: _Builder, text: str, r: Region, options: RenderOptions, out: list[Collapsed]) -> None:
    """Add editable region ``r``, each passage repeated verbatim shown once inside the repeat tags. A tag is
    structure, like a message header: never removed (it is not in the context's text), an anchor may run
    into it, and a span may run through it (a span through the closing tag covers the copies not shown)."""
    at = r.start
    body = text[r.start:r.end]
    for start, period, copies in repeated_runs(body, options.min_repeat_chars):
        src = r.start + start
        b.add(text[at:src], at, _piece(r, at, src))
        note = Region(0, 0, False, "header", r.message_index, r.field, 0, "a note of the rendering")
        copy = text[src:src + period]
        # Each tag on a line of its own (newlines in a note cost nothing: the note is not the context's text).
        before = "" if b.pos == 0 or b.parts[-1].endswith("\n") else "\n"
        b.add(before + options.repeat_open.replace("{times}", str(copies)) + "\n", None, note, resume=src)
        c = Collapsed(src, period, copies, b.pos)
        b.add(copy, src, _piece(r, src, src + period))
        b.add(("" if copy.endswith("\n") else "\n") + options.repeat_close + "\n", None, note, resume=c.end)
        out.append(c)
        at = c.end
    b.add(text[at:r.end], at, _piece(r, at, r.end))


def prompt_text(context: Context | str, options: RenderOptions | None) -> tuple[str, RenderedContext | None]:
    """The text a model cleaner puts in its prompt for ``context``, and the rendering it came from (None when
    it is the context's own text: ``options`` None, or a plain string given instead of a context)."""
    if isinstance(context, str):
        return context, None
    if options is None:
        return context.text, None
    shown = render_context(context, options)
    return shown.text, shown
