"""The inspector as an ASGI app (Starlette): server-rendered pages over a :class:`~freemem.ui.source.ThreadSource`.

Routes (thread and event ids travel in the query string, so any id works, slashes included)::

    GET  /                          the thread picker
    GET  /thread?id=T[&epage=N][&mpage=M][&context=original|pruned]   the sawtooth, one page of the cleaning
                                    events (epage), one page of the context, original / pruned (mpage); a
                                    long thread's original is rebuilt only with context=original
    GET  /chart?id=T[&epage=N]       the sawtooth alone (a long thread's page fetches it once shown)
    GET  /event?thread=T&id=E       one event: summary, cache cost, removed spans, folds, in place
    GET  /recall?thread=T&ref=R     the archived text a marker or fold handle names
    POST /restore  thread=T [event=E] csrf=...   put text back (the only write), then redirect to the thread
    GET  /healthz                   "ok" (no token needed: a readiness probe that reveals nothing)

Safety. Every GET only reads. ``POST /restore`` needs the page's CSRF token (a random value per app, embedded
in the pages it serves), so another site open in the same browser cannot make it restore. ``token``: every
request but ``/healthz`` needs it (``Authorization: Bearer``, or ``?token=`` once, which sets an HttpOnly,
SameSite=Strict cookie and redirects to the URL without it). ``allowed_hosts``: requests naming another Host
are refused (against DNS rebinding on a loopback bind); an IPv6 literal's brackets and the port are taken off
first (``[::1]:8765`` is ``::1``). Pages carry a Content-Security-Policy with no inline
script and no third-party origin: the page loads nothing from the network but its own two static files.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from freemem import ArchiveMismatch, FreememError, StoreError
from freemem.ui import render
from freemem.ui.source import ThreadSource

__all__ = ["TOKEN_COOKIE", "create_app", "host_of"]

TOKEN_COOKIE = "freemem_ui_token"
STATIC = Path(__file__).parent / "static"
MAX_FORM_BYTES = 64 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


class _Guard:
    """ASGI middleware: the token check (when one is set) and the security headers on every response."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _authorised(self, request: Request) -> bool:
        assert self.token is not None
        auth = request.headers.get("authorization", "")
        candidates = [request.cookies.get(TOKEN_COOKIE, "")]
        if auth.lower().startswith("bearer "):
            candidates.append(auth[7:].strip())
        return any(c and hmac.compare_digest(c.encode(), self.token.encode()) for c in candidates)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {k.lower() for k, _ in headers}
                for k, v in SECURITY_HEADERS.items():
                    if k.encode() not in present:
                        headers.append((k.encode(), v.encode()))
                message = {**message, "headers": headers}
            await send(message)

        request = Request(scope)
        if self.token is not None and scope["path"] != "/healthz":
            given = request.query_params.get("token")
            if given is not None and hmac.compare_digest(given.encode(), self.token.encode()):
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = scope["path"] + ("?" + urlencode(rest) if rest else "")
                response: Response = RedirectResponse(target, status_code=303)
                response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict", path="/")
                await response(scope, receive, send_with_headers)
                return
            if not self._authorised(request):
                response = HTMLResponse(render.error_page(401, "This inspector needs its token: open the URL it "
                                                               "printed at start (…/?token=…).", where="freemem ui"),
                                        status_code=401, headers={"www-authenticate": "Bearer"})
                await response(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def host_of(header: str) -> str:
    """The host of a ``Host`` header, without its port: ``[::1]:8765`` -> ``::1``, ``localhost:80`` ->
    ``localhost`` (an IPv6 literal is bracketed in a Host header, so splitting at the first colon, as
    Starlette's ``TrustedHostMiddleware`` does, leaves ``[`` and refuses every IPv6 request)."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else header
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header  # a bare name, or an unbracketed IPv6 address (not valid in a Host header, compared whole)


class _HostCheck:
    """ASGI middleware: refuse (400) a request whose Host header names none of ``allowed_hosts`` (against DNS
    rebinding on a loopback bind); IPv6 literals are compared without brackets."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = {h.strip().strip("[]").lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            host = host_of(headers.get(b"host", b"").decode("latin-1"))
            if "*" not in self.allowed and host not in self.allowed:
                await PlainTextResponse("Invalid host header", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(source: ThreadSource, *, token: str | None = None, allow_restore: bool = True,
               allowed_hosts: Sequence[str] | None = None,
               on_shutdown: Sequence[Callable[[], Any]] = ()) -> Starlette:
    """The inspector for ``source``.

    Args:
        source: what to show (a checkpointer and an archive).
        token: when set, every request needs it (see the module docstring); the CLI sets one for any bind
            that is not loopback.
        allow_restore: offer (and accept) ``POST /restore``; ``False`` makes the inspector read-only.
        allowed_hosts: Host header values accepted (``None``: any). The CLI passes the bound address and, on
            loopback, ``localhost``.
        on_shutdown: callables run when the server stops (closing clients the CLI opened).
    """
    csrf = secrets.token_urlsafe(24) if allow_restore else None
    where = source.describe

    def page(html: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(html, status_code=status)

    async def guarded(fn: Callable[[], Awaitable[Response]]) -> Response:
        try:
            return await fn()
        except KeyError as exc:
            return page(render.error_page(404, str(exc.args[0] if exc.args else exc), where=where), 404)
        except ArchiveMismatch as exc:
            return page(render.error_page(409, str(exc), where=where), 409)
        except StoreError as exc:
            return page(render.error_page(503, str(exc), where=where), 503)
        except FreememError as exc:
            return page(render.error_page(500, str(exc), where=where), 500)

    def need(request: Request, *names: str) -> list[str]:
        values = [request.query_params.get(n) for n in names]
        missing = [n for n, v in zip(names, values) if not v]
        if missing:
            raise KeyError(f"missing query parameter {missing[0]!r}")
        return [str(v) for v in values]

    async def threads(request: Request) -> Response:
        async def run() -> Response:
            rows = await run_in_threadpool(source.threads)
            hint = "" if rows else await run_in_threadpool(source.empty_hint)
            return page(render.threads_page(rows, where=where, hint=hint))
        return await guarded(run)

    def page_number(request: Request, name: str) -> int:
        raw = request.query_params.get(name) or "1"
        try:
            return max(1, int(raw))
        except ValueError:
            raise KeyError(f"query parameter {name!r} must be a page number, got {raw!r}") from None

    def context_choice(request: Request) -> str | None:
        raw = request.query_params.get("context") or None
        if raw not in (None, "original", "pruned"):
            raise KeyError(f"query parameter 'context' must be 'original' or 'pruned', got {raw!r}")
        return raw

    async def thread(request: Request) -> Response:
        async def run() -> Response:
            (tid,) = need(request, "id")
            ctx = context_choice(request)
            data = await run_in_threadpool(lambda: source.thread(
                tid, events_page=page_number(request, "epage"), messages_page=page_number(request, "mpage"),
                original=None if ctx is None else ctx == "original"))
            return page(render.thread_page(data, where=where, csrf=csrf, flash=request.query_params.get("flash"),
                                          has_archive=source.archive is not None, context=ctx))
        return await guarded(run)

    async def chart(request: Request) -> Response:
        async def run() -> Response:
            (tid,) = need(request, "id")
            data = await run_in_threadpool(lambda: source.thread(
                tid, events_page=page_number(request, "epage"), original=False, chart=True))
            return page(render.chart_page(data, where=where))
        return await guarded(run)

    def _event_view(tid: str, eid: str) -> tuple[dict[str, Any], list[Any], bool]:
        event = source.event(tid, eid)
        touched, restorable = source.event_context(tid, eid)
        return event, touched, restorable

    async def event(request: Request) -> Response:
        async def run() -> Response:
            tid, eid = need(request, "thread", "id")
            ev, touched, restorable = await run_in_threadpool(_event_view, tid, eid)
            return page(render.event_page(tid, ev, touched, where=where, csrf=csrf, restorable=restorable))
        return await guarded(run)

    async def recall(request: Request) -> Response:
        async def run() -> Response:
            tid, ref = need(request, "thread", "ref")
            texts = await run_in_threadpool(source.recall, tid, ref)
            return page(render.recall_page(tid, ref, texts, where=where))
        return await guarded(run)

    async def restore(request: Request) -> Response:
        if csrf is None:
            return page(render.error_page(405, "this inspector is read-only (started with --read-only)",
                                          where=where), 405)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return page(render.error_page(413, "form too large", where=where), 413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if not hmac.compare_digest(form.get("csrf", "").encode(), csrf.encode()):
            return page(render.error_page(403, "stale or missing form token: reload the page and try again",
                                          where=where), 403)
        tid = form.get("thread")
        if not tid:
            return page(render.error_page(400, "missing form field 'thread'", where=where), 400)

        async def run() -> Response:
            outcome = await run_in_threadpool(source.restore, tid, form.get("event") or None)
            flash = (f"restored {len(outcome.event_ids)} event(s), {outcome.tokens_restored:,} tokens: "
                     + ", ".join(outcome.event_ids[:20]) + (" …" if len(outcome.event_ids) > 20 else "")
                     ) if outcome.event_ids else "nothing left to restore"
            if outcome.skipped:
                flash += (f"; skipped {len(outcome.skipped)} event(s) not on this checkpoint's branch or not "
                          "matching its messages (listed on the page)")
            return RedirectResponse("/thread?" + urlencode({"id": tid, "flash": flash}), status_code=303)
        return await guarded(run)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", threads),
        Route("/thread", thread),
        Route("/chart", chart),
        Route("/event", event),
        Route("/recall", recall),
        Route("/restore", restore, methods=["POST"]),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(_Guard, token=token)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(_HostCheck, allowed_hosts=list(allowed_hosts)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for close in on_shutdown:
                close()

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.source = source
    app.state.csrf = csrf
    return app

