"""The inspector in a real browser: headless Chromium (Debian's package) driven by selenium through Debian's
chromium-driver, against the real ``freemem ui`` server (uvicorn, a subprocess) over a real redis-server whose
threads a real ``create_agent`` agent with ``FreeMemoryMiddleware`` wrote.

It opens the thread picker, a thread, an event, and clicks restore (one event, then all); it fails if a view is
empty, if hostile tool output runs script, or if a restore does not change what the archive and the thread hold.
Screenshots of each view are kept as artefacts: under pytest's tmp dir and copied to ``artifacts/ui/``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from freemem.redis import RedisArchive, RedisSaver
from tests.support.redis_servers import RedisServerProcess, free_port
from tests.support.ui_agents import run_agent

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "ui"
PREFIX = "uibrowser"

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium / chromium-driver not installed (apt: chromium chromium-driver; "
                                       "scripts/test installs them)")


@pytest.fixture
def ui_server(redis_server: RedisServerProcess) -> Iterator[str]:
    """Two agent threads in Redis, and ``freemem ui`` serving them on a free loopback port."""
    with RedisSaver.from_url(redis_server.url, key_prefix=PREFIX) as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix=PREFIX) as archive:
        for thread in ("incident-svc2", "short-chat"):
            saver.delete_thread(thread)
            archive.delete_thread(thread)
        run_agent(saver, archive, "incident-svc2", calls=40)
        run_agent(saver, archive, "short-chat", calls=10)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "freemem.cli.main", "ui", "--redis", redis_server.url,
                             "--key-prefix", PREFIX, "--port", str(port), "--counter", "approx"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read() if proc.stdout else ""
                    raise AssertionError(f"freemem ui did not start: {output}") from exc
                time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: webdriver.Chrome, tmp_path: Path, name: str, *, whole: bool = True) -> Path:
    """A screenshot of the whole page (the window grown to the page's height, capped), or of the window."""
    if whole:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, max(900, min(int(height) + 40, 2600)))
    path = tmp_path / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)
    driver.set_window_size(1400, 1000)
    return path


def _no_script_ran(driver: webdriver.Chrome) -> None:
    assert driver.execute_script("return window.__freemem_xss === undefined")
    assert driver.title != "pwned"


def test_pick_a_thread_open_an_event_restore(ui_server: str, browser: webdriver.Chrome,
                                             redis_server: RedisServerProcess, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 60)
    browser.get(ui_server + "/")
    links = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "a.thread-link"))
    assert sorted(a.text for a in links) == ["incident-svc2", "short-chat"]
    _shot(browser, tmp_path, "1-threads")

    next(a for a in links if a.text == "incident-svc2").click()
    wait.until(ec.presence_of_element_located((By.ID, "sawtooth")))
    points = browser.find_element(By.CSS_SELECTOR, "#sawtooth polyline.sent").get_attribute("points").split()
    assert len(points) == 41  # one per model call
    assert len(browser.find_elements(By.CSS_SELECTOR, "#sawtooth circle.clean")) >= 10
    rows = browser.find_elements(By.CSS_SELECTOR, "#events tr.event-row")
    assert len(rows) >= 10
    freed = browser.find_elements(By.CSS_SELECTOR, "#pane-original del.freed")
    assert freed and any(d.is_displayed() and d.text.strip() for d in freed)
    assert browser.find_elements(By.CSS_SELECTOR, "#pane-original article.folded")
    # Hostile tool output is on the page as text, and none of it ran.
    assert "<script>window.__freemem_xss" in browser.find_element(By.ID, "pane-original").text
    _no_script_ran(browser)
    _shot(browser, tmp_path, "2-thread-top", whole=False)  # the README's screenshot (docs/ui.png)
    _shot(browser, tmp_path, "2-thread")
    browser.find_element(By.ID, "tab-pruned").click()
    pruned = browser.find_element(By.ID, "pane-pruned")
    assert pruned.is_displayed() and not browser.find_element(By.ID, "pane-original").is_displayed()
    assert pruned.find_elements(By.CSS_SELECTOR, "a.marker") and pruned.find_elements(By.CSS_SELECTOR, "article.fold")

    with RedisSaver.from_url(redis_server.url, key_prefix=PREFIX) as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix=PREFIX) as archive:
        conf = {"configurable": {"thread_id": "incident-svc2", "checkpoint_ns": ""}}
        before = saver.get_tuple(conf).checkpoint["channel_values"]["messages"]
        original = archive.original("incident-svc2", before)
        newest = next(e for e in reversed(archive.list_events("incident-svc2")) if e["n_spans"])
        assert newest["restored_at"] is None

        # Open the newest event with spans (from its row), look at it, restore it.
        browser.find_element(By.CSS_SELECTOR, f'tr.event-row[data-event="{newest["id"]}"] a.event-link').click()
        wait.until(ec.presence_of_element_located((By.ID, "event-summary")))
        assert browser.find_elements(By.CSS_SELECTOR, "#spans tbody tr")
        assert browser.find_elements(By.CSS_SELECTOR, "del.freed.focus")
        summary = browser.find_element(By.ID, "event-summary").text
        assert "trigger" in summary and "tokens before → after" in summary and "cache cost" in summary
        _no_script_ran(browser)
        _shot(browser, tmp_path, "3-event")
        browser.find_element(By.CSS_SELECTOR, "form.restore button").click()
        wait.until(ec.alert_is_present()).accept()
        wait.until(ec.presence_of_element_located((By.ID, "flash")))
        assert "restored 1 event(s)" in browser.find_element(By.ID, "flash").text
        assert archive.get_event("incident-svc2", newest["id"])["restored_at"] is not None
        after_one = saver.get_tuple(conf).checkpoint["channel_values"]["messages"]
        assert after_one != before
        _shot(browser, tmp_path, "4-restored-one")

        # Then everything left: the thread holds the original again.
        buttons = [b for b in browser.find_elements(By.CSS_SELECTOR, "form.restore button")
                   if b.text.startswith("restore all")]
        assert buttons
        buttons[0].click()
        wait.until(ec.alert_is_present()).accept()
        wait.until(lambda d: "restored" in d.find_element(By.ID, "flash").text
                   and "restore all" not in d.page_source)
        assert all(e["restored_at"] for e in archive.list_events("incident-svc2"))
        restored = saver.get_tuple(conf).checkpoint["channel_values"]["messages"]
        assert [m.id for m in restored] == [m.id for m in original]
        assert [m.content for m in restored] == [m.content for m in original]
        _no_script_ran(browser)
        _shot(browser, tmp_path, "5-restored-all")
    for name in ("1-threads", "2-thread-top", "2-thread", "3-event", "4-restored-one", "5-restored-all"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000, name


LONG = "long-10k"


@pytest.fixture
def long_ui_server(redis_server: RedisServerProcess) -> Iterator[str]:
    """A 10,000-event thread (``freemem bench inspector``'s) in Redis, and ``freemem ui`` serving it."""
    from freemem_bench.inspector import build_thread

    prefix = "uipaging"
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        saver.delete_thread(LONG)
        archive.delete_thread(LONG)
        build_thread(saver, archive, LONG, events=10_000, tool_messages=500, history=20)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "freemem.cli.main", "ui", "--redis", redis_server.url,
                             "--key-prefix", prefix, "--port", str(port), "--counter", "approx"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"freemem ui did not start: {proc.stdout.read() if proc.stdout else ''}") \
                        from exc
                time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _event_ids(driver: webdriver.Chrome) -> list[str]:
    return [r.get_attribute("data-event") for r in driver.find_elements(By.CSS_SELECTOR, "#events tr.event-row")]


def test_page_through_a_10000_event_thread(long_ui_server: str, browser: webdriver.Chrome, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 120)
    browser.get(long_ui_server + "/")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "a.thread-link"))[0].click()
    wait.until(ec.presence_of_element_located((By.ID, "epage-pager")))
    assert _event_ids(browser) == [f"ev{k:06d}" for k in range(50)]
    assert len(browser.page_source.encode()) < 300_000
    pager = browser.find_element(By.ID, "epage-pager")
    assert pager.get_attribute("data-pages") == "200" and "page 1 of 200" in pager.text
    # The chart (a walk of the checkpoint history) comes on its own request and is put in place by the script.
    wait.until(ec.presence_of_element_located((By.ID, "sawtooth")))
    points = browser.find_element(By.CSS_SELECTOR, "#sawtooth polyline.sent").get_attribute("points").split()
    assert len(points) == 19 and not browser.find_elements(By.ID, "chart-deferred")
    assert "19 model calls" in browser.find_element(By.ID, "chart-stats").text
    _shot(browser, tmp_path, "6-long-thread-top", whole=False)

    for page in (2, 3):
        browser.find_element(By.CSS_SELECTOR, '#epage-pager a[rel="next"]').click()
        wait.until(lambda d, p=page: d.find_element(By.ID, "epage-pager").get_attribute("data-page") == str(p))
        assert _event_ids(browser) == [f"ev{k:06d}" for k in range(50 * (page - 1), 50 * page)]
    browser.find_element(By.CSS_SELECTOR, '#epage-pager a[rel="last"]').click()
    wait.until(lambda d: d.find_element(By.ID, "epage-pager").get_attribute("data-page") == "200")
    assert _event_ids(browser)[-1] == "ev009999"
    browser.find_element(By.CSS_SELECTOR, '#epage-pager a[rel="prev"]').click()
    wait.until(lambda d: d.find_element(By.ID, "epage-pager").get_attribute("data-page") == "199")
    assert _event_ids(browser)[0] == f"ev{198 * 50:06d}"

    # The first view shows the context as the model sees it (no archived event read in full); it pages on its
    # own, keeping the event page.
    assert browser.find_element(By.ID, "pane-pruned").is_displayed()
    first_ids = [a.get_attribute("data-id") for a in browser.find_elements(By.CSS_SELECTOR, "#pane-pruned article")]
    browser.find_element(By.CSS_SELECTOR, '#mpage-pager a[rel="next"]').click()
    wait.until(lambda d: d.find_element(By.ID, "mpage-pager").get_attribute("data-page") == "2")
    assert browser.find_element(By.ID, "epage-pager").get_attribute("data-page") == "199"
    second_ids = [a.get_attribute("data-id") for a in browser.find_elements(By.CSS_SELECTOR, "#pane-pruned article")]
    assert len(first_ids) == len(second_ids) == 50 and not set(first_ids) & set(second_ids)
    assert browser.find_elements(By.CSS_SELECTOR, "#pane-pruned a.marker")

    # The original is rebuilt on request (its tab links to it), then pages like the rest, keeping its view and
    # the event page; each page of the original shows what was removed in place.
    browser.find_element(By.ID, "tab-original").click()
    browser.find_element(By.ID, "rebuild-original").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#pane-original article"))
    assert browser.find_element(By.ID, "pane-original").is_displayed()
    assert browser.find_element(By.ID, "epage-pager").get_attribute("data-page") == "199"
    original_first = [a.get_attribute("data-id")
                      for a in browser.find_elements(By.CSS_SELECTOR, "#pane-original article")]
    browser.find_element(By.CSS_SELECTOR, '#mpage-pager a[rel="next"]').click()
    wait.until(lambda d: d.find_element(By.ID, "mpage-pager").get_attribute("data-page") == "2")
    assert browser.find_element(By.ID, "pane-original").is_displayed()
    original_second = [a.get_attribute("data-id")
                       for a in browser.find_elements(By.CSS_SELECTOR, "#pane-original article")]
    assert len(original_second) == 50 and not set(original_first) & set(original_second)
    freed = browser.find_elements(By.CSS_SELECTOR, "#pane-original del.freed")
    assert len(freed) > 100 and "[freemem: #" not in browser.find_element(By.ID, "pane-original").text
    assert len(browser.page_source.encode()) < 300_000
    browser.find_element(By.ID, "tab-pruned").click()
    assert browser.find_elements(By.CSS_SELECTOR, "#pane-pruned a.marker")
    _shot(browser, tmp_path, "7-long-thread-page-2", whole=False)
