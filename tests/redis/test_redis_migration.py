"""A thread stored before lists were stored element by element (every checkpoint holding its whole messages
list; ``data/thread_v1.json.gz``, written by the code of commit c99f536) reads exactly as it did, and keeps
working under today's code: new checkpoints on top of it, retention dropping the old ones, copy and delete."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import redis
from langchain.agents import create_agent
from langchain_core.messages import HumanMessage

from freemem.redis import RedisSaver, codec
from freemem.redis.keys import KeyLayout
from tests.langgraph.lgfakes import TOOLS, scripted_model
from tests.redis.data.make_thread_v1 import fingerprint, tuple_record
from tests.redis.helpers import assert_counts_exact
from tests.support.redis_servers import RedisServerProcess

DATA = Path(__file__).parent / "data" / "thread_v1.json.gz"


def _fixture() -> dict[str, Any]:
    return json.loads(gzip.decompress(DATA.read_bytes()))


def _load(raw: redis.Redis, data: dict[str, Any], prefix: str) -> None:
    """Write the fixture's keys under ``prefix`` (key names inside the registry set are rebased too)."""
    old = data["prefix"] + ":"

    def rebase(value: bytes) -> bytes:
        return prefix.encode() + b":" + value[len(old):] if value.startswith((old + "{").encode()) else value

    for entry in data["keys"]:
        key = rebase(base64.b64decode(entry["key"]))
        items = [base64.b64decode(x) for x in entry["items"]]
        if entry["type"] == "hash":
            raw.hset(key, mapping=dict(zip(items[::2], items[1::2], strict=True)))
        elif entry["type"] == "zset":
            raw.zadd(key, {m: float(s) for m, s in zip(items[::2], items[1::2], strict=True)})
        else:
            raw.sadd(key, *(rebase(m) for m in items))


def test_old_format_reads_exactly(redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    data = _fixture()
    _load(raw, data, prefix)
    thread = data["thread"]
    layout = KeyLayout(prefix)
    blobs = raw.hgetall(layout.blobs(thread, ""))
    assert blobs and not any(codec.record_refs(v) for v in blobs.values())  # really the old format
    assert not raw.exists(layout.elements(thread, ""))
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver:
        records = [tuple_record(t) for t in saver.list({"configurable": {"thread_id": thread}})]
        assert [r["config"]["checkpoint_id"] for r in records] == [t["id"] for t in data["tuples"]]
        assert [fingerprint(r) for r in records] == [t["sha256"] for t in data["tuples"]]
        for whole in data["whole"]:
            tup = saver.get_tuple({"configurable": whole["config"]})
            assert json.loads(json.dumps(tuple_record(tup), sort_keys=True)) == whole


def test_old_thread_goes_on_under_the_new_format(redis_server: RedisServerProcess, raw: redis.Redis,
                                                 prefix: str) -> None:
    data = _fixture()
    _load(raw, data, prefix)
    thread = data["thread"]
    layout = KeyLayout(prefix)
    cfg: Any = {"configurable": {"thread_id": thread}}
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, keep_last=4) as saver:
        before = saver.get_tuple(cfg)
        assert before is not None
        old_messages = before.checkpoint["channel_values"]["messages"]
        # the fixture's agent made 3 + 2 tool calls with this script; a third turn makes 2 more
        model = scripted_model([3, 2, 2])
        model.i = 5 + 2  # tool calls and final answers already replayed
        # no pruning this turn, so the new state is exactly the old one plus the turn
        agent = create_agent(model, TOOLS, checkpointer=saver)
        agent.invoke({"messages": [HumanMessage("Turn 2: once more.", id="human-2")]}, cfg)
        after = agent.get_state(cfg).values["messages"]
        assert after[: len(old_messages)] == old_messages
        assert after[len(old_messages)].id == "human-2" and len(after) == len(old_messages) + 1 + 2 * 2 + 1
        assert len(list(saver.list(cfg))) == 4  # retention dropped the old-format checkpoints
        assert any(codec.record_refs(v) for v in raw.hgetall(layout.blobs(thread, "")).values())
        assert_counts_exact(raw, layout, thread)
        saver.copy_thread(thread, "copy-of-v1")
        assert agent.get_state({"configurable": {"thread_id": "copy-of-v1"}}).values["messages"] == after
        saver.delete_thread(thread)
        saver.delete_thread("copy-of-v1")
    assert raw.keys(f"{prefix}:*") == []
