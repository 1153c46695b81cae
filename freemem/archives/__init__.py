"""Archives: where freemem keeps what it removed, per thread (the contract and the stores).

* :class:`Archive` / :class:`AsyncArchive` -- the contract (sync and async), :class:`Restored` what a restore
  gives back, :class:`BaseArchive` the shared part of a sync store (restore, find, the async twins);
* :class:`InMemoryArchive` -- process memory; :class:`SqliteArchive` -- one SQLite file;
  ``freemem.redis.RedisArchive`` / ``AsyncRedisArchive`` -- Redis;
* :class:`SearchHit` -- what ``archive.search(thread_id, query, k)`` returns (see :mod:`freemem.archives.search`);
* :func:`persist_event` / :func:`apersist_event` -- record a cleaning event, fail closed for the edit.

Restoring itself (spans and folds back into text or messages) is the core's :mod:`freemem.core.archive`.
"""

from freemem.archives.base import (
    DEFAULT_THREAD,
    Archive,
    ArchiveFailure,
    AsyncArchive,
    BaseArchive,
    Restored,
    apersist_event,
    dump_event,
    event_time,
    persist_event,
    prepare_event,
    undo_events,
)
from freemem.archives.memory import InMemoryArchive
from freemem.archives.search import SearchHit
from freemem.archives.sqlite import SqliteArchive

__all__ = [
    "DEFAULT_THREAD",
    "Archive",
    "ArchiveFailure",
    "AsyncArchive",
    "BaseArchive",
    "InMemoryArchive",
    "Restored",
    "SearchHit",
    "SqliteArchive",
    "apersist_event",
    "dump_event",
    "event_time",
    "persist_event",
    "prepare_event",
    "undo_events",
]
