"""Cluster safety on a real 3-master Redis Cluster: one hash tag (one slot) per thread, the sync saver and the
archive through RedisCluster, operations that span threads (list all, delete_for_runs) across nodes."""

from __future__ import annotations

import pytest
import redis

from freemem.redis import RedisArchive, RedisSaver
from tests.redis.helpers import config, put_chain
from tests.support.redis_servers import RedisClusterProcess

pytestmark = pytest.mark.cluster


def test_every_key_of_a_thread_is_in_one_slot(redis_cluster: RedisClusterProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_cluster.url, key_prefix=prefix, cluster=True, keep_last=4, ttl=60) as saver, \
            RedisArchive.from_url(redis_cluster.url, key_prefix=prefix, cluster=True) as archive:
        assert isinstance(saver.client, redis.RedisCluster)
        threads = [f"thread-{i}" for i in range(12)]
        slots_used = set()
        for thread in threads:
            put_chain(saver, thread, 6, run_id=f"run-{thread}")
            put_chain(saver, thread, 2, checkpoint_ns="child:x", channel="c")
            archive.record(thread, {"id": "e1", "rounds": [[{"original": f"The Prius is in {thread}", "tokens": 1}]]})
            layout = archive.context.layout
            keys = saver.thread_keys(thread) + list(layout.archive_keys(thread) + layout.search_keys(thread))
            slots = {saver.client.keyslot(k) for k in keys}
            assert len(slots) == 1, keys
            # the search index is written and read in the thread's slot, by one script each
            (hit,) = archive.search(thread, f"Prius {thread}", k=3)
            assert hit.event_id == "e1" and thread in hit.text
            slots_used |= slots
        nodes = {saver.client.get_node_from_key(f"{prefix}:{{{t}}}:reg").name for t in threads}
        assert len(nodes) >= 2  # the threads really are spread over the masters


def test_cross_thread_operations_on_cluster(redis_cluster: RedisClusterProcess, prefix: str) -> None:
    with RedisSaver.from_url(redis_cluster.url, key_prefix=prefix, cluster=True) as saver:
        threads = [f"t{i}" for i in range(8)]
        for thread in threads:
            put_chain(saver, thread, 3, run_id="shared" if thread in ("t1", "t5") else f"own-{thread}")
        assert {t.config["configurable"]["thread_id"] for t in saver.list(None)} == set(threads)  # scan all nodes
        saver.delete_for_runs(["shared"])
        assert saver.get_tuple(config("t1")) is None and saver.get_tuple(config("t5")) is None
        assert saver.get_tuple(config("t2")) is not None
        saver.copy_thread("t2", "t1")  # across slots: export then import in the target's slot
        assert [t.checkpoint["channel_values"] for t in saver.list(config("t1", ""))] == [{"v": 2}, {"v": 1}, {"v": 0}]
        saver.prune(threads, strategy="keep_latest")
        assert all(len(list(saver.list(config(t, "")))) <= 1 for t in threads)
        saver.prune(threads, strategy="delete")
        assert list(saver.list(None)) == []


def test_messages_stored_once_on_cluster(redis_cluster: RedisClusterProcess, prefix: str) -> None:
    """Element records, their counts and retention live in the thread's slot; a copy across slots and deletes
    keep them exact."""
    from tests.redis.helpers import checkpoint, message_list, metadata

    with RedisSaver.from_url(redis_cluster.url, key_prefix=prefix, cluster=True, keep_last=3, ttl=60) as saver:
        for thread in ("thread-a", "thread-b"):
            parent = config(thread)
            for step in range(1, 41):
                messages = message_list(step, edited=step - 2 if step > 2 else None)
                parent = saver.put(parent, checkpoint({"messages": messages}, {"messages": step}),
                                   metadata(step=step), {"messages": step})
                saver.put_writes(parent, [("messages", messages[-2:])], task_id=f"task-{step}")
            keys = saver.thread_keys(thread)
            layout = saver.context.layout
            assert layout.elements(thread, "") in keys and layout.element_counts(thread, "") in keys
            assert len({saver.client.keyslot(k) for k in keys}) == 1
            assert len(list(saver.list(config(thread, "")))) == 3
        want = saver.get_tuple(config("thread-a"))
        saver.copy_thread("thread-a", "thread-c")
        saver.delete_thread("thread-a")
        got = saver.get_tuple(config("thread-c"))
        assert got is not None and want is not None
        assert got.checkpoint["channel_values"] == want.checkpoint["channel_values"]
        assert got.pending_writes == want.pending_writes
        saver.prune(["thread-b", "thread-c"], strategy="delete")
        assert list(saver.list(None)) == []
