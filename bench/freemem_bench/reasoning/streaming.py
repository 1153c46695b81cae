"""Cleaning a chain of thought as it streams: chunk by chunk, the way a reasoning loop would, keeping a map of which characters survive."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from freemem.core.loops import CHAR_LOOP, loop_runs, unit_key, units
from freemem.memory import FreeMemory

__all__ = ["Streamed", "chunk_bounds", "removed_runs", "stream_clean", "tail_loop"]



def chunk_bounds(text: str, total_tokens: int, chunk_tokens: int) -> list[tuple[int, int]]:
    """Cut ``text`` into pieces of about ``chunk_tokens`` tokens (by the text's own characters per token),
    each cut moved to the next line break (or space) within 400 characters."""
    if not text:
        return []
    step = max(1, int(len(text) * chunk_tokens / max(1, total_tokens)))
    out: list[tuple[int, int]] = []
    at = 0
    while at < len(text):
        cut = at + step
        if cut >= len(text):
            out.append((at, len(text)))
            break
        nl = text.find("\n", cut, cut + 400)
        if nl < 0:
            nl = text.find(" ", cut, cut + 400)
        cut = nl + 1 if nl >= 0 else cut
        out.append((at, cut))
        at = cut
    return out


@dataclass
class Streamed:
    """What streaming one trace through a memory left: the final context and, per original character,
    whether it survived."""

    final_text: str
    kept: bytearray
    tokens_before: int
    tokens_after: int
    peak_tokens: int
    cleans: int
    seconds: float
    round_seconds: list[float] = field(default_factory=list)
    #: The ledger event of every clean, in order.
    events: list[Any] = field(default_factory=list)


def _remap(origin: list[int], spans: Sequence[Any]) -> list[int]:
    """Apply one round's spans (offsets in the current text) to the current-text → original-offset map."""
    out: list[int] = []
    at = 0
    for span in sorted(spans, key=lambda s: s.start):
        out.extend(origin[at:span.start])
        out.extend([-1] * len(span.marker))
        at = span.end
    out.extend(origin[at:])
    return out


def stream_clean(text: str, question: str, memory: FreeMemory, chunk_tokens: int) -> Streamed:
    """Stream ``text`` through ``memory`` in pieces of about ``chunk_tokens`` tokens (see the module docstring)."""
    total = memory.count_text(text)
    state = ""
    origin: list[int] = []
    at_last_clean = 0
    peak = 0
    cleans = 0
    spent = 0.0
    rounds: list[float] = []
    events: list[Any] = []
    for a, b in chunk_bounds(text, total, chunk_tokens):
        piece = text[a:b]
        state += piece
        origin.extend(range(a, b))
        t0 = time.perf_counter()
        tokens = memory.count_text(state)
        peak = max(peak, tokens)
        reason = memory.check(tokens, at_last_clean, piece)
        if reason is not None:
            result = memory.clean_text(state, question=question or None, trigger=reason)
            for spans in result.event.rounds:
                origin = _remap(origin, spans)
            state = result.text if result.text is not None else state
            at_last_clean = result.event.tokens_after
            events.append(result.event)
            cleans += 1
            rounds.append(time.perf_counter() - t0)
        spent += time.perf_counter() - t0
        if len(origin) != len(state):  # a broken map would make every figure wrong: fail loudly
            raise RuntimeError("freemem bench reasoning: span map out of step with the pruned text")
    kept = bytearray(len(text))
    for pos in origin:
        if pos >= 0:
            kept[pos] = 1
    return Streamed(state, kept, total, memory.count_text(state), peak, cleans, spent, rounds, events)


def removed_runs(kept: bytearray, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Maximal runs of removed characters inside ``[start, end)``."""
    at = start
    while at < end:
        gap = kept.find(0, at, end)
        if gap < 0:
            return
        back = kept.find(1, gap, end)
        stop = end if back < 0 else back
        yield gap, stop
        at = stop


def tail_loop(text: str, min_repeats: int = 3) -> tuple[int, int, int] | None:
    """``(start, end, unit_chars)`` of the redundant copies of a repetition loop the text ends in (every copy
    but the last), or None. See the module docstring."""
    if len(text) < 60:
        return None
    parts = units(text)
    keys = [unit_key(text[a:b]) for a, b in parts]
    best: tuple[int, int, int] | None = None
    for a, b, q in loop_runs(keys, min_repeats):
        if b < len(parts) - 1:  # the run must reach the last unit (or the one before a partial last copy)
            continue
        start, last_copy = parts[a][0], parts[b - q][0]
        if last_copy - start > 0 and (best is None or last_copy - start > best[1] - best[0]):
            best = (start, last_copy, parts[b - q][0] - parts[b - 2 * q][0] if b - 2 * q >= a else 0)
    tail_from = max(0, len(text) - 20000)
    for m in CHAR_LOOP.finditer(text, tail_from):
        unit = len(m.group(1))
        if m.end() >= len(text) - unit:
            start, end = m.start(), m.end() - unit
            if best is None or end - start > best[1] - best[0]:
                best = (start, end, unit)
    return best


