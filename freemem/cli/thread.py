"""``freemem thread list|show|restore THREAD``: what freemem freed in a persisted thread, over any archive.

Where the thread lives: ``--redis URL`` (the checkpointer and the archive in one Redis), or ``--saver`` and
``--archive`` apart, each a ``redis://`` / ``rediss://`` / ``unix://`` URL or a SQLite file (``PATH.sqlite``,
``PATH.db`` or ``sqlite:///PATH``: LangGraph's ``SqliteSaver``, freemem's :class:`~freemem.archives.SqliteArchive`).
The actions are written against the :class:`~freemem.archives.Archive` contract and any LangGraph checkpointer:

* ``list``: the thread's archived cleaning events (id, time, tokens before/after, spans, restored or not);
  needs only the archive;
* ``show``: the thread's pruned context next to the original rebuilt from the archive (``--event ID``: that
  event's removed spans in full);
* ``restore``: put one event's spans (``--event ID``) or every unrestored event's back into the thread, as a
  new checkpoint the next ``invoke`` continues from (``--dry-run``: compute, write nothing).

``show`` needs only ``--saver`` when no archive was configured: it then says "no archive configured" (not
"expired") and shows no removed text. ``show`` and ``restore`` undo only the events of the latest checkpoint's
branch; events of another branch (a concurrent run that lost the race, a fork) are listed as skipped, with the
reason, on stderr (``--json``: ``"skipped"``). An empty answer names the store and key prefix looked in and the
prefixes (or, for a SQLite file, the threads) that do hold threads.

When the pruned messages hold freemem markers or fold messages that no archived event names (the archive
expired or lost them), ``show`` and ``restore`` say so on stderr instead of reporting a clean thread, and
``restore`` with nothing restorable exits 1: the removed text is gone and the markers stay.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freemem.core.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from rich.console import Console

    from freemem.archives import Archive

__all__ = ["add_arguments", "open_archive", "open_saver", "run"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "show", "restore"), help="what to do with the thread")
    p.add_argument("thread", help="thread id (config['configurable']['thread_id'])")
    p.add_argument("--redis", metavar="URL",
                   help="redis:// or rediss:// URL of both the checkpointer and the archive (user:password@ allowed)")
    p.add_argument("--saver", metavar="URL|PATH",
                   help="the checkpointer: a Redis URL or a SQLite file (default: --redis)")
    p.add_argument("--archive", metavar="URL|PATH",
                   help="the archive of freed spans: a Redis URL or a SQLite file (default: --redis)")
    p.add_argument("--key-prefix", default="freemem", help="Redis key prefix of the saver and archive (default freemem)")
    p.add_argument("--cluster", action="store_true", help="the Redis URL names a node of a Redis Cluster")
    p.add_argument("--channel", default="messages", help="state channel holding the messages (default messages)")
    p.add_argument("--ns", default="", help="checkpoint namespace (default: the root graph)")
    p.add_argument("--event", help="one event id (show: print its spans; restore: undo only it)")
    p.add_argument("--dry-run", action="store_true", help="restore: compute the result, write nothing")
    p.add_argument("--ca-cert", help="CA bundle for rediss:// URLs")
    p.add_argument("--json", dest="json_out", action="store_true", help="print JSON instead of tables")


# ----------------------------------------------------------------------------------------- opening stores


def _sqlite_path(spec: str) -> str | None:
    if spec.startswith("sqlite:///"):
        return spec[len("sqlite:///") - 1:] if spec.startswith("sqlite:////") else spec[len("sqlite:///"):]
    if Path(spec).suffix in (".sqlite", ".sqlite3", ".db"):
        return spec
    return None


def _redis_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"key_prefix": args.key_prefix, "cluster": args.cluster}
    if args.ca_cert:
        kwargs["ssl_ca_certs"] = args.ca_cert
    return kwargs


def _bad_spec(flag: str, spec: str) -> ConfigError:
    return ConfigError(f"{flag} must be a redis://, rediss:// or unix:// URL or a SQLite file (.sqlite, .db, "
                       f"sqlite:///PATH), got {spec!r}")


def _open(spec: str, flag: str, redis: Callable[[str], Any], sqlite: Callable[[str], Any]) -> Any:
    if spec.startswith(_REDIS_SCHEMES):
        return redis(spec)
    path = _sqlite_path(spec)
    if path is None:
        raise _bad_spec(flag, spec)
    return sqlite(path)


def open_archive(spec: str, args: argparse.Namespace, flag: str = "--archive") -> AbstractContextManager[Archive]:
    """The archive ``spec`` names (a Redis URL: ``RedisArchive``; a SQLite file: ``SqliteArchive``), as a
    context manager that closes it."""
    from freemem.archives import SqliteArchive

    def redis(url: str) -> Any:
        from freemem.redis import RedisArchive

        return RedisArchive.from_url(url, **_redis_kwargs(args))

    return _open(spec, flag, redis, SqliteArchive)  # type: ignore[no-any-return]


def open_saver(spec: str, args: argparse.Namespace, flag: str = "--saver") -> AbstractContextManager[Any]:
    """The LangGraph checkpointer ``spec`` names (a Redis URL: ``RedisSaver``; a SQLite file: LangGraph's
    ``SqliteSaver``), as a context manager that closes it."""
    def redis(url: str) -> Any:
        from freemem.redis import RedisSaver

        return RedisSaver.from_url(url, **_redis_kwargs(args))

    def sqlite(path: str) -> Any:
        if not Path(path).exists():
            raise StoreError(f"{flag}: no SQLite checkpoint file at {path!r}")
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        return _sqlite_saver(sqlite3.connect(path, check_same_thread=False), SqliteSaver)

    return _open(spec, flag, redis, sqlite)  # type: ignore[no-any-return]


class _sqlite_saver(AbstractContextManager[Any]):
    def __init__(self, conn: Any, cls: Any) -> None:
        self._closing = closing(conn)
        self.saver = cls(conn)

    def __enter__(self) -> Any:
        self._closing.__enter__()
        return self.saver

    def __exit__(self, *exc: object) -> None:
        self._closing.__exit__(*exc)


def _specs(args: argparse.Namespace) -> tuple[str | None, str | None]:
    saver = args.saver or args.redis
    archive = args.archive or args.redis
    if archive is None and not (args.action == "show" and saver is not None and not args.event):
        raise ConfigError("say where the thread lives: --redis URL, or --archive (and --saver for show/restore)")
    if args.redis is not None and not args.redis.startswith(_REDIS_SCHEMES):
        raise ConfigError(f"--redis must be a redis://, rediss:// or unix:// URL, got {args.redis!r}")
    return saver, archive


# ------------------------------------------------------------------------------------------------ output


def _when(ts: Any) -> str:
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(ts or "")


def _id_of(message: Any) -> str | None:
    return message.get("id") if isinstance(message, dict) else getattr(message, "id", None)


def _saver_where(args: argparse.Namespace) -> str:
    spec = args.saver or args.redis or ""
    if spec.startswith(_REDIS_SCHEMES):
        return f"Redis {_public(spec)} under key prefix {args.key_prefix!r}"
    return f"SQLite file {_sqlite_path(spec) or spec}"


def _archive_where(args: argparse.Namespace) -> str:
    spec = args.archive or args.redis or ""
    if spec.startswith(_REDIS_SCHEMES):
        return f"Redis {_public(spec)} under key prefix {args.key_prefix!r}"
    return f"SQLite file {_sqlite_path(spec) or spec}"


def _public(url: str) -> str:
    """A Redis URL without its credentials."""
    if "@" not in url:
        return url
    return url.split("://", 1)[0] + "://" + url.rsplit("@", 1)[1]


def _elsewhere(args: argparse.Namespace, command: str, spec: str | None = None) -> str:
    """Where else the thread may be: other key prefixes holding threads in this Redis, or the threads a SQLite
    file holds (best effort: a failure to look says nothing more)."""
    from freemem.cli.where import empty_hint, redis_prefixes, sqlite_threads

    spec = spec or args.saver or args.redis or ""
    try:
        if spec.startswith(_REDIS_SCHEMES):
            import redis as redis_lib

            kwargs: dict[str, Any] = {"ssl_ca_certs": args.ca_cert} if args.ca_cert else {}
            with closing(redis_lib.Redis.from_url(spec, **kwargs)) as client:
                hint = empty_hint(prefix=args.key_prefix, prefixes=redis_prefixes(client),
                                  holding=redis_prefixes(client, thread=args.thread), thread=args.thread,
                                  command=f"freemem {command} {args.thread}")
        else:
            hint = empty_hint(threads=sqlite_threads(_sqlite_path(spec) or spec))
    except Exception:  # noqa: BLE001 - a hint only
        return ""
    return f"; {hint}"


def _warn_no_archive(thread: str, refs: list[str]) -> None:
    print(f"freemem: thread {thread}: no archive configured (--archive or --redis), so the removed text is not "
          "shown" + (f": {len(refs)} freemem marker(s) or fold(s) name text stored wherever the agent's "
                     "FreeMemory(archive=...) put it (none given: it was not kept); it did not expire"
                     if refs else ""), file=sys.stderr)


def _warn_orphans(thread: str, orphans: list[str]) -> None:
    if orphans:
        shown = ", ".join(f"#{r}" for r in orphans[:5]) + (", ..." if len(orphans) > 5 else "")
        print(f"freemem: warning: thread {thread}: {len(orphans)} freemem marker(s) or fold(s) in the pruned "
              f"messages name text the archive no longer holds (expired or deleted?): {shown}; that text cannot "
              "be shown or restored", file=sys.stderr)


def _warn_skipped(thread: str, skipped: list[Any]) -> None:
    """Events a restore (or the rebuilt original) left out: another branch's, or not matching the messages."""
    if not skipped:
        return
    print(f"freemem: thread {thread}: {len(skipped)} unrestored event(s) left out:", file=sys.stderr)
    for sk in skipped[:10]:
        print(f"  {sk.event_id} ({sk.kind}): {sk.reason}", file=sys.stderr)
    if len(skipped) > 10:
        print(f"  ... and {len(skipped) - 10} more (--json lists them all)", file=sys.stderr)


# ----------------------------------------------------------------------------------------------- actions


def list_events(args: argparse.Namespace, archive: Archive, console: Console) -> int:
    """``list``: the thread's archived events, one row each."""
    from rich.table import Table

    events = archive.list_events(args.thread)
    if not events:
        # An empty answer must not read as "nothing was freed" when the thread is simply elsewhere.
        print(f"freemem: thread {args.thread}: no archived cleaning events in {_archive_where(args)}"
              + _elsewhere(args, "thread list", args.archive or args.redis), file=sys.stderr)
    if args.json_out:
        print(json.dumps({"thread": args.thread, "events": events}, indent=2, default=str))
        return 0
    table = Table(title=f"thread {args.thread}: {len(events)} archived cleaning events")
    table.add_column("event", no_wrap=True)
    for col in ("time (UTC)", "trigger", "tokens before → after", "spans", "folds", "restored"):
        table.add_column(col)
    for ev in events:
        table.add_row(str(ev["id"]), _when(ev.get("created_at")), str(ev.get("trigger", "")),
                      f"{ev.get('tokens_before', 0):,} → {ev.get('tokens_after', 0):,}",
                      f"{ev.get('n_spans', 0)} ({ev.get('span_tokens', 0):,} tok)",
                      str(sum(int(f.get("n_messages", 0)) for f in ev.get("folds") or [])) + " msgs"
                      if ev.get("folds") else "-",
                      _when(ev["restored_at"]) if ev.get("restored_at") else "no")
    console.print(table)
    return 0


def show_event(args: argparse.Namespace, archive: Archive, console: Console) -> int:
    """``show --event ID``: one event's removed spans in full."""
    from rich.table import Table

    try:
        event = archive.get_event(args.thread, args.event)
    except KeyError as exc:
        raise StoreError(str(exc.args[0])) from None
    if args.json_out:
        print(json.dumps(event, indent=2, default=str))
        return 0
    table = Table(title=f"event {args.event} of thread {args.thread}")
    for col in ("round", "message", "field", "tokens", "original text"):
        table.add_column(col)
    for i, spans in enumerate(event.get("rounds") or []):
        for span in spans:
            table.add_row(str(i + 1), str(span.get("message_id") or span.get("message_index")),
                          str(span.get("field")), str(span.get("tokens")), str(span.get("original")))
    console.print(table)
    return 0


def show(args: argparse.Namespace, saver: Any, archive: Archive | None, console: Console) -> int:
    """``show``: the pruned context next to the original rebuilt from the archive."""
    from rich.table import Table

    from freemem.langgraph.threads import show_thread
    from freemem.messages import json_message, message_text

    view = show_thread(saver, archive, args.thread, channel=args.channel, checkpoint_ns=args.ns)
    if view.checkpoint_id is None:
        raise StoreError(f"thread {args.thread!r} has no checkpoints in {_saver_where(args)}"
                         + _elsewhere(args, "thread show"))
    if archive is None:
        _warn_no_archive(args.thread, view.orphans)
    else:
        _warn_orphans(args.thread, view.orphans)
    _warn_skipped(args.thread, view.skipped)
    if args.json_out:
        out = {"thread": args.thread, "checkpoint_id": view.checkpoint_id, "events": view.events,
               "pruned": [json_message(m) for m in view.pruned],
               "original": [json_message(m) for m in view.original],
               "orphaned_refs": view.orphans if archive is not None else [],
               "no_archive_refs": view.orphans if archive is None else [],
               "has_archive": archive is not None,
               "skipped": [sk.to_dict() for sk in view.skipped]}
        print(json.dumps(out, indent=2, default=str))
        return 0
    table = Table(title=f"thread {args.thread} @ {view.checkpoint_id}: pruned vs original")
    for col in ("#", "pruned chars", "original chars", "pruned text (start)"):
        table.add_column(col)
    # Folds take messages out: pair pruned and original messages by id (a fold message stands for
    # the folded ones and has no original of its own).
    original_by_id = {_id_of(o): o for o in view.original}
    changed = folds = 0
    for i, p in enumerate(view.pruned):
        pt = message_text(p)
        o = original_by_id.get(_id_of(p))
        if o is None:
            folds += 1
            table.add_row(str(i), f"{len(pt):,}", "fold", pt[:80].replace("\n", " "))
            continue
        ot = message_text(o)
        if pt != ot:
            changed += 1
            table.add_row(str(i), f"{len(pt):,}", f"{len(ot):,}", pt[:80].replace("\n", " "))
    console.print(table)
    if archive is None:
        from freemem.langgraph.threads import freemem_refs

        marked = sum(1 for p in view.pruned if freemem_refs([p]))
        console.print(f"{marked} of {len(view.pruned)} messages hold freemem markers or folds; no archive "
                      "configured, so what they removed is not shown (give --archive, or --redis)")
        return 0
    console.print(f"{changed} of {len(view.pruned)} messages pruned, {folds} fold message(s) standing for "
                  f"{len(view.original) - len(view.pruned) + folds} folded; "
                  + (f"{sum(1 for e in view.events if not e.get('restored_at')) - len(view.skipped)} events "
                     "restorable" if archive is not None else "no archive configured")
                  + (f" ({len(view.skipped)} of another branch or not matching, skipped)" if view.skipped else "")
                  + (f"; {len(view.orphans)} marker(s) whose text the archive lost"
                     if view.orphans and archive is not None else "")
                  + (f"; {len(view.orphans)} marker(s) whose text was not archived here"
                     if view.orphans and archive is None else ""))
    return 0


def restore(args: argparse.Namespace, saver: Any, archive: Archive, console: Console) -> int:
    """``restore``: put freed spans back into the thread as a new checkpoint."""
    from freemem.langgraph.threads import orphaned_refs, restore_thread

    try:
        result = restore_thread(saver, archive, args.thread, args.event, channel=args.channel,
                                checkpoint_ns=args.ns, dry_run=args.dry_run)
    except KeyError as exc:
        raise StoreError(str(exc.args[0])) from None
    except StoreError as exc:
        if "has no checkpoints" not in str(exc):
            raise
        raise StoreError(f"thread {args.thread!r} has no checkpoints in {_saver_where(args)}"
                         + _elsewhere(args, "thread restore")) from None
    # Markers left in what the restore produced (or would; the messages as they were when nothing was
    # restorable) name text no archived event could put back.
    orphans = orphaned_refs(archive, args.thread, result.messages)
    out = {"thread": args.thread, "restored_events": result.event_ids, "tokens_restored": result.tokens_restored,
           "dry_run": bool(args.dry_run), "orphaned_refs": orphans,
           "skipped": [sk.to_dict() for sk in result.skipped]}
    _warn_orphans(args.thread, orphans)
    _warn_skipped(args.thread, result.skipped)
    if args.json_out:
        print(json.dumps(out, indent=2))
    elif not result.event_ids:
        print(f"thread {args.thread}: nothing to restore"
              + (" (the archive holds none of the removed text)" if orphans else ""), file=sys.stderr)
    else:
        verb = "would restore" if args.dry_run else "restored"
        console.print(f"thread {args.thread}: {verb} {len(result.event_ids)} event(s), "
                      f"{result.tokens_restored:,} tokens: {', '.join(result.event_ids)}")
    return 1 if not result.event_ids and orphans else 0


#: The actions that need only the archive, and those that also read (or write) the thread's checkpoints.
_ARCHIVE_ONLY: dict[str, Callable[[argparse.Namespace, Any, Any], int]] = {"list": list_events}
_WITH_SAVER: dict[str, Callable[[argparse.Namespace, Any, Any, Any], int]] = {"show": show, "restore": restore}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    saver_spec, archive_spec = _specs(args)
    console = Console()
    action = "show-event" if args.action == "show" and args.event else args.action
    with ExitStack() as stack:
        if archive_spec is None:  # show over a checkpointer alone: told apart from text that expired
            saver = stack.enter_context(open_saver(str(saver_spec), args, "--saver"))
            return show(args, saver, None, console)
        archive = stack.enter_context(open_archive(archive_spec, args, "--redis" if not args.archive else "--archive"))
        if action == "show-event":
            return show_event(args, archive, console)
        if action in _ARCHIVE_ONLY:
            return _ARCHIVE_ONLY[action](args, archive, console)
        if saver_spec is None:
            raise ConfigError(f"thread {args.action} reads the thread's checkpoints: give --saver (or --redis)")
        saver = stack.enter_context(open_saver(saver_spec, args, "--redis" if not args.saver else "--saver"))
        return _WITH_SAVER[action](args, saver, archive, console)
    return 0  # pragma: no cover - every branch returns inside
