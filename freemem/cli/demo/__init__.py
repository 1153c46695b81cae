"""``freemem demo``: a long tool-use session replayed through a real ``create_agent`` agent, with freemem.

The agent is a real ``langchain.agents.create_agent`` graph with real tools and :class:`FreeMemoryMiddleware`
(heuristic cleaner) and a real checkpointer (SQLite file by default, Redis with ``--redis URL``). Only its
model is recorded: it replays a coding session the project ships (``freemem/data/demo_session.json``: three
user turns, ~40 model calls, whole source files, pytest runs, a service log stuck in a retry loop). The tools
return the recorded outputs.

Live, it draws the context sent to the model at every call — without freemem (the whole history) and with it
(the pruned history, persisted in the checkpointer) — the sawtooth; then a summary of tokens saved, and with
``--plot out.png`` the same chart as an image.

Modules: :mod:`~freemem.cli.demo.session` (the recorded session, the replaying model, the tool stubs),
:mod:`~freemem.cli.demo.agent` (the run), :mod:`~freemem.cli.demo.chart` (terminal chart, summary, PNG).
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from freemem.optional import require_extra

require_extra("langgraph", "langgraph", "langchain", "langchain_core", "langgraph.checkpoint.sqlite",
              what="freemem demo")

from freemem.cli.demo.agent import DemoResult, run_demo
from freemem.cli.demo.chart import live_view, plot, summary_table
from freemem.cli.demo.session import load_session
from freemem.io import check_destination, write_text_atomic

__all__ = ["DemoResult", "add_arguments", "inspect_commands", "load_session", "run", "run_demo"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", type=int, default=12_000,
                   help="token budget of the messages sent to the model (default 12,000)")
    p.add_argument("--counter", default="auto", help="token counter: auto, qwen3, o200k_base, cl100k_base, approx")
    p.add_argument("--session", type=Path, help="replay another recorded session (same JSON shape)")
    p.add_argument("--db", type=Path, help="SQLite checkpoint file (default: a temporary file)")
    p.add_argument("--redis", metavar="URL", help="persist the thread in Redis instead (redis://host:port/0)")
    p.add_argument("--plot", type=Path, metavar="PNG", help="write the chart (needs matplotlib: freemem[plot])")
    p.add_argument("--delay", type=float, default=None,
                   help="seconds to pause per model call so the chart can be watched (default 0.05 on a terminal)")
    p.add_argument("--json", type=Path, help="write the per-call figures and the summary as JSON")


def inspect_commands(summary: dict[str, Any]) -> list[str]:
    """The lines that tell how to inspect the demo's thread: its id, and the exact ``freemem thread`` and
    ``freemem ui`` commands for where it was stored (Redis under the demo's key prefix, or the SQLite file)."""
    thread = summary["thread_id"]
    store = summary.get("store") or {}
    if store.get("redis"):
        where = f"--redis {shlex.quote(store['redis'])} --key-prefix {store['key_prefix']}"
        ui = f"freemem ui {where}"
        show = f"freemem thread show {shlex.quote(thread)} {where}"
    else:
        db = shlex.quote(store["sqlite"])
        ui = f"freemem ui --sqlite {db}"
        show = f"freemem thread show {shlex.quote(thread)} --saver {db} --archive {db}"
    return [f"thread id: {thread}",
            f"inspect or undo what was freed: {show}",
            f"in the browser: {ui}   then open /thread?{urlencode({'id': thread})}"]


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    # Destinations are checked before the session runs, so a bad path never costs a whole replay.
    for dest, what in ((args.plot, "--plot chart"), (args.json, "--json report")):
        if dest:
            check_destination(dest, what)
    console = Console()
    session = load_session(args.session)
    total = sum(len(t.get("steps", [])) + 1 for t in session["turns"])
    delay = args.delay if args.delay is not None else (0.05 if console.is_terminal else 0.0)
    console.print(f"[bold]freemem demo[/] — {session.get('title', 'recorded session')}: "
                  f"{len(session['turns'])} user turns, {total} model calls, a real create_agent agent with "
                  f"FreeMemoryMiddleware (heuristic cleaner, budget {args.budget:,} tokens).")
    width = min(console.width, 120)
    result: DemoResult
    with Live(console=console, refresh_per_second=20, transient=False) as live:
        def on_call(r: DemoResult) -> None:
            live.update(live_view(r, args.budget, total, width))
            if delay:
                time.sleep(delay)

        result = run_demo(args, on_call=on_call)
        live.update(live_view(result, args.budget, total, width))
    console.print()
    s = result.summary
    console.print(summary_table(s))
    console.print(
        f"[bold green]tokens saved: {s['tokens_saved']:,} of {s['tokens_sent_without']:,} "
        f"({100 * s['saved_share']:.1f}%)[/] across {s['model_calls']} model calls; "
        f"{s['cleaning_rounds']} cleaning rounds applied {s['commands_applied']} deletions "
        f"({s['commands_rejected']} rejected), {s['pairing_violations']} tool-pairing violations, "
        f"final answers {'kept' if s['final_answers_kept'] else 'CHANGED'}; freemem cost "
        f"{s['freemem_ms_per_call']} ms per call; thread persisted in {s['checkpointer']} "
        f"(counter {s['counter']}, {s['seconds']} s).")
    for line in inspect_commands(s):
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    if args.plot:
        plot(result, args.budget, args.plot)
        console.print(f"chart written to {args.plot}")
    if args.json:
        payload = {"summary": s, "without": result.without, "with_freemem": result.with_freemem,
                   "turn_starts": result.turn_starts}
        write_text_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    return 0
