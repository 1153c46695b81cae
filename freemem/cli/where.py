"""Where threads live: what ``freemem thread`` and ``freemem ui`` say when they find nothing where they looked.

A thread is stored under a Redis *key prefix* (``RedisSaver(key_prefix=...)``, default ``freemem``; ``freemem
demo --redis`` writes under ``freemem-demo``) or in a SQLite file. Looking under the wrong one finds an empty
store, which must not read as "no threads": :func:`redis_prefixes` finds the prefixes that do hold threads (one
bounded SCAN) and :func:`sqlite_threads` the threads a SQLite file holds, so the message can name them.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["DEMO_PREFIX", "empty_hint", "redis_prefixes", "sqlite_threads"]

#: The key prefix ``freemem demo --redis`` writes under.
DEMO_PREFIX = "freemem-demo"
#: The most keys one look-up scans (a bound on a big shared Redis).
SCAN_LIMIT = 20_000


def _glob_literal(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def redis_prefixes(client: Any, *, thread: str | None = None, limit: int = SCAN_LIMIT) -> dict[str, int]:
    """``{key prefix: threads}`` for the freemem prefixes found in the first ``limit`` keys of a SCAN (a
    thread counts under a prefix when it has checkpoints or archived events there), most threads first;
    ``thread``: only the prefixes holding that thread."""
    from freemem.redis.keys import escape

    tag = "*" if thread is None else _glob_literal(escape(thread))
    threads: dict[str, set[str]] = {}
    seen = 0
    for pattern in (f"*:{{{tag}}}:ns", f"*:{{{tag}}}:a:ev"):
        for key in client.scan_iter(match=pattern, count=1000):
            name = key.decode() if isinstance(key, bytes) else str(key)
            seen += 1
            if ":{" in name:
                prefix, rest = name.split(":{", 1)
                threads.setdefault(prefix, set()).add(rest.split("}", 1)[0])
            if seen >= limit:
                break
    return dict(Counter({p: len(t) for p, t in threads.items()}).most_common())


def sqlite_threads(path: str | Path, *, limit: int = 20) -> list[str]:
    """Thread ids a SQLite file holds, in LangGraph's checkpoint table or freemem's archive table (read-only;
    empty when it has neither)."""
    found: list[str] = []
    try:
        conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        for table in ("checkpoints", "freemem_archive"):
            column = "thread_id" if table == "checkpoints" else "thread"
            try:
                rows = conn.execute(f"SELECT DISTINCT {column} FROM {table} LIMIT ?", (limit,)).fetchall()
            except sqlite3.Error:
                continue
            found.extend(str(r[0]) for r in rows if str(r[0]) not in found)
    finally:
        conn.close()
    return found[:limit]


def empty_hint(*, prefix: str | None = None, prefixes: dict[str, int] | None = None,
               threads: list[str] | None = None, command: str = "freemem ui",
               holding: dict[str, int] | None = None, thread: str | None = None) -> str:
    """How to look elsewhere: the other prefixes that hold threads (Redis; ``holding``: those that hold
    ``thread`` itself, said first), or the threads a file holds."""
    if prefix is not None and thread is not None and holding:
        found = [p for p in holding if p != prefix]
        if found:
            return (f"thread {thread!r} is under key prefix " + ", ".join(repr(p) for p in found[:8])
                    + f": pass --key-prefix, e.g. `{command} ... --key-prefix {found[0]}`")
    if prefix is not None:
        others = {p: n for p, n in (prefixes or {}).items() if p != prefix}
        if others:
            shown = list(others)[:8]
            if DEMO_PREFIX in others and DEMO_PREFIX not in shown:
                shown[-1] = DEMO_PREFIX  # the prefix the README's demo writes under is always named
            listed = ", ".join(f"{p!r} ({others[p]} thread{'s' if others[p] != 1 else ''})" for p in shown)
            listed += f" and {len(others) - len(shown)} more" if len(others) > len(shown) else ""
            pick = DEMO_PREFIX if DEMO_PREFIX in others else shown[0]
            return (f"key prefix {prefix!r} holds none" + (f" of thread {thread!r}" if thread else "")
                    + f"; this Redis holds threads under {listed}: pass --key-prefix, e.g. "
                    f"`{command} ... --key-prefix {pick}`")
        return (f"key prefix {prefix!r} holds none, and no other freemem prefix was found in this Redis "
                f"(`freemem demo --redis` writes under --key-prefix {DEMO_PREFIX}; your agent's is "
                "RedisSaver(key_prefix=...))")
    if threads:
        return "this file holds thread(s) " + ", ".join(repr(t) for t in threads[:10])
    return "this file holds no LangGraph checkpoints or freemem archive"
