"""Running a planned server: write its config, start the process, wait until it is healthy, keep it in the
foreground (or leave it detached), and stop the process we started (by its PID) on failure or interrupt."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from freemem.core.errors import FreememError, ServeError
from freemem.io import write_text_atomic
from freemem.serving.specs import LaunchPlan

__all__ = ["launch", "stop", "wait_for_health"]


def _root_url(base_url: str) -> str:
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def wait_for_health(
    base_url: str,
    paths: Sequence[str] = ("/v1/models",),
    *,
    timeout: float = 600.0,
    process: subprocess.Popen[Any] | None = None,
    interval: float = 0.5,
) -> None:
    """Poll until every path answers HTTP 200; raise :class:`ServeError` on timeout or if ``process`` exits."""
    root = _root_url(base_url)
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if process is not None and process.poll() is not None:
            raise ServeError(f"the server exited with code {process.returncode} before it was ready ({last})")
        pending = []
        for path in paths:
            try:
                with urllib.request.urlopen(root + path, timeout=max(interval, 2.0)) as resp:
                    if resp.status != 200:
                        pending.append(path)
                        last = f"{path}: HTTP {resp.status}"
            except urllib.error.HTTPError as exc:
                pending.append(path)
                last = f"{path}: HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                pending.append(path)
                last = f"{path}: {exc}"
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise ServeError(f"the server at {root} was not ready after {timeout:.0f}s ({last})")
        time.sleep(interval)


def launch(plan: LaunchPlan, *, out: TextIO, startup_timeout: float, detach: bool = False) -> int:
    """Start ``plan``'s server and wait until it is healthy; then return at once (``detach``: 0, the server
    left running) or wait for it (its exit code). Raises :class:`ServeError` when it cannot be started or
    does not become healthy (the server we started is stopped first); 130 on an interrupt."""
    if plan.config is not None and plan.config_path:
        try:
            Path(plan.config_path).parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(plan.config_path, json.dumps(plan.config, indent=2))
        except (OSError, FreememError) as exc:
            raise ServeError(f"cannot write the server config {plan.config_path}: {exc}") from exc
    print(f"freemem: starting {plan.shell()}", file=out)
    out.flush()
    try:
        process = subprocess.Popen(plan.argv, start_new_session=detach)
    except OSError as exc:
        raise ServeError(f"cannot start {plan.argv[0]}: {exc}") from exc
    try:
        wait_for_health(plan.base_url, plan.health_paths, timeout=startup_timeout, process=process)
    except ServeError:
        stop(process)
        raise
    except KeyboardInterrupt:
        stop(process)
        return 130
    _print_ready(plan, out, process.pid)
    if detach:
        return 0
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop(process)
        return 130


def _print_ready(plan: LaunchPlan, out: TextIO, pid: int) -> None:
    print(f"freemem: server ready (pid {pid}) at {plan.base_url}", file=out)
    print(f"freemem: model={plan.model!r} adapter={plan.adapter!r} adapter_mode={plan.adapter_mode!r}", file=out)
    print(f"freemem: {plan.cleaner_snippet()}", file=out)
    out.flush()


def stop(process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """Terminate the server we started (by its PID), killing it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
