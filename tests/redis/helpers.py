"""Small builders shared by the Redis tests."""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint

from freemem.redis._drivers import SyncDriver
from freemem.redis.protocol import Batch
from freemem_bench.store import tool_turn


def config(thread_id: str, checkpoint_ns: str = "", checkpoint_id: str | None = None) -> RunnableConfig:
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def checkpoint(values: dict[str, Any] | None = None, versions: dict[str, Any] | None = None) -> Checkpoint:
    values = values or {}
    return generate_checkpoint(
        checkpoint_id=str(uuid6(clock_seq=-1)),
        channel_values=values,
        channel_versions=versions if versions is not None else {k: 1 for k in values},
    )


def metadata(step: int = 0, source: str = "loop", **extra: Any) -> CheckpointMetadata:
    return {"source": source, "step": step, "parents": {}, **extra}  # type: ignore[typeddict-item]


def put_chain(
    saver: Any,
    thread_id: str,
    n: int,
    *,
    checkpoint_ns: str = "",
    channel: str = "v",
    run_id: str | None = None,
) -> list[RunnableConfig]:
    """n checkpoints in a parent chain; checkpoint i stores ``{channel: i}`` at version i + 1."""
    stored: list[RunnableConfig] = []
    parent: RunnableConfig = config(thread_id, checkpoint_ns)
    for i in range(n):
        cp = checkpoint({channel: i}, {channel: i + 1})
        extra = {"run_id": run_id} if run_id else {}
        parent = saver.put(parent, cp, metadata(step=i, **extra), {channel: i + 1})
        stored.append(parent)
    return stored


def new_thread() -> str:
    return f"thread-{uuid.uuid4().hex[:8]}"


class CountingDriver(SyncDriver):
    """A SyncDriver that counts round trips (batches) and commands."""

    def __init__(self, client: Any, where: str) -> None:
        super().__init__(client, where)
        self.round_trips = 0
        self.commands = 0

    def execute(self, batch: Batch) -> list[Any]:
        self.round_trips += 1
        self.commands += len(batch.commands)
        return super().execute(batch)


def scripted_transcript(turns: int) -> list[dict[str, Any]]:
    """The scripted agent's messages after ``turns`` turns, unpruned (see freemem_bench.store)."""
    msgs: list[dict[str, Any]] = [{"role": "system", "id": "sys", "content": "You are a careful coding agent."},
                                  {"role": "user", "id": "u0", "content": "Read every part and summarise the repository."}]
    for turn in range(turns):
        msgs += tool_turn(turn)
    return msgs


def message_list(n: int, *, edited: int | None = None) -> list[Any]:
    """A human message, then ``n`` tool calls with ~600-byte results (result ``edited`` shortened, as pruning
    would)."""
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    out: list[Any] = [HumanMessage("Read every part.", id="h0")]
    for i in range(n):
        out.append(AIMessage(f"Reading part {i}.", id=f"a{i}",
                             tool_calls=[{"name": "read", "args": {"part": i}, "id": f"c{i}", "type": "tool_call"}]))
        text = f"part {i}: " + " ".join(f"w{(i * 7 + j) % 97}" for j in range(150)) if i != edited else f"[part {i} pruned]"
        out.append(ToolMessage(text, tool_call_id=f"c{i}", id=f"t{i}"))
    return out


def assert_counts_exact(raw: Any, layout: Any, thread_id: str, checkpoint_ns: str = "") -> int:
    """The element store of a namespace is exactly what its records reference: every count equals the number
    of references to that digest from the channel values, the pending writes and the stored chunks; every
    element record is counted and every counted one is stored. Returns how many element records there are."""
    from collections import Counter

    from freemem.redis import codec

    blobs = raw.hgetall(layout.blobs(thread_id, checkpoint_ns))
    elements = raw.hgetall(layout.elements(thread_id, checkpoint_ns))
    counts = {d: int(c) for d, c in raw.hgetall(layout.element_counts(thread_id, checkpoint_ns)).items()}
    expected: Counter[bytes] = Counter()
    for record in blobs.values():
        expected.update(codec.record_refs(record))
    for cid in raw.zrange(layout.index(thread_id, checkpoint_ns), 0, -1):
        fields = raw.hgetall(layout.checkpoint(thread_id, checkpoint_ns, cid.decode()))
        expected.update(codec.write_refs(fields))
    for record in elements.values():
        expected.update(codec.record_refs(record))
    assert counts == dict(expected), "reference counts differ from the references stored"
    assert set(elements) == set(counts), "element records and counted digests differ"
    return len(elements)
