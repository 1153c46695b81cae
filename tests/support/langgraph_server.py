"""A real ``langgraph dev`` server for tests: the in-memory LangGraph API server on a free loopback port.

The server runs from a copy of ``integrations/langgraph-server`` (the in-memory runtime writes its own files
into the working directory, and relative paths in ``langgraph.json`` are resolved against it) in its own
process group, so :meth:`LangGraphServer.stop` ends it and anything it spawned, by that group's id.

No network but loopback: the environment turns off the CLI's analytics, the version check and LangSmith
tracing, and points every HTTP(S) proxy variable at :class:`ProxyTrap`, a loopback listener that records and
refuses whatever connects — so a request that still tried to leave the machine fails at once (not after a
DNS or connect timeout) and the test can assert that none did.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.redis_servers import free_port

__all__ = ["INTEGRATION_DIR", "LangGraphServer", "ProxyTrap", "offline_env", "start_langgraph_server"]

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION_DIR = ROOT / "integrations" / "langgraph-server"

#: What the dev server and its CLI read to stay off the network (langgraph-cli 0.4 / langgraph-api 0.16):
#: ``LANGGRAPH_CLI_NO_ANALYTICS=1`` (the CLI posts each command to an analytics endpoint otherwise),
#: ``LANGGRAPH_NO_VERSION_CHECK`` (the server asks PyPI for the newest langgraph-api at start otherwise),
#: ``LANGSMITH_TRACING``/``LANGCHAIN_TRACING_V2`` (runs would be traced to LangSmith with a key set). With no
#: ``LANGGRAPH_CLOUD_LICENSE_KEY`` / ``LANGSMITH_CONTROL_PLANE_API_KEY`` the metadata beacon does not run, and
#: ``--no-browser`` keeps it from looking up a LangSmith organisation for the Studio URL.
OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
}
#: Credentials that would switch phoning home on; removed from the server's environment.
_DROPPED = ("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "LANGGRAPH_API_KEY", "LANGGRAPH_CLOUD_LICENSE_KEY",
            "LANGSMITH_CONTROL_PLANE_API_KEY", "LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT")


class ProxyTrap:
    """A loopback TCP listener used as every HTTP(S) proxy: it records each request line and closes."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="proxy-trap", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    first = conn.recv(1024).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    first = "<no request line>"
                self.requests.append(first or "<empty>")
                try:
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


def offline_env(base: dict[str, str], trap: ProxyTrap) -> dict[str, str]:
    """``base`` with telemetry off, credentials dropped and every proxy variable pointing at ``trap``."""
    env = {k: v for k, v in base.items() if k not in _DROPPED}
    env.update(OFFLINE_ENV)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = trap.url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    return env


@dataclass
class LangGraphServer:
    """One ``langgraph dev`` process group serving ``directory``; ``url`` is its API. :meth:`restart` reuses
    the port, the directory (with the runtime's own files) and the environment."""

    directory: Path
    port: int
    log: Path
    command: list[str]
    env: dict[str, str] = field(repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float) -> LangGraphServer:
        """Start the server (appending to the log) and wait until it answers; on failure it is stopped."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.directory, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, timeout: float) -> LangGraphServer:
        """Stop, then start again on the same port in the same directory."""
        self.stop()
        return self.start(timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def wait_ready(self, timeout: float) -> None:
        """Wait until ``GET /ok`` answers 200; raise with the server's log if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        last: Exception | str | None = None
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"langgraph dev exited with {self.proc.returncode} before it was ready:\n"
                                       f"{self.log_tail()}")
                try:
                    response = client.get(f"{self.url}/ok")
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = exc
                time.sleep(0.5)
        raise TimeoutError(f"langgraph dev on port {self.port} not ready after {timeout:.0f}s ({last}):\n"
                           f"{self.log_tail()}")

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it has not exited after ``grace`` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def start_langgraph_server(workdir: Path, env: dict[str, str], *, timeout: float = 240.0) -> LangGraphServer:
    """Copy the integration into ``workdir`` and start ``langgraph dev`` there on a free loopback port.

    ``env`` is the server's whole environment (build it with :func:`offline_env`). The server runs without
    reload (no file-watching child) and without a browser.
    """
    cli = Path(sys.executable).with_name("langgraph")
    if not cli.exists():
        found = shutil.which("langgraph")
        if found is None:
            raise RuntimeError("the `langgraph` CLI is not installed (pip install -e '.[server]')")
        cli = Path(found)
    directory = workdir / "langgraph-server"
    shutil.copytree(INTEGRATION_DIR, directory, ignore=shutil.ignore_patterns(".langgraph_api", "__pycache__"))
    port = free_port()
    command = [str(cli), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1", "--port", str(port),
               "--server-log-level", "INFO"]
    server = LangGraphServer(directory=directory, port=port, log=workdir / "langgraph-dev.log", command=command,
                             env=env)
    return server.start(timeout)
