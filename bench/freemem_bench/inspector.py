"""``freemem bench inspector``: the inspector's thread page on a long thread (issue 24: 10,000 archived events).

Builds one thread whose latest checkpoint holds ``--tool-messages`` tool results, and an archive of ``--events``
cleaning events, each removing one line of one tool result (so the pruned messages hold ``--events`` markers and
the original is rebuilt from every event), after ``--history`` checkpoints of the transcript as it grew (the
chart's walk), in a SQLite checkpoint file with a SQLite archive (``--redis URL``: freemem's RedisSaver and
RedisArchive instead). Then it serves ``freemem ui``'s app in process and measures
pages of the thread: each one's first request cold (a new ``ThreadSource`` and app, nothing kept of the thread;
the process has served a small thread before), the median of ``--repeat`` more (warm: what the source keeps
per thread state), and the page's size in bytes. Pages: the first page (the context as the model sees it and
a page of event summaries: no event read in full, no checkpoint but the latest), a later page of events and of
messages, the chart (``/chart``, which the first page fetches once shown: the walk of the checkpoint history),
the original (``context=original``: every event read, the original rebuilt, the chart drawn in place) and a
later page of it. The figures the issue asks for: first page under 300 ms and 300 KB, cold.

:func:`build_thread` is also what the paging tests build, so the benchmark and the tests measure the same thread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "build_thread", "run"]

LINE = "{m:05d}.{j:03d} {word} = compute(item_{j}, threshold=0.{m:04d}) -> ok; cached in /srv/cache/{m}/{j}"


def _words(m: int, j: int) -> str:
    return ("alpha", "beta", "gamma", "delta", "epsilon")[(m + j) % 5]


def build_thread(saver: Any, archive: Any, thread: str, *, events: int = 10_000, tool_messages: int = 500,
                 history: int = 0) -> dict[str, Any]:
    """Write a thread of ``tool_messages`` tool turns whose latest checkpoint is pruned by ``events`` archived
    events (oldest first, each removing one line of one tool result); returns what was built. ``history``
    checkpoints before the latest one hold the transcript as it grew (each a model call more, unpruned: the
    chart walks them), spread evenly over the tool turns."""
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    from freemem.core.apply import DEFAULT_MESSAGE_MARKER, span_ref

    per_message = -(-events // tool_messages)
    lines = per_message + 5
    messages: list[dict[str, Any]] = [
        {"role": "system", "id": "sys", "content": "You are a careful operations agent."},
        {"role": "user", "id": "u0", "content": "Audit every cache entry and report what is stale."}]
    contents: dict[int, str] = {}
    for m in range(tool_messages):
        call = f"call_{m}"
        messages.append({"role": "assistant", "id": f"ai_{m}", "content": f"Reading cache shard {m}.",
                         "tool_calls": [{"id": call, "type": "function",
                                         "function": {"name": "read_shard", "arguments": f'{{"shard": {m}}}'}}]})
        contents[m] = "\n".join(LINE.format(m=m, j=j, word=_words(m, j)) for j in range(lines))
        messages.append({"role": "tool", "id": f"tool_{m}", "tool_call_id": call, "content": contents[m]})
    original = [dict(msg) for msg in messages]

    root = empty_checkpoint()
    root["id"] = str(uuid6(clock_seq=-1))
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    parent = saver.put(config, root, {"source": "input", "step": -1, "parents": {}}, {})
    for h in range(history):
        turns = max(1, (h + 1) * tool_messages // history)
        grown = empty_checkpoint()
        grown["id"] = str(uuid6(clock_seq=-1))
        grown["channel_values"] = {"messages": original[: 2 + 2 * turns]}
        grown["channel_versions"] = {"messages": saver.get_next_version(None, None)}
        parent = saver.put(parent, grown, {"source": "loop", "step": h, "parents": {}},
                           dict(grown["channel_versions"]))
    t0 = time.time() - events
    for k in range(events):
        m, j = k % tool_messages, k // tool_messages
        index = 3 + 2 * m
        text = LINE.format(m=m, j=j, word=_words(m, j)) + "\n"
        current = messages[index]["content"]
        at = current.index(text)
        marker = DEFAULT_MESSAGE_MARKER.format(ref=span_ref(text), tokens=len(text) // 4)
        messages[index] = {**messages[index], "content": current[:at] + marker + current[at + len(text):]}
        span = {"command_indexes": [0], "start": 0, "end": len(text), "original": text, "marker": marker,
                "tokens": len(text) // 4, "field": "content", "field_start": 0, "pruned_start": at,
                "message_index": index, "message_id": f"tool_{m}"}
        archive.record(thread, {"id": f"ev{k:06d}", "created_at": t0 + k, "trigger": "over budget",
                                "cleaner": "heuristic", "tokens_before": 0, "tokens_after": 0,
                                "tokens_freed": len(text) // 4, "applied": 1, "rejected": [],
                                "rounds": [[span]], "checkpoint_id": root["id"]})
    head = empty_checkpoint()
    head["id"] = str(uuid6(clock_seq=-1))
    head["channel_values"] = {"messages": messages}
    head["channel_versions"] = {"messages": saver.get_next_version(None, None)}
    saver.put(parent, head, {"source": "loop", "step": history, "parents": {}}, dict(head["channel_versions"]))
    return {"thread": thread, "events": events, "messages": len(messages), "original": original,
            "pruned": messages, "head": head["id"], "checkpoints": history + 2}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=10_000, help="archived cleaning events (default 10,000)")
    p.add_argument("--tool-messages", type=int, default=500, help="tool results they prune (default 500)")
    p.add_argument("--history", type=int, default=200,
                   help="checkpoints before the latest, the transcript as it grew (default 200: the chart walks "
                        "them; a real long thread has thousands)")
    p.add_argument("--repeat", type=int, default=5, help="warm requests per page measured (default 5)")
    p.add_argument("--redis", metavar="URL", help="use freemem's RedisSaver and RedisArchive at this URL")
    p.add_argument("--json", help="write the figures as JSON")


def _get(client: Any, params: dict[str, Any], path: str = "/thread") -> tuple[float, Any]:
    t0 = time.perf_counter()
    response = client.get(path, params=params)
    elapsed = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:300]}")
    return elapsed, response


def _measure(fresh: Callable[[], Any], params: dict[str, Any], repeat: int, *, after: dict[str, Any] | None = None,
             path: str = "/thread") -> dict[str, Any]:
    """``params``' page requested cold (a new ThreadSource and app: nothing kept of the thread; ``after``: a
    page requested first on that new source, e.g. the original before one of its later pages), then ``repeat``
    times warm, on the same source."""
    client = fresh()
    if after is not None:
        _get(client, after)
    cold, first = _get(client, params, path)
    warm = [_get(client, params, path)[0] for _ in range(repeat)]
    return {"path": path, "params": {k: v for k, v in params.items() if k != "id"},
            "after": None if after is None else {k: v for k, v in after.items() if k != "id"},
            "cold_ms": round(1000 * cold, 1),
            "warm_median_ms": round(1000 * statistics.median(warm), 1) if warm else None,
            "bytes": len(first.content)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from freemem.ui import ThreadSource, create_app

    thread = f"inspector-bench-{int(time.time())}"
    with tempfile.TemporaryDirectory(prefix="freemem-bench-ui-") as tmp:
        if args.redis:
            from freemem.redis import RedisArchive, RedisSaver

            saver: Any = RedisSaver.from_url(args.redis, key_prefix="freemem-bench-ui")
            archive: Any = RedisArchive.from_url(args.redis, key_prefix="freemem-bench-ui")
            closers = [saver.close, archive.close]
            store = f"Redis {args.redis} (prefix freemem-bench-ui)"
        else:
            import sqlite3

            from langgraph.checkpoint.sqlite import SqliteSaver

            from freemem.archives import SqliteArchive

            path = Path(tmp) / "thread.sqlite"
            conn = sqlite3.connect(str(path), check_same_thread=False)
            saver, archive = SqliteSaver(conn), SqliteArchive(path)
            closers = [conn.close, archive.close]
            store = "SQLite (SqliteSaver + SqliteArchive, one file)"
        try:
            t0 = time.perf_counter()
            built = build_thread(saver, archive, thread, events=args.events, tool_messages=args.tool_messages,
                                 history=args.history)
            build_s = time.perf_counter() - t0
            build_thread(saver, archive, thread + "-warmup", events=10, tool_messages=5)

            def fresh() -> Any:
                # A new source and app, as a new `freemem ui` process has: nothing kept of the long thread.
                # The process itself has served a small thread before (imports and the first request's
                # set-up are not the long thread's cost).
                client = TestClient(create_app(ThreadSource(saver, archive, counter="approx", describe=store)))
                client.get("/thread", params={"id": thread + "-warmup"})
                return client

            fresh()  # the process's one-off costs (imports, first app), before anything is measured
            load = os.getloadavg()
            original = {"id": thread, "context": "original"}
            pages = [_measure(fresh, {"id": thread}, args.repeat),
                     _measure(fresh, {"id": thread, "epage": 100}, args.repeat),
                     _measure(fresh, {"id": thread, "mpage": 10}, args.repeat),
                     _measure(fresh, {"id": thread}, args.repeat, after={"id": thread}, path="/chart"),
                     _measure(fresh, original, args.repeat),
                     _measure(fresh, {**original, "mpage": 10}, args.repeat, after=original)]
            load_after = os.getloadavg()
            if args.redis:
                for name in (thread, thread + "-warmup"):
                    saver.delete_thread(name)
                    archive.delete_thread(name)
        finally:
            for close in closers:
                close()
    result = {"store": store, "events": args.events, "messages": built["messages"], "checkpoints": built["checkpoints"],
              "build_s": round(build_s, 2), "pages": pages,
              "load_average": [round(x, 2) for x in load], "load_average_after": [round(x, 2) for x in load_after],
              "first_page_ok": pages[0]["cold_ms"] < 300 and pages[0]["bytes"] < 300_000}
    for page in pages:
        after = "" if page["after"] is None else f" (after {page['after'] or 'the first page'})"
        label = page["params"] or ("(first page)" if page["path"] == "/thread" else "")
        print(f"{page['path']} {label}{after}: cold {page['cold_ms']} ms, warm median "
              f"{page['warm_median_ms']} ms, {page['bytes']:,} bytes")
    print(f"{args.events:,} events over {built['messages']:,} messages, {built['checkpoints']:,} checkpoints in "
          f"{store}; built in {build_s:.1f} s; "
          f"load average {load[0]:.2f} before, {load_after[0]:.2f} after")
    return result
