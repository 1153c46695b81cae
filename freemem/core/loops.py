"""Repetition loops: the failure the Free()LM paper found behind most context-limit failures.

A text is cut into units (lines, with blank lines folded into the line before; long lines into sentences);
units are compared after folding case and whitespace (near-verbatim), and runs of units that repeat with
some period (one unit, or a block of up to 64) are loops. A regular expression catches loops inside one
long line.
"""

from __future__ import annotations

import re

__all__ = ["CHAR_LOOP", "has_loop", "loop_runs", "unit_key", "units"]

_WS = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+")
#: A unit of 6..400 characters repeated at least 4 times in a row.
CHAR_LOOP = re.compile(r"(.{6,400}?)\1{3,}", re.DOTALL)


def unit_key(unit: str) -> str:
    return _WS.sub(" ", unit).strip().lower().rstrip(".,;:!?")


def units(text: str) -> list[tuple[int, int]]:
    """Lines (blank lines folded into the line before), long lines split into sentences."""
    units: list[tuple[int, int]] = []
    pos = 0
    for line in text.splitlines(keepends=True):
        start, end = pos, pos + len(line)
        pos = end
        if not line.strip() and units:
            units[-1] = (units[-1][0], end)
            continue
        if len(line) > 400:
            at = start
            for m in _SENTENCE.finditer(line):
                cut = start + m.end()
                if cut - at >= 20:
                    units.append((at, cut))
                    at = cut
            units.append((at, end))
        else:
            units.append((start, end))
    return units


def loop_runs(keys: list[str], min_repeats: int, max_period: int = 64) -> list[tuple[int, int, int]]:
    """Runs of units repeating with some period: ``(first_unit, end_unit, period)``, longest first."""
    n = len(keys)
    runs: list[tuple[int, int, int]] = []
    for q in range(1, max_period + 1):
        i = 0
        while i + q < n:
            if keys[i] and keys[i] == keys[i + q]:
                j = i
                while j + q < n and keys[j] == keys[j + q]:
                    j += 1
                length = j - i + q  # units covered by the run
                if length >= q * min_repeats:
                    runs.append((i, i + length, q))
                i = j + 1
            else:
                i += 1
    runs.sort(key=lambda r: (-(r[1] - r[0]), r[2]))
    chosen: list[tuple[int, int, int]] = []
    taken: list[tuple[int, int]] = []
    for a, b, q in runs:
        if all(b <= x or a >= y for x, y in taken):
            chosen.append((a, b, q))
            taken.append((a, b))
    return chosen


def has_loop(text: str, min_repeats: int = 3, *, tail_chars: int = 20000) -> bool:
    """Whether the end of ``text`` (its last ``tail_chars``) holds a loop worth cleaning."""
    tail = text[-tail_chars:]
    if len(tail) < 60:
        return False
    parts = units(tail)
    keys = [unit_key(tail[a:b]) for a, b in parts]
    for a, b, _q in loop_runs(keys, min_repeats):
        if parts[b - 1][1] - parts[a][0] >= 120:
            return True
    # Loops inside one line (no sentence breaks to split on): only long lines can hold one worth cleaning,
    # and the backtracking pattern is costly, so it runs on those alone.
    return any(len(m.group(0)) >= 120 for line in tail[-4000:].splitlines() if len(line) >= 400
               for m in CHAR_LOOP.finditer(line))
