"""``freemem bench recall``: how fast an archive answers ``search(thread_id, query, k)`` at 10,000 archived passages.

One thread is filled with folds of chat utterances (MemoryBank's dated conversations from ``../shared/data``,
cycled until there are ``--passages`` passages; generated sentences when the data is absent), each message with
its speaker and date, as the middleware archives them. Beside it, ``--other-threads`` threads hold the same
amount of text again, so a store's search must find the running thread's passages among others'. Then every
MemoryBank probing question (or generated ones) is asked ``--repeat`` times through ``archive.search`` with
``k=--k``, and each call is timed: reported per archive (in memory, SQLite FTS5, Redis on a core redis-server
with no modules) as p50 / p95 / max milliseconds, with the time it took to record the events, and a check that
no hit ever came from another thread. Beside the wall-clock times, the searching process's CPU time per search
(for Redis the client's share only: the ranking runs in the server, so the script's time there from the slow log
and the server's CPU time per search are reported too) and the machine's load average, since a
shared machine's other work stretches the wall clock.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from freemem_bench._common import (
    default_data,
    finish,
    machine_info,
    make_console,
    markdown_table,
    print_table,
    time_summary,
)

__all__ = ["add_arguments", "build_events", "questions", "run"]

_DATA = "memorybank_chat_en"
ARCHIVES = ("memory", "sqlite", "redis")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passages", type=int, default=10_000, help="archived passages in the searched thread (10,000)")
    p.add_argument("--other-threads", type=int, default=1,
                   help="other threads holding as much text again (default 1)")
    p.add_argument("--fold-size", type=int, default=20, help="messages per archived fold (default 20)")
    p.add_argument("--k", type=int, default=5, help="hits per search (default 5)")
    p.add_argument("--repeat", type=int, default=3, help="times each question is asked (default 3)")
    p.add_argument("--archives", default=",".join(ARCHIVES), help="which archives (default memory,sqlite,redis)")
    p.add_argument("--data", help=f"MemoryBank folder (default ../shared/data/{_DATA})")
    p.add_argument("--redis-server", default=shutil.which("redis-server"), help="core redis-server binary")
    p.add_argument("--json", help="write the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="print only the table")


# -- the corpus ------------------------------------------------------------------------------------------------


def _memorybank(folder: Path | None) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``([(speaker, date, text)], [questions])`` from MemoryBank, or two empty lists."""
    if folder is None or not (folder / "memory_bank_en.json").is_file():
        return [], []
    bank = json.loads((folder / "memory_bank_en.json").read_text(encoding="utf-8"))
    lines: list[tuple[str, str, str]] = []
    for user, record in bank.items():
        for date, turns in sorted((record.get("history") or {}).items()):
            for turn in turns:
                lines.append((user, date, str(turn.get("query") or "")))
                lines.append(("AI companion", date, str(turn.get("response") or "")))
    asked: list[str] = []
    probing = folder / "probing_questions_en.jsonl"
    if probing.is_file():
        for row in probing.read_text(encoding="utf-8").splitlines():
            if row.strip():
                for qs in json.loads(row).values():
                    asked.extend(str(q) for q in qs)
    return [x for x in lines if x[2].strip()], asked


_NAMES = ["Evan", "Maria", "Chen", "Aisha", "Tom", "Priya", "Lukas", "Sofia"]
_THINGS = ["car", "garden", "piano lesson", "trip to Lisbon", "dentist", "book club", "marathon", "new job",
           "apartment", "birthday party", "cat", "guitar", "exam", "recipe", "hiking boots", "concert"]
_VERBS = ["talked about", "planned", "worried about", "finished", "booked", "cancelled", "bought", "visited"]


def _generated(n: int, seed: int) -> tuple[list[tuple[str, str, str]], list[str]]:
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        who, thing, verb = rng.choice(_NAMES), rng.choice(_THINGS), rng.choice(_VERBS)
        lines.append((who, f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}",
                      f"Today I {verb} the {thing} with {rng.choice(_NAMES)}; it took {rng.randint(1, 9)} hours."))
    asked = [f"What did {rng.choice(_NAMES)} say about the {rng.choice(_THINGS)}?" for _ in range(100)]
    return lines, asked


def build_events(lines: list[tuple[str, str, str]], passages: int, fold_size: int, *, tag: str,
                 start: float = 1.7e9) -> list[dict[str, Any]]:
    """Archive events (one fold each, ``fold_size`` dated messages) holding ``passages`` utterances, cycling
    through ``lines``; the ids carry ``tag`` (a thread's own)."""
    events: list[dict[str, Any]] = []
    for e in range(-(-passages // fold_size)):
        messages: list[dict[str, Any]] = []
        for m in range(min(fold_size, passages - e * fold_size)):
            k = e * fold_size + m
            who, date, text = lines[k % len(lines)]
            kind = "ai" if who == "AI companion" else "human"
            messages.append({"format": "langchain", "message": {
                "type": kind, "content": text, "id": f"{tag}-m{k}", "name": None if kind == "ai" else who,
                "additional_kwargs": {"date": date}}})
        handle = f"f{zlib.crc32(f'{tag}/{e}'.encode()):08x}"
        events.append({"id": f"{tag}-e{e}", "created_at": start + e, "trigger": "budget",
                       "folds": [{"handle": handle, "index": 1, "message_id": f"freemem-fold-{handle}",
                                  "messages": messages, "message_ids": [x["message"]["id"] for x in messages],
                                  "positions": list(range(1, 1 + len(messages))), "tokens": 0, "digest": ""}]})
    return events


def questions(data: str | None) -> tuple[list[tuple[str, str, str]], list[str], str]:
    """The utterances, the questions and where they came from."""
    folder = Path(data) if data else default_data(_DATA)
    lines, asked = _memorybank(folder)
    if lines and asked:
        return lines, asked, str(folder)
    lines, asked = _generated(4000, 0)
    return lines, asked, "generated"


# -- the archives ----------------------------------------------------------------------------------------------


@contextmanager
def _archive(kind: str, directory: Path, redis_binary: str | None) -> Iterator[Any]:
    from freemem.archives import InMemoryArchive, SqliteArchive

    if kind == "memory":
        yield InMemoryArchive()
    elif kind == "sqlite":
        with SqliteArchive(directory / "archive.sqlite") as store:
            yield store
    elif kind == "redis":
        from freemem.core.errors import ConfigError
        from freemem.redis import RedisArchive
        from freemem_bench._redis8 import throwaway_redis

        if not redis_binary:
            raise ConfigError("redis-server not found (apt-get install redis-server, or pass --redis-server PATH)")
        with throwaway_redis(redis_binary, directory, error=ConfigError) as url:
            with RedisArchive.from_url(url) as store:
                yield store
    else:
        from freemem.core.errors import ConfigError

        raise ConfigError(f"unknown archive {kind!r} (choose from {', '.join(ARCHIVES)})")


class _ServerClock:
    """For Redis, where the ranking runs in the server: each search script's own time there, from the slow log
    (every command logged, with its duration in microseconds). Nothing for the other archives."""

    def __init__(self, archive: Any) -> None:
        self.client = getattr(archive, "client", None)
        if self.client is not None:
            self.client.config_set("slowlog-log-slower-than", 0)
            self.client.config_set("slowlog-max-len", 100_000)
            self.client.slowlog_reset()
            self.cpu_start = self._cpu()

    def _cpu(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def cpu_mean_ms(self, searches: int) -> float | None:
        """The server process's CPU time since the start, per search (what the ranking costs, whatever the load)."""
        if self.client is None or not searches:
            return None
        return (self._cpu() - self.cpu_start) * 1000 / searches

    def summary(self) -> dict[str, float | None]:
        if self.client is None:
            return {"p50_ms": None, "p95_ms": None}
        from freemem.redis.scripts import ARCHIVE_SEARCH

        sha = ARCHIVE_SEARCH.sha.encode()
        log = self.client.slowlog_get(100_000)
        times = [entry["duration"] / 1e6 for entry in log if sha in (entry.get("command") or b"")]
        summary = time_summary(times)
        return {"p50_ms": summary["p50_ms"], "p95_ms": summary["p95_ms"]}


def _measure(archive: Any, corpus: dict[str, list[dict[str, Any]]], asked: list[str], *, k: int, repeat: int,
             clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    t0 = clock()
    for thread, events in corpus.items():
        for event in events:
            archive.record(thread, event)
    record_s = clock() - t0
    main = next(iter(corpus))
    server = _ServerClock(archive)
    seconds: list[float] = []
    cpu: list[float] = []
    leaked = empty = 0
    for _ in range(repeat):
        for question in asked:
            t, c = clock(), time.process_time()
            hits = archive.search(main, question, k)
            seconds.append(clock() - t)
            cpu.append(time.process_time() - c)
            leaked += sum(1 for h in hits if not h.event_id.startswith(f"{main}-"))
            empty += not hits
    summary, busy = time_summary(seconds), time_summary(cpu)
    server_cpu = server.cpu_mean_ms(len(seconds))
    served = server.summary()
    return {"record_s": round(record_s, 2), "searches": len(seconds), "p50_ms": summary["p50_ms"],
            "p95_ms": summary["p95_ms"], "max_ms": summary["max_ms"], "mean_ms": summary["mean_ms"],
            "cpu_p50_ms": busy["p50_ms"], "cpu_p95_ms": busy["p95_ms"],
            "server_p50_ms": served["p50_ms"], "server_p95_ms": served["p95_ms"], "server_cpu_mean_ms": server_cpu,
            "hits_from_other_threads": leaked, "searches_without_hits": empty}


def _load() -> float | None:
    """The 1-minute load average (what else the machine was running), when the platform has it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from freemem.core.passages import PIECE_CHARS
    from freemem_bench._common import ensure_positive

    for name in ("passages", "fold_size", "k", "repeat"):
        ensure_positive(f"--{name.replace('_', '-')}", getattr(args, name))
    console = make_console(args.quiet)
    lines, asked, source = questions(args.data)
    corpus = {"bench-main": build_events(lines, args.passages, args.fold_size, tag="bench-main")}
    rotated = lines[len(lines) // 2:] + lines[:len(lines) // 2]
    for t in range(max(0, args.other_threads)):
        corpus[f"bench-other{t}"] = build_events(rotated, args.passages, args.fold_size, tag=f"bench-other{t}")
    rows: dict[str, Any] = {}
    load_before = _load()
    for kind in [a.strip() for a in args.archives.split(",") if a.strip()]:
        with tempfile.TemporaryDirectory(prefix="freemem-bench-recall-") as tmp, \
                _archive(kind, Path(tmp), args.redis_server) as archive:
            console.print(f"[dim]{kind}: recording {sum(len(e) for e in corpus.values())} events ...[/dim]")
            rows[kind] = _measure(archive, corpus, asked, k=args.k, repeat=args.repeat)
    load_after = _load()
    # Milliseconds per search: wall clock, this process's CPU, and for Redis the script's time in the server
    # (slow log) and the server's CPU per search (mean); "foreign" counts hits from another thread (must be 0).
    columns = ["archive", "passages", "searches", "p50", "p95", "max", "CPU p50", "CPU p95", "server p50",
               "server p95", "server CPU", "record s", "foreign"]
    table = [[kind, args.passages, r["searches"], r["p50_ms"], r["p95_ms"], r["max_ms"], r["cpu_p50_ms"],
              r["cpu_p95_ms"], r["server_p50_ms"], r["server_p95_ms"], r["server_cpu_mean_ms"], r["record_s"],
              r["hits_from_other_threads"]]
             for kind, r in rows.items()]
    print_table(console, f"search ms at {args.passages:,} passages (k={args.k}; load average "
                         f"{load_before} before, {load_after} after)", columns, table)
    result = {"bench": "recall", "passages": args.passages, "other_threads": args.other_threads,
              "fold_size": args.fold_size, "k": args.k, "questions": len(asked), "repeat": args.repeat,
              "source": source, "piece_chars": PIECE_CHARS, "archives": rows,
              "load_average": {"before": load_before, "after": load_after}, "machine": machine_info(),
              "markdown": markdown_table(columns, table)}
    return finish(args, result)
