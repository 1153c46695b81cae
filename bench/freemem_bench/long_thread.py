"""A long persisted agent thread, as the README builds it: what one thread costs per tool call.

``create_agent`` + ``FreeMemoryMiddleware(FreeMemory(budget=..., archive=...), recall=True)`` + a checkpointer,
one thread, turns of ``calls_per_turn`` tool calls whose outputs are ~``output_bytes`` of varied, loop-free
text, a scripted model (no network). Used by ``freemem bench store --thread-calls N`` and by the storage tests.

Measured: bytes the store grew by per tool call (whatever the caller measures: Redis ``INFO memory``
``used_memory``, a SQLite file's size, ...), ``get_state`` p50/p99 at the end, ``put`` throughput (checkpoints
per second of the whole run, model and middleware included), and whether ``get_state_history`` and a fork
(``update_state`` on an old checkpoint) read back exactly.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SessionAgent", "SessionResult", "arun_session", "build_session_agent", "output_text", "run_session",
           "thread_rows", "tool_calling_model_class"]

_WORDS = ["config", "parser", "value", "return", "error", "module", "path", "index", "token", "cache", "self",
          "import", "class", "None", "list", "dict", "handler", "request", "timeout", "buffer"]


def output_text(call: int, size: int = 10_000) -> str:
    """The ~``size``-byte output of tool call number ``call``: varied lines, no loops (deterministic)."""
    rng = random.Random(call * 7919 + 17)
    lines: list[str] = []
    total = 0
    while total < size:
        line = f"src/pkg/mod_{rng.randrange(1000):03d}.py:{rng.randrange(900)}: {' '.join(rng.choices(_WORDS, k=9))}"
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


def tool_calling_model_class() -> type:
    """The scripted model class (built on first use: it needs LangChain)."""
    from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class ToolCallingModel(FakeMessagesListChatModel):
        """Scripted chat model: ``calls_per_turn`` tool calls (``read_part``) in a turn, then a final answer
        (the driver resets ``in_turn`` before each turn)."""

        calls_per_turn: int = 100
        made: int = 0
        in_turn: int = 0

        def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ToolCallingModel:
            return self

        def _generate(self, messages: list[Any], stop: list[str] | None = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:
            if self.in_turn >= self.calls_per_turn:
                reply = AIMessage(content=f"Done with this turn after {self.in_turn} reads.")
            else:
                n = self.made
                self.made += 1
                self.in_turn += 1
                reply = AIMessage(content=f"Reading part {n}.",
                                  tool_calls=[{"name": "read_part", "args": {"part": n}, "id": f"call_{n}",
                                               "type": "tool_call"}])
            return ChatResult(generations=[ChatGeneration(message=reply)])

        @property
        def _llm_type(self) -> str:
            return "freemem-bench-scripted"

    return ToolCallingModel


@dataclass
class SessionAgent:
    """The agent of the session and what it needs to run turns."""

    agent: Any
    model: Any
    memory: Any
    output_bytes: int


def build_session_agent(checkpointer: Any, archive: Any, *, budget: int = 16_000, calls_per_turn: int = 100,
                        output_bytes: int = 10_000) -> SessionAgent:
    """The README's persisted agent: ``create_agent`` + ``FreeMemoryMiddleware(recall=True)`` (defaults)."""
    from langchain.agents import create_agent
    from langchain_core.tools import tool

    from freemem import FreeMemory
    from freemem.langgraph import FreeMemoryMiddleware

    @tool
    def read_part(part: int) -> str:
        """Read one part of the repository."""
        return output_text(part, output_bytes)

    model = tool_calling_model_class()(responses=[], calls_per_turn=calls_per_turn)
    memory = FreeMemory(budget=budget, archive=archive)
    agent = create_agent(model, [read_part], middleware=[FreeMemoryMiddleware(memory, recall=True)],
                         checkpointer=checkpointer)
    return SessionAgent(agent, model, memory, output_bytes)


@dataclass
class SessionResult:
    """What one long session measured."""

    tool_calls: int = 0
    checkpoints: int = 0
    seconds: float = 0.0
    puts: int = 0
    put_seconds: float = 0.0
    get_state_ms: dict[str, float] = field(default_factory=dict)
    history_exact: bool | None = None
    fork_exact: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def put_ops_s(self) -> float:
        """Checkpoints written per second spent inside the checkpointer's ``put``."""
        return self.puts / self.put_seconds if self.put_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"tool_calls": self.tool_calls, "checkpoints": self.checkpoints, "seconds": round(self.seconds, 2),
                "puts": self.puts, "put_ops_s": round(self.put_ops_s, 1),
                "get_state_ms": {k: round(v, 3) for k, v in self.get_state_ms.items()},
                "history_exact": self.history_exact, "fork_exact": self.fork_exact, "notes": self.notes}


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _time_puts(saver: Any, out: SessionResult, *, is_async: bool) -> None:
    """Count the checkpointer's ``put`` calls and the time spent in them (an instance attribute shadows the
    method; LangGraph calls it through the instance)."""
    if is_async:
        inner_async = saver.aput

        async def aput(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await inner_async(*args, **kwargs)
            finally:
                out.put_seconds += time.perf_counter() - t0
                out.puts += 1

        saver.aput = aput
        return
    inner = saver.put

    def put(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            out.put_seconds += time.perf_counter() - t0
            out.puts += 1

    saver.put = put


def _turn_input(turn: int) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    return {"messages": [HumanMessage(f"Turn {turn}: read the next parts.")]}


def _next_turn_size(session: SessionAgent, tool_calls: int, calls_per_turn: int) -> None:
    session.model.calls_per_turn = max(1, min(calls_per_turn, tool_calls - session.model.made))
    session.model.in_turn = 0


def run_session(session: SessionAgent, thread: str, tool_calls: int, *,
                progress: Callable[[int], None] | None = None, check: bool = True,
                get_state_samples: int = 200) -> SessionResult:
    """Run turns until ``tool_calls`` tool calls are made on ``thread``; then time ``get_state`` and, with
    ``check``, verify the history against the checkpointer and fork from an old checkpoint."""
    agent = session.agent
    cfg: Any = {"configurable": {"thread_id": thread}, "recursion_limit": 100_000}
    out = SessionResult()
    _time_puts(agent.checkpointer, out, is_async=False)
    per_turn = session.model.calls_per_turn
    started = time.perf_counter()
    turn = 0
    while session.model.made < tool_calls:
        _next_turn_size(session, tool_calls, per_turn)
        before = session.model.made
        agent.invoke(_turn_input(turn), cfg)
        turn += 1
        if progress is not None:
            progress(session.model.made - before)
    out.seconds = time.perf_counter() - started
    out.tool_calls = session.model.made
    plain: Any = {"configurable": {"thread_id": thread}}
    history = list(agent.get_state_history(plain))
    out.checkpoints = len(history)
    samples = []
    for _ in range(get_state_samples):
        t0 = time.perf_counter()
        agent.get_state(plain)
        samples.append((time.perf_counter() - t0) * 1000)
    if samples:
        out.get_state_ms = {"p50": statistics.median(samples), "p99": _pct(samples, 0.99)}
    if check:
        checked = [(snap, agent.checkpointer.get_tuple(snap.config)) for snap in _sample(history)]
        out.history_exact = _history_ok(checked, out.notes)
        old = history[len(history) // 2]
        forked = agent.update_state(old.config, {"messages": [_fork_note()]}, as_node="__start__")
        out.fork_exact = _fork_ok(old, agent.get_state(forked), agent.get_state(old.config), out.notes)
    return out


async def arun_session(session: SessionAgent, thread: str, tool_calls: int, *,
                       progress: Callable[[int], None] | None = None, check: bool = True,
                       get_state_samples: int = 200) -> SessionResult:
    """:func:`run_session` through ``ainvoke`` and the async state API (for async-only checkpointers)."""
    agent = session.agent
    cfg: Any = {"configurable": {"thread_id": thread}, "recursion_limit": 100_000}
    out = SessionResult()
    _time_puts(agent.checkpointer, out, is_async=True)
    per_turn = session.model.calls_per_turn
    started = time.perf_counter()
    turn = 0
    while session.model.made < tool_calls:
        _next_turn_size(session, tool_calls, per_turn)
        before = session.model.made
        await agent.ainvoke(_turn_input(turn), cfg)
        turn += 1
        if progress is not None:
            progress(session.model.made - before)
    out.seconds = time.perf_counter() - started
    out.tool_calls = session.model.made
    plain: Any = {"configurable": {"thread_id": thread}}
    history = [snap async for snap in agent.aget_state_history(plain)]
    out.checkpoints = len(history)
    samples = []
    for _ in range(get_state_samples):
        t0 = time.perf_counter()
        await agent.aget_state(plain)
        samples.append((time.perf_counter() - t0) * 1000)
    if samples:
        out.get_state_ms = {"p50": statistics.median(samples), "p99": _pct(samples, 0.99)}
    if check:
        checked = [(snap, await agent.checkpointer.aget_tuple(snap.config)) for snap in _sample(history)]
        out.history_exact = _history_ok(checked, out.notes)
        old = history[len(history) // 2]
        forked = await agent.aupdate_state(old.config, {"messages": [_fork_note()]}, as_node="__start__")
        out.fork_exact = _fork_ok(old, await agent.aget_state(forked), await agent.aget_state(old.config), out.notes)
    return out


def _sample(history: list[Any], n: int = 50) -> list[Any]:
    return history[:: max(1, len(history) // n)]


def _fork_note() -> Any:
    from langchain_core.messages import HumanMessage

    return HumanMessage("A fork from an old checkpoint.", id="fork-note")


def _history_ok(checked: list[tuple[Any, Any]], notes: list[str]) -> bool:
    """Each sampled snapshot of ``get_state_history`` holds the messages the checkpointer returns for its id."""
    for snapshot, tup in checked:
        values = tup.checkpoint["channel_values"] if tup else {}
        if values.get("messages", []) != snapshot.values.get("messages", []):
            notes.append(f"history: checkpoint {snapshot.config['configurable']['checkpoint_id']} differs")
            return False
    return True


def _fork_ok(old: Any, child: Any, again: Any, notes: list[str]) -> bool:
    """An ``update_state`` on an old checkpoint gives a child holding the old messages plus the update, whose
    parent is that checkpoint, and leaves the old checkpoint as it was."""
    old_messages = list(old.values.get("messages", []))
    ok = True
    parent = child.parent_config["configurable"]["checkpoint_id"] if child.parent_config else None
    if child.values.get("messages", []) != [*old_messages, _fork_note()] or \
            parent != old.config["configurable"]["checkpoint_id"]:
        ok = False
        notes.append("fork: the child of an old checkpoint does not hold its messages plus the update")
    if again.values.get("messages", []) != old_messages:
        ok = False
        notes.append("fork: the old checkpoint changed")
    return ok


# -- freemem bench store: the long-thread rows -------------------------------------------------------------------


def _used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def _key_usage(client: Any, prefix: str, thread: str, part: str) -> dict[str, int]:
    """``MEMORY USAGE`` of each key of the thread's ``part`` (``"archive"``: its archived events; ``"search"``:
    the archive's search index) that Redis holds, by its name after the thread's base (``a:x:t``, ...)."""
    from freemem.redis.keys import KeyLayout

    layout = KeyLayout(prefix)
    base = layout.thread_base(thread)
    keys = layout.archive_keys(thread) if part == "archive" else layout.search_keys(thread)
    return {key[len(base):]: int(used) for key in keys if (used := client.memory_usage(key, samples=0)) is not None}


def _archive_bytes(client: Any, prefix: str, thread: str) -> tuple[int, int]:
    """``MEMORY USAGE`` of the thread's archived events, and of the archive's search index."""
    return (sum(_key_usage(client, prefix, thread, "archive").values()),
            sum(_key_usage(client, prefix, thread, "search").values()))


def _index_keys_bytes(client: Any, prefix: str, thread: str, calls: int) -> dict[str, int]:
    """``MEMORY USAGE`` per tool call of each key of the archive's search index (``a:x:t`` postings, ...)."""
    return {key: round(used / max(1, calls)) for key, used in _key_usage(client, prefix, thread, "search").items()}


def _row(name: str, result: SessionResult, checkpoint_bytes: int, archive: tuple[int, int],
         measure: str) -> dict[str, Any]:
    calls = max(1, result.tool_calls)
    events, index = archive
    return {"saver": name, **result.as_dict(), "checkpoint_bytes_per_call": round(checkpoint_bytes / calls),
            "archive_bytes_per_call": round(events / calls), "search_index_bytes_per_call": round(index / calls),
            "bytes_per_call": round((checkpoint_bytes + events + index) / calls), "measured_as": measure}


async def thread_rows(*, calls: int, keep_last: int, redis_server: str, budget: int = 16_000,
                      calls_per_turn: int = 100, output_bytes: int = 10_000,
                      progress: Callable[[int], None] | None = None, official: bool = True,
                      sqlite: bool = True, notes: dict[str, str] | None = None,
                      get_state_samples: int = 300) -> list[dict[str, Any]]:
    """The README session, ``calls`` tool calls on one thread, through each checkpointer; each Redis on a
    throwaway server of its own so that ``INFO memory`` ``used_memory`` growth is the thread's. Every store stays
    up until the end, where ``get_state`` is timed round-robin over all of them (a loaded machine then slows
    them alike)."""
    import tempfile
    from contextlib import AsyncExitStack
    from pathlib import Path

    import redis

    from freemem.redis import RedisArchive, RedisSaver
    from freemem_bench._redis8 import throwaway_redis

    notes = {} if notes is None else notes
    rows: list[dict[str, Any]] = []
    readers: list[tuple[Any, bool]] = []
    shape = {"budget": budget, "calls_per_turn": calls_per_turn, "output_bytes": output_bytes}
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="freemem-bench-thread-")))
        for label, kept in (("freemem RedisSaver (Redis 7), every checkpoint", None),
                            (f"freemem RedisSaver (Redis 7), keep_last={keep_last}", keep_last)):
            directory = tmp / f"r{len(rows)}"
            directory.mkdir()
            url = stack.enter_context(throwaway_redis(redis_server, directory))
            raw = stack.enter_context(redis.Redis.from_url(url))
            saver = stack.enter_context(RedisSaver.from_url(url, keep_last=kept))
            archive = stack.enter_context(RedisArchive.from_url(url))
            before = _used_memory(raw)
            session = build_session_agent(saver, archive, **shape)
            result = run_session(session, THREAD, calls, progress=progress, get_state_samples=0)
            total = _used_memory(raw) - before
            archived = _archive_bytes(raw, "freemem", THREAD)
            row = _row(label, result, total - sum(archived), archived, "used_memory growth (archive: MEMORY USAGE)")
            row["checkpoint_keys_memory_usage_per_call"] = round(saver.memory_usage(THREAD) / max(1, calls))
            row["search_index_keys_bytes_per_call"] = _index_keys_bytes(raw, "freemem", THREAD, calls)
            rows.append(row)
            readers.append((session.agent, False))
        if official:
            got = await _official_row(stack, tmp, calls, redis_server, shape, progress, notes)
            if got is not None:
                rows.append(got[0])
                readers.append((got[1], False))
        if sqlite:
            row, agent = await _sqlite_row(stack, tmp, calls, redis_server, shape, progress)
            rows.append(row)
            readers.append((agent, True))
        samples: list[list[float]] = [[] for _ in readers]
        cpu: list[list[float]] = [[] for _ in readers]
        cfg: Any = {"configurable": {"thread_id": THREAD}}
        for _ in range(get_state_samples):
            for i, (agent, is_async) in enumerate(readers):
                t0, c0 = time.perf_counter(), time.process_time()
                if is_async:
                    await agent.aget_state(cfg)
                else:
                    agent.get_state(cfg)
                samples[i].append((time.perf_counter() - t0) * 1000)
                cpu[i].append((time.process_time() - c0) * 1000)
        for row, taken, used in zip(rows, samples, cpu, strict=True):
            if taken:
                row["get_state_ms"] = {"p50": round(statistics.median(taken), 3), "p99": round(_pct(taken, 0.99), 3)}
                # this process's CPU time per call: what a busy machine's scheduling adds to the wall time is not
                # in it; a Redis server's own time is not either, SQLite's is (it runs in this process)
                row["get_state_cpu_ms"] = {"p50": round(statistics.median(used), 3), "p99": round(_pct(used, 0.99), 3)}
    return rows


THREAD = "long-thread"


async def _official_row(stack: Any, directory: Any, calls: int, redis_server: str, shape: dict[str, int],
                        progress: Callable[[int], None] | None,
                        notes: dict[str, str]) -> tuple[dict[str, Any], Any] | None:
    """langgraph-checkpoint-redis (its sync ``RedisSaver``, ``setup()`` as its README shows) on a throwaway Redis 8
    with its modules; the archive on a core Redis of its own."""
    import importlib.util

    import redis

    from freemem.redis import RedisArchive
    from freemem_bench._redis8 import Redis8Unavailable, locate, redis8_server, throwaway_redis

    name = "langgraph-checkpoint-redis (Redis 8), every checkpoint"
    if importlib.util.find_spec("langgraph.checkpoint.redis") is None:
        notes[name] = "langgraph-checkpoint-redis is not installed (pip install -e './bench[redis8]')"
        return None
    try:
        locate()
    except Redis8Unavailable as exc:
        notes[name] = str(exc)
        return None
    from langgraph.checkpoint.redis import RedisSaver as OfficialRedisSaver

    (directory / "o8").mkdir()
    (directory / "oa").mkdir()
    try:
        url8 = stack.enter_context(redis8_server(directory / "o8"))
        url7 = stack.enter_context(throwaway_redis(redis_server, directory / "oa"))
        raw8 = stack.enter_context(redis.Redis.from_url(url8))
        raw7 = stack.enter_context(redis.Redis.from_url(url7))
        saver = stack.enter_context(OfficialRedisSaver.from_conn_string(url8))
        archive = stack.enter_context(RedisArchive.from_url(url7))
        saver.setup()
        before = _used_memory(raw8)
        session = build_session_agent(saver, archive, **shape)
        result = run_session(session, THREAD, calls, progress=progress, get_state_samples=0)
        total = _used_memory(raw8) - before
        archived = _archive_bytes(raw7, "freemem", THREAD)
        row = _row(name, result, total, archived, "used_memory growth of its Redis 8 (archive: MEMORY USAGE)")
        return row, session.agent
    except Redis8Unavailable as exc:
        notes[name] = str(exc)
    except Exception as exc:  # noqa: BLE001 - an optional comparison row must not sink the whole benchmark
        notes[name] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    return None


async def _sqlite_row(stack: Any, directory: Any, calls: int, redis_server: str, shape: dict[str, int],
                      progress: Callable[[int], None] | None) -> tuple[dict[str, Any], Any]:
    """LangGraph's ``AsyncSqliteSaver`` on a file (through ``ainvoke``); the archive on a core Redis."""
    import os

    import aiosqlite
    import redis
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from freemem.redis import RedisArchive
    from freemem_bench._redis8 import throwaway_redis

    (directory / "sa").mkdir()
    db = directory / "thread.sqlite"

    def file_bytes() -> int:
        return sum(os.path.getsize(p) for p in (db, db.with_name(db.name + "-wal")) if p.exists())

    url = stack.enter_context(throwaway_redis(redis_server, directory / "sa"))
    raw = stack.enter_context(redis.Redis.from_url(url))
    archive = stack.enter_context(RedisArchive.from_url(url))
    conn = await stack.enter_async_context(aiosqlite.connect(str(db)))
    saver = AsyncSqliteSaver(conn)
    await saver.setup()
    before = file_bytes()
    session = build_session_agent(saver, archive, **shape)
    result = await arun_session(session, THREAD, calls, progress=progress, get_state_samples=0)
    await conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = file_bytes() - before
    archived = _archive_bytes(raw, "freemem", THREAD)
    row = _row("AsyncSqliteSaver (file), every checkpoint", result, total, archived,
               "file growth (archive: MEMORY USAGE)")
    return row, session.agent
