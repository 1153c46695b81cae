"""The archive follows the thread's lineage (issue 24): two concurrent runs on one thread with ``AsyncRedisSaver``
lose one run's turn (LangGraph's last writer wins), but the archive keeps both runs' events. Every event names
the checkpoint its step ran on, so ``restore_thread`` / ``show_thread`` / ``freemem thread show|restore`` apply
the events of the branch they restore, skip the lost branch's and say why -- never ``ArchiveMismatch``.

A real ``create_agent`` agent with ``FreeMemoryMiddleware`` (scripted fake model, real tools), a real
redis-server, the async archive."""

from __future__ import annotations

import asyncio
import html
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage, ToolMessage

from freemem.cli.main import main
from freemem.core.archive import LOST_BRANCH, PENDING
from freemem.langgraph import FreeMemoryMiddleware, arestore_thread, ashow_thread, restore_thread
from freemem.langgraph.threads import freemem_refs
from freemem.redis import AsyncRedisArchive, AsyncRedisSaver, RedisArchive, RedisSaver
from tests.support.redis_servers import RedisServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "langgraph"))
from lgfakes import TOOLS, make_memory, scripted_model

THREAD = "race"


def _config() -> dict[str, Any]:
    return {"configurable": {"thread_id": THREAD}, "recursion_limit": 1000}


def _assert_original_tool_outputs(messages: list[Any]) -> None:
    """Every tool result holds exactly what its tool returned (nothing pruned is left unrestored)."""
    calls = {c["id"]: c for m in messages for c in getattr(m, "tool_calls", None) or []}
    tools = {t.name: t for t in TOOLS}
    results = [m for m in messages if isinstance(m, ToolMessage)]
    assert results
    for msg in results:
        call = calls[msg.tool_call_id]
        assert msg.content == tools[call["name"]].invoke(call["args"]), msg.tool_call_id
    assert freemem_refs(messages) == []


async def _race(url: str, prefix: str) -> None:
    """A first run, then two runs started together on the same thread: both clean (and archive), one's
    checkpoints lose."""
    async with AsyncRedisSaver.from_url(url, key_prefix=prefix) as saver, \
            AsyncRedisArchive.from_url(url, key_prefix=prefix) as archive:
        memory = make_memory(archive=archive, fold=False)

        def agent(calls: int) -> Any:
            return create_agent(scripted_model([calls]), TOOLS, middleware=[FreeMemoryMiddleware(memory)],
                                checkpointer=saver)

        await agent(6).ainvoke({"messages": [HumanMessage("Survey the service.")]}, _config())
        await asyncio.gather(agent(9).ainvoke({"messages": [HumanMessage("Run A: dig into the logs.")]}, _config()),
                             agent(9).ainvoke({"messages": [HumanMessage("Run B: dig into the code.")]}, _config()))


@pytest.fixture
def raced(redis_server: RedisServerProcess, prefix: str) -> tuple[str, str]:
    asyncio.run(_race(redis_server.url, prefix))
    return redis_server.url, prefix


async def test_concurrent_writers_restore_the_surviving_branch(raced: tuple[str, str]) -> None:
    url, prefix = raced
    async with AsyncRedisSaver.from_url(url, key_prefix=prefix) as saver, \
            AsyncRedisArchive.from_url(url, key_prefix=prefix) as archive:
        events = await archive.aevents(THREAD)
        assert all(e.get("checkpoint_id") for e in events)  # every event names the checkpoint it ran on

        dry = await arestore_thread(saver, archive, THREAD, dry_run=True)  # raised ArchiveMismatch before
        lost = [sk for sk in dry.skipped if sk.kind == LOST_BRANCH]
        assert lost, "the race left no lost branch: the test did not race"
        assert {sk.kind for sk in dry.skipped} <= {LOST_BRANCH, PENDING}
        assert all("does not descend from" in sk.reason for sk in lost)
        assert set(dry.event_ids) | {sk.event_id for sk in dry.skipped} == {e["id"] for e in events}
        _assert_original_tool_outputs(dry.messages)
        assert all(e["restored_at"] is None for e in await archive.alist_events(THREAD))  # dry run: nothing marked

        view = await ashow_thread(saver, archive, THREAD)
        assert [sk.event_id for sk in view.skipped] == [sk.event_id for sk in dry.skipped]
        assert [m.content for m in view.original] == [m.content for m in dry.messages]

        done = await arestore_thread(saver, archive, THREAD)
        assert done.event_ids == dry.event_ids and [s.event_id for s in done.skipped] == [
            s.event_id for s in dry.skipped]
        state = (await saver.aget_tuple({"configurable": {"thread_id": THREAD, "checkpoint_ns": ""}}))
        assert state is not None
        _assert_original_tool_outputs(state.checkpoint["channel_values"]["messages"])
        marks = {e["id"]: e["restored_at"] for e in await archive.alist_events(THREAD)}
        assert all(marks[i] is not None for i in done.event_ids)
        assert all(marks[sk.event_id] is None for sk in done.skipped)  # the lost branch's stay unrestored

        again = await arestore_thread(saver, archive, THREAD)  # the lost branch is skipped again, no error
        assert again.event_ids == [] and {s.event_id for s in again.skipped} == {s.event_id for s in done.skipped}


def test_concurrent_writers_sync_restore_and_cli(raced: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url, prefix = raced
    with RedisSaver.from_url(url, key_prefix=prefix) as saver, RedisArchive.from_url(url, key_prefix=prefix) as archive:
        dry = restore_thread(saver, archive, THREAD, dry_run=True)
        assert any(sk.kind == LOST_BRANCH for sk in dry.skipped)
        _assert_original_tool_outputs(dry.messages)
        lost = next(sk.event_id for sk in dry.skipped if sk.kind == LOST_BRANCH)
        # A lost event named on its own is skipped too (it is not on this branch), not an ArchiveMismatch.
        one = restore_thread(saver, archive, THREAD, lost, dry_run=True)
        assert one.event_ids == [] and [sk.event_id for sk in one.skipped] == [lost]

    common = ("--redis", url, "--key-prefix", prefix)
    assert main(["thread", "show", THREAD, *common, "--json"]) == 0
    out, err = capsys.readouterr()
    shown = json.loads(out)
    assert {s["event_id"] for s in shown["skipped"]} == {s.event_id for s in dry.skipped}
    assert "left out" in err and "lost_branch" in err
    assert main(["thread", "restore", THREAD, *common, "--dry-run", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["restored_events"] == dry.event_ids and "does not descend from" in err
    assert main(["thread", "restore", THREAD, *common]) == 0
    out, err = capsys.readouterr()
    assert "restored" in out and "lost_branch" in err and "Traceback" not in err


def test_the_inspector_shows_the_branch_and_lists_what_it_skipped(raced: tuple[str, str]) -> None:
    from starlette.testclient import TestClient

    from freemem.ui import ThreadSource, create_app

    url, prefix = raced
    with RedisSaver.from_url(url, key_prefix=prefix) as saver, RedisArchive.from_url(url, key_prefix=prefix) as archive:
        lost = {sk.event_id for sk in restore_thread(saver, archive, THREAD, dry_run=True).skipped}
        client = TestClient(create_app(ThreadSource(saver, archive, counter="approx")))
        page = client.get("/thread", params={"id": THREAD}).text
        assert 'id="skipped"' in page and "does not descend from" in page
        assert lost <= set(re.findall(r'<li data-event="([^"]+)" data-kind="lost_branch"', page))
        original = page.split('id="pane-original"')[1].split('id="pane-pruned"')[0]
        assert "[freemem: #" not in original  # the surviving branch's text is all back in the original
        event = client.get("/event", params={"thread": THREAD, "id": sorted(lost)[0]}).text
        assert "restore this event" not in event  # not on this branch: nothing to restore here
        r = client.post("/restore", data={"thread": THREAD, "csrf": _csrf(page)}, follow_redirects=False)
        assert r.status_code == 303 and "skipped" in r.headers["location"]
        assert all(archive.get_event(THREAD, eid)["restored_at"] is None for eid in lost)


def _csrf(page: str) -> str:
    found = re.search(r'<meta name="freemem-csrf" content="([^"]+)">', page)
    assert found
    return html.unescape(found.group(1))
