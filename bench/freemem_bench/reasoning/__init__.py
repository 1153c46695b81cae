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

Modules: :mod:`~freemem_bench.reasoning.data` (loading), :mod:`~freemem_bench.reasoning.streaming` (cleaning as
it streams), :mod:`~freemem_bench.reasoning.figures` (per case and summaries),
:mod:`~freemem_bench.reasoning.windows` (loop windows for the model cleaners); this one is the command.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from freemem.config import Triggers
from freemem.core.errors import ConfigError
from freemem.memory import FreeMemory
from freemem.tokens import CachedCounter
from freemem_bench._common import (
    add_cleaner_arguments,
    add_common_arguments,
    bench_counter,
    cleaner_factory,
    ensure_positive,
    finish,
    machine_info,
    make_console,
    markdown_table,
    print_table,
    progress_bar,
    pyplot,
    resolve_data,
    save_figure,
    time_summary,
)
from freemem_bench.reasoning.data import (
    DEFAULT_DATA,
    IMPORTANCE_KEY,
    AnchorCase,
    Trace,
    load_anchor_cases,
    load_traces,
)
from freemem_bench.reasoning.figures import (
    anchor_figures,
    pct,
    summarize_anchors,
    summarize_traces,
    trace_figures,
)
from freemem_bench.reasoning.streaming import (
    Streamed,
    chunk_bounds,
    stream_clean,
    tail_loop,
)
from freemem_bench.reasoning.windows import (
    DEFAULT_WINDOW_CHARS,
    llama_timings,
    loop_windows,
    run_windows,
    summarize_windows,
    window_figures,
)

__all__ = [
    "AnchorCase",
    "Streamed",
    "Trace",
    "add_arguments",
    "anchor_figures",
    "chunk_bounds",
    "load_anchor_cases",
    "llama_timings",
    "load_traces",
    "loop_windows",
    "run",
    "stream_clean",
    "summarize_anchors",
    "summarize_traces",
    "summarize_windows",
    "tail_loop",
    "trace_figures",
    "window_figures",
]


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
    return FreeMemory(args._make_cleaner(budget), counter=counter, budget=budget,
                      triggers=Triggers(every_tokens=args.every))


def _fractions(spec: str) -> list[float]:
    out = []
    for part in spec.split(","):
        if part.strip():
            value = float(part)
            if not 0 < value < 1:
                raise ConfigError("--anchor-budgets: fractions must lie between 0 and 1")
            out.append(value)
    return out


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
                  "loop_windows": run_windows(args, data, counter, console, args._make_cleaner)}
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
            loop_cell = (f"{s['loop_tokens_freed']:,} / {s['loop_tokens']:,} ({pct(s['loop_tokens_freed_share'])})"
                         if key == "ending_in_loops" else "–")
            rows.append([name, str(g["traces"]), f"{g['tokens']:,}", f"{g['tokens_freed']:,}",
                         pct(g["freed_share"]), loop_cell, f"{g['answer_lines_kept']} / {g['answer_lines']}"])
        title = (f"reasoning — skythought: {len(trace_rows)} traces, clean every {args.every:,} tokens"
                 + (f", budget {args.budget:,}" if args.budget else "") + f" ({counter.name})")
        print_table(console, title, columns, rows)
        result["tables"]["skythought"] = markdown_table(columns, rows)
    if cases:
        summaries = {name: summarize_anchors(rows) for name, rows in anchor_rows.items()}
        result["thought_anchors"] = {"importance_key": args.importance_key, "top_share": args.top_share,
                                     "summary": summaries, "cases": anchor_rows}
        columns = ("policy", "cases", "tokens freed", "chunks kept", "high-importance chunks kept")
        rows = [[name, str(s["cases"]), pct(s["freed_share"]), pct(s["chunks_kept_share"]),
                 f"{pct(s['high_kept_share'])} ({s['high_chunks']})"] for name, s in summaries.items()]
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
