"""``freemem bench reasoning``: loops and important steps in long chains of thought.

Each reasoning trace is streamed through :class:`~freemem.FreeMemory` (``clean_text``) the way the Free()LM
reasoning loop runs it: the trace arrives in pieces of about ``L`` tokens (``--every``, default 5,000); after
each piece the memory's triggers are checked (every ``L`` new tokens, a repetition loop in the newest piece,
over ``--budget`` when one is given) and a clean runs when one fires. The pruned text carries forward and the
next piece is appended to it, so later rounds see earlier rounds' markers. Every round's applied spans are
mapped back onto the original trace, so for each original character we know whether it survived.

Figures:

* **skythought** (``skythought_longcot/raw/*.jsonl``; ``code[0]`` is the trace): tokens freed (share of the
  trace's tokens gone from the final context); on traces that **end in a repetition loop**, the share of *loop
  tokens* freed; whether the **final answer line** (the last line :func:`freemem.core.context.answer_line_ranges`
  finds: ``\\boxed{...}``, "final answer", "Answer:") survives byte for byte.
* **thought anchors** (``thought_anchors_r1_chunked_cot/cases.jsonl``): each trace is split into sentence
  chunks with measured counterfactual importance; the share of *high-importance* chunks kept (every character
  survives) against the share of tokens freed, with the share of *all* chunks kept as the importance-blind
  reference. Run without a budget (the default policy) and at budgets that are fractions of each trace.

* **loop windows** (``--loop-windows N``): the last ``--window-chars`` (default 9,000) characters of the first
  N skythought traces whose window ends in a repetition loop, each cleaned in *one* round by the heuristic and by
  ``--cleaner`` on the same text: tokens freed by each (and the model's share of the heuristic's), loop tokens
  freed, answer lines lost, commands proposed / applied / rejected (with every rejection's reason and detail and
  the raw answer in ``--json``), and the model call's latency (prefill and decode tokens/s from llama.cpp's own
  timings with ``--server-log``, apply ms). This is issue 13's acceptance measurement of a model cleaner.

**Loop tokens** (defined with :mod:`freemem.core.loops`): the trace is cut into :func:`~freemem.core.loops.units`, keyed
with :func:`~freemem.core.loops.unit_key`, and :func:`~freemem.core.loops.loop_runs` (at least 3 copies) gives the
repeating runs; the trace *ends in a loop* when a run reaches the last unit (a trailing partial copy aside)
or a :data:`~freemem.core.loops.CHAR_LOOP` match inside one line reaches the end. Its loop tokens are the tokens of
every copy but the last one — what a perfect cleaner removes while keeping one copy.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freemem.bench._common import (
    add_cleaner_arguments,
    add_common_arguments,
    bench_counter,
    cleaner_factory,
    ensure_positive,
    finish,
    machine_info,
    make_console,
    markdown_table,
    mean,
    print_table,
    progress_bar,
    pyplot,
    resolve_data,
    save_figure,
    time_summary,
)
from freemem.core.context import answer_line_ranges
from freemem.core.errors import ConfigError
from freemem.core.loops import CHAR_LOOP, loop_runs, unit_key, units
from freemem.memory import FreeMemory
from freemem.policies.triggers import EveryNTokens
from freemem.tokens import CachedCounter

__all__ = [
    "AnchorCase",
    "Trace",
    "add_arguments",
    "anchor_figures",
    "chunk_bounds",
    "load_anchor_cases",
    "load_traces",
    "loop_windows",
    "run",
    "stream_clean",
    "tail_loop",
    "trace_figures",
]

DEFAULT_DATA = "."
SKY_DIR = "skythought_longcot"
ANCHORS_FILE = "thought_anchors_r1_chunked_cot/cases.jsonl"
IMPORTANCE_KEY = "counterfactual_importance_accuracy"


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Trace:
    """One reasoning trace: the question it answers and the generated text."""

    label: str
    source: str
    question: str
    text: str
    #: ``tail_loop_unit_chars`` from the data set's ``index.csv`` where one is next to the file (None: unknown).
    index_tail_loop: int | None = None


@dataclass
class AnchorCase:
    """A thought-anchors trace with its chunks located in the text: ``(start, end, importance)``."""

    label: str
    question: str
    text: str
    chunks: list[tuple[int, int, float]]
    chunks_total: int


def _jsonl_files(path: Path, under: str | None = None) -> list[Path]:
    if path.is_file():
        return [path]
    root = path / under if under and (path / under).is_dir() else path
    return sorted(p for p in root.rglob("*.jsonl") if p.is_file())


def _index_csv(files: Sequence[Path]) -> dict[tuple[str, str], int]:
    """``(file name, idx) -> tail_loop_unit_chars`` from any ``index.csv`` next to (or above) the files."""
    out: dict[tuple[str, str], int] = {}
    seen: set[Path] = set()
    for f in files:
        for d in (f.parent, f.parent.parent):
            idx = d / "index.csv"
            if idx in seen or not idx.is_file():
                continue
            seen.add(idx)
            with idx.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    try:
                        out[(row["file"], row["idx"])] = int(row.get("tail_loop_unit_chars") or 0)
                    except (KeyError, ValueError):
                        continue
    return out


def _trace_text(record: dict[str, Any]) -> str | None:
    code = record.get("code")
    if isinstance(code, list) and code and isinstance(code[0], str):
        return code[0]
    for key in ("trace", "text", "output", "completion"):
        if isinstance(record.get(key), str):
            return record[key]
    return None


def load_traces(path: Path, limit: int | None = None) -> list[Trace]:
    """Reasoning traces from a JSONL file or every JSONL file under a folder (``skythought_longcot`` inside the
    shared data folder when present). A record is a trace when ``code[0]`` (the SkyThought/Qwen-Math eval
    format) or a ``trace``/``text``/``output``/``completion`` field is a string; ``question`` (or ``problem``)
    is protected when the trace repeats it. Records of another form are skipped."""
    files = [f for f in _jsonl_files(path, SKY_DIR) if "thought_anchors" not in str(f)]
    index = _index_csv(files)
    out: list[Trace] = []
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if not isinstance(record, dict):
                    continue
                text = _trace_text(record)
                if not text:
                    continue
                idx = str(record.get("idx", n))
                question = record.get("question") or record.get("problem") or ""
                out.append(Trace(f"{f.stem}#{idx}", f.name, str(question), text, index.get((f.name, idx))))
                if limit is not None and len(out) >= limit:
                    return out
    return out


def load_anchor_cases(path: Path, limit: int | None = None, importance_key: str = IMPORTANCE_KEY) -> list[AnchorCase]:
    """Thought-anchors cases (``base_solution.solution`` and ``chunks_labeled``) from a JSONL file or the
    shared data folder; chunks are found in order in the text (ones not found verbatim are skipped)."""
    if path.is_dir():
        path = path / ANCHORS_FILE if (path / ANCHORS_FILE).is_file() else path
    files = _jsonl_files(path)
    out: list[AnchorCase] = []
    for f in files:
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                base = record.get("base_solution") if isinstance(record, dict) else None
                chunks = record.get("chunks_labeled") if isinstance(record, dict) else None
                if not isinstance(base, dict) or not isinstance(chunks, list) or not isinstance(
                        base.get("solution"), str):
                    continue
                text = base["solution"]
                located: list[tuple[int, int, float]] = []
                at = 0
                for chunk in chunks:
                    piece = chunk.get("chunk") if isinstance(chunk, dict) else None
                    if not isinstance(piece, str) or not piece:
                        continue
                    pos = text.find(piece, at)
                    if pos < 0:
                        continue
                    score = chunk.get(importance_key)
                    located.append((pos, pos + len(piece), abs(float(score)) if score is not None else 0.0))
                    at = pos + len(piece)
                label = "/".join(str(record.get(k, "?")) for k in ("model", "condition", "case"))
                out.append(AnchorCase(label, str(base.get("prompt") or ""), text, located, len(chunks)))
                if limit is not None and len(out) >= limit:
                    return out
    return out


# ------------------------------------------------------------------------------------------ streaming


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


def _removed_runs(kept: bytearray, start: int, end: int) -> Iterator[tuple[int, int]]:
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


# ---------------------------------------------------------------------------------------------- figures


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
        freed = sum(counter.count(text[a:b]) for a, b in _removed_runs(kept, s, e))
        loop_figs = {"start": s, "end": e, "unit_chars": unit, "tokens": loop_tokens,
                     "tokens_freed": min(freed, loop_tokens), "chars_freed": sum(
                         b - a for a, b in _removed_runs(kept, s, e))}
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


# ------------------------------------------------------------------------------------------ loop windows

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


def _run_windows(args: argparse.Namespace, data: Path, counter: CachedCounter, console: Any,
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
        table.append([name, str(sm["windows"]), f"{sm['tokens']:,}", f"{sm['tokens_freed']:,} ({_pct(sm['freed_share'])})",
                      f"{sm['loop_tokens_freed']:,} / {sm['loop_tokens']:,}",
                      f"{len(sm['answer_lines_lost'])} of {sm['answer_lines']}", str(sm["proposed"]),
                      f"{sm['applied_commands']} ({_pct(sm['applied_share'])})", rej,
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
        console.print(f"{args.cleaner} frees {_pct(ratio)} of what the heuristic frees (>= 50%: "
                      f"{a['frees_half_of_heuristic']}); answer lines lost: {len(m['answer_lines_lost'])}; "
                      f"proposed commands applied: {_pct(m['applied_share'])} (>= 70%: {a['applied_70_percent']})")
    return result


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, default_relative=DEFAULT_DATA, counter="qwen3",
                         what="the shared data folder (with skythought_longcot/ and thought_anchors_r1_chunked_cot/), "
                              "or one JSONL file of traces or of thought-anchors cases")
    p.add_argument("--every", type=int, default=5000, help="clean every L new tokens (default: 5000, as Free()LM)")
    p.add_argument("--budget", type=int, help="token budget for the skythought traces (default: none)")
    add_cleaner_arguments(p)
    p.add_argument("--loop-windows", type=int, metavar="N", default=None,
                   help="only the loop-window comparison: the last --window-chars of the first N traces ending in "
                        "a loop, one round each of the heuristic and --cleaner (see the module docstring)")
    p.add_argument("--window-chars", type=int, default=DEFAULT_WINDOW_CHARS,
                   help=f"loop windows: characters per window (default: {DEFAULT_WINDOW_CHARS:,})")
    p.add_argument("--server-log", metavar="PATH", default=None,
                   help="loop windows: a verbose llama.cpp server's log, for its prefill/decode timings per call")
    p.add_argument("--anchor-budgets", default="0.5,0.25",
                   help="thought anchors: also run at budgets that are these fractions of each trace's tokens "
                        "(comma-separated; '' for none; default: 0.5,0.25)")
    p.add_argument("--importance-key", default=IMPORTANCE_KEY,
                   help=f"thought anchors: the chunk score of importance, in absolute value (default: {IMPORTANCE_KEY})")
    p.add_argument("--top-share", type=float, default=0.1,
                   help="thought anchors: the top share of chunks by importance that counts as high (default: 0.1)")
    p.add_argument("--anchors-limit", type=int, metavar="N", help="use only the first N thought-anchors cases")


def _memory(args: argparse.Namespace, counter: CachedCounter, budget: int | None) -> FreeMemory:
    return FreeMemory(args._make_cleaner(budget), counter=counter, budget=budget, every_tokens=args.every)


def _fractions(spec: str) -> list[float]:
    out = []
    for part in spec.split(","):
        if part.strip():
            value = float(part)
            if not 0 < value < 1:
                raise ConfigError("--anchor-budgets: fractions must lie between 0 and 1")
            out.append(value)
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_positive("--every", args.every)
    ensure_positive("--budget", args.budget)
    ensure_positive("--limit", args.limit)
    ensure_positive("--loop-windows", args.loop_windows)
    ensure_positive("--window-chars", args.window_chars)
    fractions = _fractions(args.anchor_budgets)
    data = resolve_data(args.data, DEFAULT_DATA)
    counter = bench_counter(args.counter)
    console = make_console(args.quiet or args.json == "-")
    args._make_cleaner = cleaner_factory(args, counter=counter, console=None if args.quiet else console)
    if args.loop_windows:
        result = {"benchmark": "reasoning", "mode": "loop_windows", "data": str(data), "counter": counter.name,
                  "cleaner": args.cleaner, "machine": machine_info(),
                  "loop_windows": _run_windows(args, data, counter, console, args._make_cleaner)}
        return finish(args, result)
    is_anchor_file = data.is_file() and "chunks_labeled" in data.open(encoding="utf-8").readline()
    traces = [] if is_anchor_file else load_traces(data, args.limit)
    cases = load_anchor_cases(data, args.anchors_limit or args.limit, args.importance_key) if (
        is_anchor_file or data.is_dir()) else []
    if not traces and not cases:
        raise ConfigError(f"{data}: no reasoning traces or thought-anchors cases found")

    trace_rows: list[dict[str, Any]] = []
    anchor_rows: dict[str, list[dict[str, Any]]] = {"no budget": []}
    anchor_rows.update({f"budget {f:.0%} of trace": [] for f in fractions})
    round_seconds: list[float] = []
    t0 = time.perf_counter()
    with progress_bar(console, not args.quiet) as bar:
        if traces:
            task = bar.add_task("skythought traces", total=len(traces)) if bar is not None else None
            for trace in traces:
                streamed = stream_clean(trace.text, trace.question, _memory(args, counter, args.budget), args.every)
                round_seconds.extend(streamed.round_seconds)
                trace_rows.append(trace_figures(trace, streamed, counter))
                if bar is not None:
                    bar.advance(task)
        if cases:
            task = bar.add_task("thought anchors", total=len(cases) * (1 + len(fractions))) if bar is not None else None
            for case in cases:
                tokens = counter.count(case.text)
                for name, frac in [("no budget", None), *((f"budget {f:.0%} of trace", f) for f in fractions)]:
                    budget = max(1, int(tokens * frac)) if frac is not None else None
                    streamed = stream_clean(case.text, case.question, _memory(args, counter, budget), args.every)
                    anchor_rows[name].append(anchor_figures(case, streamed, args.top_share))
                    if bar is not None:
                        bar.advance(task)
    seconds = time.perf_counter() - t0

    result: dict[str, Any] = {
        "benchmark": "reasoning", "data": str(data), "counter": counter.name, "every_tokens": args.every,
        "budget": args.budget, "cleaner": args.cleaner, "seconds": round(seconds, 2), "machine": machine_info(),
        "clean_round_ms": time_summary(round_seconds), "tables": {},
    }
    if trace_rows:
        s = summarize_traces(trace_rows)
        result["skythought"] = {"summary": s, "traces": trace_rows}
        columns = ("traces", "n", "tokens", "tokens freed", "freed share", "loop tokens freed",
                   "final answer lines kept")
        rows = []
        for name, key in (("all", "all"), ("ending in a loop", "ending_in_loops"),
                          ("not ending in a loop", "not_ending_in_loops")):
            g = s[key]
            loop_cell = (f"{s['loop_tokens_freed']:,} / {s['loop_tokens']:,} ({_pct(s['loop_tokens_freed_share'])})"
                         if key == "ending_in_loops" else "–")
            rows.append([name, str(g["traces"]), f"{g['tokens']:,}", f"{g['tokens_freed']:,}",
                         _pct(g["freed_share"]), loop_cell, f"{g['answer_lines_kept']} / {g['answer_lines']}"])
        title = (f"reasoning — skythought: {len(trace_rows)} traces, clean every {args.every:,} tokens"
                 + (f", budget {args.budget:,}" if args.budget else "") + f" ({counter.name})")
        print_table(console, title, columns, rows)
        result["tables"]["skythought"] = markdown_table(columns, rows)
    if cases:
        summaries = {name: summarize_anchors(rows) for name, rows in anchor_rows.items()}
        result["thought_anchors"] = {"importance_key": args.importance_key, "top_share": args.top_share,
                                     "summary": summaries, "cases": anchor_rows}
        columns = ("policy", "cases", "tokens freed", "chunks kept", "high-importance chunks kept")
        rows = [[name, str(s["cases"]), _pct(s["freed_share"]), _pct(s["chunks_kept_share"]),
                 f"{_pct(s['high_kept_share'])} ({s['high_chunks']})"] for name, s in summaries.items()]
        title = (f"reasoning — thought anchors: {len(cases)} cases, high importance = top {args.top_share:.0%} by "
                 f"|{args.importance_key}|")
        print_table(console, title, columns, rows)
        result["tables"]["thought_anchors"] = markdown_table(columns, rows)
    if getattr(args, "png", None):
        _plot(result, args.png)
        console.print(f"wrote {args.png}")
    return finish(args, result)


def _plot(result: dict[str, Any], path: str) -> None:
    """Per skythought trace: share freed against length, loop traces marked; thought anchors: kept vs freed."""
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    rows = result.get("skythought", {}).get("traces", [])
    for looped, color, label in ((False, "tab:blue", "no tail loop"), (True, "tab:red", "ends in a loop")):
        pts = [(r["tokens"], r["freed"]) for r in rows if (r["loop"] is not None) == looped]
        if pts:
            ax1.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.6, color=color, label=label)
    ax1.set_xlabel("trace tokens")
    ax1.set_ylabel("share of tokens freed")
    ax1.set_title("skythought traces", fontsize=9)
    ax1.legend(fontsize=8)
    summaries = result.get("thought_anchors", {}).get("summary", {})
    for name, s in summaries.items():
        if s["freed_share"] is None:
            continue
        ax2.scatter([s["freed_share"]], [s["high_kept_share"]], marker="o", label=f"{name}: high importance")
        ax2.scatter([s["freed_share"]], [s["chunks_kept_share"]], marker="x", label=f"{name}: all chunks")
    ax2.plot([0, 1], [1, 0], color="0.7", linestyle=":", linewidth=0.8)
    ax2.set_xlabel("share of tokens freed")
    ax2.set_ylabel("share of chunks kept whole")
    ax2.set_title("thought anchors", fontsize=9)
    ax2.legend(fontsize=7)
    save_figure(fig, path)
