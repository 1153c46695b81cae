"""`pip install freemem` (no extras) in a fresh virtual environment: the core and the heuristic work, and
LangGraph, LangChain, Redis and the OpenAI client are not there at all.

Slow (a venv and an install, from pip's cache when it is warm); it runs in CI like every other test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

_CHECK = r"""
import importlib.util, json, sys
import freemem
absent = {m: importlib.util.find_spec(m) is None for m in ("langgraph", "langchain", "langchain_core", "redis", "openai", "httpx")}
messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "run the tests"}]
for i in range(12):
    messages.append({"role": "assistant", "content": None,
                     "tool_calls": [{"id": f"c{i}", "type": "function",
                                     "function": {"name": "pytest", "arguments": "{}"}}]})
    messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "FAILED test_x - AssertionError\n" * 40})
result = freemem.FreeMemory(budget=1000).clean(messages)
try:
    import freemem.redis
    missing = None
except freemem.MissingExtraError as exc:
    missing = str(exc)
print(json.dumps({"absent": absent, "before": result.event.tokens_before, "after": result.event.tokens_after,
                  "redis_error": missing}))
"""


def test_pip_install_freemem_gives_the_core_without_langgraph_redis_or_openai(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "__pycache__", "build",
                                                             ".pytest_cache", ".mypy_cache", ".ruff_cache"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
                             capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]

    proc = subprocess.run([str(py), "-c", _CHECK], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(report["absent"].values()), report["absent"]
    assert report["after"] < report["before"]
    assert "pip install 'freemem[redis]'" in report["redis_error"]

    transcript = tmp_path / "t.json"
    transcript.write_text(json.dumps([{"role": "user", "content": "hi"},
                                      {"role": "assistant", "content": "line\n" * 400}]))
    out = tmp_path / "t.clean.json"
    cli = subprocess.run([str(env_dir / "bin" / "freemem"), "clean", str(transcript), "--budget", "200",
                          "-o", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert out.is_file() and json.loads(out.read_text())

    demo = subprocess.run([str(env_dir / "bin" / "freemem"), "demo"], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path)
    assert demo.returncode == 1 and "pip install 'freemem[langgraph]'" in demo.stderr, demo.stderr
    assert sys.executable  # the suite's own interpreter is untouched
