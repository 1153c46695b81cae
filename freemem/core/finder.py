"""Locating a command's anchors in one snapshot of a :class:`~freemem.Context` (or in what a model cleaner
was shown): exact first, then whitespace-insensitive; a prefix frequent in protected text costs one step per
protected region; every way a command can fail to name one span is a :class:`~freemem.core.outcome.Rejection`
with its detail. Used by :func:`~freemem.core.apply.apply_commands` and the anchor checks of
:mod:`freemem.core.anchors`."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from freemem.core.commands import Command
from freemem.core.context import Context, Region
from freemem.core.outcome import Rejection, RejectReason
from freemem.core.rendering import Collapsed, RenderedContext

__all__ = ["Finder", "Matches", "locate", "locate_matches"]

# ---------------------------------------------------------------------------------------------------------
# finding anchors


def _ws_pattern(anchor: str) -> re.Pattern[str] | None:
    words = anchor.split()
    if not words:
        return None
    return re.compile(r"\s+".join(re.escape(w) for w in words))


#: How many editable occurrences of an ambiguous prefix a rejection counts (and names up to 3 of).
_AMBIGUITY_COUNT = 100


class Finder:
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

    def find_suffix(self, suffix: str, after: int, stop: int | None = None, text: str | None = None
                    ) -> tuple[int, int] | None:
        """First occurrence at or after ``after`` (and ending by ``stop``): exact first, whitespace-insensitive
        only when none. ``text`` is what is searched (the searched text by default)."""
        text = self.text if text is None else text
        stop = len(text) if stop is None else stop
        pos = text.find(suffix, after, stop)
        if pos >= 0:
            return pos, pos + len(suffix)
        pattern = _ws_pattern(suffix)
        if pattern is not None:
            m = pattern.search(text, after, stop)
            if m is not None:
                return m.start(), m.end()
        return None

    def run_matches(self, start: int, end: int, suffix: str) -> tuple[Collapsed, list[tuple[int, int]]] | None:
        """For a prefix occurrence ``[start, end)`` of the searched text that lies in the shown copy of a
        passage the model was shown once (``collapse_repeats``): that passage, and every non-overlapping
        ``prefix ... suffix`` match in its copies' real text (context offsets, left to right, the suffix
        found within the copies too) -- what the command names in the text the shown copy stands for. The
        list is empty when the suffix closes no match inside the copies (the span then runs out of the
        passage, as the model saw). None when the occurrence is in no shown copy."""
        if self.shown is None or not self.shown.collapsed:
            return None
        src = self.source(start, end)
        run = self.shown.collapsed_holding(src[0]) if src is not None else None
        if run is None or src is None:
            return None
        text, hi = self.shown.context.text, run.end
        prefix = text[src[0]:src[1]]  # the real text the occurrence stands for
        has_suffix = bool(suffix.strip())
        out: list[tuple[int, int]] = []
        pos = run.source
        while pos < hi:
            at = text.find(prefix, pos, hi)
            if at < 0:
                break
            stop = at + len(prefix)
            if has_suffix:
                found = self.find_suffix(suffix, stop, hi, text)
                if found is None:
                    break
                stop = found[1]
            out.append((at, stop))
            pos = stop
        return run, out

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


def locate(finder: Finder, index: int, cmd: Command) -> tuple[int, int] | Rejection:
    """The span of ``cmd`` under ``repeated="reject"``: a unique prefix, the first suffix after it."""
    if not cmd.prefix.strip():
        return Rejection(index, cmd, "empty_prefix", "prefix is empty")
    found = finder.find_prefix(cmd.prefix)
    if isinstance(found, str):
        return Rejection(index, cmd, found, _prefix_detail(finder.text, cmd.prefix))
    if isinstance(found[0], str):
        return Rejection(index, cmd, found[0], found[1])
    start, end = found
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
class Matches:
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


def _too_many(index: int, cmd: Command, max_matches: int) -> Rejection:
    return Rejection(index, cmd, "too_many_matches",
                     f"prefix...suffix matches more than max_matches={max_matches} times in editable text: "
                     "anchors that generic name no repeated passage")


def locate_matches(finder: Finder, index: int, cmd: Command, *, first: bool, max_matches: int | None,
                    frees_nothing: Callable[[int, int], bool]) -> Matches | Rejection:
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
    out = Matches()
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
        # A prefix in the shown copy of a repeated passage names it in every copy: matched on the copies' real
        # text, where a suffix may close the span in the next copy, as it would in the raw text.
        hit = finder.run_matches(start, end, cmd.suffix)
        if hit is not None and hit[1]:
            run, in_run = hit
            out.spans.extend(in_run[:1] if first else in_run)
            consumed = run.shown + run.period  # the shown copy is done: the next occurrence is after it
            if first:
                break
            if max_matches is not None and len(out.spans) > max_matches:
                return _too_many(index, cmd, max_matches)
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
            return _too_many(index, cmd, max_matches)
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
