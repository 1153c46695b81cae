"""``freemem thread list|show|restore --redis URL THREAD``: what freemem freed in a Redis-persisted thread.

* ``list``: the thread's archived cleaning events (id, time, tokens before/after, spans, restored or not);
* ``show``: the thread's pruned context next to the original rebuilt from the archive (``--event ID``: that
  event's removed spans in full);
* ``restore``: put one event's spans (``--event ID``) or every unrestored event's back into the thread, as a
  new checkpoint the next ``invoke`` continues from (``--dry-run``: compute, write nothing).

When the pruned messages hold freemem markers or fold messages that no archived event names (the archive
expired or lost them), ``show`` and ``restore`` say so on stderr instead of reporting a clean thread, and
``restore`` with nothing restorable exits 1: the removed text is gone and the markers stay.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from freemem.core.errors import ConfigError, StoreError

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("list", "show", "restore"), help="what to do with the thread")
    p.add_argument("thread", help="thread id (config['configurable']['thread_id'])")
    p.add_argument("--redis", required=True, metavar="URL", help="redis:// or rediss:// URL (user:password@ allowed)")
    p.add_argument("--key-prefix", default="freemem", help="key prefix of the saver and archive (default freemem)")
    p.add_argument("--cluster", action="store_true", help="the URL names a node of a Redis Cluster")
    p.add_argument("--channel", default="messages", help="state channel holding the messages (default messages)")
    p.add_argument("--ns", default="", help="checkpoint namespace (default: the root graph)")
    p.add_argument("--event", help="one event id (show: print its spans; restore: undo only it)")
    p.add_argument("--dry-run", action="store_true", help="restore: compute the result, write nothing")
    p.add_argument("--ca-cert", help="CA bundle for rediss:// URLs")
    p.add_argument("--json", dest="json_out", action="store_true", help="print JSON instead of tables")


def _when(ts: Any) -> str:
    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(ts or "")


def _text_of(message: Any) -> str:
    from freemem.core.views import message_views

    (view,) = message_views([message])
    return "\n".join(text for _name, text in view.fields)


def _id_of(message: Any) -> str | None:
    return message.get("id") if isinstance(message, dict) else getattr(message, "id", None)


def _plain(message: Any) -> Any:
    if isinstance(message, dict):
        return message
    dump = getattr(message, "model_dump", None)
    return dump() if dump else repr(message)


def _warn_orphans(thread: str, orphans: list[str]) -> None:
    if orphans:
        shown = ", ".join(f"#{r}" for r in orphans[:5]) + (", ..." if len(orphans) > 5 else "")
        print(f"freemem: warning: thread {thread}: {len(orphans)} freemem marker(s) or fold(s) in the pruned "
              f"messages name text the archive no longer holds (expired or deleted?): {shown}; that text cannot "
              "be shown or restored", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from freemem.redis import RedisArchive, RedisSaver, restore_thread, show_thread
    from freemem.redis.threads import orphaned_refs

    if not args.redis.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--redis must be a redis://, rediss:// or unix:// URL, got {args.redis!r}")
    kwargs: dict[str, Any] = {"ssl_ca_certs": args.ca_cert} if args.ca_cert else {}
    console = Console()
    out: dict[str, Any]
    with RedisSaver.from_url(args.redis, key_prefix=args.key_prefix, cluster=args.cluster, **kwargs) as saver, \
            RedisArchive.from_url(args.redis, key_prefix=args.key_prefix, cluster=args.cluster, **kwargs) as archive:
        if args.action == "list":
            events = archive.list_events(args.thread)
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
        if args.action == "show":
            if args.event:
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
            view = show_thread(saver, archive, args.thread, channel=args.channel, checkpoint_ns=args.ns)
            if view.checkpoint_id is None:
                raise StoreError(f"thread {args.thread!r} has no checkpoints under key prefix {args.key_prefix!r}")
            _warn_orphans(args.thread, view.orphans)
            if args.json_out:
                out = {"thread": args.thread, "checkpoint_id": view.checkpoint_id, "events": view.events,
                       "pruned": [_plain(m) for m in view.pruned], "original": [_plain(m) for m in view.original],
                       "orphaned_refs": view.orphans}
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
                pt = _text_of(p)
                o = original_by_id.get(_id_of(p))
                if o is None:
                    folds += 1
                    table.add_row(str(i), f"{len(pt):,}", "fold", pt[:80].replace("\n", " "))
                    continue
                ot = _text_of(o)
                if pt != ot:
                    changed += 1
                    table.add_row(str(i), f"{len(pt):,}", f"{len(ot):,}", pt[:80].replace("\n", " "))
            console.print(table)
            console.print(f"{changed} of {len(view.pruned)} messages pruned, {folds} fold message(s) standing for "
                          f"{len(view.original) - len(view.pruned) + folds} folded; "
                          f"{sum(1 for e in view.events if not e.get('restored_at'))} events restorable"
                          + (f"; {len(view.orphans)} marker(s) whose text the archive lost" if view.orphans else ""))
            return 0
        try:
            result = restore_thread(saver, archive, args.thread, args.event, channel=args.channel,
                                    checkpoint_ns=args.ns, dry_run=args.dry_run)
        except KeyError as exc:
            raise StoreError(str(exc.args[0])) from None
        # Markers left in what the restore produced (or would; the messages as they were when nothing was
        # restorable) name text no archived event could put back.
        orphans = orphaned_refs(archive, args.thread, result.messages)
        out = {"thread": args.thread, "restored_events": result.event_ids, "tokens_restored": result.tokens_restored,
               "dry_run": bool(args.dry_run), "orphaned_refs": orphans}
        _warn_orphans(args.thread, orphans)
        if args.json_out:
            print(json.dumps(out, indent=2))
        elif not result.event_ids:
            print(f"thread {args.thread}: nothing to restore"
                  + (" (the archive holds none of the removed text)" if orphans else ""), file=sys.stderr)
        else:
            verb = "would restore" if args.dry_run else "restored"
            console.print(f"thread {args.thread}: {verb} {len(result.event_ids)} event(s), "
                          f"{result.tokens_restored:,} tokens: {', '.join(result.event_ids)}")
        if not result.event_ids and orphans:
            return 1
    return 0
