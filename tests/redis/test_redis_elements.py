"""Lists stored element by element: each message once per thread, shared by the checkpoints, the pending writes
and the chunks that reference it, counted exactly through retention, retries, copies, forks and deletes."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from freemem.core.errors import StoreError
from freemem.redis import RedisSaver, codec
from freemem.redis.keys import KeyLayout
from tests.redis.helpers import assert_counts_exact, checkpoint, config, message_list, metadata, new_thread
from tests.support.redis_servers import RedisServerProcess


def _put_messages(saver: Any, parent: Any, messages: list[Any], version: int) -> Any:
    cp = checkpoint({"messages": messages}, {"messages": version})
    return saver.put(parent, cp, metadata(step=version), {"messages": version})


def test_a_new_checkpoint_stores_only_its_new_messages(saver: RedisSaver, raw: redis.Redis, prefix: str) -> None:
    thread, layout = new_thread(), KeyLayout(prefix)
    parent = config(thread)
    sizes = []
    for step in range(1, 61):  # a list that grows past CHUNK_OVER: chunks take over
        parent = _put_messages(saver, parent, message_list(step), step)
        sizes.append(saver.memory_usage(thread))
    assert raw.hlen(layout.elements(thread, "")) == assert_counts_exact(raw, layout, thread)
    leaves = 1 + 2 * 60
    assert raw.hlen(layout.elements(thread, "")) >= leaves  # every message once, plus the chunks
    growth = [b - a for a, b in zip(sizes[40:], sizes[41:])]
    # Each step adds two messages (~700 B); the whole list (60 x ~700 B) is never stored again.
    assert max(growth) < 6_000, growth
    assert saver.get_tuple(config(thread)).checkpoint["channel_values"]["messages"] == message_list(60)


def test_reads_match_inmemory_through_a_cold_saver(redis_server: RedisServerProcess, prefix: str) -> None:
    """Another process (an empty element cache) reads the same values, pending writes and history."""
    thread = new_thread()
    memory = InMemorySaver()
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as writer:
        parents = {"redis": config(thread), "memory": config(thread)}
        for step in range(1, 45):
            edited = step - 3 if step > 10 else None
            cp = checkpoint({"messages": message_list(step, edited=edited)}, {"messages": step})
            for name, target in (("redis", writer), ("memory", memory)):
                parents[name] = target.put(parents[name], cp, metadata(step=step), {"messages": step})
                target.put_writes(parents[name], [("messages", message_list(step)[-2:]), ("other", 1)], task_id=f"t{step}")
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as reader:
        got = list(reader.list(config(thread)))
        want = list(memory.list(config(thread)))
        assert len(got) == len(want) == 44
        for g, w in zip(got, want, strict=True):
            assert g.checkpoint["channel_values"] == w.checkpoint["channel_values"]
            assert g.pending_writes == w.pending_writes
            assert g.config["configurable"]["checkpoint_id"] == w.config["configurable"]["checkpoint_id"]
        fresh = RedisSaver.from_url(redis_server.url, key_prefix=prefix)
        try:
            tup = fresh.get_tuple(want[10].config)
            assert tup is not None and tup.checkpoint["channel_values"] == want[10].checkpoint["channel_values"]
        finally:
            fresh.close()


def test_keep_last_frees_the_messages_no_kept_checkpoint_references(redis_server: RedisServerProcess, raw: redis.Redis,
                                                                     prefix: str) -> None:
    thread, layout = new_thread(), KeyLayout(prefix)
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, keep_last=2) as saver:
        parent = config(thread)
        for step in range(1, 50):
            # a sliding window: the head leaves (as a fold does), so old messages must be freed
            window = message_list(step)[-12:]
            parent = _put_messages(saver, parent, window, step)
            saver.put_writes(parent, [("messages", window[-2:])], task_id=f"t{step}")
        count = assert_counts_exact(raw, layout, thread)
        assert count <= 2 * 14, count  # the two kept windows (one message apart), no history
        assert saver.get_tuple(config(thread)).checkpoint["channel_values"]["messages"] == message_list(49)[-12:]
        saver.prune([thread], strategy="keep_latest")
        assert assert_counts_exact(raw, layout, thread) <= 14
        saver.delete_thread(thread)
    assert raw.keys(f"{prefix}:*") == []


def test_retried_put_and_writes_count_once(saver: RedisSaver, raw: redis.Redis, prefix: str) -> None:
    thread, layout = new_thread(), KeyLayout(prefix)
    cp = checkpoint({"messages": message_list(40)}, {"messages": 1})
    for _ in range(3):  # the same put, retried
        stored = saver.put(config(thread), cp, metadata(step=1), {"messages": 1})
    for _ in range(2):
        saver.put_writes(stored, [("messages", message_list(3))], task_id="t1")
    assert_counts_exact(raw, layout, thread)
    saver.delete_thread(thread)
    assert raw.keys(f"{prefix}:*") == []


def test_copy_fork_delete(saver: RedisSaver, raw: redis.Redis, prefix: str) -> None:
    """A copy reads the same and survives deleting the source; a fork from an old checkpoint shares its
    messages; retention on the copy frees only what the copy no longer references."""
    source, target, layout = new_thread(), new_thread(), KeyLayout(prefix)
    parent = config(source)
    stored = []
    for step in range(1, 40):
        parent = _put_messages(saver, parent, message_list(step), step)
        stored.append(parent)
    fork = _put_messages(saver, stored[10], [*message_list(11), HumanMessage("forked", id="f")], 100)
    assert saver.get_tuple(fork).checkpoint["channel_values"]["messages"][-1].content == "forked"
    assert saver.get_tuple(stored[10]).checkpoint["channel_values"]["messages"] == message_list(11)
    saver.copy_thread(source, target)
    saver.copy_thread(source, target)  # merging twice over-counts at worst: nothing referenced is lost
    saver.delete_thread(source)
    assert raw.keys(f"{layout.thread_base(source)}*") == []
    got = saver.get_tuple(config(target, "", stored[20]["configurable"]["checkpoint_id"]))
    assert got is not None and got.checkpoint["channel_values"]["messages"] == message_list(21)
    saver.prune([target], strategy="keep_latest")
    assert saver.get_tuple(config(target)).checkpoint["channel_values"]["messages"][-1].content == "forked"
    saver.delete_thread(target)
    assert raw.keys(f"{prefix}:*") == []


def test_small_and_non_list_values_stay_whole(saver: RedisSaver, raw: redis.Redis, prefix: str) -> None:
    thread, layout = new_thread(), KeyLayout(prefix)
    values = {"small": [1, 2, 3], "text": "y" * 5000, "mapping": {str(i): [i] * 3 for i in range(400)}, "empty": []}
    cp = checkpoint(values, {k: 1 for k in values})
    stored = saver.put(config(thread), cp, metadata(), {k: 1 for k in values})
    assert saver.get_tuple(stored).checkpoint["channel_values"] == values
    assert not raw.exists(layout.elements(thread, ""))
    assert all(not codec.record_refs(v) for v in raw.hgetall(layout.blobs(thread, "")).values())


@pytest.mark.parametrize("n", [1, 31, 32, 33, 64, 65, 300])
def test_chunked_round_trip(n: int) -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer()
    value = [{"i": i, "text": "z" * 600} for i in range(n)]
    enc = codec.encode_value(serde, value)
    elements = {**enc.leaves, **enc.chunks}
    assert codec.decode_value(serde, enc.record, elements) == value
    assert bool(enc.leaves) == (n > 1)  # one element of ~620 B stays whole; two add up past SPLIT_MIN_BYTES
    assert bool(enc.chunks) == (n > codec.CHUNK_OVER)
    cuts = codec.chunk_bounds(list(enc.leaves))
    assert cuts == sorted(cuts) and (not cuts or cuts[-1] == len(enc.leaves))


def test_leased_writes_count_exactly_and_a_refused_one_stores_no_message(
        redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    """Behind the writer lease the scripts store the element records themselves: a refused put or put_writes
    leaves no message record behind, an accepted one is counted like any other."""
    from freemem.redis import LeaseError

    thread, layout = new_thread(), KeyLayout(prefix)
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60, lease_wait=1) as a, \
            RedisSaver.from_url(redis_server.url, key_prefix=prefix, lease=True, lease_ttl=60, lease_wait=1) as b:
        parent = config(thread)
        for step in range(1, 36):
            parent = _put_messages(a, parent, message_list(step), step)
            a.put_writes(parent, [("messages", message_list(step)[-2:])], task_id=f"t{step}")
        stored = assert_counts_exact(raw, layout, thread)
        raw.delete(layout.lease(thread))  # A's lease expired during a long step (A does not know) ...
        b.acquire(thread)  # ... and B took the thread
        late = [HumanMessage("late " + "z" * 2000, id="late")]
        with pytest.raises(LeaseError):
            _put_messages(a, parent, [*message_list(35), *late], 36)
        b.release(thread)
        a.acquire(thread)
        raw.delete(layout.lease(thread))
        b.acquire(thread)
        with pytest.raises(LeaseError):
            a.put_writes(parent, [("messages", [*late, *message_list(2)])], task_id="late")
        assert assert_counts_exact(raw, layout, thread) == stored  # nothing of the refused writes
        b.put_writes(parent, [("messages", [*late, *message_list(2)])], task_id="b-task")
        assert assert_counts_exact(raw, layout, thread) == stored + 1
        b.release(thread)
        a.delete_thread(thread)
    assert [k for k in raw.keys(f"{prefix}:*") if not k.endswith(b":lease:wake")] == []  # the wake list expires


def test_delete_for_runs_frees_only_that_runs_messages(saver: RedisSaver, raw: redis.Redis, prefix: str) -> None:
    thread, layout = new_thread(), KeyLayout(prefix)
    parent = config(thread)
    kept = []
    for step in range(1, 41):
        run = "run-a" if step <= 20 else "run-b"
        cp = checkpoint({"messages": message_list(step)}, {"messages": step})
        parent = saver.put(parent, cp, metadata(step=step, run_id=run), {"messages": step})
        saver.put_writes(parent, [("messages", message_list(step)[-2:])], task_id=f"t{step}")
        if run == "run-b":
            kept.append((parent, message_list(step)))
    saver.delete_for_runs(["run-a"])
    assert_counts_exact(raw, layout, thread)
    assert len(list(saver.list(config(thread)))) == 20
    for stored, messages in kept[::5]:
        tup = saver.get_tuple(stored)
        assert tup is not None and tup.checkpoint["channel_values"]["messages"] == messages


@pytest.mark.parametrize("extra", [[], [None, b"raw bytes " * 80, "text " * 200]])
def test_a_list_decodes_as_it_was_whatever_its_elements(extra: list[Any]) -> None:
    """One msgpack call decodes a list of msgpack elements (array header + their bytes); other element types
    (``null``, ``bytes``) are decoded one by one. Both give what was stored."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer()
    value = [*message_list(20), {"nested": [1, 2, {"x": "y" * 700}]}, *extra]
    enc = codec.encode_value(serde, value)
    assert enc.leaves and enc.record != codec.encode_typed(serde, value)
    assert codec.decode_value(serde, enc.record, {**enc.leaves, **enc.chunks}) == value


@pytest.mark.parametrize("n", [2, 31, 33, 65, 300])
@pytest.mark.parametrize("mixed", [False, True])
def test_expanded_forms_decode_alone_and_match_what_a_cold_reader_builds(n: int, mixed: bool) -> None:
    """What a write keeps in expanded form (per chunk, or per element of a short list) is what a reader rebuilds
    from the element records; the value decodes the same from records alone, from the expanded forms alone, and
    from a mix -- for lists of msgpack elements and lists that mix other element types in (``null``, ``bytes``)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer()
    value: list[Any] = [{"i": i, "text": "z" * 600} for i in range(n)]
    if mixed:
        value[1::7] = [None if i % 2 else b"raw " * 200 for i in range(len(value[1::7]))]
    enc = codec.encode_value(serde, value)
    records = {**enc.leaves, **enc.chunks}
    top = codec.record_refs(enc.record)
    assert set(enc.expanded) == set(top)  # the digests the record names directly
    rebuilt: codec.Expansions = {}
    assert codec.decode_value(serde, enc.record, records, rebuilt) == value  # cold: from records, filling
    assert rebuilt == enc.expanded
    assert codec.decode_value(serde, enc.record, {}, dict(enc.expanded)) == value  # warm: no record needed
    half = dict(list(enc.expanded.items())[::2])
    assert codec.decode_value(serde, enc.record, records, half) == value
    if mixed:
        assert any(name != b"msgpack" for part in enc.expanded.values() for name, _, _ in part.runs)
    else:  # adjacent msgpack elements are one run: one serde call per chunk
        assert all(len(part.runs) == 1 for part in enc.expanded.values())
    with pytest.raises(StoreError, match="missing from Redis"):
        codec.decode_value(serde, enc.record, {}, {})


def test_pending_writes_decode_from_expanded_forms() -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer()
    value = message_list(40)
    enc = codec.encode_write(serde, "task", 0, "messages", value, "", split=True)
    assert enc.leaves and enc.expanded
    _, (task, channel, got) = codec.decode_write(serde, enc.record, {}, dict(enc.expanded))
    assert (task, channel, got) == ("task", "messages", value)


def test_reads_after_writes_touch_no_element_record_and_a_cold_cache_reads_the_same(
        redis_server: RedisServerProcess, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A saver that wrote (or read) a checkpoint decodes its messages from the expanded forms it kept; one whose
    caches are empty, or too small to keep anything, reads the same values through the element records."""
    thread = new_thread()
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as writer:
        parent = config(thread)
        for step in range(1, 50):
            parent = _put_messages(writer, parent, message_list(step), step)
            writer.put_writes(parent, [("messages", message_list(step)[-2:])], task_id=f"t{step}")
        want = [(t.checkpoint["channel_values"], t.pending_writes) for t in writer.list(config(thread))]
        walked = []  # element records looked into
        real = codec.chunk_data
        monkeypatch.setattr(codec, "chunk_data", lambda record: walked.append(record) or real(record))
        latest = writer.get_tuple(config(thread))
        assert latest is not None and latest.checkpoint["channel_values"]["messages"] == message_list(49)
        assert walked == []  # every digest the checkpoint names was expanded when it was written
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as cold:
        got = [(t.checkpoint["channel_values"], t.pending_writes) for t in cold.list(config(thread))]
        assert got == want and walked
        assert [(t.checkpoint["channel_values"], t.pending_writes) for t in cold.list(config(thread))] == want
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix) as tiny:
        tiny.context.elements.max_bytes = 0
        tiny.context.expanded.max_bytes = 0
        assert [(t.checkpoint["channel_values"], t.pending_writes) for t in tiny.list(config(thread))] == want
        assert tiny.context.expanded.size == 0


class _XorCipher:
    """A stand-in for AES with a random nonce (pycryptodome is not a dependency): equal plaintexts encrypt to
    different bytes, as ``EncryptedSerializer.from_pycryptodome_aes`` does."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _stream(self, nonce: bytes, n: int) -> bytes:
        import hashlib

        out = b""
        counter = 0
        while len(out) < n:
            out += hashlib.sha256(self.key + nonce + counter.to_bytes(8, "big")).digest()
            counter += 1
        return out[:n]

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        import os

        nonce = os.urandom(16)
        return "xor", nonce + bytes(a ^ b for a, b in zip(plaintext, self._stream(nonce, len(plaintext)), strict=True))

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        assert ciphername == "xor"
        nonce, body = ciphertext[:16], ciphertext[16:]
        return bytes(a ^ b for a, b in zip(body, self._stream(nonce, len(body)), strict=True))


def test_an_encrypted_serde_reads_back_warm_and_cold_and_stores_no_plaintext(
        redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    """With LangGraph's ``EncryptedSerializer`` every element is its own type (``msgpack+<cipher>``): the
    expanded forms hold ciphertext, one item per run, and decode one by one; Redis holds no plaintext."""
    from langgraph.checkpoint.serde.encrypted import EncryptedSerializer

    serde = EncryptedSerializer(_XorCipher(b"k" * 32))
    thread = new_thread()
    memory = InMemorySaver()
    secret = "SECRET-MARKER"
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, serde=serde) as writer:
        parents = {"redis": config(thread), "memory": config(thread)}
        for step in range(1, 40):
            messages = [*message_list(step), HumanMessage(f"{secret} {step} " + "q" * 600, id=f"s{step}")]
            cp = checkpoint({"messages": messages}, {"messages": step})
            for name, target in (("redis", writer), ("memory", memory)):
                parents[name] = target.put(parents[name], cp, metadata(step=step), {"messages": step})
        assert writer.context.expanded.size > 0
        runs = [run for part in codec.encode_value(serde, messages).expanded.values() for run in part.runs]
        assert runs and all(name == b"msgpack+xor" and n == 1 for name, _, n in runs)
        want = [t.checkpoint["channel_values"] for t in memory.list(config(thread))]
        assert [t.checkpoint["channel_values"] for t in writer.list(config(thread))] == want
    with RedisSaver.from_url(redis_server.url, key_prefix=prefix, serde=serde) as cold:
        assert [t.checkpoint["channel_values"] for t in cold.list(config(thread))] == want
    for key in raw.keys(f"{prefix}:*"):
        if raw.type(key) == b"hash":
            assert not any(secret.encode() in v for v in raw.hvals(key)), key
