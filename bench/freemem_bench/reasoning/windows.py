"""Loop windows: short windows around a repetition loop, for the model-cleaner bench (with llama.cpp's timings)."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from freemem.core.errors import ConfigError
from freemem.engine.triggers import EveryNTokens
from freemem.memory import FreeMemory
from freemem.tokens import CachedCounter
from freemem_bench._common import (
    markdown_table,
    mean,
    print_table,
    progress_bar,
    time_summary,
)
from freemem_bench.reasoning.data import Trace, load_traces
from freemem_bench.reasoning.figures import pct, trace_figures
from freemem_bench.reasoning.streaming import Streamed, stream_clean, tail_loop

__all__ = ["DEFAULT_WINDOW_CHARS", "llama_timings", "loop_windows", "run_windows", "summarize_windows", "window_figures"]


DEFAULT_WINDOW_CHARS = 9000


def loop_windows(traces: Sequence[Trace], n: int, chars: int = DEFAULT_WINDOW_CHARS) -> list[Trace]:
    """The last ``chars`` characters (from the next line start) of the first ``n`` traces whose window ends in
    a repetition loop (:func:`tail_loop` finds one in the window itself), in the traces' order."""
    out: list[Trace] = []
    for trace in traces:
        text = trace.text
        if len(text) > chars:
            cut = len(text) - chars
            nl = text.find("\n", cut, cut + 400)
            text = text[nl + 1 if nl >= 0 else cut:]
        if tail_loop(text) is None:
            continue
        out.append(Trace(f"{trace.label}[-{len(text)}:]", trace.source, trace.question, text, trace.index_tail_loop))
        if len(out) >= n:
            break
    return out


_PROMPT_EVAL = re.compile(r"prompt eval time\s*=\s*([\d.]+) ms\s*/\s*(\d+) tokens")
_EVAL = re.compile(r"(?<!prompt )eval time\s*=\s*([\d.]+) ms\s*/\s*(\d+) runs")


def llama_timings(log: Path | None, offset: int = 0) -> tuple[dict[str, float] | None, int]:
    """llama.cpp's own timings of the last request logged after ``offset`` in a (verbose) server log:
    ``prefill_tokens``, ``prefill_tps``, ``decode_tokens``, ``decode_tps``; and the log's new end offset.
    None when the log has no new timings (not verbose, or no request)."""
    if log is None or not log.is_file():
        return None, offset
    with log.open("rb") as fh:
        fh.seek(offset)
        data = fh.read().decode("utf-8", errors="replace")
    end = offset + len(data.encode("utf-8", errors="replace"))
    prompts, evals = _PROMPT_EVAL.findall(data), _EVAL.findall(data)
    if not prompts:
        return None, end
    ms, tokens = float(prompts[-1][0]), int(prompts[-1][1])
    out = {"prefill_tokens": tokens, "prefill_s": ms / 1000, "prefill_tps": tokens / (ms / 1000) if ms else None}
    if evals:
        ems, runs = float(evals[-1][0]), int(evals[-1][1])
        out.update(decode_tokens=runs, decode_s=ems / 1000, decode_tps=runs / (ems / 1000) if ems else None)
    return out, end


def window_figures(window: Trace, streamed: Streamed, counter: CachedCounter) -> dict[str, Any]:
    """One cleaner on one loop window: :func:`trace_figures` plus what the cleaner proposed and what became
    of it (the event's counts, every rejection with its reason and detail, the raw answer), and its time."""
    row = trace_figures(window, streamed, counter)
    event = streamed.events[0] if streamed.events else None
    if event is not None:
        row.update(
            proposed=event.proposed, applied_commands=event.applied_commands, applied_spans=event.applied,
            rejected=[{"reason": r["reason"], "detail": r["detail"], "prefix": r["prefix"], "suffix": r["suffix"]}
                      for r in event.rejected],
            refused=event.refused, note=event.note, error=event.error, raw=event.raw, usage=dict(event.usage),
            cleaner_s=round(event.cleaner_latency_s, 3),
            apply_ms=round(1000 * max(0.0, event.latency_s - event.cleaner_latency_s), 2))
    return row


def summarize_windows(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Totals of one cleaner over the loop windows."""
    tokens = sum(r["tokens"] for r in rows)
    freed = sum(r["tokens"] - r["tokens_after"] for r in rows)
    loops = [r["loop"] for r in rows if r["loop"]]
    proposed = sum(r.get("proposed", 0) for r in rows)
    applied = sum(r.get("applied_commands", 0) for r in rows)
    reasons: dict[str, int] = {}
    for r in rows:
        for rej in r.get("rejected", []):
            reasons[rej["reason"]] = reasons.get(rej["reason"], 0) + 1
    answered = [r for r in rows if r["answer_kept"] is not None]
    return {
        "windows": len(rows), "tokens": tokens, "tokens_freed": freed, "freed_share": freed / tokens if tokens else None,
        "loop_tokens": sum(lp["tokens"] for lp in loops), "loop_tokens_freed": sum(lp["tokens_freed"] for lp in loops),
        "answer_lines": len(answered), "answer_lines_lost": [r["label"] for r in answered if not r["answer_kept"]],
        "proposed": proposed, "applied_commands": applied, "applied_share": applied / proposed if proposed else None,
        "rejected_by_reason": reasons, "calls_without_commands": sum(1 for r in rows if not r.get("proposed")),
        "errors": [r["error"] for r in rows if r.get("error")],
        "cleaner_s": time_summary([r.get("cleaner_s", 0.0) for r in rows]),
        "apply_ms_mean": mean(r.get("apply_ms", 0.0) for r in rows),
    }


def run_windows(args: argparse.Namespace, data: Path, counter: CachedCounter, console: Any,
                 make_cleaner: Any) -> dict[str, Any]:
    traces = load_traces(data)
    windows = loop_windows(traces, args.loop_windows, args.window_chars)
    if not windows:
        raise ConfigError(f"{data}: no trace whose last {args.window_chars:,} characters end in a repetition loop")
    model = args.cleaner not in (None, "", "heuristic")
    log = Path(args.server_log) if getattr(args, "server_log", None) else None
    offset = log.stat().st_size if log is not None and log.is_file() else 0
    rows: dict[str, list[dict[str, Any]]] = {"heuristic": [], **({args.cleaner: []} if model else {})}
    t0 = time.perf_counter()
    with progress_bar(console, not args.quiet) as bar:
        task = bar.add_task("loop windows", total=len(windows)) if bar is not None else None
        for window in windows:
            for name in rows:
                cleaner = make_cleaner(None) if name != "heuristic" else None
                memory = FreeMemory(cleaner, counter=counter, triggers=[EveryNTokens(1)])  # one round, whole window
                streamed = stream_clean(window.text, "", memory, chunk_tokens=10**9)
                row = window_figures(window, streamed, counter)
                if name != "heuristic":
                    row["server_timings"], offset = llama_timings(log, offset)
                rows[name].append(row)
            if bar is not None:
                bar.advance(task)
    summaries = {name: summarize_windows(rs) for name, rs in rows.items()}
    result: dict[str, Any] = {"window_chars": args.window_chars, "windows": [w.label for w in windows],
                              "summary": summaries, "rows": rows, "seconds": round(time.perf_counter() - t0, 2)}
    columns = ("cleaner", "windows", "tokens", "tokens freed", "loop tokens freed", "answer lines lost",
               "commands proposed", "applied", "rejected (by reason)", "call s (mean)", "apply ms (mean)")
    table = []
    for name, sm in summaries.items():
        rej = ", ".join(f"{k} {v}" for k, v in sorted(sm["rejected_by_reason"].items())) or "–"
        table.append([name, str(sm["windows"]), f"{sm['tokens']:,}", f"{sm['tokens_freed']:,} ({pct(sm['freed_share'])})",
                      f"{sm['loop_tokens_freed']:,} / {sm['loop_tokens']:,}",
                      f"{len(sm['answer_lines_lost'])} of {sm['answer_lines']}", str(sm["proposed"]),
                      f"{sm['applied_commands']} ({pct(sm['applied_share'])})", rej,
                      f"{sm['cleaner_s']['mean_ms'] / 1000:.1f}" if sm["cleaner_s"]["mean_ms"] is not None else "–",
                      f"{sm['apply_ms_mean']:.1f}" if sm["apply_ms_mean"] is not None else "–"])
    print_table(console, f"reasoning — loop windows: last {args.window_chars:,} chars of {len(windows)} traces "
                         f"ending in a loop, one round each ({counter.name})", columns, table)
    result["table"] = markdown_table(columns, table)
    if model:
        h, m = summaries["heuristic"], summaries[args.cleaner]
        ratio = m["tokens_freed"] / h["tokens_freed"] if h["tokens_freed"] else None
        result["acceptance"] = {
            "model_freed_vs_heuristic": ratio, "frees_half_of_heuristic": ratio is not None and ratio >= 0.5,
            "no_answer_line_lost": not m["answer_lines_lost"],
            "applied_share": m["applied_share"],
            "applied_70_percent": m["applied_share"] is not None and m["applied_share"] >= 0.7,
        }
        lat_cols = ("window", "prompt tokens", "call s", "prefill tok/s", "decode tokens", "decode tok/s", "apply ms")
        lat = []
        for r in rows[args.cleaner]:
            st = r.get("server_timings") or {}
            lat.append([r["label"].split("__")[-1], str(r.get("usage", {}).get("prompt_tokens", "–")),
                        f"{r.get('cleaner_s', 0):.1f}",
                        f"{st['prefill_tps']:.1f}" if st.get("prefill_tps") else "–",
                        str(st.get("decode_tokens", r.get("usage", {}).get("completion_tokens", "–"))),
                        f"{st['decode_tps']:.1f}" if st.get("decode_tps") else "–", f"{r.get('apply_ms', 0):.1f}"])
        print_table(console, f"{args.cleaner}: latency per call" + ("" if log else
                    " (prefill/decode split: pass --server-log of a verbose llama.cpp server)"), lat_cols, lat)
        result["latency_table"] = markdown_table(lat_cols, lat)
        a = result["acceptance"]
        console.print(f"{args.cleaner} frees {pct(ratio)} of what the heuristic frees (>= 50%: "
                      f"{a['frees_half_of_heuristic']}); answer lines lost: {len(m['answer_lines_lost'])}; "
                      f"proposed commands applied: {pct(m['applied_share'])} (>= 70%: {a['applied_70_percent']})")
    return result


