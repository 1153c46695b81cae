"""``freemem ui --redis URL | --sqlite PATH``: inspect threads in the browser (see :mod:`freemem.ui`).

Serves the inspector under uvicorn on 127.0.0.1:8765 by default. A bind to anything but loopback needs a token:
``--token``, or one generated and printed; the printed URL carries it once (a cookie keeps it). ``--read-only``
drops the restore action. Needs ``pip install 'freemem[ui]'``.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from freemem.cli.where import empty_hint, redis_prefixes, sqlite_threads
from freemem.core.errors import ConfigError

__all__ = ["add_arguments", "is_loopback", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--redis", metavar="URL", help="redis:// or rediss:// URL of freemem's RedisSaver and archive")
    where.add_argument("--sqlite", metavar="PATH", type=Path,
                       help="a LangGraph SqliteSaver file; freemem's SqliteArchive in the same file is used when "
                            "present (else the ledger in state only: no removed text)")
    p.add_argument("--key-prefix", default="freemem", help="Redis key prefix of the saver and archive (default freemem)")
    p.add_argument("--cluster", action="store_true", help="the Redis URL names a node of a Redis Cluster")
    p.add_argument("--ca-cert", help="CA bundle for rediss:// URLs")
    p.add_argument("--channel", default="messages", help="state channel holding the messages (default messages)")
    p.add_argument("--ns", default="", help="checkpoint namespace (default: the root graph)")
    p.add_argument("--counter", default="auto", help="token counter for the chart (default auto: the memory's default)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a token)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--token", help="require this token on every request (generated when binding beyond loopback)")
    p.add_argument("--read-only", action="store_true", help="offer no restore action")


def is_loopback(host: str) -> bool:
    """Whether ``host`` binds loopback only (``localhost``, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _open(args: argparse.Namespace) -> tuple[Any, Any, str, list[Any], Callable[[], str]]:
    """(saver, archive, description, closers, where else to look when no thread is found)."""
    if args.redis is not None:
        if not args.redis.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"--redis must be a redis://, rediss:// or unix:// URL, got {args.redis!r}")
        from freemem.redis import RedisArchive, RedisSaver

        kwargs: dict[str, Any] = {"ssl_ca_certs": args.ca_cert} if args.ca_cert else {}
        saver = RedisSaver.from_url(args.redis, key_prefix=args.key_prefix, cluster=args.cluster, **kwargs)
        archive = RedisArchive.from_url(args.redis, key_prefix=args.key_prefix, cluster=args.cluster, **kwargs)
        where = args.redis.split("@")[-1] if "@" in args.redis else args.redis  # no credentials on the page
        if "@" in args.redis:
            where = args.redis.split("://", 1)[0] + "://" + where
        def hint() -> str:
            return empty_hint(prefix=args.key_prefix, prefixes=redis_prefixes(saver.client))

        return saver, archive, f"{where} (prefix {args.key_prefix})", [saver.close, archive.close], hint
    path: Path = args.sqlite
    if not path.is_file():
        raise ConfigError(f"--sqlite {path}: no such file (give the checkpoint database your agent wrote)")
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(path), check_same_thread=False)
    hint = lambda: empty_hint(threads=sqlite_threads(path))  # noqa: E731
    if not _has_archive(conn):
        return SqliteSaver(conn), None, f"sqlite {path} (no archive)", [conn.close], hint
    from freemem.archives import SqliteArchive

    archive = SqliteArchive(path)  # freemem's archive in the same file (`freemem demo` writes one)
    return SqliteSaver(conn), archive, f"sqlite {path}", [conn.close, archive.close], hint


def _has_archive(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'freemem_archive'").fetchone()
    return row is not None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from freemem.ui.app import create_app
    except ImportError as exc:
        raise ConfigError(f"freemem ui needs the web extra: pip install 'freemem[ui]' ({exc})") from None
    from freemem.ui.source import ThreadSource

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    args.host = args.host.strip().strip("[]")  # "[::1]" and "::1" alike
    token = args.token
    loopback = is_loopback(args.host)
    if token is not None and len(token) < 8:
        raise ConfigError("--token must be at least 8 characters")
    if not loopback and token is None:
        token = secrets.token_urlsafe(24)
    saver, archive, where, closers, hint = _open(args)
    source = ThreadSource(saver, archive, channel=args.channel, checkpoint_ns=args.ns, counter=args.counter,
                          describe=where, hint=hint)
    hosts = [args.host, "localhost", "127.0.0.1", "::1"] if loopback else None
    app = create_app(source, token=token, allow_restore=not args.read_only, allowed_hosts=hosts,
                     on_shutdown=closers)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    # Bind here, so the URL printed names the real port (--port 0) and a busy port is a clear error.
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host.strip("[]"), args.port))
    except OSError as exc:
        sock.close()
        for close in closers:
            close()
        raise ConfigError(f"cannot bind {args.host}:{args.port}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    mode = "read-only" if args.read_only else "restore enabled (POST)"
    print(f"freemem ui: {url}  ({where}; {mode}; Ctrl-C stops)", flush=True)
    if not loopback:
        print(f"freemem ui: bound to {args.host}, beyond loopback: every request needs the token", flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":  # pragma: no cover
    from freemem.cli.main import main

    sys.exit(main(["ui", *sys.argv[1:]]))
