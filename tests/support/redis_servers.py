"""Real redis-server processes for tests: standalone (optionally AOF, AUTH, TLS) and a 3-master cluster.

Servers run in the foreground as child processes on free loopback ports with their own temp dirs; they are
stopped by PID. Nothing here touches a system Redis service.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

__all__ = [
    "REDIS_CLI",
    "REDIS_SERVER",
    "RedisClusterProcess",
    "RedisServerProcess",
    "TlsFiles",
    "free_port",
    "make_tls_files",
    "start_cluster",
    "start_server",
]

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(*, with_bus: bool = False) -> int:
    """A free loopback port (and, for cluster nodes, ``port + 10000`` free too)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port > 55000 and with_bus:
            continue
        if not with_bus or _port_is_free(port + 10000):
            return port
    raise RuntimeError("no free loopback port found")


@dataclass
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a CA and a CA-signed server certificate with the ``openssl`` CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl not found")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=freemem-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "2", "-extfile", str(ext))
    return TlsFiles(ca=ca, cert=cert, key=key)


@dataclass
class RedisServerProcess:
    """One redis-server child process; ``restart`` reuses the same port and dir (so AOF data comes back)."""

    directory: Path
    port: int
    aof: bool = False
    password: str | None = None
    username: str | None = None
    tls: TlsFiles | None = None
    cluster: bool = False
    extra_args: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:{self.password}@"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def command(self) -> list[str]:
        assert REDIS_SERVER is not None, "redis-server is not installed"
        args = [
            REDIS_SERVER,
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--logfile", str(self.directory / "redis.log"),
            "--save", "",
        ]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert),
                     "--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca),
                     "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password is not None:
            if self.username:
                args += ["--user", "default", "off", "--user", self.username, "on", f">{self.password}", "~*", "&*",
                         "+@all"]
            else:
                args += ["--requirepass", self.password]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self.directory / "nodes.conf"),
                     "--cluster-node-timeout", "2000"]
        return [*args, *self.extra_args]

    def client(self, **kwargs: object) -> redis.Redis:
        if self.tls:
            kwargs.setdefault("ssl_ca_certs", str(self.tls.ca))
        return redis.Redis.from_url(self.url, **kwargs)  # type: ignore[arg-type]

    def start(self, timeout: float = 15.0) -> RedisServerProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the server answers PING (and has finished loading its AOF)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{log}")
            try:
                with self.client(socket_connect_timeout=0.5, socket_timeout=0.5) as probe:
                    if probe.ping():
                        return
            except redis.RedisError as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} not ready after {timeout}s: {last}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save — only what was fsynced survives."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM to our PID), killing it if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, timeout: float = 15.0) -> RedisServerProcess:
        self.stop()
        return self.start(timeout)


def start_server(
    directory: Path,
    *,
    aof: bool = False,
    password: str | None = None,
    username: str | None = None,
    tls: TlsFiles | None = None,
    extra_args: Sequence[str] = (),
) -> RedisServerProcess:
    """Start a standalone redis-server on a free loopback port (``--save ''``; AOF fsync-always on request)."""
    return RedisServerProcess(
        directory=directory, port=free_port(), aof=aof, password=password, username=username, tls=tls,
        extra_args=extra_args,
    ).start()


@dataclass
class RedisClusterProcess:
    """A Redis Cluster of masters on loopback ports."""

    nodes: list[RedisServerProcess]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every node reports ``cluster_state:ok`` and agrees on all slots being covered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for node in self.nodes:
                try:
                    with node.client(socket_timeout=1) as c:
                        info = c.execute_command("CLUSTER", "INFO")
                        text = info.decode() if isinstance(info, bytes) else str(info)
                        states.append("cluster_state:ok" in text and "cluster_slots_ok:16384" in text)
                except redis.RedisError:
                    states.append(False)
            if all(states):
                return
            time.sleep(0.1)
        raise TimeoutError("Redis Cluster did not reach cluster_state:ok")


def start_cluster(directory: Path, masters: int = 3) -> RedisClusterProcess:
    """Start ``masters`` cluster-enabled servers and join them with ``redis-cli --cluster create``."""
    if REDIS_CLI is None:
        raise RuntimeError("redis-cli is not installed")
    nodes: list[RedisServerProcess] = []
    try:
        for i in range(masters):
            node = RedisServerProcess(directory=directory / f"node{i}", port=free_port(with_bus=True), cluster=True)
            nodes.append(node.start())
        addresses = [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        cluster = RedisClusterProcess(nodes)
        cluster.wait_ok()
        return cluster
    except BaseException:
        for node in nodes:
            node.stop()
        raise
