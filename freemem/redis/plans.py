"""Command plans of the checkpointer: which keys to read and write for each operation, and how replies become
LangGraph objects. One implementation, executed by both :class:`~freemem.redis.RedisSaver` and
:class:`~freemem.redis.AsyncRedisSaver` (see :mod:`freemem.redis.protocol`).

Round trips: ``get_tuple`` 1 (plain HGETALL + HMGET in MULTI/EXEC when this saver knows the checkpoint's
blob refs, else a script returns the checkpoint, its writes and its channel values), ``put`` 1 (MULTI/EXEC:
a plain HSET of the channel values and a script for the rest; the run index joins it on a standalone server),
``put_writes`` 1 (MULTI/EXEC: HSETNX/HSET and a small script), ``list`` 2 per page of
checkpoints (+1 per page of metadata when filtering, +1 for the namespaces when none is given).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from freemem.core.errors import ConfigError, StoreError
from freemem.redis import codec, scripts
from freemem.redis.keys import KeyLayout, escape, unescape
from freemem.redis.protocol import Batch, Emit, Eval, Plan, Scan

__all__ = [
    "Fence",
    "LeasePolicy",
    "PlanContext",
    "RefCache",
    "StoragePolicy",
    "acquire_lease",
    "copy_thread",
    "delete_for_runs",
    "delete_thread",
    "get_tuple",
    "lease_holder",
    "list_checkpoints",
    "memory_usage",
    "prune",
    "put",
    "put_writes",
    "release_lease",
    "renew_lease",
    "thread_id_of",
    "thread_keys",
    "touch",
]

ID_PAGE = 64
"""Checkpoints loaded per round trip when listing."""
METADATA_PAGE = 256
"""Metadata records fetched per round trip when listing with a filter."""


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    """How long threads live and how much history they keep.

    Attributes:
        ttl: Seconds a thread lives after its last write (``None``: forever). Every key of the thread expires
            between ``ttl`` and ``ttl * 1.1`` after the last write (the 10% slack bounds how often a write
            re-arms the TTL of every key of the thread).
        refresh_on_read: Whether reading a checkpoint re-arms the TTL too.
        keep_last: Keep only the newest N checkpoints per (thread, namespace), with their writes and the
            channel values they reference (``None``: keep all).
    """

    ttl: float | None = None
    refresh_on_read: bool = False
    keep_last: int | None = None

    def __post_init__(self) -> None:
        if self.ttl is not None and not self.ttl > 0:
            raise ConfigError(f"ttl must be a positive number of seconds or None, got {self.ttl!r}")
        if self.keep_last is not None and (not isinstance(self.keep_last, int) or self.keep_last < 1):
            raise ConfigError(f"keep_last must be a positive int or None, got {self.keep_last!r}")

    @property
    def ttl_ms(self) -> int:
        return 0 if self.ttl is None else max(1, math.ceil(self.ttl * 1000))

    @property
    def slack_ms(self) -> int:
        return 0 if self.ttl is None else max(1, self.ttl_ms // 10)

    @property
    def expire_ms(self) -> int:
        """The lifetime given to keys on a write (``ttl + slack``)."""
        return self.ttl_ms + self.slack_ms


class RefCache:
    """What this saver knows about checkpoints it wrote or read: the newest id per (thread, namespace) and each
    checkpoint's ``r`` field (its blob refs, immutable once written).

    It only lets ``get_tuple`` fetch a checkpoint and its channel values with plain commands in one MULTI/EXEC
    instead of a Lua script (large values cost far more through Lua). Every hit is verified in the same
    transaction -- the index still names that id first, the checkpoint still has those refs -- and a miss or a
    stale entry falls back to the LOAD script, so other writers, deletes and retention never make it wrong.
    Bounded (oldest entries go first); safe to share between threads.
    """

    __slots__ = ("latest", "max_entries", "refs")

    def __init__(self, max_entries: int = 8192) -> None:
        self.max_entries = max_entries
        self.latest: dict[tuple[str, str], str] = {}
        self.refs: dict[tuple[str, str, str], bytes] = {}

    @staticmethod
    def _trim(table: dict[Any, Any], limit: int) -> None:
        while len(table) > limit:
            try:
                table.pop(next(iter(table)), None)
            except (RuntimeError, StopIteration):  # changed by another thread meanwhile: good enough
                return

    def remember(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str, refs: bytes, *, newest: bool) -> None:
        self.refs[(thread_id, checkpoint_ns, checkpoint_id)] = refs
        self._trim(self.refs, self.max_entries)
        if newest:
            key = (thread_id, checkpoint_ns)
            current = self.latest.get(key)
            if current is None or checkpoint_id >= current:
                self.latest[key] = checkpoint_id
                self._trim(self.latest, self.max_entries)

    def lookup(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None) -> tuple[str, bytes] | None:
        if checkpoint_id is None:
            checkpoint_id = self.latest.get((thread_id, checkpoint_ns))
            if checkpoint_id is None:
                return None
        refs = self.refs.get((thread_id, checkpoint_ns, checkpoint_id))
        return None if refs is None else (checkpoint_id, refs)


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """The opt-in writer lease of a thread (see :class:`~freemem.redis.RedisSaver`).

    Attributes:
        ttl: Seconds the lease lives after its holder's last read or write of the thread (renewed by each).
        wait: Seconds a writer waits for another writer's lease before failing with a :class:`StoreError`.
    """

    ttl: float = 30.0
    wait: float = 60.0

    def __post_init__(self) -> None:
        if not self.ttl > 0 or not self.wait >= 0:
            raise ConfigError(f"lease_ttl must be > 0 and lease_wait >= 0, got {self.ttl!r} and {self.wait!r}")

    @property
    def ttl_ms(self) -> int:
        return max(1, math.ceil(self.ttl * 1000))


@dataclass(frozen=True, slots=True)
class Fence:
    """What a write carries to prove it may write a thread under the writer lease."""

    owner: str
    ttl_ms: int


LEASE_BLOCK_S = 1.0
"""Longest single wait (BLPOP) for a lease: well under the client's socket timeout; a release wakes it at once."""


@dataclass(frozen=True, slots=True)
class PlanContext:
    """Everything a plan needs besides the serializer: where keys live, the storage policy, and the
    (verified-on-use) :class:`RefCache` of this saver."""

    layout: KeyLayout = field(default_factory=KeyLayout)
    policy: StoragePolicy = field(default_factory=StoragePolicy)
    cache: RefCache = field(default_factory=RefCache)


# -- helpers ---------------------------------------------------------------------------------------------------


def _thread_id(config: RunnableConfig) -> str:
    try:
        return str(config["configurable"]["thread_id"])
    except KeyError:
        raise ConfigError("config['configurable'] needs a 'thread_id'") from None


def thread_id_of(config: RunnableConfig) -> str:
    """The thread a LangGraph config names (``ConfigError`` when it names none)."""
    return _thread_id(config)


def _namespace(config: RunnableConfig) -> str:
    return str(config["configurable"].get("checkpoint_ns") or "")


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}}


def _as_hash(reply: Any) -> dict[bytes, bytes]:
    if isinstance(reply, dict):
        return reply
    items = iter(reply)
    return dict(zip(items, items, strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _load_call(ctx: PlanContext, thread_id: str, checkpoint_ns: str, ids: Sequence[str]) -> Eval:
    """Load checkpoints by id (the newest when ``ids`` is empty) with writes and channel values."""
    layout, policy = ctx.layout, ctx.policy
    ttl = policy.ttl_ms if policy.refresh_on_read else 0
    return Eval(
        scripts.LOAD,
        (
            layout.index(thread_id, checkpoint_ns),
            layout.blobs(thread_id, checkpoint_ns),
            layout.registry(thread_id),
            layout.refresh_marker(thread_id),
        ),
        (layout.checkpoint_base(thread_id, checkpoint_ns), ttl, policy.slack_ms, *ids),
    )


def _to_tuple(serde: SerializerProtocol, thread_id: str, checkpoint_ns: str, entry: Sequence[Any]) -> CheckpointTuple:
    """Build a CheckpointTuple from one entry returned by the LOAD script."""
    raw_id, raw_hash, values = entry
    return _build_tuple(serde, thread_id, checkpoint_ns, _text(raw_id), _as_hash(raw_hash), values)


def _build_tuple(
    serde: SerializerProtocol,
    thread_id: str,
    checkpoint_ns: str,
    checkpoint_id: str,
    fields: Mapping[bytes, bytes],
    values: Sequence[Any] | None,
) -> CheckpointTuple:
    try:
        checkpoint: Checkpoint = codec.decode_typed(serde, fields[b"cp"])
        metadata: CheckpointMetadata = codec.decode_typed(serde, fields[b"md"])
        refs = codec.refs_from_json(fields[b"r"])
    except KeyError as exc:
        raise StoreError(f"checkpoint {checkpoint_id!r} of thread {thread_id!r} is missing field {exc}") from exc
    channel_values: dict[str, Any] = {}
    for ref, raw in zip(refs, values or (), strict=False):
        if not codec.is_empty_blob(raw):
            channel_values[ref.rpartition("\x1f")[0]] = codec.decode_typed(serde, raw)
    checkpoint["channel_values"] = channel_values
    parent = _text(fields.get(b"p", b""))
    return CheckpointTuple(
        config=_config(thread_id, checkpoint_ns, checkpoint_id),
        checkpoint=checkpoint,
        metadata=metadata,
        parent_config=_config(thread_id, checkpoint_ns, parent) if parent else None,
        pending_writes=codec.decode_writes(serde, fields),
    )


def _matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(metadata.get(key) == value for key, value in wanted.items())


# -- reads -----------------------------------------------------------------------------------------------------


def get_tuple(ctx: PlanContext, serde: SerializerProtocol, config: RunnableConfig) -> Plan[CheckpointTuple | None]:
    """The checkpoint named by ``config`` (its ``checkpoint_id``, else the newest) — one round trip."""
    thread_id, checkpoint_ns = _thread_id(config), _namespace(config)
    checkpoint_id = get_checkpoint_id(config)
    known = None if ctx.policy.refresh_on_read else ctx.cache.lookup(thread_id, checkpoint_ns, checkpoint_id)
    if known is not None:
        # Plain commands in one MULTI/EXEC; used only if the index and the checkpoint still match the cache.
        cid, refs_raw = known
        layout = ctx.layout
        fields_wanted = codec.refs_from_json(refs_raw)
        commands: list[Any] = [("HGETALL", layout.checkpoint(thread_id, checkpoint_ns, cid))]
        if fields_wanted:
            commands.append(("HMGET", layout.blobs(thread_id, checkpoint_ns), *fields_wanted))
        if checkpoint_id is None:
            commands.append(("ZRANGE", layout.index(thread_id, checkpoint_ns), 0, 0, "REV"))
        replies = yield Batch(*commands, atomic=True)
        fields = _as_hash(replies[0])
        newest_ok = checkpoint_id is not None or [_text(i) for i in replies[-1]] == [cid]
        if newest_ok and fields.get(b"r") == refs_raw:
            values = replies[1] if fields_wanted else []
            return _build_tuple(serde, thread_id, checkpoint_ns, cid, fields, values)
    (entries,) = yield Batch(_load_call(ctx, thread_id, checkpoint_ns, [checkpoint_id] if checkpoint_id else []))
    if not entries:
        return None
    entry = entries[0]
    fields = _as_hash(entry[1])
    found_id = _text(entry[0])
    if b"r" in fields:
        ctx.cache.remember(thread_id, checkpoint_ns, found_id, fields[b"r"], newest=checkpoint_id is None)
    return _build_tuple(serde, thread_id, checkpoint_ns, found_id, fields, entry[2])


def _emit_page(
    ctx: PlanContext,
    serde: SerializerProtocol,
    thread_id: str,
    candidates: list[tuple[str, str]],
    filter: Mapping[str, Any] | None,
    remaining: int | None,
) -> Plan[int | None]:
    """Filter ``(namespace, id)`` candidates by metadata, load the survivors, emit them in order."""
    layout = ctx.layout
    if filter:
        kept: list[tuple[str, str]] = []
        for start in range(0, len(candidates), METADATA_PAGE):
            chunk = candidates[start : start + METADATA_PAGE]
            replies = yield Batch(*(("HGET", layout.checkpoint(thread_id, ns, cid), "md") for ns, cid in chunk))
            kept.extend(
                c for c, md in zip(chunk, replies, strict=True) if md is not None and _matches(codec.decode_typed(serde, md), filter)
            )
            if remaining is not None and len(kept) >= remaining:
                break
        candidates = kept
    if remaining is not None:
        candidates = candidates[:remaining]
    for start in range(0, len(candidates), ID_PAGE):
        chunk = candidates[start : start + ID_PAGE]
        by_ns: dict[str, list[str]] = {}
        for ns, cid in chunk:
            by_ns.setdefault(ns, []).append(cid)
        namespaces = list(by_ns)
        replies = yield Batch(*(_load_call(ctx, thread_id, ns, by_ns[ns]) for ns in namespaces))
        loaded = {(ns, _text(e[0])): e for ns, entries in zip(namespaces, replies, strict=True) for e in entries}
        for ns, cid in chunk:
            entry = loaded.get((ns, cid))
            if entry is None:  # deleted between the index read and the load
                continue
            yield Emit(_to_tuple(serde, thread_id, ns, entry))
            if remaining is not None:
                remaining -= 1
    return remaining


def _list_thread(
    ctx: PlanContext,
    serde: SerializerProtocol,
    thread_id: str,
    checkpoint_ns: str | None,
    checkpoint_id: str | None,
    before_id: str | None,
    filter: Mapping[str, Any] | None,
    remaining: int | None,
) -> Plan[int | None]:
    layout = ctx.layout
    if checkpoint_ns is not None:
        namespaces = [checkpoint_ns]
    else:
        (members,) = yield Batch(("SMEMBERS", layout.namespaces(thread_id)))
        namespaces = sorted(unescape(_text(m)) for m in members)
    if not namespaces:
        return remaining
    upper = f"({before_id}" if before_id else "+"
    if checkpoint_id is not None:
        if before_id is not None and checkpoint_id >= before_id:
            return remaining
        return (yield from _emit_page(ctx, serde, thread_id, [(ns, checkpoint_id) for ns in namespaces], filter, remaining))
    if len(namespaces) == 1:
        ns = namespaces[0]
        index = layout.index(thread_id, ns)
        while remaining is None or remaining > 0:
            size = METADATA_PAGE if filter else min(ID_PAGE, remaining or ID_PAGE)
            (ids,) = yield Batch(("ZRANGE", index, upper, "-", "BYLEX", "REV", "LIMIT", 0, size))
            if not ids:
                break
            page = [(ns, _text(i)) for i in ids]
            remaining = yield from _emit_page(ctx, serde, thread_id, page, filter, remaining)
            if len(ids) < size:
                break
            upper = "(" + page[-1][1]
        return remaining
    # Several namespaces: merge their ids, newest first (ids are time-ordered across namespaces too).
    replies = yield Batch(*(("ZRANGE", layout.index(thread_id, ns), upper, "-", "BYLEX", "REV") for ns in namespaces))
    merged = sorted(
        ((_text(i), ns) for ns, ids in zip(namespaces, replies, strict=True) for i in ids),
        key=lambda item: (item[0], item[1]),
        reverse=True,
    )
    page_size = METADATA_PAGE if filter else ID_PAGE
    for start in range(0, len(merged), page_size):
        page = [(ns, cid) for cid, ns in merged[start : start + page_size]]
        remaining = yield from _emit_page(ctx, serde, thread_id, page, filter, remaining)
        if remaining is not None and remaining <= 0:
            break
    return remaining


def list_checkpoints(
    ctx: PlanContext,
    serde: SerializerProtocol,
    config: RunnableConfig | None,
    *,
    filter: Mapping[str, Any] | None = None,
    before: RunnableConfig | None = None,
    limit: int | None = None,
) -> Plan[None]:
    """Emit matching checkpoints newest first, stopping as soon as ``limit`` are emitted.

    ``config`` selects a thread (and a namespace when it has ``checkpoint_ns``, a checkpoint when it has
    ``checkpoint_id``); ``None`` lists every thread of the key prefix (found with SCAN, for admin use).
    """
    if limit is not None and limit <= 0:
        return
    before_id = get_checkpoint_id(before) if before else None
    if config is None:
        keys = yield Scan(ctx.layout.all_namespace_sets_pattern())
        threads = sorted({ctx.layout.thread_of(_text(k)) for k in keys})
        checkpoint_ns: str | None = None
        checkpoint_id: str | None = None
    else:
        threads = [_thread_id(config)]
        ns_value = config["configurable"].get("checkpoint_ns")
        checkpoint_ns = None if ns_value is None else str(ns_value)
        checkpoint_id = get_checkpoint_id(config)
    remaining = limit
    for thread_id in threads:
        remaining = yield from _list_thread(ctx, serde, thread_id, checkpoint_ns, checkpoint_id, before_id, filter, remaining)
        if remaining is not None and remaining <= 0:
            return


# -- writes ----------------------------------------------------------------------------------------------------


def put(
    ctx: PlanContext,
    serde: SerializerProtocol,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
    fence: Fence | None = None,
) -> Plan[RunnableConfig]:
    """Store a checkpoint, the channel values it changed, and apply retention — one script, one round trip.

    Channel values are stored per (channel, version), so a checkpoint only writes the channels in
    ``new_versions`` and shares the others with its ancestors. Retrying the same put rewrites the same bytes.
    With a ``fence`` the script first checks the writer lease (see ``scripts.PUT_LEASED``).
    """
    layout, policy = ctx.layout, ctx.policy
    thread_id, checkpoint_ns = _thread_id(config), _namespace(config)
    parent_id = config["configurable"].get("checkpoint_id") or ""
    record = dict(checkpoint)
    values: dict[str, Any] = record.pop("channel_values", None) or {}  # type: ignore[assignment]
    blob_args: list[Any] = []
    for channel, version in new_versions.items():
        blob_args.append(codec.blob_field(channel, version))
        blob_args.append(codec.encode_typed(serde, values[channel]) if channel in values else codec.EMPTY_BLOB)
    _, refs = codec.blob_refs(checkpoint["channel_versions"])
    refs_raw = codec.refs_json(refs)
    stored_metadata = get_checkpoint_metadata(config, metadata)
    run_id = stored_metadata.get("run_id")
    run = "" if run_id is None else str(run_id)
    checkpoint_id = checkpoint["id"]
    keys: tuple[str, ...] = (
        layout.registry(thread_id),
        layout.namespaces(thread_id),
        layout.index(thread_id, checkpoint_ns),
        layout.blobs(thread_id, checkpoint_ns),
        layout.checkpoint(thread_id, checkpoint_ns, checkpoint_id),
        layout.refresh_marker(thread_id),
    )
    args: tuple[Any, ...] = (
        escape(checkpoint_ns),
        checkpoint_id,
        policy.ttl_ms,
        policy.slack_ms,
        policy.keep_last or 0,
        layout.checkpoint_base(thread_id, checkpoint_ns),
        codec.encode_typed(serde, record),
        codec.encode_typed(serde, stored_metadata),
        parent_id,
        refs_raw,
        run,
    )
    if fence is None:
        call = Eval(scripts.PUT, keys, args)
    else:
        call = Eval(scripts.PUT_LEASED, (*keys, layout.lease(thread_id)),
                    (*args, fence.owner, fence.ttl_ms, repr(thread_id)))
    # Channel values go in a plain HSET (never through Lua), atomically with the script: MULTI/EXEC.
    commands: list[Any] = [("HSET", layout.blobs(thread_id, checkpoint_ns), *blob_args)] if blob_args else []
    commands.append(call)
    before: list[Any] = []
    if run:
        # The run index lives in its own slot, so it cannot join the transaction on a cluster; it is written
        # first, making it a superset of the truth (delete_for_runs tolerates stale entries).
        run_key = layout.run_threads(run)
        before.append(("SADD", run_key, escape(thread_id)))
        if policy.ttl_ms:
            before.append(("PEXPIRE", run_key, policy.expire_ms))
    yield Batch(*commands, atomic=True, before=tuple(before))
    ctx.cache.remember(thread_id, checkpoint_ns, checkpoint_id, refs_raw, newest=True)
    return _config(thread_id, checkpoint_ns, checkpoint_id)


def put_writes(
    ctx: PlanContext,
    serde: SerializerProtocol,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str = "",
    fence: Fence | None = None,
) -> Plan[None]:
    """Store a task's pending writes on a checkpoint; idempotent per ``(task_id, idx)`` like InMemorySaver.

    With a ``fence`` the writes go through one script that checks the writer lease first (so a refused writer
    stores none of them)."""
    layout, policy = ctx.layout, ctx.policy
    thread_id, checkpoint_ns = _thread_id(config), _namespace(config)
    checkpoint_id = config["configurable"].get("checkpoint_id")
    if not checkpoint_id:
        raise ConfigError("put_writes needs config['configurable']['checkpoint_id']")
    if not writes:
        return
    key = layout.checkpoint(thread_id, checkpoint_ns, checkpoint_id)
    keep_first: list[Any] = []
    overwrite: list[Any] = []
    for idx, (channel, value) in enumerate(writes):
        write_idx = WRITES_IDX_MAP.get(channel, idx)
        pair = (codec.write_field(task_id, write_idx), codec.encode_write(serde, task_id, write_idx, channel, value, task_path))
        (overwrite if write_idx < 0 else keep_first).append(pair)
    if fence is not None:
        pairs = [x for pair in (*keep_first, *overwrite) for x in pair]
        yield Batch(Eval(
            scripts.PUT_WRITES_LEASED,
            (layout.registry(thread_id), layout.namespaces(thread_id), key, layout.refresh_marker(thread_id),
             layout.lease(thread_id)),
            (escape(checkpoint_ns), policy.ttl_ms, policy.slack_ms, fence.owner, fence.ttl_ms, repr(thread_id),
             len(keep_first), *pairs),
        ))
        return
    # Regular writes keep the first value stored for (task_id, idx) (HSETNX); special channels (negative idx)
    # are overwritten. Plain commands so values never pass through Lua; MULTI/EXEC with the registration.
    commands: list[Any] = [("HSETNX", key, f, v) for f, v in keep_first]
    if overwrite:
        commands.append(("HSET", key, *(x for pair in overwrite for x in pair)))
    commands.append(
        Eval(
            scripts.PUT_WRITES,
            (layout.registry(thread_id), layout.namespaces(thread_id), key, layout.refresh_marker(thread_id)),
            (escape(checkpoint_ns), policy.ttl_ms, policy.slack_ms),
        )
    )
    yield Batch(*commands, atomic=True)


def _delete_call(layout: KeyLayout, thread_id: str) -> Eval:
    return Eval(
        scripts.DELETE_THREAD,
        (layout.registry(thread_id), layout.refresh_marker(thread_id), layout.namespaces(thread_id)),
        (layout.thread_base(thread_id),),
    )


def _forget_runs(layout: KeyLayout, thread_ids: Sequence[str], replies: Sequence[Any]) -> Batch:
    """Remove deleted threads from the run index (each run set is its own slot)."""
    commands = [
        ("SREM", layout.run_threads(_text(run)), escape(thread_id))
        for thread_id, runs in zip(thread_ids, replies, strict=True)
        for run in runs or ()
    ]
    return Batch(*commands)


def _drop_keys(layout: KeyLayout, thread_id: str) -> tuple[str, str, str]:
    return (layout.registry(thread_id), layout.namespaces(thread_id), layout.refresh_marker(thread_id))


def delete_thread(ctx: PlanContext, thread_id: str) -> Plan[None]:
    """Delete every checkpoint, write and channel value of a thread (its archive is left alone)."""
    thread_id = str(thread_id)
    (runs,) = yield Batch(_delete_call(ctx.layout, thread_id))
    yield _forget_runs(ctx.layout, [thread_id], [runs])


def prune(ctx: PlanContext, thread_ids: Sequence[str], strategy: str = "keep_latest") -> Plan[None]:
    """``keep_latest``: keep only the newest checkpoint per namespace; ``delete``: delete the threads."""
    threads = [str(t) for t in thread_ids]
    if strategy not in ("keep_latest", "delete"):
        raise ConfigError(f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'")
    if not threads:
        return
    layout = ctx.layout
    if strategy == "delete":
        replies = yield Batch(*(_delete_call(layout, t) for t in threads))
        yield _forget_runs(layout, threads, replies)
        return
    yield Batch(
        *(
            Eval(scripts.DROP, _drop_keys(layout, t), (layout.thread_base(t), "keep_latest"))
            for t in threads
        )
    )


def delete_for_runs(ctx: PlanContext, run_ids: Sequence[str]) -> Plan[None]:
    """Delete the checkpoints (and writes) whose metadata ``run_id`` is one of ``run_ids``, in every thread."""
    runs = sorted({str(r) for r in run_ids})
    if not runs:
        return
    layout = ctx.layout
    members = yield Batch(*(("SMEMBERS", layout.run_threads(r)) for r in runs))
    threads = sorted({unescape(_text(m)) for group in members for m in group})
    if threads:
        yield Batch(
            *(
                Eval(scripts.DROP, _drop_keys(layout, t), (layout.thread_base(t), "runs", *runs))
                for t in threads
            )
        )
    yield Batch(*(("DEL", layout.run_threads(r)) for r in runs))


def copy_thread(ctx: PlanContext, source_thread_id: str, target_thread_id: str) -> Plan[None]:
    """Copy every checkpoint, write and channel value of one thread into another (merging with its data)."""
    layout, policy = ctx.layout, ctx.policy
    source, target = str(source_thread_id), str(target_thread_id)
    if source == target:
        return
    (exported,) = yield Batch(Eval(scripts.EXPORT, (layout.registry(source),), ()))
    if not exported:
        return
    args: list[Any] = [policy.ttl_ms, policy.slack_ms]
    runs: set[str] = set()
    checkpoint_prefix = layout.thread_base(source) + "c:"
    for raw_key, raw_kind, items in exported:
        key = _text(raw_key)
        args.extend((layout.rebase(key, source, target), raw_kind, len(items), *items))
        if key.startswith(checkpoint_prefix):
            run = _as_hash(items).get(b"run")
            if run:
                runs.add(_text(run))
    commands: list[Any] = []
    for run in sorted(runs):
        run_key = layout.run_threads(run)
        commands.append(("SADD", run_key, escape(target)))
        if policy.ttl_ms:
            commands.append(("PEXPIRE", run_key, policy.expire_ms))
    commands.append(Eval(scripts.IMPORT, (layout.registry(target), layout.refresh_marker(target)), tuple(args)))
    yield Batch(*commands)


# -- writer lease ----------------------------------------------------------------------------------------------


def acquire_lease(
    ctx: PlanContext, thread_id: str, owner: str, lease: LeasePolicy, *, wait: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Plan[None]:
    """Take (or renew) the thread's writer lease for ``owner``, waiting up to ``wait`` seconds (default
    ``lease.wait``) while another owner holds it; :class:`StoreError` naming the thread and the holder then.

    Waiting blocks on the lease's wake list (a release wakes the writer at once) for at most what the holder's
    lease has left, so an expiring lease is retried when it expires; nothing assumes how fast anyone is."""
    now = clock
    layout = ctx.layout
    key, wake = layout.lease(thread_id), layout.lease_wake(thread_id)
    budget = lease.wait if wait is None else wait
    deadline = now() + budget
    while True:
        (reply,) = yield Batch(Eval(scripts.LEASE_ACQUIRE, (key,), (owner, lease.ttl_ms)))
        pttl, holder = int(reply[0]), _text(reply[1])
        if pttl == 0:
            return
        left = deadline - now()
        if left <= 0:
            more = f" for {pttl / 1000:.1f} s more" if pttl > 0 else ""
            raise StoreError(f"thread {thread_id!r} is leased by another writer ({holder}){more}; this writer "
                             f"({owner}) waited {budget:g} s (lease_wait) and gives up")
        block = min(left, LEASE_BLOCK_S, pttl / 1000 if pttl > 0 else LEASE_BLOCK_S)
        yield Batch(("BLPOP", wake, f"{max(block, 0.01):.3f}"))


def renew_lease(ctx: PlanContext, thread_id: str, owner: str, lease: LeasePolicy) -> Plan[str | None]:
    """Renew ``owner``'s lease (or take it if free): None, or the other owner holding it."""
    (reply,) = yield Batch(Eval(scripts.LEASE_ACQUIRE, (ctx.layout.lease(thread_id),), (owner, lease.ttl_ms)))
    return None if int(reply[0]) == 0 else _text(reply[1])


def release_lease(ctx: PlanContext, thread_id: str, owner: str, lease: LeasePolicy) -> Plan[bool]:
    """Release ``owner``'s lease and wake a waiting writer; False when ``owner`` did not hold it."""
    layout = ctx.layout
    (released,) = yield Batch(Eval(scripts.LEASE_RELEASE, (layout.lease(thread_id), layout.lease_wake(thread_id)),
                                   (owner, lease.ttl_ms)))
    return bool(released)


def lease_holder(ctx: PlanContext, thread_id: str) -> Plan[tuple[str | None, float]]:
    """Who holds the thread's lease and for how many seconds more (``(None, 0.0)`` when free)."""
    holder, pttl = yield Batch(("GET", ctx.layout.lease(thread_id)), ("PTTL", ctx.layout.lease(thread_id)))
    return (None, 0.0) if holder is None else (_text(holder), max(0, int(pttl)) / 1000)


# -- maintenance -----------------------------------------------------------------------------------------------


def touch(ctx: PlanContext, thread_id: str) -> Plan[bool]:
    """Re-arm a thread's TTL without writing; ``False`` when the thread does not exist."""
    layout, policy = ctx.layout, ctx.policy
    thread_id = str(thread_id)
    (exists,) = yield Batch(
        Eval(scripts.REFRESH, (layout.registry(thread_id), layout.refresh_marker(thread_id)), (policy.ttl_ms, policy.slack_ms))
    )
    return bool(exists)


def thread_keys(ctx: PlanContext, thread_id: str) -> Plan[list[str]]:
    """Every key that stores the thread's checkpoints (the registry's members, itself and the TTL marker)."""
    layout = ctx.layout
    thread_id = str(thread_id)
    registry, marker = layout.registry(thread_id), layout.refresh_marker(thread_id)
    members, registry_exists, marker_exists = yield Batch(("SMEMBERS", registry), ("EXISTS", registry), ("EXISTS", marker))
    keys = sorted(_text(m) for m in members)
    keys += [k for k, present in ((registry, registry_exists), (marker, marker_exists)) if present]
    return keys


def memory_usage(ctx: PlanContext, thread_id: str, extra_keys: Iterable[str] = ()) -> Plan[int]:
    """Bytes Redis uses for a thread's checkpoints (``MEMORY USAGE ... SAMPLES 0`` summed over its keys)."""
    keys = yield from thread_keys(ctx, thread_id)
    keys = [*keys, *extra_keys]
    if not keys:
        return 0
    sizes = yield Batch(*(("MEMORY", "USAGE", key, "SAMPLES", 0) for key in keys))
    return sum(int(s or 0) for s in sizes)
