"""Start and stop a real llama-cpp-python server (``python -m llama_cpp.server``) for tests.

It serves two aliases over one GGUF file: the base model (``tiny``) and the base plus a LoRA adapter
(``tiny:free`` — SGLang's ``<base>:<adapter>`` naming), using the same config builder as ``freemem serve
--backend llamacpp``; with ``adapter=None``, only the base model (a real instruction model, for the opt-in
tests). The process is started in its own session and stopped by its PID only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freemem.serving.commands import llamacpp_command, llamacpp_config
from freemem.serving.process import wait_for_health
from freemem.serving.specs import AdapterSpec, ServeSpec

__all__ = ["LlamaServer", "free_port", "llama_cpp_available", "start_llama_server"]


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python with its server extra can be imported by this interpreter."""
    try:
        import llama_cpp.server.app  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken build of the optional server counts as absent
        return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    """A running ``llama_cpp.server`` process."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    base_alias: str
    adapter_alias: str | None
    config_path: Path
    log_path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL (ends in ``/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        """The server's combined stdout/stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the server by PID, SIGKILL it if it does not exit in time."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the server by PID (a crash, as the client sees it) and reap it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_llama_server(
    model: str | Path,
    adapter: str | Path | None,
    *,
    workdir: str | Path,
    base_alias: str = "tiny",
    adapter_name: str = "free",
    n_ctx: int = 4096,
    n_threads: int = 2,
    port: int | None = None,
    host: str = "127.0.0.1",
    python: str = sys.executable,
    verbose: bool = False,
    startup_timeout: float = 120.0,
    extra_model_settings: dict[str, Any] | None = None,
) -> LlamaServer:
    """Write the server config into ``workdir``, start the server and wait until ``/v1/models`` answers.

    ``verbose`` makes llama.cpp print its per-request timings (prompt eval / eval) to the log.
    Raises ``RuntimeError`` with the server log when it does not come up.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    spec = ServeSpec(
        backend="llamacpp",
        model=str(model),
        adapters=(AdapterSpec(adapter_name, str(adapter)),) if adapter is not None else (),
        host=host,
        port=port or free_port(host),
        python=python,
        context_length=n_ctx,
        served_model_name=base_alias,
        n_threads=n_threads,
    )
    config = llamacpp_config(spec, verbose=verbose)
    for m in config["models"]:
        m.setdefault("seed", 0)
        m.update(extra_model_settings or {})
    config_path = work / f"llama-server-{spec.resolved_port}.json"
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    log_path = work / f"llama-server-{spec.resolved_port}.log"
    argv = llamacpp_command(spec, str(config_path))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = LlamaServer(process, host, spec.resolved_port, base_alias,
                         f"{base_alias}:{adapter_name}" if adapter is not None else None, config_path, log_path, config)
    try:
        wait_for_health(server.base_url, ("/v1/models",), timeout=startup_timeout, process=process, interval=0.2)
    except Exception as exc:
        server.stop()
        raise RuntimeError(f"llama_cpp.server did not start: {exc}\n--- log ---\n{server.log()[-4000:]}") from exc
    return server


if __name__ == "__main__":  # pragma: no cover - manual use: python tests/support/llama_server.py MODEL ADAPTER
    srv = start_llama_server(sys.argv[1], sys.argv[2], workdir=Path.cwd(), verbose=True)
    print(srv.base_url, srv.base_alias, srv.adapter_alias, "pid", srv.pid, flush=True)
    try:
        while srv.alive():
            time.sleep(1)
    except KeyboardInterrupt:
        srv.stop()
