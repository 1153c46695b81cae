"""A persisted thread over any checkpointer and any archive (freemem.langgraph.threads and ``freemem thread``):
LangGraph's InMemorySaver with InMemoryArchive through the Python API, sync and async, and SqliteSaver with
SqliteArchive through the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from freemem import FreeMemory, InMemoryArchive, SqliteArchive
from freemem.cli.main import main
from freemem.config import Triggers
from freemem.langgraph import arestore_thread, ashow_thread, restore_thread, show_thread
from freemem_bench.store import build_graph
from tests.redis.helpers import scripted_transcript

TURNS = 10


def _run(saver: Any, archive: Any, thread: str) -> Any:
    memory = FreeMemory(budget=3000, counter="approx", archive=archive,
                        triggers=Triggers(every_tokens=None, on_loop=False))
    graph = build_graph(saver, memory)
    conf = {"configurable": {"thread_id": thread}}
    for turn in range(TURNS):
        graph.invoke({"turn": turn}, conf)
    return graph, conf


def test_show_and_restore_over_the_in_memory_archive() -> None:
    saver, archive = InMemorySaver(), InMemoryArchive()
    graph, conf = _run(saver, archive, "mem")
    pruned = graph.get_state(conf).values["messages"]
    view = show_thread(saver, archive, "mem")
    assert view.pruned == pruned and view.original == scripted_transcript(TURNS) and len(view.events) >= 2
    assert view.orphans == []
    dry = restore_thread(saver, archive, "mem", dry_run=True)
    assert dry.event_ids and graph.get_state(conf).values["messages"] == pruned
    done = restore_thread(saver, archive, "mem")
    assert sorted(done.event_ids) == sorted(e["id"] for e in view.events)
    state = graph.get_state(conf)
    assert state.values["messages"] == scripted_transcript(TURNS)
    assert state.metadata["source"] == "update" and state.metadata["freemem_restored"]
    assert restore_thread(saver, archive, "mem").event_ids == []


async def test_async_show_and_restore_over_the_in_memory_archive() -> None:
    saver, archive = InMemorySaver(), InMemoryArchive()
    graph, conf = _run(saver, archive, "amem")
    view = await ashow_thread(saver, archive, "amem")
    assert view.original == scripted_transcript(TURNS) and view.events
    done = await arestore_thread(saver, archive, "amem")
    assert sorted(done.event_ids) == sorted(e["id"] for e in view.events)
    assert graph.get_state(conf).values["messages"] == scripted_transcript(TURNS)
    assert all(e["restored_at"] for e in await archive.alist_events("amem"))


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_thread_cli_over_sqlite_saver_and_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "threads.sqlite"
    conn = sqlite3.connect(db, check_same_thread=False)
    with SqliteArchive(db) as archive:
        graph, conf = _run(SqliteSaver(conn), archive, "sq")
        pruned = graph.get_state(conf).values["messages"]
    common = ("--saver", str(db), "--archive", f"sqlite:///{db}")
    code, out, _ = _cli(capsys, "thread", "list", "sq", "--archive", str(db), "--json")
    events = json.loads(out)["events"]
    assert code == 0 and len(events) >= 2
    code, out, _ = _cli(capsys, "thread", "show", "sq", *common, "--json")
    shown = json.loads(out)
    assert code == 0 and shown["pruned"] == pruned and shown["original"] == scripted_transcript(TURNS)
    code, out, _ = _cli(capsys, "thread", "show", "sq", *common, "--event", events[0]["id"])
    assert code == 0 and "original text" in out
    code, out, _ = _cli(capsys, "thread", "restore", "sq", *common, "--json")
    assert code == 0 and sorted(json.loads(out)["restored_events"]) == sorted(e["id"] for e in events)
    assert graph.get_state(conf).values["messages"] == scripted_transcript(TURNS)
    conn.close()


def test_thread_cli_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _cli(capsys, "thread", "list", "x")
    assert code == 1 and "--redis URL, or --archive" in err
    code, _, err = _cli(capsys, "thread", "show", "x", "--archive", str(tmp_path / "a.sqlite"))
    assert code == 1 and "--saver" in err
    code, _, err = _cli(capsys, "thread", "list", "x", "--archive", "mongodb://h")
    assert code == 1 and "SQLite file" in err
    code, _, err = _cli(capsys, "thread", "show", "x", "--archive", str(tmp_path / "a.sqlite"),
                        "--saver", str(tmp_path / "missing.sqlite"))
    assert code == 1 and "no SQLite checkpoint file" in err
