"""The demo's run: the recorded session through a real ``create_agent`` agent with FreeMemoryMiddleware and a
real checkpointer (SQLite, or Redis with its archive), measuring the context sent per model call."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freemem.cli.demo.session import (
    load_session,
    recorded_tools,
    replay_model,
    scripted,
)
from freemem.core.errors import ConfigError

__all__ = ["REDIS_PREFIX", "DemoResult", "checkpointer", "run_demo"]

# -- checkpointers ----------------------------------------------------------------------------------------
#: Key prefix of the demo's threads and archive in Redis (``freemem thread list --key-prefix freemem-demo``).
REDIS_PREFIX = "freemem-demo"


@contextlib.contextmanager
def checkpointer(args: argparse.Namespace) -> Iterator[tuple[Any, str, Any]]:
    """(checkpointer, where, archive or None)."""
    if args.redis:
        from freemem.redis import RedisArchive, RedisSaver

        with RedisSaver.from_url(args.redis, key_prefix=REDIS_PREFIX) as saver, \
                RedisArchive.from_url(args.redis, key_prefix=REDIS_PREFIX) as archive:
            yield saver, f"Redis {args.redis}", archive
        return
    from langgraph.checkpoint.sqlite import SqliteSaver

    from freemem.archives import SqliteArchive

    # The file is kept (a new one in the temp directory unless --db names one), so the `freemem thread` and
    # `freemem ui` commands the demo prints work on it; the archive of what was freed lives in the same file.
    path = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="freemem-demo-")) / "demo.sqlite"
    with contextlib.ExitStack() as stack:
        saver = stack.enter_context(SqliteSaver.from_conn_string(str(path)))
        archive = stack.enter_context(contextlib.closing(SqliteArchive(path)))
        yield saver, f"SQLite {path}", archive


# -- the run ----------------------------------------------------------------------------------------------
@dataclass
class DemoResult:
    """Per model call: tokens sent without freemem (whole history) and with it; plus the summary."""

    without: list[int] = field(default_factory=list)
    with_freemem: list[int] = field(default_factory=list)
    turn_starts: list[int] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def run_demo(args: argparse.Namespace, *, on_call: Any = None) -> DemoResult:
    """Replay the session through a real agent with freemem; ``on_call(result)`` after every model call."""
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage

    from freemem.core.pairing import pairing_violations
    from freemem.langgraph import LEDGER_KEY, FreeMemoryMiddleware
    from freemem.langgraph.request import request_tokens
    from freemem.memory import FreeMemory

    if args.budget is not None and args.budget < 1000:
        raise ConfigError("--budget must be at least 1,000 tokens")
    session = load_session(args.session)
    replies, outputs, baselines = scripted(session)
    # The budget is of what the model is sent: the middleware measures the system prompt and the tool schemas
    # at each call and gives the messages the rest; the figures count the request the same way.
    system = session.get("system") or None
    memory = FreeMemory(counter=args.counter, budget=args.budget)
    tools = recorded_tools(outputs)
    schemas = request_tokens(memory.counter, tools=tools, image_rule=memory.image_rule)
    result = DemoResult()
    violations = 0

    def on_request(i: int, messages: list[Any]) -> None:
        nonlocal violations
        result.without.append(memory.count_messages(baselines[i]) + schemas)
        result.with_freemem.append(memory.count_messages(messages) + schemas)
        violations += len(pairing_violations(messages))
        if on_call is not None:
            on_call(result)

    model = replay_model(replies, on_request)
    middleware = FreeMemoryMiddleware(memory)
    t0 = time.perf_counter()
    db_path: Path | None = None
    with checkpointer(args) as (saver, where, archive):
        db_path = Path(where.split(" ", 1)[1]) if not args.redis else None
        memory.archive = archive  # what was freed is kept: `freemem thread show/restore`, `freemem ui`
        agent = create_agent(model, tools, system_prompt=system,
                             middleware=[middleware], checkpointer=saver)
        thread = f"demo-{int(time.time() * 1000)}"
        config = {"configurable": {"thread_id": thread}, "recursion_limit": 10_000}
        answers = []
        for turn in session["turns"]:
            result.turn_starts.append(len(result.with_freemem))
            out = agent.invoke({"messages": [HumanMessage(turn["user"])]}, config)
            answers.append(out["messages"][-1].content)
        state = agent.get_state(config).values
        persisted = memory.count_messages(state["messages"])
        unpruned = memory.count_messages(baselines[-1][1:] + [replies[-1]])
        ledger = state.get(LEDGER_KEY, [])
    elapsed = time.perf_counter() - t0
    stats = middleware.stats
    sent_without, sent_with = sum(result.without), sum(result.with_freemem)
    result.summary = {
        "model_calls": len(result.with_freemem),
        "turns": len(session["turns"]),
        "budget": args.budget,
        "counter": memory.counter.name,
        "checkpointer": where,
        "thread_id": thread,
        "store": {"redis": args.redis, "key_prefix": REDIS_PREFIX} if args.redis else {"sqlite": str(db_path)},
        "peak_context_without": max(result.without),
        "peak_context_with": max(result.with_freemem),
        "calls_over_budget_without": sum(t > args.budget for t in result.without),
        "calls_over_budget_with": sum(t > args.budget for t in result.with_freemem),
        "tokens_sent_without": sent_without,
        "tokens_sent_with": sent_with,
        "tokens_saved": sent_without - sent_with,
        "saved_share": round(1 - sent_with / sent_without, 4) if sent_without else 0.0,
        "cleaning_rounds": stats.cleans,
        "commands_applied": sum(e["applied"] for e in ledger),
        "commands_rejected": sum(len(e["rejected"]) for e in ledger),
        "cleaner_errors": stats.errors,
        "pairing_violations": violations,
        "freemem_ms_per_call": round(1000 * stats.time_s / max(1, stats.steps), 2),
        "persisted_thread_tokens": persisted,
        "unpruned_thread_tokens": unpruned,
        "final_answers_kept": answers == [t["final"] for t in session["turns"]],
        "seconds": round(elapsed, 2),
    }
    return result
