"""Smoke test: freemem inside a served graph — the real ``langgraph dev`` server, Redis as its checkpointer.

The server serves ``integrations/langgraph-server`` unchanged (a copy in a temp dir): a ``create_agent`` agent
with ``FreeMemoryMiddleware`` and ``checkpointer.py``'s ``AsyncRedisSaver`` on a real redis-server. The agent's
model is scripted (``tests/server/scripted_model.py``): it reads real files of this repository through the
agent's tools, so the context passes the budget and the middleware cleans inside each turn. Two threads are
driven with ``langgraph-sdk`` over loopback HTTP; the test checks what comes back through the server's API
(the pruned messages, the ledger, the history) against what lies in Redis, and that nothing tried to leave
the machine.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests.support` is imported as a package from the repository root
    sys.path.insert(0, str(ROOT))

from tests.server.scripted_model import FINAL_ANSWER, SCRIPT_CALLS  # noqa: E402
from tests.support.redis_servers import REDIS_SERVER, RedisServerProcess  # noqa: E402

pytest.importorskip("langgraph_api", reason="the LangGraph server is not installed (pip install -e '.[server]')")
langgraph_sdk = pytest.importorskip("langgraph_sdk", reason="langgraph-sdk is not installed (pip install -e '.[server]')")

from freemem.redis import RedisArchive, RedisSaver  # noqa: E402
from tests.support.langgraph_server import (  # noqa: E402
    INTEGRATION_DIR,
    LangGraphServer,
    ProxyTrap,
    offline_env,
    start_langgraph_server,
)

pytestmark = [
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (apt: redis-server)"),
    pytest.mark.slow,
]

BUDGET = 6000
#: A loaded 2-core machine imports langgraph-api, langchain and the graph in well under a minute; 240 s is
#: the margin that keeps this from failing there.
START_TIMEOUT = 240.0
RUN_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServerProcess
           ) -> Iterator[tuple[LangGraphServer, ProxyTrap, str]]:
    """The server, the proxy trap it was pointed at, and its Redis key prefix."""
    prefix = f"srv{uuid.uuid4().hex[:8]}"
    trap = ProxyTrap()
    env = offline_env(dict(os.environ), trap)
    env.update(
        FREEMEM_REDIS_URL=redis_server.url,
        FREEMEM_KEY_PREFIX=prefix,
        FREEMEM_BUDGET=str(BUDGET),
        FREEMEM_AGENT_ROOT=str(ROOT),
        FREEMEM_AGENT_MODEL_FACTORY="tests.server.scripted_model:make_model",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    env.pop("FREEMEM_AGENT_MODEL", None)
    server = start_langgraph_server(tmp_path_factory.mktemp("langgraph"), env, timeout=START_TIMEOUT)
    try:
        yield server, trap, prefix
    finally:
        server.stop()
        trap.close()


def _raw_tool_outputs() -> dict[tuple[str, str], str]:
    """What each scripted tool call returns uncleaned: the integration's own tools on this repository."""
    spec = importlib.util.spec_from_file_location("freemem_served_agent_tools", INTEGRATION_DIR / "agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = os.environ.get("FREEMEM_AGENT_MODEL_FACTORY")
    os.environ["FREEMEM_AGENT_MODEL_FACTORY"] = "tests.server.scripted_model:make_model"
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            os.environ.pop("FREEMEM_AGENT_MODEL_FACTORY", None)
        else:
            os.environ["FREEMEM_AGENT_MODEL_FACTORY"] = saved
    tools = {t.name: t for t in module.workspace_tools(ROOT)}
    return {(name, repr(sorted(args.items()))): tools[name].invoke(args) for name, args in SCRIPT_CALLS}


def _tool_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "tool"]


def _is_fold(message: dict[str, Any]) -> bool:
    return message["type"] == "human" and str(message.get("id") or "").startswith("freemem-fold-")


def _check_turns(messages: list[dict[str, Any]], questions: list[str]) -> None:
    """The thread ends with the last question's turn; folds took only whole units, oldest first."""
    humans = [m["content"] for m in messages if m["type"] == "human" and not _is_fold(m)]
    assert humans and humans == questions[len(questions) - len(humans):], humans
    assert messages[-1]["type"] == "ai" and messages[-1]["content"] == FINAL_ANSWER
    assert not messages[-1].get("tool_calls")
    call_ids = [c["id"] for m in messages if m["type"] == "ai" for c in m.get("tool_calls") or []]
    result_ids = [m["tool_call_id"] for m in _tool_messages(messages)]
    assert call_ids and result_ids == call_ids, "every tool call kept keeps its result, in order (pairing intact)"


def _check_folds(messages: list[dict[str, Any]], ledger: list[dict[str, Any]]) -> None:
    """Each fold message in the state names a fold the ledger recorded, and tells the agent how to recall it."""
    handles = {f["handle"] for e in ledger for f in e.get("folds") or []}
    for message in filter(_is_fold, messages):
        handle = message["id"].removeprefix("freemem-fold-")
        assert handle in handles, (handle, handles)
        assert f'recall("{handle}")' in message["content"]


def _check_pruned(messages: list[dict[str, Any]], ledger: list[dict[str, Any]], raw: dict[Any, str]) -> None:
    """The ledger shows rounds that freed tokens, and the state the API returns is the pruned one."""
    assert ledger, "the freemem ledger came back empty"
    for event in ledger:
        assert event["trigger"] and event["cleaner"] == "heuristic"
        assert event["error"] is None, event
    freed = [e for e in ledger if e["tokens_freed"] > 0]
    assert freed, f"no round freed anything: {ledger}"
    assert all(e["tokens_after"] < e["tokens_before"] for e in freed)
    calls = {c["id"]: (c["name"], repr(sorted(c["args"].items())))
             for m in messages if m["type"] == "ai" for c in m.get("tool_calls") or []}
    shrunk = 0
    for message in _tool_messages(messages):
        original = raw[calls[message["tool_call_id"]]]
        assert len(message["content"]) <= len(original)
        if message["content"] != original:
            shrunk += 1
            assert "[freemem: #" in message["content"], "a freed span leaves a marker naming its id"
    assert shrunk >= 2, "the API's state holds the pruned tool results, not the originals"


def test_served_agent_prunes_and_persists_in_redis(
        served: tuple[LangGraphServer, ProxyTrap, str], redis_server: RedisServerProcess) -> None:
    server, trap, prefix = served
    client = langgraph_sdk.get_sync_client(url=server.url, api_key=None, timeout=RUN_TIMEOUT)
    raw = _raw_tool_outputs()

    assistants = client.assistants.search(graph_id="agent")
    assert assistants, f"the server serves no 'agent' graph:\n{server.log_tail()}"

    questions = {
        "alpha": ["Read the memory engine and tell me how it decides to clean.", "And what does folding keep?"],
        "beta": ["Where does the LangGraph step persist the pruned messages?"],
    }
    threads = {name: client.threads.create(metadata={"smoke": name})["thread_id"] for name in questions}
    # The first turn of both threads is queued at once; the second turn of one follows on the saved thread.
    runs = {name: client.runs.create(threads[name], "agent",
                                     input={"messages": [{"role": "user", "content": qs[0]}]})
            for name, qs in questions.items()}
    for name, run in runs.items():
        client.runs.join(threads[name], run["run_id"])
        done = client.runs.get(threads[name], run["run_id"])
        assert done["status"] == "success", f"run on {name}: {done['status']}\n{server.log_tail()}"
    client.runs.wait(threads["alpha"], "agent",
                     input={"messages": [{"role": "user", "content": questions["alpha"][1]}]})

    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver, \
            RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        for name, thread_id in threads.items():
            state = client.threads.get_state(thread_id)
            values = state["values"]
            messages, ledger = values["messages"], values["freemem_ledger"]
            _check_turns(messages, questions[name])
            _check_pruned(messages, ledger, raw)
            _check_folds(messages, ledger)
            history = client.threads.get_history(thread_id, limit=200)
            assert len(history) > 2 * len(SCRIPT_CALLS), "each step left a checkpoint"

            # The thread the API returned is the one in Redis, written by freemem's AsyncRedisSaver.
            stored = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
            assert stored is not None, f"thread {name} is not in Redis under prefix {prefix!r}"
            assert stored.checkpoint["id"] == state["checkpoint"]["checkpoint_id"]
            channel = stored.checkpoint["channel_values"]
            assert [(m.id, m.content) for m in channel["messages"]] == [(m["id"], m["content"]) for m in messages]
            assert channel["freemem_ledger"] == ledger
            assert any(key.startswith(f"{prefix}:") for key in saver.thread_keys(thread_id))

            # Every round that changed the context archived what it removed, under the ledger's event id.
            archived = {e["id"] for e in archive.list_events(thread_id)}
            changed = {e["id"] for e in ledger if e["applied"] > 0 or e.get("folds")}
            assert changed and changed <= archived <= {e["id"] for e in ledger}

        # Copying a thread through the API copies it in Redis (the saver's acopy_thread).
        alpha = client.threads.get_state(threads["alpha"])["values"]
        copy_id = client.threads.copy(threads["alpha"])["thread_id"]
        copied = saver.get_tuple({"configurable": {"thread_id": copy_id, "checkpoint_ns": ""}})
        assert copied is not None
        assert [m.id for m in copied.checkpoint["channel_values"]["messages"]] == [m["id"] for m in alpha["messages"]]
        assert client.threads.get_state(copy_id)["values"]["freemem_ledger"] == alpha["freemem_ledger"]

        # A restarted server (same folder: the runtime keeps its thread records there) serves the same state.
        server.restart(START_TIMEOUT)
        after = client.threads.get_state(threads["alpha"])["values"]
        assert [(m["id"], m["content"]) for m in after["messages"]] == \
            [(m["id"], m["content"]) for m in alpha["messages"]]
        assert after["freemem_ledger"] == alpha["freemem_ledger"]

        # Deleting a thread through the API deletes it from Redis.
        client.threads.delete(threads["beta"])
        assert saver.get_tuple({"configurable": {"thread_id": threads["beta"], "checkpoint_ns": ""}}) is None
        assert saver.get_tuple({"configurable": {"thread_id": threads["alpha"], "checkpoint_ns": ""}}) is not None

    assert "Using custom checkpointer: AsyncRedisSaver" in server.log.read_text(errors="replace")
    assert trap.requests == [], f"the server tried to reach the network: {trap.requests}"
