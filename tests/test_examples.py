"""The examples run against an OpenAI-compatible HTTP endpoint (a loopback stub that scripts the model's
replies, non-streaming and SSE), and explain themselves when no endpoint is configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_openai")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


class _Stub:
    """Replies: a list of dicts {"content": str} or {"tool_calls": [(name, args)]}; records requests."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.requests.append(body)
            i = len(self.requests) - 1
            return self.replies[i] if i < len(self.replies) else {"content": f"(reply {i})"}


def _message(reply: dict[str, Any], n: int) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": reply.get("content", "")}
    if reply.get("tool_calls"):
        msg["tool_calls"] = [{"id": f"call_{n}_{k}", "type": "function",
                              "function": {"name": name, "arguments": json.dumps(args)}}
                             for k, (name, args) in enumerate(reply["tool_calls"])]
    return msg


def _handler(stub: _Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply = stub.next(body)
            msg = _message(reply, len(stub.requests))
            finish = "tool_calls" if reply.get("tool_calls") else "stop"
            usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                delta: dict[str, Any] = {"role": "assistant", "content": msg["content"]}
                if "tool_calls" in msg:
                    delta["tool_calls"] = [{**c, "index": k} for k, c in enumerate(msg["tool_calls"])]
                for chunk in ({"delta": delta, "finish_reason": None}, {"delta": {}, "finish_reason": finish}):
                    data = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                            "choices": [{"index": 0, **chunk}]}
                    self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                return
            data = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "message": msg, "finish_reason": finish}], "usage": usage}
            raw = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return Handler


@pytest.fixture
def endpoint() -> Iterator[Any]:
    servers: list[ThreadingHTTPServer] = []

    def start(replies: list[dict[str, Any]]) -> tuple[str, _Stub]:
        stub = _Stub(replies)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1", stub

    yield start
    for s in servers:
        s.shutdown()


def _run(script: str, *argv: str, stdin: str = "", env_extra: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "FREEMEM_MODEL", "OPENAI_MODEL")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(EXAMPLES / script), *argv], input=stdin, capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)


@pytest.mark.parametrize("script", ["tool_agent.py", "chat.py"])
def test_without_an_endpoint_the_examples_explain(script: str) -> None:
    out = _run(script)
    assert out.returncode == 2 and "No model endpoint configured" in out.stderr and "Traceback" not in out.stderr


def test_tool_agent_runs_tools_and_cleans(endpoint: Any, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    for i in range(12):
        (project / f"mod_{i}.py").write_text("\n".join(f"def f_{i}_{k}(x):\n    return x * {k}  # step {k}"
                                                        for k in range(120)))
    replies = [{"tool_calls": [("list_files", {"path": "."})]}]
    replies += [{"content": f"Reading mod_{i}.", "tool_calls": [("read_file", {"path": f"mod_{i}.py"})]}
                for i in range(12)]
    replies += [{"tool_calls": [("search", {"pattern": r"f_3_1\d\("})]}, {"content": "Twelve modules of small functions."}]
    url, stub = endpoint(replies)
    out = _run("tool_agent.py", "--base-url", url, "--model", "stub", "--root", str(project), "--budget", "4000",
               "--db", str(tmp_path / "c.sqlite"), "what is here?")
    assert out.returncode == 0, out.stderr
    assert "Twelve modules of small functions." in out.stdout
    assert "cleaning rounds" in out.stderr
    assert len(stub.requests) == 15
    # the tool results really reached the model, and later requests were pruned under the budget
    first_read = json.dumps(stub.requests[2]["messages"])
    assert "def f_0_7(x)" in first_read
    last = stub.requests[-1]["messages"]
    assert "[freemem:" in json.dumps(last)
    tool_ids = {m["tool_call_id"] for m in last if m["role"] == "tool"}
    call_ids = {c["id"] for m in last if m["role"] == "assistant" for c in m.get("tool_calls") or []}
    assert tool_ids == call_ids  # every request stays pairing-valid


def test_chat_cleans_between_turns(endpoint: Any, tmp_path: Path) -> None:
    log = "\n".join(f"2026-11-23T10:{m % 60:02d}:00Z INFO worker-{m % 7} processed batch {m * 7919 % 10007}"
                    for m in range(60))
    replies = [{"content": f"Noted part {i}: {len(log)} characters of log."} for i in range(6)]
    url, stub = endpoint(replies)
    stdin = "".join(f"Here is log part {i}: {log.replace(chr(10), ' | ')}\n" for i in range(6))
    out = _run("chat.py", "--base-url", url, "--model", "stub", "--budget", "4000", "--db",
               str(tmp_path / "chat.sqlite"), stdin=stdin + "\n")
    assert out.returncode == 0, out.stderr
    assert "Noted part 5" in out.stdout and "cleaning rounds so far" in out.stderr
    assert len(stub.requests) == 6
    assert "[freemem:" in json.dumps(stub.requests[-1]["messages"])


def _readme_block() -> str:
    """The README's "Use it" code block."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```python\n", readme.index("## Use it")) + len("```python\n")
    return readme[start:readme.index("```", start)]


def test_the_readme_example_is_the_quickstart_file() -> None:
    source = (EXAMPLES / "quickstart.py").read_text()
    body = source[source.index("# --- README: use it ---\n") + len("# --- README: use it ---\n"):
                  source.index("# --- end ---")]
    assert _readme_block() == body


def test_the_readme_example_runs(endpoint: Any, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# demo\n\n" + "The service retries the upload three times.\n" * 400)
    replies = [{"tool_calls": [("read_file", {"path": "README.md"})]},
               {"content": "It says the service retries the upload three times."}]
    url, stub = endpoint(replies)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "FREEMEM_MODEL", "OPENAI_MODEL")}
    env.update(OPENAI_BASE_URL=url, FREEMEM_MODEL="stub")
    out = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py"), "What is in README.md?"],
                         capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "retries the upload three times" in out.stdout
    assert len(stub.requests) == 2
    tools = {t["function"]["name"] for t in stub.requests[0].get("tools", [])}
    assert tools == {"read_file", "recall"}  # the recall tool is offered beside the agent's own
    assert "The service retries the upload" in json.dumps(stub.requests[1]["messages"])  # the tool output arrived
    assert (tmp_path / "threads.sqlite").exists()
