"""The reasoning bench's figures: per trace and per thought-anchors case, and their summaries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from freemem.core.context import answer_line_ranges
from freemem.tokens import CachedCounter
from freemem_bench._common import (
    mean,
)
from freemem_bench.reasoning.data import AnchorCase, Trace
from freemem_bench.reasoning.streaming import Streamed, removed_runs, tail_loop

__all__ = ["anchor_figures", "pct", "summarize_anchors", "summarize_traces", "trace_figures"]



def trace_figures(trace: Trace, streamed: Streamed, counter: CachedCounter) -> dict[str, Any]:
    """Per-trace figures: tokens freed, the tail loop and how much of it went, the final answer line."""
    text, kept = trace.text, streamed.kept
    answers = answer_line_ranges(text)
    answer_kept: bool | None = None
    answer_line = None
    if answers:
        s, e = answers[-1]
        answer_line = text[s:e]
        answer_kept = kept.find(0, s, e) < 0 if e > s else True
    loop = tail_loop(text)
    loop_figs: dict[str, Any] | None = None
    if loop is not None:
        s, e, unit = loop
        loop_tokens = counter.count(text[s:e])
        freed = sum(counter.count(text[a:b]) for a, b in removed_runs(kept, s, e))
        loop_figs = {"start": s, "end": e, "unit_chars": unit, "tokens": loop_tokens,
                     "tokens_freed": min(freed, loop_tokens), "chars_freed": sum(
                         b - a for a, b in removed_runs(kept, s, e))}
    return {
        "label": trace.label, "tokens": streamed.tokens_before, "tokens_after": streamed.tokens_after,
        "freed": 1 - streamed.tokens_after / streamed.tokens_before if streamed.tokens_before else 0.0,
        "peak_tokens": streamed.peak_tokens, "cleans": streamed.cleans, "seconds": round(streamed.seconds, 4),
        "answer_line": answer_line, "answer_kept": answer_kept, "loop": loop_figs,
        "index_tail_loop_unit_chars": trace.index_tail_loop,
    }


def _high_threshold(scores: Sequence[float], top_share: float) -> float:
    """Importance at or above which a chunk is high-importance: the top ``top_share`` of chunks (at least
    one), among chunks with a positive score."""
    positive = sorted((s for s in scores if s > 0), reverse=True)
    if not positive:
        return float("inf")
    k = max(1, round(len(scores) * top_share))
    return positive[min(k, len(positive)) - 1]


def anchor_figures(case: AnchorCase, streamed: Streamed, top_share: float) -> dict[str, Any]:
    """Per-case figures: tokens freed, share of all and of high-importance chunks kept whole."""
    kept = streamed.kept
    threshold = _high_threshold([c[2] for c in case.chunks], top_share)
    whole = [kept.find(0, s, e) < 0 for s, e, _ in case.chunks]
    high = [w for w, (_s, _e, imp) in zip(whole, case.chunks) if imp >= threshold]
    return {
        "label": case.label, "tokens": streamed.tokens_before, "tokens_after": streamed.tokens_after,
        "freed": 1 - streamed.tokens_after / streamed.tokens_before if streamed.tokens_before else 0.0,
        "chunks": len(case.chunks), "chunks_total": case.chunks_total, "chunks_kept": sum(whole),
        "high_chunks": len(high), "high_kept": sum(high), "cleans": streamed.cleans,
    }


def summarize_traces(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals over skythought traces: all traces, traces ending in loops, answer lines kept."""
    loops = [r for r in rows if r["loop"] is not None]
    answered = [r for r in rows if r["answer_kept"] is not None]
    loop_tokens = sum(r["loop"]["tokens"] for r in loops)
    loop_freed = sum(r["loop"]["tokens_freed"] for r in loops)
    tokens = sum(r["tokens"] for r in rows)
    after = sum(r["tokens_after"] for r in rows)

    def group(rs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        t = sum(r["tokens"] for r in rs)
        a = sum(r["tokens_after"] for r in rs)
        return {"traces": len(rs), "tokens": t, "tokens_freed": t - a, "freed_share": (t - a) / t if t else None,
                "freed_mean_per_trace": mean(r["freed"] for r in rs),
                "answer_lines": sum(1 for r in rs if r["answer_kept"] is not None),
                "answer_lines_kept": sum(1 for r in rs if r["answer_kept"])}

    index_known = [r for r in rows if r["index_tail_loop_unit_chars"] is not None]
    return {
        "all": group(rows), "ending_in_loops": group(loops), "not_ending_in_loops": group(
            [r for r in rows if r["loop"] is None]),
        "tokens": tokens, "tokens_freed": tokens - after,
        "loop_traces": len(loops), "loop_tokens": loop_tokens, "loop_tokens_freed": loop_freed,
        "loop_tokens_freed_share": loop_freed / loop_tokens if loop_tokens else None,
        "loop_tokens_freed_share_min": min((r["loop"]["tokens_freed"] / r["loop"]["tokens"] for r in loops
                                            if r["loop"]["tokens"]), default=None),
        "answer_lines": len(answered), "answer_lines_kept": sum(1 for r in answered if r["answer_kept"]),
        "answer_lines_lost": [r["label"] for r in answered if not r["answer_kept"]],
        "index_csv_agreement": {
            "traces_with_index_row": len(index_known),
            "index_loop_and_detected": sum(1 for r in index_known if r["index_tail_loop_unit_chars"] > 0
                                           and r["loop"] is not None),
            "index_loop_only": sum(1 for r in index_known if r["index_tail_loop_unit_chars"] > 0 and r["loop"] is None),
            "detected_only": sum(1 for r in index_known if r["index_tail_loop_unit_chars"] == 0
                                 and r["loop"] is not None),
        },
    }


def summarize_anchors(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    tokens = sum(r["tokens"] for r in rows)
    after = sum(r["tokens_after"] for r in rows)
    chunks = sum(r["chunks"] for r in rows)
    high = sum(r["high_chunks"] for r in rows)
    return {"cases": len(rows), "tokens": tokens, "freed_share": (tokens - after) / tokens if tokens else None,
            "chunks": chunks, "chunks_kept_share": sum(r["chunks_kept"] for r in rows) / chunks if chunks else None,
            "high_chunks": high, "high_kept_share": sum(r["high_kept"] for r in rows) / high if high else None}


def pct(x: float | None) -> str:
    """A share as a percentage for the tables (``-`` when unknown)."""
    return "–" if x is None else f"{x:.1%}"


