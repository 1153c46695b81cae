"""An archive in one SQLite file: durable, no server, for one machine (the stdlib's ``sqlite3``).

The persistent archive for agents that keep their checkpoints in SQLite too (LangGraph's ``SqliteSaver``):
``freemem thread show|restore --saver threads.sqlite --archive threads.sqlite`` works on it like on Redis.
One table, ``freemem_archive``, keyed by (thread, event id); summaries (the event without its removed text) are
stored apart, so listing a long thread's history never reads the removed text. Writes are transactions; one
connection serves every thread of the process behind a lock (async methods run in a worker thread).

Search is SQLite's FTS5 (built into Python's ``sqlite3``): each event's passages
(:func:`freemem.core.passages.event_passages`) sit in ``freemem_passages`` (thread, event, the passage) and their
words, as :func:`freemem.core.passages.terms` reads them (the same words every archive ranks by), in the FTS5
table ``freemem_passages_fts`` under the same rowid, beside a word that stands for the thread (so a search
matches only its thread's passages before ranking); :meth:`SqliteArchive.search` ranks with FTS5's ``bm25()``.
A file written before search existed is indexed when it is opened.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from freemem.archives.base import BaseArchive, dump_event, prepare_event
from freemem.archives.search import SearchHit, check_search, distinct_hits
from freemem.core.archive import summarize_event
from freemem.core.errors import StoreError
from freemem.core.passages import Passage, event_passages, terms

__all__ = ["SqliteArchive"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS freemem_archive (
    thread TEXT NOT NULL,
    id TEXT NOT NULL,
    created_at REAL NOT NULL,
    event TEXT NOT NULL,
    summary TEXT NOT NULL,
    restored_at REAL,
    PRIMARY KEY (thread, id)
);
CREATE INDEX IF NOT EXISTS freemem_archive_by_time ON freemem_archive (thread, created_at);
"""

_SEARCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS freemem_passages (
    id INTEGER PRIMARY KEY,
    thread TEXT NOT NULL,
    event_id TEXT NOT NULL,
    passage TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS freemem_passages_by_event ON freemem_passages (thread, event_id);
CREATE VIRTUAL TABLE IF NOT EXISTS freemem_passages_fts USING fts5(
    thread_tag, body, tokenize = "unicode61 remove_diacritics 0 tokenchars '_'"
);
"""


def _thread_tag(thread: str) -> str:
    """The one word that stands for a thread in the search index (any thread id, as a token FTS5 keeps whole)."""
    return "t" + hashlib.sha1(thread.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class SqliteArchive(BaseArchive):
    """An :class:`~freemem.archives.Archive` (and :class:`~freemem.archives.AsyncArchive`) in a SQLite file.

    Args:
        path: the database file (created with its table when missing), or ``":memory:"``.
        revive: turns an archived LangChain message dump back into a message (default: the registered one,
            :func:`freemem.lc.revive_message`, once LangChain layers are imported).
    """

    def __init__(self, path: str | Path, *, revive: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.path = str(path)
        self.revive = revive
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._conn.executescript(_SCHEMA)
            had_index = self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'freemem_passages_fts'"
                                           ).fetchone() is not None
            self._conn.executescript(_SEARCH_SCHEMA)
            if not had_index:
                self._backfill()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite archive {self.path!r}: {exc}") from exc

    def _backfill(self) -> None:
        """Index the events of a file written before search existed (one transaction)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            for thread, raw in self._conn.execute("SELECT thread, event FROM freemem_archive").fetchall():
                event = json.loads(raw)
                self._index(str(thread), event["id"], event)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _unindex(self, thread: str, event_ids: Sequence[str] | None) -> None:
        """Drop the passages of ``event_ids`` (every event of the thread when None); inside a transaction."""
        if event_ids is None:
            where, params = "thread = ?", [thread]
        else:
            where, params = f"thread = ? AND event_id IN ({','.join('?' * len(event_ids))})", [thread, *event_ids]
        self._conn.execute(f"DELETE FROM freemem_passages_fts WHERE rowid IN "
                           f"(SELECT id FROM freemem_passages WHERE {where})", params)
        self._conn.execute(f"DELETE FROM freemem_passages WHERE {where}", params)

    def _index(self, thread: str, event_id: str, event: Mapping[str, Any]) -> None:
        """Index an event's passages (replacing the ones it had); inside a transaction."""
        self._unindex(thread, [event_id])
        for passage in event_passages(event):
            rowid = self._conn.execute(
                "INSERT INTO freemem_passages (thread, event_id, passage) VALUES (?, ?, ?)",
                (thread, event_id, dump_event(passage.to_dict()).decode())).lastrowid
            self._conn.execute("INSERT INTO freemem_passages_fts (rowid, thread_tag, body) VALUES (?, ?, ?)",
                               (rowid, _thread_tag(thread), " ".join(terms(passage.indexed_text()))))

    def _write(self, fn: Callable[[], T]) -> T:
        """``fn`` in one transaction (rolled back whole when it fails)."""
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn()
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
                return result
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite archive {self.path!r}: {exc}") from exc

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SqliteArchive:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite archive {self.path!r}: {exc}") from exc

    @staticmethod
    def _load(raw: str, restored_at: float | None) -> dict[str, Any]:
        try:
            record = json.loads(raw)
        except ValueError as exc:
            raise StoreError(f"corrupt archive record: {exc}") from exc
        record["restored_at"] = restored_at
        return record

    def record(self, thread_id: str, event: Mapping[str, Any]) -> str:
        """Store an event (its ``"id"``, or a new uuid); returns the id. Re-recording an id overwrites it."""
        stored, at = prepare_event(event)
        event_id = stored["id"]
        body, summary = dump_event(stored).decode(), dump_event(summarize_event(stored)).decode()
        thread = str(thread_id)

        def write() -> None:
            self._conn.execute(
                "INSERT INTO freemem_archive (thread, id, created_at, event, summary) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (thread, id) DO UPDATE SET created_at = excluded.created_at, "
                "event = excluded.event, summary = excluded.summary",
                (thread, event_id, at, body, summary))
            self._index(thread, event_id, stored)

        self._write(write)
        return event_id

    def search(self, thread_id: str, query: str, k: int = 5) -> list[SearchHit]:
        """The ``k`` archived passages of the thread that best match ``query``, best first (FTS5's BM25)."""
        query_terms = check_search(query, k)
        if not query_terms:
            return []
        words = " OR ".join(f'"{t}"' for t in dict.fromkeys(query_terms))
        # The thread's tag narrows the match to its passages before anything is ranked (the tag column weighs
        # nothing in the score); the passages are then read by rowid, the thread checked again.
        thread = str(thread_id)
        match = f'thread_tag : "{_thread_tag(thread)}" AND body : ({words})'
        want = k * 4
        while True:
            rows = self._rows(
                "SELECT rowid, -bm25(freemem_passages_fts, 0.0, 1.0) FROM freemem_passages_fts "
                "WHERE freemem_passages_fts MATCH ? ORDER BY bm25(freemem_passages_fts, 0.0, 1.0), rowid DESC "
                "LIMIT ?", (match, want))
            found = dict(self._rows(
                f"SELECT id, passage FROM freemem_passages WHERE thread = ? AND id IN ({','.join('?' * len(rows))})",
                (thread, *(rowid for rowid, _ in rows)))) if rows else {}
            ranked = [(Passage.from_dict(json.loads(found[rowid])), float(score)) for rowid, score in rows
                      if rowid in found]
            hits = distinct_hits(ranked, query_terms, k)
            if len(hits) == k or len(rows) < want:
                return hits
            want *= 4

    def list_events(self, thread_id: str, *, newest_first: bool = False,
                    limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
        """Summaries (events without spans, with ``n_spans``, ``span_tokens``, ``restored_at``) in time order
        (``offset``: skip that many first)."""
        if limit is not None and limit <= 0:
            return []
        order = "DESC" if newest_first else "ASC"
        rows = self._rows(f"SELECT summary, restored_at FROM freemem_archive WHERE thread = ? "
                          f"ORDER BY created_at {order}, rowid {order} LIMIT ? OFFSET ?",
                          (str(thread_id), -1 if limit is None else limit, max(0, offset)))
        return [self._load(raw, restored) for raw, restored in rows]

    def count_events(self, thread_id: str) -> tuple[int, int]:
        """How many events the thread has archived, and how many are not restored yet (one indexed count)."""
        rows = self._rows("SELECT COUNT(*), COUNT(*) - COUNT(restored_at) FROM freemem_archive WHERE thread = ?",
                          (str(thread_id),))
        return int(rows[0][0]), int(rows[0][1])

    def get_event(self, thread_id: str, event_id: str) -> dict[str, Any]:
        """The full event, spans included; raises ``KeyError`` if absent."""
        rows = self._rows("SELECT event, restored_at FROM freemem_archive WHERE thread = ? AND id = ?",
                          (str(thread_id), str(event_id)))
        if not rows:
            raise KeyError(f"no archived event {event_id!r} in thread {thread_id!r}")
        return self._load(*rows[0])

    def events(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]:
        """Full events oldest first (by default only those not restored yet)."""
        where = "" if include_restored else " AND restored_at IS NULL"
        rows = self._rows(f"SELECT event, restored_at FROM freemem_archive WHERE thread = ?{where} "
                          "ORDER BY created_at, rowid", (str(thread_id),))
        return [self._load(raw, restored) for raw, restored in rows]

    def mark_restored(self, thread_id: str, event_id: str, *, restored_at: float | None = None) -> None:
        """Mark an event as restored (now, or at ``restored_at`` epoch seconds); ``KeyError`` if absent."""
        self._mark(thread_id, [event_id], time.time() if restored_at is None else restored_at)

    def mark_all_restored(self, thread_id: str, event_ids: Sequence[str]) -> None:
        """Mark several events restored in one transaction; ``KeyError`` (and nothing marked) if one is absent."""
        self._mark(thread_id, list(event_ids), time.time())

    def _mark(self, thread_id: str, event_ids: list[str], at: float) -> None:
        if not event_ids:
            return
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for event_id in event_ids:
                        done = self._conn.execute(
                            "UPDATE freemem_archive SET restored_at = ? WHERE thread = ? AND id = ?",
                            (at, str(thread_id), str(event_id))).rowcount
                        if not done:
                            raise KeyError(f"no archived event {event_id!r} in thread {thread_id!r}")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite archive {self.path!r}: {exc}") from exc

    def delete_thread(self, thread_id: str) -> bool:
        """Delete the thread's events; ``True`` if there were any."""
        thread = str(thread_id)

        def delete() -> bool:
            self._unindex(thread, None)
            return bool(self._conn.execute("DELETE FROM freemem_archive WHERE thread = ?", (thread,)).rowcount > 0)

        return self._write(delete)
