"""The inspector at scale (issue 24): a 10,000-event thread's page is served a page at a time -- events and
context both -- and stays under 300 KB; ``--host ::1`` answers its own URL; an empty listing says where it
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

from freemem import InMemoryArchive
from freemem.cli.main import main
from freemem.redis import RedisArchive, RedisSaver
from freemem.ui import ThreadSource, create_app
from freemem.ui.app import host_of
from freemem_bench.inspector import build_thread
from tests.support.redis_servers import RedisServerProcess, free_port, start_server
from tests.support.ui_agents import run_agent

MAX_PAGE_BYTES = 300_000


@pytest.fixture(scope="module")
def long_thread() -> tuple[TestClient, dict[str, Any]]:
    saver, archive = InMemorySaver(), InMemoryArchive()
    built = build_thread(saver, archive, "long", events=10_000, tool_messages=500)
    return TestClient(create_app(ThreadSource(saver, archive, counter="approx"))), built


def _ids(page: str, pattern: str) -> list[str]:
    return re.findall(pattern, page)


def test_a_10000_event_thread_is_paged_and_small(long_thread: tuple[TestClient, dict[str, Any]]) -> None:
    client, built = long_thread
    first = client.get("/thread", params={"id": "long"})
    assert first.status_code == 200 and len(first.content) < MAX_PAGE_BYTES
    page = first.text
    events = _ids(page, r'class="event-row" data-event="(ev\d+)"')
    assert events == [f"ev{k:06d}" for k in range(50)]
    assert 'id="epage-pager" data-page="1" data-pages="200"' in page and "10,000 events" in page
    assert 'id="mpage-pager" data-page="1" data-pages="21"' in page
    # The original's first page is rebuilt from every event: no marker left, every removed line in place.
    original = page.split('id="pane-original"')[1].split('id="pane-pruned"')[0]
    assert "[freemem: #" not in original and original.count('class="freed') > 100
    pruned = page.split('id="pane-pruned"')[1]
    assert pruned.count('class="marker"') > 100

    later = client.get("/thread", params={"id": "long", "epage": 137}).text
    assert _ids(later, r'class="event-row" data-event="(ev\d+)"') == [f"ev{k:06d}" for k in range(6800, 6850)]
    last = client.get("/thread", params={"id": "long", "epage": 10_000}).text  # past the end: the last page
    assert _ids(last, r'class="event-row" data-event="(ev\d+)"')[-1] == "ev009999"
    assert 'data-page="200" data-pages="200"' in last

    msgs = client.get("/thread", params={"id": "long", "mpage": 3, "epage": 2}).text
    shown = _ids(msgs.split('id="pane-original"')[1].split('id="pane-pruned"')[0], r'data-id="([^"]*)"')
    want = [m["id"] for m in built["original"][100:150]]
    assert shown == want and len(msgs.encode()) < MAX_PAGE_BYTES
    assert 'id="epage-pager" data-page="2"' in msgs  # the other list keeps its page
    for bad in ("x", "-3"):
        r = client.get("/thread", params={"id": "long", "epage": bad})
        assert r.status_code in (200, 404) and "Traceback" not in r.text


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
