"""``freemem bench race``: two writers on one thread — what each checkpointer keeps of their turns.

Two OS processes (for InMemorySaver, which cannot be shared between processes: two threads of one process)
each run ``--turns`` turns of the same small hand-built agent graph (human → assistant with a tool call →
tool result → final answer, ``--step-ms`` of simulated model time per node) on the *same* thread id, started
together. Every ``invoke`` that returns is an acknowledged turn. Afterwards the thread's newest checkpoint is
read and checked: which acknowledged turns it holds (a turn counts when its human message, tool call, tool
result and final answer are all there), its tool-call pairing, and how many checkpoints have more than one
child (forks: a writer built on a state the other had already moved past).

Savers: ``redis`` (:class:`~freemem.redis.RedisSaver`), ``redis-lease`` (the same with ``lease=True``, each
turn inside ``saver.leased(thread)``), ``redis-lease-plain`` (``lease=True`` without ``leased()``: the lease
is taken by the run's first read and handed over by expiry), ``sqlite`` (``SqliteSaver`` on one file) and
``memory`` (``InMemorySaver``). Redis runs on a throwaway ``redis-server`` unless ``--redis-url`` is given.

The worker (``python -m freemem_bench.race --worker ...``) is also what the lease tests run, so the
benchmark and the tests measure the same thing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

__all__ = ["SAVERS", "add_arguments", "build_graph", "check_head", "run", "run_turns"]

SAVERS = ("redis", "redis-lease", "redis-lease-plain", "sqlite", "memory")


def build_graph(checkpointer: Any, *, step_s: float = 0.0) -> Any:
    """The two-node agent graph: ``agent`` calls the ``echo`` tool once per human message, then answers."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
    from langgraph.graph import END, START, StateGraph
    from langgraph.graph.message import add_messages

    # The functional form: a class body's annotations would be strings here (postponed evaluation) that
    # LangGraph cannot resolve in this function's scope.
    State = TypedDict("State", {"messages": Annotated[list[Any], add_messages]})  # noqa: UP013

    def agent(state: Any) -> dict[str, Any]:
        if step_s:
            time.sleep(step_s)  # the model's time: what makes two writers overlap
        last = state["messages"][-1]
        if isinstance(last, HumanMessage):
            turn = str(last.id)
            return {"messages": [AIMessage(f"calling echo for {turn}", id=f"{turn}:call",
                                           tool_calls=[{"id": f"{turn}:tc", "name": "echo", "args": {"t": turn}}])]}
        turn = str(last.tool_call_id).rsplit(":", 1)[0]
        return {"messages": [AIMessage(f"done {turn}", id=f"{turn}:final")]}

    def tool(state: Any) -> dict[str, Any]:
        call = state["messages"][-1].tool_calls[0]
        return {"messages": [ToolMessage(f"echo {call['args']['t']}", tool_call_id=call["id"],
                                         id=f"{call['args']['t']}:result")]}

    def route(state: Any) -> str:
        last = state["messages"][-1]
        return "tool" if getattr(last, "tool_calls", None) else END

    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tool", tool)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tool", END])
    builder.add_edge("tool", "agent")
    return builder.compile(checkpointer=checkpointer)


def run_turns(graph: Any, thread: str, who: str, turns: int, *, around: Any = None) -> dict[str, Any]:
    """Run ``turns`` turns as writer ``who``; the acknowledged turn ids and the errors (one line each).

    ``around(i)`` may return a context manager each turn runs inside (the lease)."""
    from langchain_core.messages import HumanMessage

    acked: list[str] = []
    errors: list[str] = []
    config = {"configurable": {"thread_id": thread}}
    for i in range(turns):
        turn = f"{who}-{i}"
        try:
            if around is None:
                graph.invoke({"messages": [HumanMessage(f"turn {turn}", id=turn)]}, config)
            else:
                with around(i):
                    graph.invoke({"messages": [HumanMessage(f"turn {turn}", id=turn)]}, config)
            acked.append(turn)
        except Exception as exc:  # noqa: BLE001 - a refused or failed turn is a measurement, not a crash
            errors.append(f"{turn}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    return {"who": who, "acked": acked, "errors": errors}


def check_head(saver: Any, thread: str, acked: list[str]) -> dict[str, Any]:
    """What the thread's newest checkpoint keeps of the acknowledged turns, and its forks."""
    from freemem.core.pairing import pairing_violations

    config = {"configurable": {"thread_id": thread}}
    tup = saver.get_tuple(config)
    messages = list(tup.checkpoint["channel_values"].get("messages", [])) if tup else []
    ids = {str(getattr(m, "id", "")) for m in messages}
    complete = [t for t in acked if {t, f"{t}:call", f"{t}:result", f"{t}:final"} <= ids]
    children: dict[str, int] = {}
    total = 0
    for item in saver.list(config):
        total += 1
        parent = item.parent_config["configurable"]["checkpoint_id"] if item.parent_config else None
        if parent:
            children[parent] = children.get(parent, 0) + 1
    return {"acked": len(acked), "kept": len(complete), "lost": sorted(set(acked) - set(complete)),
            "pairing_violations": len(pairing_violations(messages)), "messages": len(messages),
            "checkpoints": total, "forks": sum(1 for n in children.values() if n > 1)}


# -- the worker process ----------------------------------------------------------------------------------------


@contextmanager
def _open_saver(kind: str, target: str, *, lease_ttl: float, lease_wait: float) -> Iterator[Any]:
    if kind.startswith("redis"):
        from freemem.redis import RedisSaver

        with RedisSaver.from_url(target, lease=kind != "redis", lease_ttl=lease_ttl, lease_wait=lease_wait) as saver:
            yield saver
    elif kind == "sqlite":
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        conn = sqlite3.connect(target, check_same_thread=False, timeout=60)
        try:
            yield SqliteSaver(conn)
        finally:
            conn.close()
    else:
        raise ValueError(f"no worker process for saver {kind!r}")


def _create_sqlite(target: str) -> None:
    """Create the database (tables, WAL mode) before the writers start: two processes switching a new file to
    WAL at once get ``database is locked`` at once, since SQLite does not wait on a journal-mode change."""
    with _open_saver("sqlite", target, lease_ttl=30.0, lease_wait=60.0) as saver:
        saver.setup()


def _worker(args: argparse.Namespace) -> int:
    with _open_saver(args.saver, args.target, lease_ttl=args.lease_ttl, lease_wait=args.lease_wait) as saver:
        if args.saver == "sqlite":
            saver.setup()
        graph = build_graph(saver, step_s=args.step_ms / 1000)
        around = (lambda _i: saver.leased(args.thread)) if args.saver == "redis-lease" else None
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":  # the parent starts both writers together
            return 2
        result = run_turns(graph, args.thread, args.who, args.turns, around=around)
    print(json.dumps(result), flush=True)
    return 0


def spawn_writers(saver: str, target: str, thread: str, turns: int, *, step_ms: float = 10.0,
                  lease_ttl: float = 30.0, lease_wait: float = 120.0, timeout: float = 600.0,
                  env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Start writers ``A`` and ``B`` as two processes, let them go at once, return their results."""
    if saver == "sqlite":
        _create_sqlite(target)
    procs = []
    for who in ("A", "B"):
        cmd = [sys.executable, "-m", "freemem_bench.race", "--worker", "--saver", saver, "--target", target,
               "--thread", thread, "--who", who, "--turns", str(turns), "--step-ms", str(step_ms),
               "--lease-ttl", str(lease_ttl), "--lease-wait", str(lease_wait)]
        procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, env=env))
    try:
        for proc in procs:
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"writer did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise RuntimeError(f"writer failed ({proc.returncode}): {err.strip()[-2000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _memory_race(thread: str, turns: int, step_ms: float) -> tuple[Any, list[dict[str, Any]]]:
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    graph = build_graph(saver, step_s=step_ms / 1000)
    results: list[dict[str, Any]] = [{}, {}]
    go = threading.Barrier(2)

    def writer(k: int, who: str) -> None:
        go.wait()
        results[k] = run_turns(graph, thread, who, turns)

    threads = [threading.Thread(target=writer, args=(k, who)) for k, who in enumerate(("A", "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return saver, results


# -- the benchmark ---------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--savers", default=",".join(SAVERS), help=f"comma-separated, of {', '.join(SAVERS)}")
    p.add_argument("--turns", type=int, default=15, help="turns per writer (default 15)")
    p.add_argument("--step-ms", type=float, default=10.0, help="simulated model time per node (default 10 ms)")
    p.add_argument("--repeat", type=int, default=1, help="runs per saver (default 1)")
    p.add_argument("--redis-url", help="a Redis to use (default: a throwaway redis-server on a free port)")
    p.add_argument("--redis-server", default=shutil.which("redis-server"), help="redis-server binary")
    p.add_argument("--lease-ttl", type=float, default=2.0,
                   help="lease TTL for redis-lease-plain, where turns hand over by expiry (default 2 s)")
    p.add_argument("--json", help="write the figures as JSON")


@contextmanager
def _redis_url(args: argparse.Namespace, directory: Path) -> Iterator[str]:
    if args.redis_url:
        yield args.redis_url
        return
    from freemem.core.errors import ConfigError
    from freemem_bench._redis8 import throwaway_redis

    if not args.redis_server:
        raise ConfigError("redis-server not found (apt-get install redis-server, or pass --redis-url)")
    with throwaway_redis(args.redis_server, directory, error=ConfigError) as url:
        yield url


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    from freemem.core.errors import ConfigError

    kinds = [k.strip() for k in args.savers.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in SAVERS]
    if unknown:
        raise ConfigError(f"unknown saver(s) {', '.join(unknown)}; choose from {', '.join(SAVERS)}")
    console = Console(stderr=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="freemem-race-") as tmp:
        directory = Path(tmp)
        need_redis = any(k.startswith("redis") for k in kinds)
        with (_redis_url(args, directory) if need_redis else _nothing()) as url:
            for kind in kinds:
                for rep in range(args.repeat):
                    thread = f"race-{kind}-{rep}-{os.getpid()}-{time.time_ns()}"
                    t0 = time.perf_counter()
                    if kind == "memory":
                        saver, results = _memory_race(thread, args.turns, args.step_ms)
                        head = check_head(saver, thread, [t for r in results for t in r["acked"]])
                    else:
                        target = url if kind.startswith("redis") else str(directory / f"{thread}.sqlite")
                        ttl = args.lease_ttl if kind == "redis-lease-plain" else 30.0
                        results = spawn_writers(kind, target, thread, args.turns, step_ms=args.step_ms,
                                                lease_ttl=ttl, lease_wait=max(120.0, 4 * args.turns * ttl))
                        with _open_saver(kind, target, lease_ttl=30.0, lease_wait=60.0) as saver:
                            head = check_head(saver, thread, [t for r in results for t in r["acked"]])
                    seconds = time.perf_counter() - t0
                    row = {"saver": kind, "run": rep, "turns_per_writer": args.turns, **head,
                           "errors": [e for r in results for e in r["errors"]],
                           "acked_by_writer": {r["who"]: len(r["acked"]) for r in results},
                           "lost_by_writer": {r["who"]: sum(1 for t in head["lost"] if t.startswith(r["who"] + "-"))
                                              for r in results},
                           "seconds": round(seconds, 2)}
                    rows.append(row)
    table = Table(title=f"two writers x {args.turns} turns on one thread (step {args.step_ms:g} ms): kept = "
                  "acknowledged turns the newest checkpoint holds whole")
    table.add_column("saver", no_wrap=True)
    for col in ("acked", "kept", "lost A/B", "pairing", "forks", "errors", "s"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        lost = r["lost_by_writer"]
        table.add_row(r["saver"], str(r["acked"]), str(r["kept"]), f"{lost.get('A', 0)}/{lost.get('B', 0)}",
                      str(r["pairing_violations"]), str(r["forks"]), str(len(r["errors"])), f"{r['seconds']:.1f}")
    console.print(table)
    return {"benchmark": "race", "turns": args.turns, "step_ms": args.step_ms, "rows": rows}


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m freemem_bench.race")
    p.add_argument("--worker", action="store_true", help="run one writer (used by the benchmark and tests)")
    p.add_argument("--saver", choices=SAVERS, required=True)
    p.add_argument("--target", required=True, help="Redis URL or SQLite file")
    p.add_argument("--thread", required=True)
    p.add_argument("--who", required=True)
    p.add_argument("--turns", type=int, default=15)
    p.add_argument("--step-ms", type=float, default=10.0)
    p.add_argument("--lease-ttl", type=float, default=30.0)
    p.add_argument("--lease-wait", type=float, default=120.0)
    args = p.parse_args(argv)
    if not args.worker:
        p.error("use `freemem bench race` for the benchmark; --worker runs one writer")
    return _worker(args)


if __name__ == "__main__":
    sys.exit(_main())
