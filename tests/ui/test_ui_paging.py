"""The inspector at scale (issue 24): a 10,000-event thread's page is served a page at a time -- events and
context both -- and stays under 300 KB; its first view reads no archived event in full (the original, which
needs them all, is rebuilt on request); ``--host ::1`` answers its own URL; an empty listing says where it
looked and where else threads are; "no archive configured" is not "text expired". Over the same thread the
``freemem bench inspector`` benchmark (``freemem_bench.inspector``) builds (its timings are the benchmark's, not asserted here)."""

from __future__ import annotations

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

from freemem import FreeMemory, InMemoryArchive
from freemem.cli.main import main
from freemem.redis import RedisArchive, RedisSaver
from freemem.ui import ThreadSource, create_app
from freemem.ui.app import host_of
from freemem_bench.inspector import build_thread
from tests.support.redis_servers import RedisServerProcess, free_port, start_server
from tests.support.ui_agents import run_agent

MAX_PAGE_BYTES = 300_000


class CountingArchive(InMemoryArchive):
    """An in-memory archive that counts its reads of full events (what a long thread's first view must avoid)."""

    def __init__(self) -> None:
        super().__init__()
        self.full_reads = 0

    def events(self, thread_id: str, *, include_restored: bool = False) -> list[dict[str, Any]]:
        self.full_reads += 1
        return super().events(thread_id, include_restored=include_restored)


class Unpaged:
    """An archive that can neither count nor page its events (any third-party archive): the inspector reads
    every summary instead, and shows the same pages."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "count_events":
            raise AttributeError(name)
        return getattr(self.inner, name)


class CountsOnly(Unpaged):
    """An archive that counts its events but lists them without ``offset`` (an older third-party archive):
    the inspector must not pass it ``offset=``, and reads every summary instead."""

    def count_events(self, thread_id: str) -> tuple[int, int]:
        return self.inner.count_events(thread_id)

    def list_events(self, thread_id: str, *, newest_first: bool = False,
                    limit: int | None = None) -> list[dict[str, Any]]:
        return self.inner.list_events(thread_id, newest_first=newest_first, limit=limit)


@pytest.fixture(scope="module")
def long_thread() -> tuple[TestClient, dict[str, Any]]:
    saver, archive = InMemorySaver(), CountingArchive()
    built = build_thread(saver, archive, "long", events=10_000, tool_messages=500, history=10)
    built["saver"], built["archive"] = saver, archive
    return TestClient(create_app(ThreadSource(saver, archive, counter="approx"))), built


def _ids(page: str, pattern: str) -> list[str]:
    return re.findall(pattern, page)


def _pane(page: str, name: str) -> str:
    other = "pane-pruned" if name == "pane-original" else "</section>"
    return page.split(f'id="{name}"')[1].split(other)[0]


def test_a_10000_event_thread_first_page_reads_no_event_in_full(
        long_thread: tuple[TestClient, dict[str, Any]]) -> None:
    client, built = long_thread
    archive = built["archive"]
    reads = archive.full_reads
    first = client.get("/thread", params={"id": "long"})
    assert first.status_code == 200 and len(first.content) < MAX_PAGE_BYTES
    assert archive.full_reads == reads  # summaries only: a page of them, counted by the archive
    page = first.text
    assert _ids(page, r'class="event-row" data-event="(ev\d+)"') == [f"ev{k:06d}" for k in range(50)]
    assert 'id="epage-pager" data-page="1" data-pages="200"' in page and "10,000 events" in page
    assert 'id="mpage-pager" data-page="1" data-pages="21"' in page
    assert "restore all 10000 events" in page
    # The context as the model sees it is shown (its tab active); the original is a link away.
    assert 'class="tab active" data-tab="pruned"' in page and 'class="pane hidden" id="pane-original"' in page
    pruned = _pane(page, "pane-pruned")
    assert _ids(pruned, r'data-id="([^"]*)"') == [m["id"] for m in built["pruned"][:50]]
    assert pruned.count('class="marker"') > 100
    assert 'id="rebuild-original"' in _pane(page, "pane-original") and "context=original" in page
    assert 'id="orphans-unchecked"' in page
    # No removed text is on it: the removed lines live only in the archive.
    removed = built["original"][3]["content"].split("\n")[0]
    assert removed not in built["pruned"][3]["content"] and removed not in page
    # The chart walks the checkpoint history (each checkpoint read in full): drawn on its own request, which
    # reads no archived event in full either.
    assert 'data-chart="/chart?id=long&amp;epage=1"' in page and 'id="draw-chart"' in page
    assert 'id="sawtooth"' not in page and "model calls" not in page
    chart = client.get("/chart", params={"id": "long"})
    assert chart.status_code == 200 and 'id="chart-stats">9 model calls' in chart.text
    assert len(re.search(r'<polyline class="sent" points="([^"]+)"', chart.text).group(1).split()) == 9
    assert archive.full_reads == reads
    assert client.get("/chart", params={"id": "nope"}).status_code == 404
    assert client.get("/chart").status_code == 404 and "Traceback" not in client.get("/chart").text

    later = client.get("/thread", params={"id": "long", "epage": 137}).text
    assert _ids(later, r'class="event-row" data-event="(ev\d+)"') == [f"ev{k:06d}" for k in range(6800, 6850)]
    last = client.get("/thread", params={"id": "long", "epage": 10_000}).text  # past the end: the last page
    assert _ids(last, r'class="event-row" data-event="(ev\d+)"')[-1] == "ev009999"
    assert 'data-page="200" data-pages="200"' in last
    third = client.get("/thread", params={"id": "long", "mpage": 3}).text
    assert _ids(_pane(third, "pane-pruned"), r'data-id="([^"]*)"') == [m["id"] for m in built["pruned"][100:150]]
    assert archive.full_reads == reads
    for bad in ("x", "-3"):
        r = client.get("/thread", params={"id": "long", "epage": bad})
        assert r.status_code in (200, 404) and "Traceback" not in r.text
    assert client.get("/thread", params={"id": "long", "context": "everything"}).status_code == 404

    # An archive that cannot page gives the same page, from every summary.
    plain = TestClient(create_app(ThreadSource(built["saver"], Unpaged(archive), counter="approx")))
    again = plain.get("/thread", params={"id": "long", "epage": 137}).text
    assert _ids(again, r'class="event-row" data-event="(ev\d+)"') == [f"ev{k:06d}" for k in range(6800, 6850)]
    assert 'id="epage-pager" data-page="137" data-pages="200"' in again and archive.full_reads == reads
    older = TestClient(create_app(ThreadSource(built["saver"], CountsOnly(archive), counter="approx")))
    again = older.get("/thread", params={"id": "long", "epage": 137}).text
    assert _ids(again, r'class="event-row" data-event="(ev\d+)"') == [f"ev{k:06d}" for k in range(6800, 6850)]
    assert 'id="epage-pager" data-page="137" data-pages="200"' in again and archive.full_reads == reads


def test_a_10000_event_thread_original_on_request(long_thread: tuple[TestClient, dict[str, Any]]) -> None:
    client, built = long_thread
    archive = built["archive"]
    page = client.get("/thread", params={"id": "long", "context": "original"})
    assert page.status_code == 200 and len(page.content) < MAX_PAGE_BYTES
    text = page.text
    assert 'class="tab active" data-tab="original"' in text
    assert 'id="mpage-pager" data-page="1" data-pages="21"' in text and "10,000 events" in text
    # The original's first page is rebuilt from every event: no marker left, every removed line in place.
    original = _pane(text, "pane-original")
    assert "[freemem: #" not in original and original.count('class="freed') > 100
    assert _pane(text, "pane-pruned").count('class="marker"') > 100
    assert 'id="orphans-unchecked"' not in text and 'id="orphans"' not in text
    assert 'id="sawtooth"' in text and "9 model calls" in text and "data-chart" not in text  # drawn in place
    reads = archive.full_reads

    # Its pages keep context=original, and the rebuilt original is kept: no event is read again.
    msgs = client.get("/thread", params={"id": "long", "mpage": 3, "epage": 2, "context": "original"}).text
    shown = _ids(_pane(msgs, "pane-original"), r'data-id="([^"]*)"')
    assert shown == [m["id"] for m in built["original"][100:150]] and len(msgs.encode()) < MAX_PAGE_BYTES
    assert 'id="epage-pager" data-page="2"' in msgs  # the other list keeps its page
    assert "epage=2&amp;context=original" in msgs.split('id="mpage-pager"')[1].split("</nav>")[0]
    assert archive.full_reads == reads


def test_small_threads_show_the_original_at_once() -> None:
    saver, archive = InMemorySaver(), CountingArchive()
    build_thread(saver, archive, "short", events=40, tool_messages=20)
    client = TestClient(create_app(ThreadSource(saver, archive, counter="approx")))
    page = client.get("/thread", params={"id": "short"}).text
    assert 'class="tab active" data-tab="original"' in page and archive.full_reads == 1
    assert _pane(page, "pane-original").count('class="freed') == 40
    lazy = TestClient(create_app(ThreadSource(saver, archive, counter="approx", rebuild_events=10)))
    page = lazy.get("/thread", params={"id": "short"}).text
    assert 'id="rebuild-original"' in page and archive.full_reads == 1
    with pytest.raises(ValueError, match="rebuild_events"):
        ThreadSource(saver, archive, rebuild_events=-1)


def test_cheap_view_of_a_real_agent_thread_lists_what_the_original_view_lists() -> None:
    """A thread a real agent wrote (ledger in state, events archived, a fold): the view without the original
    (rebuild_events=0) lists the same events, in the same order, as the one with it; without an archive, the
    ledger's events, and every marker is told as text no archive was given."""
    saver, archive = InMemorySaver(), CountingArchive()
    run_agent(saver, archive, "agent", calls=24)
    full = ThreadSource(saver, archive, counter="approx", page_size=500).thread("agent")
    cheap = ThreadSource(saver, archive, counter="approx", page_size=500, rebuild_events=0).thread("agent")
    assert full.original_rebuilt and not cheap.original_rebuilt and not cheap.original
    assert [e.id for e in cheap.events] == [e.id for e in full.events] and cheap.events
    assert [(e.in_state, e.in_archive) for e in cheap.events] == [(e.in_state, e.in_archive) for e in full.events]
    assert [e.data.get("n_spans") for e in cheap.events] == [e.data.get("n_spans") for e in full.events]
    assert [m.id for m in cheap.pruned] == [m.id for m in full.pruned]
    assert full.chart_drawn and not cheap.chart_drawn and not cheap.calls
    charted = ThreadSource(saver, archive, counter="approx", rebuild_events=0).thread("agent", chart=True)
    assert charted.chart_drawn and not charted.original_rebuilt and charted.calls == full.calls
    # The chart: each call sent the messages of the checkpoint before it (counted whole, independently here).
    history = list(saver.list({"configurable": {"thread_id": "agent", "checkpoint_ns": ""}}))[::-1]
    memory, sent, seen = FreeMemory(counter="approx"), [], set()
    for before, after in zip(history, history[1:]):
        new_ai = {m.id for m in after.checkpoint["channel_values"].get("messages", []) if m.type == "ai"} - seen
        msgs = before.checkpoint["channel_values"].get("messages", [])
        seen |= new_ai
        if new_ai and msgs:
            sent.append(memory.count(msgs))
    assert [c.tokens_sent for c in full.calls] == sent and len(sent) >= 20
    assert all(c.tokens_without >= c.tokens_sent for c in full.calls)
    bare = ThreadSource(saver, None, counter="approx", page_size=500, rebuild_events=0).thread("agent")
    assert {e.id for e in bare.events} <= {e.id for e in full.events} and bare.events
    assert all(e.in_state and not e.in_archive for e in bare.events)
    assert bare.orphans and bare.orphans_checked


def test_event_page_of_a_long_thread(long_thread: tuple[TestClient, dict[str, Any]]) -> None:
    client, _ = long_thread
    page = client.get("/event", params={"thread": "long", "id": "ev004321"})
    assert page.status_code == 200 and 'class="freed focus"' in page.text
    assert "restore this event" in page.text


def test_host_header_with_ipv6_literals() -> None:
    assert host_of("[::1]:8765") == "::1" and host_of("[::1]") == "::1"
    assert host_of("localhost:80") == "localhost" and host_of("127.0.0.1") == "127.0.0.1"
    app = create_app(ThreadSource(InMemorySaver(), InMemoryArchive(), counter="approx"),
                     allowed_hosts=["::1", "localhost", "127.0.0.1"])
    assert TestClient(app, base_url="http://[::1]:8765").get("/").status_code == 200
    assert TestClient(app, base_url="http://localhost:8765").get("/").status_code == 200
    assert TestClient(app, base_url="http://[::2]:8765").get("/").status_code == 400
    assert TestClient(app, base_url="http://rebound.example").get("/").status_code == 400


def _ipv6_loopback() -> bool:
    try:
        import socket

        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_cli_ui_on_ipv6_loopback_answers_its_printed_url(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    conn = sqlite3.connect(str(db), check_same_thread=False)
    run_agent(SqliteSaver(conn), None, "v6", calls=6)
    conn.close()
    proc = subprocess.Popen([sys.executable, "-m", "freemem.cli.main", "ui", "--sqlite", str(db), "--host", "::1",
                             "--port", str(free_port()), "--counter", "approx"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"(http://\[::1\]:\d+/)", line)
        assert url, line
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(url.group(1), timeout=5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert r.status_code == 200 and "v6" in r.text
        thread = httpx.get(url.group(1) + "thread", params={"id": "v6"}, timeout=30)
        assert thread.status_code == 200 and 'id="no-archive"' in thread.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.redis
def test_empty_listing_names_the_prefix_and_the_ones_holding_threads(tmp_path: Path) -> None:
    from freemem.cli.where import empty_hint, redis_prefixes

    server = start_server(tmp_path)  # its own server: the listing names every prefix it holds
    try:
        with RedisSaver.from_url(server.url, key_prefix="freemem-demo") as saver, \
                RedisArchive.from_url(server.url, key_prefix="freemem-demo") as archive:
            run_agent(saver, archive, "elsewhere", calls=6)
        with RedisSaver.from_url(server.url, key_prefix="nothing-here") as saver:
            source = ThreadSource(saver, None, counter="approx", describe="redis (prefix nothing-here)",
                                  hint=lambda: empty_hint(prefix="nothing-here",
                                                          prefixes=redis_prefixes(saver.client)))
            page = TestClient(create_app(source)).get("/").text
    finally:
        server.stop()
    assert 'id="no-threads"' in page and "nothing-here" in page
    assert "&#x27;freemem-demo&#x27; (1 thread)" in page and "--key-prefix freemem-demo" in page


def test_cli_thread_list_and_show_say_where_they_looked(redis_server: RedisServerProcess, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix="freemem-demo") as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix="freemem-demo") as archive:
        run_agent(saver, archive, "found-later", calls=6)
    assert main(["thread", "list", "found-later", "--redis", redis_server.url]) == 0
    err = capsys.readouterr().err
    assert "no archived cleaning events" in err and "'freemem'" in err and "--key-prefix freemem-demo" in err
    assert main(["thread", "show", "found-later", "--redis", redis_server.url]) == 1
    err = capsys.readouterr().err
    assert "no checkpoints in Redis" in err and "--key-prefix freemem-demo" in err

    db = tmp_path / "lite.sqlite"
    conn = sqlite3.connect(str(db), check_same_thread=False)
    run_agent(SqliteSaver(conn), None, "lite", calls=24)
    conn.close()
    # Over SQLite without an archive: "no archive configured", never "expired".
    assert main(["thread", "show", "lite", "--saver", str(db)]) == 0
    out, err = capsys.readouterr()
    assert "no archive configured" in err and "expired" not in err.replace("did not expire", "")
    assert "no archive configured" in " ".join(out.split())
    assert main(["thread", "show", "other", "--saver", str(db)]) == 1
    assert "'lite'" in capsys.readouterr().err  # the threads the file does hold
