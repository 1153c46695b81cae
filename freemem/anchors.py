"""Turn a wanted span of a :class:`~freemem.Context` into a command that apply will map back to that span.

Model cleaners choose anchors themselves; rule-based cleaners know the span and need anchors: the shortest
prefix that is unique where :func:`~freemem.apply_commands` looks for it, and the shortest suffix whose first
occurrence after the prefix ends the span. Every command is checked against the same finder apply uses, so
an emitted command is accepted exactly as intended.
"""

from __future__ import annotations

from freemem.core.apply import _Finder, _locate
from freemem.core.commands import Command
from freemem.core.context import Context

__all__ = ["AnchorMaker"]

_STEPS = (24, 48, 96, 192, 384, 768, 1536, 3072, 6144)


class AnchorMaker:
    """Build verified commands for spans of one context snapshot."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.text = context.text
        self._finder = _Finder(context)
        # The snapshot never changes, so a span's command never does: a cleaner may ask twice (once to see
        # what it can anchor, once to emit).
        self._made: dict[tuple[int, int, int], Command | None] = {}

    def _unique_prefix(self, start: int, limit: int) -> str | None:
        """Shortest prefix at ``start`` (at most up to ``limit``) that apply resolves to ``start``.

        Periodic text (a verbatim loop) needs a prefix that reaches the loop's edge; the whole span is the
        last resort, and a valid one when the copies after it run into protected text.
        """
        text = self.text
        lengths = [n for n in _STEPS if n < limit - start] + [limit - start]
        for n in lengths:
            prefix = text[start:start + n]
            if not prefix.strip():
                continue
            if text.find(prefix) == start and text.find(prefix, start + 1) < 0:
                return prefix  # unique in the whole text: no need to ask the finder
            if self._finder.find_prefix(prefix) == (start, start + n):
                return prefix
        return None

    def _suffix(self, after: int, end: int) -> str | None:
        """Shortest suffix whose first occurrence at or after ``after`` ends at ``end``."""
        text = self.text
        if end <= after:
            return ""
        lengths = [n for n in (8, 16, 32, 64, 128, 256, 512, 1024) if n < end - after] + [end - after]
        for n in lengths:
            suffix = text[end - n:end]
            if suffix.strip() and text.find(suffix, after) == end - n:
                return suffix
        return None

    def _header_chain_start(self, start: int) -> int | None:
        """Start of the run of header regions ending right at ``start`` (None when there is none)."""
        at = start
        head = None
        while at > 0:
            r = self.context.region_at(at - 1)
            if r is None or r.kind != "header":
                break
            head = at = r.start
        return head

    def command(self, start: int, end: int, *, back_off: int = 0) -> Command | None:
        """A command deleting exactly ``[start, end)``, or None when no unique anchors exist.

        With ``back_off`` > 0 the span may start up to that many line starts earlier when ``start`` itself
        cannot be anchored (periodic text such as a verbatim loop is unique only at its edge).
        """
        key = (start, end, back_off)
        if key not in self._made:
            self._made[key] = self._command(start, end, back_off)
        return self._made[key]

    def _command(self, start: int, end: int, back_off: int) -> Command | None:
        if end <= start:
            return None
        candidates = [start]
        at = start
        text = self.text
        for _ in range(back_off):
            # The start of the previous non-blank line.
            while at > 0:
                line = text.rfind("\n", 0, at - 1)
                nxt = line + 1 if line >= 0 else 0
                blank = not text[nxt:at].strip()
                at = nxt
                if not blank or at == 0:
                    break
            if at >= candidates[-1]:
                break
            candidates.append(at)
            if at == 0:
                break
        # Text repeated elsewhere (an identical tool output, a file body passed twice) is unique only
        # together with the structural headers right before it, which apply keeps when it cuts the span.
        head = self._header_chain_start(start)
        if head is not None and head not in candidates:
            candidates.append(head)
        for s in candidates:
            prefix = self._unique_prefix(s, end)
            if prefix is None:
                continue
            p_end = s + len(prefix)
            suffix = "" if p_end >= end else self._suffix(p_end, end)
            if suffix is None:
                continue
            cmd = Command(prefix=prefix, suffix=suffix)
            located = _locate(self._finder, 0, cmd)
            if located == (s, end):
                return cmd
        return None
