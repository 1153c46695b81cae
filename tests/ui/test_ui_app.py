"""The inspector at the ASGI level (Starlette's TestClient): views over threads a real ``create_agent`` agent
wrote, restore changing what the archive and the checkpointer hold, the token and the form token, hostile tool
output rendered as text, SQLite without an archive, and the CLI's bind rules."""

from __future__ import annotations

import html
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from starlette.testclient import TestClient

from freemem import InMemoryArchive
from freemem.cli.main import main
from freemem.cli.ui import is_loopback
from freemem.ui import ThreadSource, create_app
from tests.support.redis_servers import free_port
from tests.support.ui_agents import XSS, run_agent

THREAD = "agent/thread 1"  # a slash and a space: ids travel in query strings


@pytest.fixture(scope="module")
def built() -> tuple[InMemorySaver, InMemoryArchive, dict[str, Any]]:
    saver, archive = InMemorySaver(), InMemoryArchive()
    values = run_agent(saver, archive, THREAD)
    run_agent(saver, archive, "second", calls=8)
    return saver, archive, values


def _csrf(page: str) -> str:
    m = re.search(r'<meta name="freemem-csrf" content="([^"]+)">', page)
    assert m, "no form token on the page"
    return html.unescape(m.group(1))


def _messages(saver: Any, thread: str) -> list[Any]:
    return saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}}).checkpoint[
        "channel_values"]["messages"]


def test_picker_thread_and_event_views(built: tuple[InMemorySaver, InMemoryArchive, dict[str, Any]]) -> None:
    saver, archive, values = built
    client = TestClient(create_app(ThreadSource(saver, archive, counter="approx")))
    picker = client.get("/")
    assert picker.status_code == 200
    assert picker.text.count('class="thread-link"') == 2 and html.escape(THREAD) in picker.text

    page = client.get("/thread", params={"id": THREAD})
    assert page.status_code == 200
    text = page.text
    # The sawtooth: one point per model call, and cleaning events marked on it.
    points = re.search(r'<polyline class="sent" points="([^"]+)"', text).group(1).split()
    assert len(points) == 37  # 36 tool calls and the answer
    assert text.count('class="clean"') >= 10
    # Every archived event is listed, with its trigger, cleaner, tokens and cache column.
    events = archive.list_events(THREAD)
    assert len(events) >= 10
    for ev in events:
        assert f'data-event="{ev["id"]}"' in text
    assert "tokens before → after" in text and "cache cost" in text
    # Removed spans and folded messages highlighted in place in the original: the page counts every span the
    # archive holds, and highlights those in the messages it shows (the first page of them).
    spans = sum(e["n_spans"] for e in events)
    reported = re.search(r'id="context-count">([\d,]+) removed span', text)
    assert reported is not None and int(reported.group(1).replace(",", "")) == spans
    assert 10 <= text.count('<del class="freed') <= spans
    assert "folded away by event" in text
    # The pruned view links markers to recall.
    assert 'class="marker"' in text

    spans_event = next(e for e in events if e["n_spans"])
    ev_page = client.get("/event", params={"thread": THREAD, "id": spans_event["id"]})
    assert ev_page.status_code == 200
    full = archive.get_event(THREAD, spans_event["id"])
    first = full["rounds"][0][0]["original"]
    assert html.escape(first[:200]) in ev_page.text
    assert 'id="spans"' in ev_page.text and 'class="freed focus"' in ev_page.text
    fold_event = next(e for e in events if e["n_folds"])
    fold_page = client.get("/event", params={"thread": THREAD, "id": fold_event["id"]})
    assert "fold <b>" in fold_page.text and "folded away by event" in fold_page.text

    handle = archive.get_event(THREAD, fold_event["id"])["folds"][0]["handle"]
    recalled = client.get("/recall", params={"thread": THREAD, "ref": handle})
    (held,) = archive.find(THREAD, handle)
    assert recalled.status_code == 200 and html.escape(held[:300]) in recalled.text
    assert "holds nothing" in client.get("/recall", params={"thread": THREAD, "ref": "#deadbeef"}).text

    assert client.get("/thread", params={"id": "nope"}).status_code == 404
    assert client.get("/event", params={"thread": THREAD, "id": "nope"}).status_code == 404
    assert client.get("/thread").status_code == 404  # missing parameter: a clear page, not a traceback


def test_hostile_tool_output_is_rendered_as_text(built: tuple[InMemorySaver, InMemoryArchive, dict[str, Any]]) -> None:
    saver, archive, _ = built
    client = TestClient(create_app(ThreadSource(saver, archive, counter="approx")))
    responses = [client.get("/thread", params={"id": THREAD})]
    responses += [client.get("/event", params={"thread": THREAD, "id": e["id"]}) for e in archive.list_events(THREAD)]
    for ref in {r for e in archive.events(THREAD) for r in [f["handle"] for f in e.get("folds") or []]}:
        responses.append(client.get("/recall", params={"thread": THREAD, "ref": ref}))
    shown = 0
    for r in responses:
        assert r.status_code == 200
        assert "<script>window.__freemem_xss" not in r.text and "onerror=\"window" not in r.text
        assert "<img src=x" not in r.text and "<b onmouseover" not in r.text
        shown += r.text.count(html.escape(XSS))
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
    assert shown >= 2  # the payload is there, as text


def test_restore_one_event_then_all_changes_the_archive_and_the_thread() -> None:
    saver, archive = InMemorySaver(), InMemoryArchive()
    run_agent(saver, archive, "r")
    client = TestClient(create_app(ThreadSource(saver, archive, counter="approx")))
    page = client.get("/thread", params={"id": "r"}).text
    csrf = _csrf(page)
    pruned = _messages(saver, "r")
    original = archive.original("r", pruned)
    newest = archive.list_events("r")[-1]["id"]

    # Without the form token nothing happens.
    bad = client.post("/restore", data={"thread": "r", "event": newest}, follow_redirects=False)
    assert bad.status_code == 403 and archive.get_event("r", newest)["restored_at"] is None

    done = client.post("/restore", data={"thread": "r", "event": newest, "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert archive.get_event("r", newest)["restored_at"] is not None
    after_one = _messages(saver, "r")
    assert after_one != pruned and archive.original("r", after_one) == original
    flash = client.get(done.headers["location"]).text
    assert "restored 1 event(s)" in flash and f'data-event="{newest}"' in flash

    done = client.post("/restore", data={"thread": "r", "csrf": csrf}, follow_redirects=False)
    assert done.status_code == 303
    assert all(e["restored_at"] for e in archive.list_events("r"))
    restored = _messages(saver, "r")
    assert [m.id for m in restored] == [m.id for m in original]
    assert [m.content for m in restored] == [m.content for m in original]
    assert not any("[freemem:" in str(m.content) for m in restored if getattr(m, "name", "") != "recall")
    again = client.post("/restore", data={"thread": "r", "csrf": csrf})
    assert "nothing left to restore" in again.text
    assert "restore-button" not in again.text.split('id="events"')[1]  # no action left to offer


def test_token_is_required_when_set(built: tuple[InMemorySaver, InMemoryArchive, dict[str, Any]]) -> None:
    saver, archive, _ = built
    token = "a-long-secret-token"
    client = TestClient(create_app(ThreadSource(saver, archive, counter="approx"), token=token))
    assert client.get("/").status_code == 401
    assert client.get("/thread", params={"id": THREAD}).status_code == 401
    assert client.post("/restore", data={"thread": THREAD}).status_code == 401
    assert client.get("/", params={"token": "wrong-token"}).status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    hop = client.get("/thread", params={"id": THREAD, "token": token}, follow_redirects=False)
    assert hop.status_code == 303 and "token" not in hop.headers["location"]
    assert "httponly" in hop.headers["set-cookie"].lower() and "samesite=strict" in hop.headers["set-cookie"].lower()
    assert client.get(hop.headers["location"]).status_code == 200  # the cookie carries it from now on


def test_read_only_and_foreign_hosts(built: tuple[InMemorySaver, InMemoryArchive, dict[str, Any]]) -> None:
    saver, archive, _ = built
    client = TestClient(create_app(ThreadSource(saver, archive, counter="approx"), allow_restore=False))
    page = client.get("/thread", params={"id": THREAD}).text
    assert "restore-button" not in page and "freemem-csrf" not in page
    assert client.post("/restore", data={"thread": THREAD}).status_code == 405
    guarded = TestClient(create_app(ThreadSource(saver, archive, counter="approx"), allowed_hosts=["127.0.0.1"]),
                         base_url="http://rebound.example")
    assert guarded.get("/").status_code == 400  # DNS rebinding: a page naming another host gets nothing


def test_sqlite_checkpointer_without_an_archive(tmp_path: Path) -> None:
    db = tmp_path / "threads.sqlite"
    conn = sqlite3.connect(str(db), check_same_thread=False)
    run_agent(SqliteSaver(conn), None, "lite", calls=24)
    conn.close()
    conn = sqlite3.connect(str(db), check_same_thread=False)
    try:
        client = TestClient(create_app(ThreadSource(SqliteSaver(conn), None, counter="approx")))
        assert 'class="thread-link"' in client.get("/").text
        page = client.get("/thread", params={"id": "lite"}).text
        assert "state only" in page and 'class="sent"' in page
        assert "restore-button" not in page  # nothing archived: nothing to restore
        ev = re.search(r'class="event-link" href="/event\?thread=lite&amp;id=([0-9a-f]+)"', page).group(1)
        assert "tokens before → after" in client.get("/event", params={"thread": "lite", "id": ev}).text
        csrf = _csrf(page)
        r = client.post("/restore", data={"thread": "lite", "csrf": csrf})
        assert r.status_code == 503 and "no archive" in r.text
    finally:
        conn.close()


def test_empty_store_says_so() -> None:
    client = TestClient(create_app(ThreadSource(InMemorySaver(), InMemoryArchive(), counter="approx")))
    assert 'id="no-threads"' in client.get("/").text


def test_cli_bind_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert main(["ui", "--sqlite", str(tmp_path / "missing.sqlite")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["ui", "--redis", "http://x"]) == 1

    db = tmp_path / "t.sqlite"
    conn = sqlite3.connect(str(db), check_same_thread=False)
    run_agent(SqliteSaver(conn), None, "cli", calls=6)
    conn.close()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "freemem.cli.main", "ui", "--sqlite", str(db), "--host",
                             "0.0.0.0", "--port", str(port), "--counter", "approx"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"\?token=(\S+)", line)
        assert m, line  # beyond loopback, a token is generated and printed
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert httpx.get(base + "/", timeout=10).status_code == 401
        ok = httpx.get(base + "/", headers={"Authorization": f"Bearer {m.group(1)}"}, timeout=10)
        assert ok.status_code == 200 and "cli" in ok.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
