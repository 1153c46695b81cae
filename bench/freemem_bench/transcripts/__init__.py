"""``freemem bench transcripts``: what pruning keeps and what it frees on recorded tool-use trajectories.

Each recorded trajectory (OpenHands, tau-bench, or any OpenAI-format transcript file :func:`freemem.io.read_document`
reads) is replayed message by message. Before every assistant message, each policy builds the context it would
send to the model under the same token budget:

* ``freemem`` — :class:`~freemem.FreeMemory` with the :class:`HeuristicCleaner` (or ``--cleaner``), *stateful*
  like the middleware: the pruned state carries forward and the recording's new messages are appended to it;
  it cleans when a trigger fires (over budget, every N new tokens, a loop);
* ``clear_tool_uses`` — LangChain's ``ContextEditingMiddleware(edits=[ClearToolUsesEdit(trigger=budget)])``:
  before each model call it deep-copies the full history and applies the edit (exactly what its
  ``wrap_model_call`` does), counting tokens with the same counter;
* ``trim`` — ``langchain_core.messages.trim_messages(strategy="last", max_tokens=budget,
  start_on=("human", "ai"), include_system=True)`` on the full history, same counter (the window never opens
  on an orphaned tool result, so tool pairs stay valid); ``trim_human`` (on request) uses ``start_on="human"``;
* ``none`` — the full history.

Per policy it reports the mean share of tokens freed, the peak context, turns over budget (and how many of
freemem's are turns where the protected part alone is over budget), reference retention, pairing violations
and the time spent in the policy per turn.

**Reference retention.** The assistant's next message (its content and the string values of its tool-call
arguments) re-uses strings from the context before it. Those are its *maximal shared substrings* with the
unpruned context: for every end position in the message, the longest substring ending there that occurs in the
context (matching statistics over a suffix automaton of the context, built incrementally as the replay
appends messages), kept when it cannot be extended to the right, is at least 8 characters long, holds a letter
or digit, and does not occur in the system prompt. Retention is the share of those strings still present in
the pruned context.

Modules: :mod:`~freemem_bench.transcripts.references` (what is measured), :mod:`~freemem_bench.transcripts.policies`
(what is compared), :mod:`~freemem_bench.transcripts.replay` (loading and the turn-by-turn replay),
:mod:`~freemem_bench.transcripts.report` (summaries, table, plot); this one is the command, and names the
pieces other benchmarks use.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from freemem.core.errors import ConfigError
from freemem.core.prompt_cache import PRICE_MODELS, get_price_model
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
    resolve_data,
)
from freemem_bench.transcripts.policies import (
    EXTRA_POLICIES,
    POLICIES,
    ClearToolUsesPolicy,
    FreememPolicy,
    NoPruning,
    Policy,
    TrimPolicy,
    build_policies,
)
from freemem_bench.transcripts.references import MIN_REFERENCE_CHARS, ReferenceIndex, message_pieces, reference_strings
from freemem_bench.transcripts.replay import PolicyRun, Trajectory, load_trajectories, replay
from freemem_bench.transcripts.report import cumulative_cost, plot, summarize, table_columns, table_rows

__all__ = [
    "EXTRA_POLICIES",
    "MIN_REFERENCE_CHARS",
    "POLICIES",
    "ClearToolUsesPolicy",
    "FreememPolicy",
    "NoPruning",
    "Policy",
    "PolicyRun",
    "ReferenceIndex",
    "Trajectory",
    "TrimPolicy",
    "add_arguments",
    "build_policies",
    "cumulative_cost",
    "load_trajectories",
    "message_pieces",
    "reference_strings",
    "replay",
    "run",
    "summarize",
    "table_columns",
    "table_rows",
]

DEFAULT_DATA = "openhands_swebench_verified_claude35/trajectories.jsonl"


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p, default_relative=DEFAULT_DATA,
                         what="a transcript file (OpenHands JSONL, tau-bench JSON, any OpenAI-format) or a folder")
    p.add_argument("--budget", type=int, default=16_000, help="token budget of the context sent (default: 16000)")
    add_cleaner_arguments(p)
    p.add_argument("--every", type=int, default=5000,
                   help="freemem also cleans every N new tokens (0: off; default: 5000, FreeMemory's default)")
    p.add_argument("--policies", default=",".join(POLICIES),
                   help=f"comma-separated list from {','.join(POLICIES + EXTRA_POLICIES)} "
                        f"(default: {','.join(POLICIES)})")
    p.add_argument("--count-tools", action="store_true",
                   help="count the tool definitions a trajectory records (OpenHands rows carry them) in every "
                        "request, as FreeMemoryMiddleware does; each policy's messages get what they leave of the "
                        "budget (default: the messages only, as the published figures)")
    p.add_argument("--min-ref-chars", type=int, default=MIN_REFERENCE_CHARS,
                   help="shortest shared substring that counts as a reference (default: 8)")
    p.add_argument("--plot-item", metavar="LABEL", help="trajectory for the per-turn plot (default: the longest)")
    p.add_argument("--price", action="append", metavar="MODEL",
                   help="price the input under prompt caching: " + ", ".join(PRICE_MODELS) +
                        ", a table 'read=0.1,write=1.25,ttl=300' or a JSON file; repeat for several "
                        "(default: anthropic)")


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_positive("--budget", args.budget)
    ensure_positive("--limit", args.limit)
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    if not names:
        raise ConfigError("--policies is empty")
    data = resolve_data(args.data, DEFAULT_DATA)
    counter = bench_counter(args.counter)
    console = make_console(args.quiet or args.json == "-")
    trajectories = load_trajectories(data, args.limit)
    prices = [get_price_model(spec) for spec in (getattr(args, "price", None) or ["anthropic"])]
    if len({p.name for p in prices}) != len(prices):
        raise ConfigError("--price: two price models have the same name (give custom tables a name=...)")
    policies = build_policies(names, budget=args.budget, counter=counter,
                              cleaner=cleaner_factory(args, counter=counter, console=None if args.quiet else console),
                              every=args.every or None)
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with progress_bar(console, not args.quiet) as bar:
        task = bar.add_task("replaying", total=len(trajectories)) if bar is not None else None
        for traj in trajectories:
            results.append(replay(traj, policies, budget=args.budget, counter=counter,
                                  min_ref_chars=args.min_ref_chars, prices=prices,
                                  count_tools=getattr(args, "count_tools", False)))
            if bar is not None:
                bar.advance(task)
    seconds = time.perf_counter() - t0
    sources = sorted({r["source"] for r in results})
    by_source = {src: summarize([r for r in results if r["source"] == src], names, args.budget, prices)
                 for src in sources}
    tables = {}
    columns = table_columns(prices)
    for src, summary in by_source.items():
        n = sum(1 for r in results if r["source"] == src)
        title = (f"transcripts — {src}: {n} trajectories, budget {args.budget:,} ({counter.name}"
                 + (", tool definitions counted)" if getattr(args, "count_tools", False) else ")"))
        rows = table_rows(summary, prices)
        tables[src] = markdown_table(columns, rows)
        print_table(console, title, columns, rows)
    result: dict[str, Any] = {
        "benchmark": "transcripts", "data": str(data), "budget": args.budget, "counter": counter.name,
        "cleaner": args.cleaner, "every_tokens": args.every or None, "policies": names,
        "min_ref_chars": args.min_ref_chars, "count_tools": bool(getattr(args, "count_tools", False)),
        "prices": [p.to_dict() for p in prices],
        "trajectories": len(results), "seconds": round(seconds, 2),
        "machine": machine_info(), "summary": by_source, "tables": tables, "results": results,
    }
    if getattr(args, "png", None):
        result["plot_item"] = plot(results, by_source, args.png, args.budget, args.plot_item, prices[0])
        console.print(f"wrote {args.png}")
    fm = [s["freemem"] for s in by_source.values() if "freemem" in s]
    if fm and any(s["turns_over_budget"] for s in fm):
        console.print("[yellow]freemem left turns over budget; '(N floor)' counts those where the protected part "
                      "alone (system, first/last human, latest turn, tool arguments, one marker per field) is over "
                      "it[/yellow]")
    return finish(args, result)
