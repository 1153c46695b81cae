"""Regenerates ``thread_v1.json.gz``: a thread stored by freemem's checkpointer before lists were stored element by
element (every checkpoint held its whole messages list), as raw Redis keys, with what reading it gave then.

It was generated from commit c99f536 (the last commit writing that format) with::

    git archive c99f536 freemem | tar -x -C /tmp/freemem-v1
    PYTHONPATH=/tmp/freemem-v1:$PWD .venv/bin/python tests/redis/data/make_thread_v1.py

``tests/redis/test_redis_migration.py`` loads the keys into a fresh Redis and reads them with today's code.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.load import dumpd
from langchain_core.messages import HumanMessage

from freemem.langgraph import FreeMemoryMiddleware
from freemem.redis import RedisSaver
from tests.langgraph.lgfakes import TOOLS, make_memory, scripted_model
from tests.support.redis_servers import start_server

PREFIX = "v1"
THREAD = "thread-v1"
OUT = Path(__file__).with_name("thread_v1.json.gz")


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def tuple_record(tup: Any) -> dict[str, Any]:
    """What a checkpoint tuple reads as, in JSON (messages through LangChain's own ``dumpd``)."""
    return {
        "config": tup.config["configurable"],
        "parent": tup.parent_config["configurable"]["checkpoint_id"] if tup.parent_config else None,
        "metadata": dumpd(tup.metadata),
        "channel_values": dumpd(tup.checkpoint["channel_values"]),
        "channel_versions": tup.checkpoint["channel_versions"],
        "pending_writes": [[t, c, dumpd(v)] for t, c, v in tup.pending_writes or []],
    }


def fingerprint(record: dict[str, Any]) -> str:
    """SHA-256 of a tuple record's canonical JSON (the fixture keeps whole records for a few checkpoints only)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp))
        try:
            saver = RedisSaver.from_url(server.url, key_prefix=PREFIX)
            memory = make_memory(budget=2500)
            agent = create_agent(scripted_model([3, 2]), TOOLS, middleware=[FreeMemoryMiddleware(memory)],
                                 checkpointer=saver)
            cfg = {"configurable": {"thread_id": THREAD}}
            for turn in range(2):
                agent.invoke({"messages": [HumanMessage(f"Turn {turn}: look around.", id=f"human-{turn}")]}, cfg)
            records = [tuple_record(t) for t in saver.list(cfg)]
            tuples = [{"id": r["config"]["checkpoint_id"], "sha256": fingerprint(r)} for r in records]
            whole = [records[0], records[len(records) // 2]]
            raw = server.client()
            keys = []
            for key in sorted(raw.keys(f"{PREFIX}:*")):
                kind = raw.type(key).decode()
                if kind == "hash":
                    items = [x for pair in sorted(raw.hgetall(key).items()) for x in pair]
                elif kind == "zset":
                    items = [x for m, score in raw.zrange(key, 0, -1, withscores=True) for x in (m, str(score).encode())]
                elif kind == "set":
                    items = sorted(raw.smembers(key))
                else:
                    sys.exit(f"unexpected key type {kind} for {key!r}")
                keys.append({"key": b64(key), "type": kind, "items": [b64(x) for x in items]})
            text = json.dumps({"prefix": PREFIX, "thread": THREAD, "keys": keys, "tuples": tuples, "whole": whole},
                              indent=1, sort_keys=True) + "\n"
            OUT.write_bytes(gzip.compress(text.encode(), mtime=0))
            saver.close()
            raw.close()
        finally:
            server.stop()
    print(f"wrote {OUT}: {len(keys)} keys, {len(tuples)} checkpoints")


if __name__ == "__main__":
    main()
