"""``freemem bench overhead``: what :class:`FreeMemoryMiddleware` costs per model call, excluding the model.

For each context size (8k / 32k / 128k tokens by default) a real ``create_agent`` agent with the middleware
starts from a thread of that size (a generated tool-use history) and makes ``--calls`` more tool calls whose
results are ~``--new-tokens`` tokens each, with the budget set to the context size — so the thread stays at
that size and the cleaner runs whenever a trigger fires (over budget, every 5,000 new tokens, a loop). The
middleware's own timer measures each step: counting the new messages (cached per text), the trigger check,
and when a trigger fires the cleaning round (context render, heuristic proposal, apply, state update).

Reported per size: the median step when no round runs (what every call pays — it should grow with the new
tokens, not the context), the mean over all steps (rounds amortised), p95, and the mean cleaning round.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="8000,32000,128000", help="context sizes in tokens (default 8k,32k,128k)")
    p.add_argument("--calls", type=int, default=60, help="model calls measured per size (default 60)")
    p.add_argument("--new-tokens", type=int, default=1500, help="tokens of each new tool result (default 1,500)")
    p.add_argument("--counter", default="auto", help="token counter (default auto: Qwen3 when available)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per size; each figure is the median over runs (timings on a shared machine vary)")
    p.add_argument("--json", help="write the figures as JSON")


_WORDS = ["config", "parser", "value", "return", "self", "error", "module", "path", "index", "token", "cache",
          "def", "class", "import", "for", "in", "if", "else", "None", "True", "list", "dict", "retry", "batch"]


def _tool_output(rng: random.Random, counter: Any, tokens: int) -> str:
    lines: list[str] = []
    while counter.count("\n".join(lines)) < tokens:
        lines.extend(f"src/{rng.choice(_WORDS)}/{rng.choice(_WORDS)}_{rng.randrange(10**5)}.py:{rng.randrange(900)}: "
                     f"{' '.join(rng.choices(_WORDS, k=7))}" for _ in range(10))
    return "\n".join(lines)


def _history(size: int, counter: Any, seed: int) -> list[Any]:
    """A tool-use thread of about ``size`` tokens (LangChain messages with ids)."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    rng = random.Random(seed)
    msgs: list[Any] = [HumanMessage("Find out why the nightly build fails and fix it.", id="h0")]
    total, i = 20, 0
    while total < size * 0.9:
        out = _tool_output(rng, counter, 1500)
        msgs.append(AIMessage(f"Step {i}: searching.", id=f"a{i}",
                              tool_calls=[{"name": "search", "args": {"q": f"q{i}"}, "id": f"old_{i}"}]))
        msgs.append(ToolMessage(out, tool_call_id=f"old_{i}", id=f"t{i}"))
        total += counter.count(out) + 30
        i += 1
    return msgs


def _measure(size: int, args: argparse.Namespace, counter: Any) -> dict[str, Any]:
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver

    from freemem.langgraph import FreeMemoryMiddleware
    from freemem.memory import FreeMemory

    rng = random.Random(size)
    outputs = [_tool_output(rng, counter, args.new_tokens) for _ in range(args.calls)]
    feed = iter(outputs)

    @tool
    def search(q: str) -> str:
        """Search the code base."""
        return next(feed)

    class Scripted(FakeMessagesListChatModel):
        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Scripted:
            return self

    replies = [AIMessage(f"Call {k}: searching more.", tool_calls=[{"name": "search", "args": {"q": f"n{k}"},
                                                                    "id": f"new_{k}"}]) for k in range(args.calls)]
    replies.append(AIMessage("Done."))
    memory = FreeMemory(counter=counter, budget=size)
    middleware = FreeMemoryMiddleware(memory)
    agent = create_agent(Scripted(responses=replies), [search], middleware=[middleware],
                         checkpointer=InMemorySaver())
    history = _history(size, counter, seed=size)
    config = {"configurable": {"thread_id": f"overhead-{size}"}, "recursion_limit": 10_000}
    agent.invoke({"messages": history}, config)

    ledger = agent.get_state(config).values.get("freemem_ledger") or []
    applied = [e["cache"] for e in ledger if (e.get("cache") or {}).get("decision") == "applied"]
    deferred = sum(1 for e in ledger if (e.get("cache") or {}).get("decision") == "deferred")
    stats = middleware.stats
    # The first step counts the whole prefilled thread once; the rest are the calls measured.
    steps = list(stats.step_times_s)[1:]
    cleaned = list(stats.step_cleaned)[1:]
    quiet = [t for t, c in zip(steps, cleaned) if not c]
    heavy = [t for t, c in zip(steps, cleaned) if c]
    rounds = len(heavy)
    ms = [1000 * s for s in steps]
    return {
        "context_tokens": size,
        "calls": len(steps),
        "new_tokens_per_call": args.new_tokens,
        "rounds": rounds,
        "median_step_no_round_ms": round(1000 * statistics.median(quiet), 3) if quiet else 0.0,
        "mean_step_ms": round(statistics.fmean(ms), 3),
        "p95_step_ms": round(sorted(ms)[max(0, int(len(ms) * 0.95) - 1)], 3),
        "mean_round_ms": round(1000 * statistics.fmean(heavy), 3) if heavy else 0.0,
        "last_context_tokens": stats.last_tokens,
        # Per applied round: the tokens after its first change, which a server prefills again (and a provider
        # writes to its cache); rounds deferred because their cache write would not pay.
        "rounds_applied": len(applied),
        "rounds_deferred": deferred,
        "prefill_recomputed_per_round": round(statistics.fmean(c["rewrite_tokens"] for c in applied), 1)
        if applied else 0.0,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from freemem.tokens import get_counter

    console = Console()
    counter = get_counter(args.counter)
    sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    rows = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=len(sizes))
        for size in sizes:
            runs = [_measure(size, args, counter) for _ in range(max(1, args.repeat))]
            row = dict(runs[0])
            for key in ("median_step_no_round_ms", "mean_step_ms", "p95_step_ms", "mean_round_ms"):
                row[key] = round(statistics.median(r[key] for r in runs), 3)
            row["runs"] = [{k: r[k] for k in ("median_step_no_round_ms", "mean_step_ms", "p95_step_ms",
                                              "mean_round_ms")} for r in runs]
            rows.append(row)
            progress.advance(task)
    table = Table(title=f"freemem bench overhead — FreeMemoryMiddleware per model call ({counter.name} counter, "
                        f"{args.new_tokens:,} new tokens per call, median of {args.repeat} runs)")
    for col in ("context", "calls", "rounds", "median step, no round (ms)", "mean step (ms)", "p95 (ms)",
                "mean round (ms)", "applied / deferred", "prefill recomputed / applied round"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['context_tokens']:,}", str(r["calls"]), str(r["rounds"]),
                      f"{r['median_step_no_round_ms']:.2f}", f"{r['mean_step_ms']:.2f}", f"{r['p95_step_ms']:.2f}",
                      f"{r['mean_round_ms']:.2f}", f"{r['rounds_applied']} / {r['rounds_deferred']}",
                      f"{r['prefill_recomputed_per_round']:,.0f}")
    console.print(table)
    return {"counter": counter.name, "results": rows}
