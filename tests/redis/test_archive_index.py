"""The Redis archive's search index itself (the contract suite checks what search returns): packed postings that
stay exact when an event is re-recorded (by this version or another), no copy of the passages, the core's BM25
scores, the archive's TTL, a clear error when a thread runs out of passage numbers, and an index of the earlier
format (a sorted set of postings, passages stored apart) replaced on the thread's next search."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from freemem.archives.search import rank_events
from freemem.core.errors import StoreError
from freemem.core.passages import event_passages, terms
from freemem.redis import RedisArchive, RedisSaver
from freemem.redis.archive import LENGTH, MAX_PASSAGES, read_postings
from tests.redis.helpers import put_chain
from tests.support.redis_servers import RedisServerProcess


def _event(event_id: str, *texts: str, created_at: float = 1000.0) -> dict[str, Any]:
    return {"id": event_id, "created_at": created_at,
            "rounds": [[{"original": text, "tokens": 9, "marker": f"[x{i}]", "pruned_start": 0, "field": "content",
                         "message_id": f"{event_id}-m{i}"} for i, text in enumerate(texts)]]}


def _postings(raw: redis.Redis, archive: RedisArchive, thread: str) -> dict[str, list[tuple[int, int]]]:
    key = archive.context.layout.search_keys(thread)[0]
    return {term.decode(): read_postings(value) for term, value in raw.hgetall(key).items()}


def _stats(raw: redis.Redis, archive: RedisArchive, thread: str) -> dict[str, int]:
    key = archive.context.layout.search_keys(thread)[3]
    return {k.decode(): int(v) for k, v in raw.hgetall(key).items()}


def test_rerecording_keeps_the_index_exact(redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        first = _event("e1", "Evan drives a red Toyota Prius.", "The gym membership lapsed in March.")
        second = _event("e2", "Visitors park in garage B for three euros.", created_at=1001.0)
        archive.record("t", first)
        archive.record("t", second)
        before = _postings(raw, archive, "t")
        # The same event again (a retried write) leaves the index as it was.
        archive.record("t", first)
        assert _postings(raw, archive, "t") == before
        # Other text under the same id: the old words leave, the new ones come, the counts follow.
        archive.record("t", _event("e1", "Evan now drives a green Kia Soul."))
        postings = _postings(raw, archive, "t")
        assert "prius" not in postings and "gym" not in postings and "kia" in postings
        events = [archive.get_event("t", e) for e in ("e1", "e2")]
        passages = [p for e in events for p in event_passages(e)]
        stats = _stats(raw, archive, "t")
        assert stats["docs"] == len(passages) == 2
        assert stats["len"] == sum(len(terms(p.indexed_text())) for p in passages)
        # Every posting names a live passage, once per term.
        docs = {doc for entries in postings.values() for doc, _ in entries}
        assert len(docs) == 2
        assert all(len({d for d, _ in entries}) == len(entries) for entries in postings.values())
        assert archive.search("t", "Prius gym", k=5) == []
        (hit,) = archive.search("t", "Evan Kia", k=5)
        assert hit.event_id == "e1" and "Kia Soul" in hit.text
        assert archive.search("t", "garage", k=1)[0].event_id == "e2"
        # each live passage's length, where BM25 reads it
        lengths = raw.get(archive.context.layout.search_keys("t")[4])
        assert sorted(LENGTH.unpack_from(lengths, 2 * d)[0] for d in docs) == sorted(
            len(terms(p.indexed_text())) for p in passages)
        # No passage text is stored beside the events.
        index_keys = archive.context.layout.search_keys("t")
        assert not any(b"Kia" in raw.dump(k) for k in index_keys if raw.exists(k))
        assert archive.delete_thread("t") is True
        assert raw.keys(f"{prefix}:*") == []


def test_an_index_of_the_earlier_format_is_replaced(redis_server: RedisServerProcess, raw: redis.Redis,
                                                     prefix: str) -> None:
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        archive.record("t", _event("e1", "Evan drives a red Toyota Prius."))
        layout = archive.context.layout
        new_keys = layout.search_keys("t")[:5]
        raw.delete(*new_keys)
        # What the earlier version wrote: postings in a sorted set, passages, unindex entries, stats.
        base = layout.thread_base("t")
        raw.zadd(base + "a:x:z", {"prius\x1f1\x1f5\x1f0:e1": 0})
        raw.hset(base + "a:x:p", "0:e1", json.dumps({"ref": "x", "event_id": "e1", "kind": "span", "text": "old"}))
        raw.hset(base + "a:x:e", "e1", json.dumps({"p": ["0:e1"], "m": ["prius\x1f1\x1f5\x1f0:e1"], "l": 5}))
        raw.hset(base + "a:x:n", mapping={"docs": 1, "len": 5})
        # A write before the first search leaves the thread to be indexed whole by that search.
        archive.record("t", _event("e2", "Visitors park in garage B.", created_at=1001.0))
        assert (hit := archive.search("t", "Prius", k=1)[0]).event_id == "e1" and "Toyota" in hit.text
        assert archive.search("t", "garage", k=1)[0].event_id == "e2"
        assert not raw.exists(base + "a:x:z") and not raw.exists(base + "a:x:p")
        assert _stats(raw, archive, "t")["docs"] == 2
        assert all(raw.hget(base + "a:x:e", e).count(b" ") == 3 for e in ("e1", "e2"))


def test_rerecording_an_event_indexed_by_another_version_drops_its_postings(
        redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        archive.record("t", _event("e1", "Evan drives a red Toyota Prius."))
        archive.record("t", _event("e2", "Visitors park in garage B.", created_at=1001.0))
        # An index entry this version would not have written (another tokenizer, say): the old terms are unknown.
        evx = archive.context.layout.search_keys("t")[2]
        digest, *rest = raw.hget(evx, "e1").decode().split(" ")
        raw.hset(evx, "e1", " ".join(["f" * len(digest), *rest]))
        archive.record("t", _event("e1", "Evan now drives a green Kia Soul."))
        postings = _postings(raw, archive, "t")
        assert "prius" not in postings and "toyota" not in postings and "kia" in postings and "garage" in postings
        assert _stats(raw, archive, "t")["docs"] == 2
        assert len({doc for entries in postings.values() for doc, _ in entries}) == 2
        assert archive.search("t", "Toyota", k=3) == []
        assert archive.search("t", "Kia", k=3)[0].event_id == "e1"


def test_the_index_expires_with_the_archive(redis_server: RedisServerProcess, raw: redis.Redis, prefix: str) -> None:
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix, ttl=60) as archive, \
            RedisSaver.from_url(redis_server.url, key_prefix=prefix, ttl=600) as saver:
        archive.record("t", _event("e1", "Evan drives a red Toyota Prius."))
        assert archive.search("t", "Prius", k=1)
        layout = archive.context.layout
        index = [k for k in layout.search_keys("t") if raw.exists(k)]
        assert len(index) == 5  # postings, docs, events indexed, stats, lengths: each with the archive's TTL
        assert all(0 < raw.pttl(k) <= 60_000 for k in index)
        # the thread's checkpoints extend its archive, the index included
        put_chain(saver, "t", 2)
        assert all(60_000 < raw.pttl(k) <= 660_000 for k in index + list(layout.archive_keys("t")) if raw.exists(k))


@pytest.mark.parametrize("query", ["Evan car", "garage park euros", "Prius Prius red", "blue sedan Soul"])
def test_scores_are_the_core_bm25(redis_server: RedisServerProcess, prefix: str, query: str) -> None:
    """The server-side ranking gives what :func:`freemem.archives.search.rank_events` (the core BM25 over the same
    passages) gives: the same hits, the same scores, whatever the passages' lengths and a re-recorded event."""
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        archive.record("t", _event("e1", "Evan drives a red Toyota Prius.", "The gym membership lapsed in March."))
        archive.record("t", _event("e2", "Visitors park in garage B for three euros; " * 30, created_at=1001.0))
        archive.record("t", _event("e3", "Evan's sister parks her blue sedan in the garage " * 3,
                                   "car " * 200 + "Prius", created_at=1002.0))
        archive.record("t", _event("e1", "Evan now drives a green Kia Soul, not the red Prius; his car is new."))
        want = rank_events(archive.events("t", include_restored=True), terms(query), 5)
        got = archive.search("t", query, k=5)
        assert [(h.event_id, h.ref) for h in got] == [(h.event_id, h.ref) for h in want] and want
        assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-9)


def test_a_thread_out_of_passage_numbers_says_so(redis_server: RedisServerProcess, raw: redis.Redis,
                                                   prefix: str) -> None:
    with RedisArchive.from_url(redis_server.url, key_prefix=prefix) as archive:
        archive.record("t", _event("e1", "Evan drives a red Toyota Prius."))
        stats = archive.context.layout.search_keys("t")[3]
        raw.hset(stats, "next", MAX_PASSAGES - 1)
        before = {k: raw.dump(k) for k in raw.keys(f"{prefix}:*")}
        with pytest.raises(StoreError, match="renumbered"):
            archive.record("t", _event("e2", "Visitors park in garage B.", "Second passage.", created_at=1001.0))
        assert {k: raw.dump(k) for k in raw.keys(f"{prefix}:*")} == before  # nothing written
        # what the message says: without the index keys, the next search numbers the passages again
        raw.delete(*archive.context.layout.search_keys("t"))
        assert archive.search("t", "Prius", k=1)[0].event_id == "e1"
        archive.record("t", _event("e2", "Visitors park in garage B.", "Second passage.", created_at=1001.0))
        assert archive.search("t", "garage", k=1)[0].event_id == "e2"
