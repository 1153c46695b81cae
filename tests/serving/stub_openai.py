"""A scriptable OpenAI-compatible chat server on loopback, for transport tests (retries, failover, breaker)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["StubReply", "StubServer", "start_stub"]


@dataclass
class StubReply:
    """What the stub answers to one request."""

    content: str = '{"commands": []}'
    status: int = 200
    delay_s: float = 0.0
    body: Any = None  # a raw JSON body replacing the normal completion


@dataclass
class StubServer:
    """A tiny OpenAI-compatible chat server on loopback whose replies a test scripts in advance."""

    port: int
    replies: list[StubReply] = field(default_factory=list)
    default: StubReply = field(default_factory=StubReply)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    httpd: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def next_reply(self) -> StubReply:
        with self.lock:
            return self.replies.pop(0) if self.replies else self.default

    def close(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(5)


def _handler(stub: StubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            with stub.lock:
                stub.requests.append({"path": self.path, "json": payload})
            reply = stub.next_reply()
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.body is not None:
                body = reply.body
            elif reply.status != 200:
                body = {"error": {"message": f"stub error {reply.status}", "type": "stub"}}
            else:
                body = {
                    "id": "stub-1", "object": "chat.completion", "created": 0, "model": payload.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply.content}}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                }
            data = json.dumps(body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                pass

    return Handler




def start_stub() -> StubServer:
    """Start a stub on a free loopback port (stop it with :meth:`StubServer.close`)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    stub = StubServer(port=int(httpd.server_address[1]))
    httpd.RequestHandlerClass = _handler(stub)
    httpd.daemon_threads = True
    stub.httpd = httpd
    stub.thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    stub.thread.start()
    return stub
