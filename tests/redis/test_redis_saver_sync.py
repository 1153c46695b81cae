"""The synchronous RedisSaver on its own methods (the conformance suite only drives the async ones): the same
operations as the suite's capabilities, checked against InMemorySaver (the reference) on a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from freemem.core.errors import ConfigError
from freemem.redis import RedisSaver
from tests.redis.helpers import CountingDriver, checkpoint, config, metadata, new_thread, put_chain
from tests.support.redis_servers import RedisServerProcess


def _shape(tup: CheckpointTuple) -> dict[str, Any]:
    """What a checkpointer must round-trip, without fields InMemorySaver and Redis may spell differently."""
    return {
        "config": tup.config["configurable"],
        "id": tup.checkpoint["id"],
        "values": tup.checkpoint["channel_values"],
        "versions": tup.checkpoint["channel_versions"],
        "metadata": dict(tup.metadata),
        "parent": None if tup.parent_config is None else tup.parent_config["configurable"],
        "writes": list(tup.pending_writes or []),
    }


def _populate(saver: Any, threads: list[str]) -> None:
    """The same history in any saver: two namespaces, runs, writes, metadata to filter on."""
    for t_index, thread in enumerate(threads):
        for ns in ("", "child:1"):
            parent = config(thread, ns)
            for step in range(5):
                cp = _FIXED[(t_index, ns, step)]
                md = metadata(step=step, source="loop" if step % 2 else "input", run_id=f"run-{step % 2}",
                              user={"name": "ann"} if step == 3 else "bob")
                parent = saver.put(parent, cp, md, {"v": step + 1, "w": step + 1})
                saver.put_writes(parent, [("v", step * 10), ("__error__", "boom")], task_id=f"task-{step}")
                saver.put_writes(parent, [("w", "first")], task_id="task-x", task_path="p")
                saver.put_writes(parent, [("w", "second")], task_id="task-x", task_path="p")  # ignored


_FIXED = {
    (t, ns, step): checkpoint({"v": f"{t}-{ns}-{step}", "w": [step] * 3}, {"v": step + 1, "w": step + 1})
    for t in range(2)
    for ns in ("", "child:1")
    for step in range(5)
}


@pytest.fixture
def pair(saver: RedisSaver) -> tuple[RedisSaver, InMemorySaver, list[str]]:
    threads = [new_thread(), new_thread()]
    reference = InMemorySaver()
    _populate(saver, threads)
    _populate(reference, threads)
    return saver, reference, threads


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("thread", {}),
    ("thread+ns", {"ns": ""}),
    ("thread+child ns", {"ns": "child:1"}),
    ("limit", {"ns": "", "limit": 3}),
    ("filter source", {"filter": {"source": "loop"}}),
    ("filter nested", {"filter": {"user": {"name": "ann"}}}),
    ("filter two keys", {"filter": {"source": "input", "run_id": "run-0"}}),
    ("filter none", {"filter": {"source": "nope"}}),
    ("before", {"before_step": 3}),
    ("before+limit+filter", {"ns": "", "before_step": 4, "limit": 1, "filter": {"source": "loop"}}),
]


@pytest.mark.parametrize("name,query", QUERIES, ids=[q[0] for q in QUERIES])
def test_list_matches_inmemory(pair: tuple[RedisSaver, InMemorySaver, list[str]], name: str, query: dict[str, Any]) -> None:
    saver, reference, threads = pair
    thread = threads[0]
    conf = config(thread, query["ns"]) if "ns" in query else {"configurable": {"thread_id": thread}}
    before = None
    if "before_step" in query:
        ref_ids = [t.checkpoint["id"] for t in reference.list(config(thread, ""))]
        before = config(thread, "", sorted(ref_ids)[query["before_step"]])
    kwargs = {"filter": query.get("filter"), "before": before, "limit": query.get("limit")}
    got = [_shape(t) for t in saver.list(conf, **kwargs)]
    want = [_shape(t) for t in reference.list(conf, **kwargs)]
    if "ns" not in query:
        # Across namespaces InMemorySaver goes namespace by namespace, Redis merges by id (both newest first
        # within a namespace); compare as sets there.
        got.sort(key=lambda s: (s["config"]["checkpoint_ns"], s["id"]))
        want.sort(key=lambda s: (s["config"]["checkpoint_ns"], s["id"]))
    assert [g["id"] for g in got] == [w["id"] for w in want]
    assert got == want
    assert got or query.get("filter") == {"source": "nope"}


def test_get_tuple_matches_inmemory(pair: tuple[RedisSaver, InMemorySaver, list[str]]) -> None:
    saver, reference, threads = pair
    for thread in threads:
        for ns in ("", "child:1"):
            latest = saver.get_tuple(config(thread, ns))
            assert latest is not None
            assert _shape(latest) == _shape(reference.get_tuple(config(thread, ns)))  # type: ignore[arg-type]
            for tup in reference.list(config(thread, ns)):
                mine = saver.get_tuple(tup.config)
                assert mine is not None and _shape(mine) == _shape(tup)
    assert saver.get_tuple(config(new_thread())) is None
    assert saver.get_tuple(config(threads[0], "", "1ef-not-there")) is None


def test_list_all_threads(pair: tuple[RedisSaver, InMemorySaver, list[str]]) -> None:
    saver, reference, threads = pair
    got = sorted((t.config["configurable"]["thread_id"], t.checkpoint["id"]) for t in saver.list(None))
    want = sorted((t.config["configurable"]["thread_id"], t.checkpoint["id"]) for t in reference.list(None))
    assert got == want and len(got) == 20


def test_delete_copy_prune(pair: tuple[RedisSaver, InMemorySaver, list[str]]) -> None:
    """InMemorySaver lacks copy_thread/prune/delete_for_runs, so the expected results are spelled out."""
    saver, reference, threads = pair
    everything = {"configurable": {"thread_id": threads[0]}}
    before_copy = sorted((_shape(t)["config"]["checkpoint_ns"], _shape(t)["id"], repr(_shape(t)["values"]),
                          repr(_shape(t)["writes"])) for t in saver.list(everything))
    target = new_thread()
    saver.copy_thread(threads[0], target)
    saver.copy_thread(threads[0], target)  # a retry merges into the same data
    copied = sorted((_shape(t)["config"]["checkpoint_ns"], _shape(t)["id"], repr(_shape(t)["values"]),
                     repr(_shape(t)["writes"])) for t in saver.list({"configurable": {"thread_id": target}}))
    assert copied == before_copy and len(copied) == 10
    head = saver.get_tuple(config(target, "child:1"))
    assert head is not None and head.config["configurable"]["thread_id"] == target
    assert head.parent_config is not None and head.parent_config["configurable"]["thread_id"] == target

    saver.prune([threads[1]], strategy="keep_latest")
    left = [_shape(t) for t in saver.list({"configurable": {"thread_id": threads[1]}})]
    assert sorted(s["config"]["checkpoint_ns"] for s in left) == ["", "child:1"]  # newest of each namespace
    latest = {ns: _shape(reference.get_tuple(config(threads[1], ns))) for ns in ("", "child:1")}  # type: ignore[arg-type]
    assert all(s == latest[s["config"]["checkpoint_ns"]] for s in left)  # values and writes still whole

    saver.delete_for_runs(["run-1"])
    for thread in (threads[0], target):
        runs = [t.metadata.get("run_id") for t in saver.list({"configurable": {"thread_id": thread}})]
        assert runs and set(runs) == {"run-0"}
        for tup in saver.list({"configurable": {"thread_id": thread}}):
            ref = reference.get_tuple(config(threads[0], tup.config["configurable"]["checkpoint_ns"],
                                             tup.checkpoint["id"]))
            assert ref is not None and tup.checkpoint["channel_values"] == ref.checkpoint["channel_values"]

    saver.delete_thread(threads[0])
    assert list(saver.list(everything)) == []
    assert saver.thread_keys(threads[0]) == []
    assert list(saver.list({"configurable": {"thread_id": target}}))  # the copy is independent
    saver.prune([target], strategy="delete")
    assert saver.get_tuple(config(target, "")) is None
    with pytest.raises(ConfigError):
        saver.prune([target], strategy="sideways")


def test_round_trips(redis_server: RedisServerProcess, prefix: str) -> None:
    """get_tuple and put are one round trip each; list with a limit is bounded, not O(history)."""
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as saver:
        driver = CountingDriver(saver.client, "test")
        saver._driver = driver
        thread = new_thread()
        stored = put_chain(saver, thread, 200)
        assert driver.round_trips == 200
        driver.round_trips = 0
        assert saver.get_tuple(stored[-1]) is not None
        assert driver.round_trips == 1
        driver.round_trips = 0
        assert len(list(saver.list(config(thread, ""), limit=5))) == 5
        assert driver.round_trips <= 2


def test_special_writes_overwrite_regular_writes_keep_first(saver: RedisSaver) -> None:
    thread = new_thread()
    (conf,) = put_chain(saver, thread, 1)
    saver.put_writes(conf, [("a", 1), ("b", 2)], task_id="t1")
    saver.put_writes(conf, [("a", 9), ("b", 9)], task_id="t1")  # a retry: first values stay
    saver.put_writes(conf, [("__interrupt__", "first")], task_id="t2")
    saver.put_writes(conf, [("__interrupt__", "second")], task_id="t2")  # special: last value wins
    tup = saver.get_tuple(conf)
    assert tup is not None
    assert sorted(tup.pending_writes or []) == [("t1", "a", 1), ("t1", "b", 2), ("t2", "__interrupt__", "second")]


def test_thread_and_namespace_ids_cannot_collide(saver: RedisSaver) -> None:
    """Ids with braces, colons and glob characters stay separate threads / namespaces."""
    odd = ["a}b", "a:b", "a*", "a", "", "%", "{x}", "a\\b"]
    for i, thread in enumerate(odd):
        put_chain(saver, thread, 1, channel=f"c{i}", checkpoint_ns="n:s*")
    for i, thread in enumerate(odd):
        tups = list(saver.list({"configurable": {"thread_id": thread}}))
        assert len(tups) == 1
        assert tups[0].checkpoint["channel_values"] == {f"c{i}": 0}
        assert tups[0].config["configurable"]["checkpoint_ns"] == "n:s*"
    saver.delete_thread("a*")
    assert saver.get_tuple(config("a", "n:s*")) is not None


def test_prefixes_isolate_tenants(redis_server: RedisServerProcess) -> None:
    with RedisSaver.from_url(redis_server.url, key_prefix="tenantA") as a, \
            RedisSaver.from_url(redis_server.url, key_prefix="tenantB") as b:
        thread = new_thread()
        put_chain(a, thread, 2)
        assert b.get_tuple(config(thread)) is None
        assert all(k.startswith("tenantA:{") for k in a.thread_keys(thread))
        b.delete_thread(thread)
        assert a.get_tuple(config(thread)) is not None
    with pytest.raises(ConfigError):
        RedisSaver.from_url(redis_server.url, key_prefix="bad{prefix}")


class _State(TypedDict, total=False):
    count: int
    log: list[str]


def test_sync_graph_end_to_end(saver: RedisSaver) -> None:
    """A real StateGraph: invoke, get_state, history, update_state and time travel match InMemorySaver."""

    def step(state: _State) -> dict[str, Any]:
        return {"count": state.get("count", 0) + 1, "log": [*state.get("log", []), f"turn {state.get('count', 0)}"]}

    builder = StateGraph(_State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    results = []
    for checkpointer in (saver, InMemorySaver()):
        graph = builder.compile(checkpointer=checkpointer)
        conf = {"configurable": {"thread_id": "same-thread"}}
        for _ in range(3):
            graph.invoke({}, conf)
        state = graph.get_state(conf)
        assert state.values == {"count": 3, "log": ["turn 0", "turn 1", "turn 2"]}
        history = list(graph.get_state_history(conf))
        graph.update_state(conf, {"count": 10})
        assert graph.get_state(conf).values["count"] == 10
        replay = graph.invoke(None, history[3].config)  # time travel from an older checkpoint
        results.append(([(h.values, h.next, h.metadata["step"], h.metadata["source"]) for h in history], replay))
    assert results[0] == results[1]
    assert len(results[0][0]) == 9


def test_missing_thread_id_is_a_config_error(saver: RedisSaver) -> None:
    with pytest.raises(ConfigError, match="thread_id"):
        saver.get_tuple({"configurable": {}})
    with pytest.raises(ConfigError, match="checkpoint_id"):
        saver.put_writes(config(new_thread()), [("a", 1)], task_id="t")


def test_get_tuple_cache_is_verified_against_other_writers(redis_server: RedisServerProcess, prefix: str) -> None:
    """``get_tuple`` reads checkpoints this saver knows with plain commands in MULTI/EXEC; whatever another
    saver (another process) writes, deletes or prunes meanwhile, the answer is the server's, never the cache's."""
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as a, \
            RedisSaver.from_url(redis_server.url, key_prefix=prefix) as b:
        thread = new_thread()
        first = put_chain(a, thread, 2)
        got = a.get_tuple(config(thread))
        assert got is not None and got.checkpoint["channel_values"] == {"v": 1}  # cache hit (a wrote it)
        a.put_writes(first[-1], [("v", 99)], task_id="t1")
        got = a.get_tuple(config(thread))
        assert got is not None and got.pending_writes == [("t1", "v", 99)]  # writes are read from the server
        newer = b.put(first[-1], checkpoint({"v": 7}, {"v": 3}), metadata(step=2), {"v": 3})
        got = a.get_tuple(config(thread))  # a's cache names an older checkpoint: it must not be returned
        assert got is not None and got.config == newer and got.checkpoint["channel_values"] == {"v": 7}
        b.delete_thread(thread)
        assert a.get_tuple(config(thread)) is None
        assert a.get_tuple(first[0]) is None

        pruned = new_thread()
        kept = put_chain(a, pruned, 3)
        assert a.get_tuple(kept[0]) is not None
        b.prune([pruned], strategy="keep_latest")
        assert a.get_tuple(kept[0]) is None
        latest = a.get_tuple(config(pruned))
        assert latest is not None and latest.config == kept[-1] and latest.checkpoint["channel_values"] == {"v": 2}


def test_large_values_round_trip(saver: RedisSaver) -> None:
    """Values of ~1 MB go through plain HSET/HSETNX/HMGET (not Lua) and come back intact."""
    thread = new_thread()
    big = "x" * 1_000_000
    stored = saver.put(config(thread), checkpoint({"v": big}, {"v": 1}), metadata(), {"v": 1})
    saver.put_writes(stored, [("v", big + "w"), ("__interrupt__", big + "i")], task_id="t")
    got = saver.get_tuple(config(thread))
    assert got is not None and got.checkpoint["channel_values"] == {"v": big}
    assert sorted(w[2] for w in got.pending_writes) == [big + "i", big + "w"]
