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
            archive.record(thread, {"id": "e1", "rounds": [[{"original": "x", "tokens": 1}]]})
            keys = saver.thread_keys(thread) + list(saver.context.layout.archive_keys(thread))
            slots = {saver.client.keyslot(k) for k in keys}
            assert len(slots) == 1, keys
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
