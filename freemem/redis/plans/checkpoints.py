"""Checkpoint plans: read one (``get_tuple``), list them (``list_checkpoints``), write one (``put``) and its
pending writes (``put_writes``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
from freemem.redis.keys import escape, unescape
from freemem.redis.plans.context import (
    Fence,
    PlanContext,
    as_hash,
    as_text,
    checkpoint_config,
    config_namespace,
    config_thread_id,
)
from freemem.redis.protocol import Batch, Emit, Eval, Plan, Scan

__all__ = ["ID_PAGE", "METADATA_PAGE", "get_tuple", "list_checkpoints", "put", "put_writes"]

ID_PAGE = 64
"""Checkpoints loaded per round trip when listing."""
METADATA_PAGE = 256
"""Metadata records fetched per round trip when listing with a filter."""


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


def _build_tuple(
    serde: SerializerProtocol,
    thread_id: str,
    checkpoint_ns: str,
    checkpoint_id: str,
    fields: Mapping[bytes, bytes],
    values: Sequence[Any] | None,
    elements: Mapping[bytes, bytes],
    expanded: codec.Expansions,
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
            channel_values[ref.rpartition("\x1f")[0]] = codec.decode_value(serde, raw, elements, expanded)
    checkpoint["channel_values"] = channel_values
    parent = as_text(fields.get(b"p", b""))
    return CheckpointTuple(
        config=checkpoint_config(thread_id, checkpoint_ns, checkpoint_id),
        checkpoint=checkpoint,
        metadata=metadata,
        parent_config=checkpoint_config(thread_id, checkpoint_ns, parent) if parent else None,
        pending_writes=codec.decode_writes(serde, fields, elements, expanded),
    )


def _digests_of(fields: Mapping[bytes, bytes], values: Sequence[Any] | None) -> list[bytes]:
    """The element digests a loaded checkpoint (its channel values and pending writes) references."""
    digests = [d for raw in values or () if raw is not None for d in codec.record_refs(raw)]
    digests.extend(codec.write_refs(fields))
    return digests


def _elements(
    ctx: PlanContext, thread_id: str, wanted: Mapping[str, Sequence[bytes]]
) -> Plan[tuple[dict[bytes, bytes], codec.Expansions, set[bytes]]]:
    """What decoding ``wanted`` digests (by namespace) takes: the expanded form of those this saver holds
    expanded, and the element records of the others and of the chunks among them (those this saver holds, the
    rest fetched, one round trip per level of chunks); and the digests Redis no longer holds (their checkpoint
    was deleted meanwhile)."""
    records: dict[bytes, bytes] = {}
    expanded: codec.Expansions = {}
    lost: set[bytes] = set()
    pending: dict[str, list[bytes]] = {}
    for ns, digests in wanted.items():
        hits, rest = ctx.expanded.split(digests)
        expanded.update(hits)
        if rest:
            pending[ns] = rest
    while pending:
        fetch: list[tuple[str, list[bytes]]] = []
        found_now: list[tuple[str, bytes]] = []
        for ns, digests in pending.items():
            found, missing = ctx.elements.split(d for d in digests if d not in records)
            records.update(found)
            found_now.extend((ns, r) for r in found.values())
            if missing:
                fetch.append((ns, missing))
        if fetch:
            replies = yield Batch(*(("HMGET", ctx.layout.elements(thread_id, ns), *missing) for ns, missing in fetch))
            got: dict[bytes, bytes] = {}
            for (ns, missing), reply in zip(fetch, replies, strict=True):
                for d, record in zip(missing, reply, strict=True):
                    if record is None:
                        lost.add(d)
                    else:
                        got[d] = record
                        found_now.append((ns, record))
            ctx.elements.add(got)
            records.update(got)
        pending = {}
        for ns, record in found_now:  # chunks: their digests are wanted too
            inner = codec.chunk_data(record)
            if inner is not None:
                pending.setdefault(ns, []).extend(d for d in codec.record_refs(record) if d not in records)
        pending = {ns: ds for ns, ds in pending.items() if ds}
    return records, expanded, lost


def _complete(digests: Sequence[bytes], records: Mapping[bytes, bytes], expanded: codec.Expansions) -> bool:
    """Whether ``expanded`` and ``records`` hold every element ``digests`` name, through chunks."""
    for d in digests:
        if d in expanded:
            continue
        record = records.get(d)
        if record is None:
            return False
        if codec.chunk_data(record) is not None and not _complete(codec.record_refs(record), records, {}):
            return False
    return True


_EMPTY = codec.Encoded(codec.EMPTY_BLOB, {}, {}, {})
"""What a channel with a new version but no value stores."""

LOAD_TRIES = 3
"""Loads of a checkpoint whose element records vanished before they were read (a concurrent delete)."""


def _matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    return all(metadata.get(key) == value for key, value in wanted.items())


# -- reads -----------------------------------------------------------------------------------------------------


def get_tuple(ctx: PlanContext, serde: SerializerProtocol, config: RunnableConfig) -> Plan[CheckpointTuple | None]:
    """The checkpoint named by ``config`` (its ``checkpoint_id``, else the newest) — one round trip, plus one for
    the element records (messages) this saver has not written or read before."""
    thread_id, checkpoint_ns = config_thread_id(config), config_namespace(config)
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
        fields = as_hash(replies[0])
        newest_ok = checkpoint_id is not None or [as_text(i) for i in replies[-1]] == [cid]
        if newest_ok and fields.get(b"r") == refs_raw:
            values = replies[1] if fields_wanted else []
            records, expanded, lost = yield from _elements(ctx, thread_id, {checkpoint_ns: _digests_of(fields, values)})
            if not lost:
                found = _build_tuple(serde, thread_id, checkpoint_ns, cid, fields, values, records, expanded)
                ctx.expanded.add(expanded)
                return found
    found_id, lost = checkpoint_id or "", set()
    for _ in range(LOAD_TRIES):
        (entries,) = yield Batch(_load_call(ctx, thread_id, checkpoint_ns, [checkpoint_id] if checkpoint_id else []))
        if not entries:
            return None
        entry = entries[0]
        fields = as_hash(entry[1])
        found_id = as_text(entry[0])
        records, expanded, lost = yield from _elements(ctx, thread_id, {checkpoint_ns: _digests_of(fields, entry[2])})
        if lost:
            continue
        if b"r" in fields:
            ctx.cache.remember(thread_id, checkpoint_ns, found_id, fields[b"r"], newest=checkpoint_id is None)
        found = _build_tuple(serde, thread_id, checkpoint_ns, found_id, fields, entry[2], records, expanded)
        ctx.expanded.add(expanded)
        return found
    raise StoreError(f"checkpoint {found_id!r} of thread {thread_id!r} references {len(lost)} element record(s) "
                     f"missing from Redis (e.g. {min(lost).hex()}): its data is incomplete")


def _load_many(
    ctx: PlanContext, thread_id: str, by_ns: Mapping[str, Sequence[str]]
) -> Plan[tuple[dict[tuple[str, str], Any], dict[bytes, bytes], codec.Expansions]]:
    """Checkpoints by ``(namespace, id)`` (those that exist) and the element records they reference. A checkpoint
    whose records vanish before they are read (deleted meanwhile) is loaded again, and skipped once it is gone."""
    namespaces = list(by_ns)
    replies = yield Batch(*(_load_call(ctx, thread_id, ns, by_ns[ns]) for ns in namespaces))
    loaded = {(ns, as_text(e[0])): e for ns, entries in zip(namespaces, replies, strict=True) for e in entries}
    records: dict[bytes, bytes] = {}
    expanded: codec.Expansions = {}
    for _ in range(LOAD_TRIES):
        wanted: dict[str, list[bytes]] = {}
        needs: dict[tuple[str, str], list[bytes]] = {}
        for (ns, cid), entry in loaded.items():
            digests = _digests_of(as_hash(entry[1]), entry[2])
            if digests:
                needs[(ns, cid)] = digests
                wanted.setdefault(ns, []).extend(d for d in digests if d not in records and d not in expanded)
        got, hits, lost = yield from _elements(ctx, thread_id, wanted)
        records.update(got)
        expanded.update(hits)
        broken = [key for key, digests in needs.items() if lost and not _complete(digests, records, expanded)]
        if not broken:
            return loaded, records, expanded
        again: dict[str, list[str]] = {}
        for ns, cid in broken:
            del loaded[(ns, cid)]
            again.setdefault(ns, []).append(cid)
        reloaded = yield Batch(*(_load_call(ctx, thread_id, ns, ids) for ns, ids in again.items()))
        loaded.update({(ns, as_text(e[0])): e for ns, entries in zip(again, reloaded, strict=True) for e in entries})
    raise StoreError(f"checkpoints {sorted(cid for _, cid in broken)!r} of thread {thread_id!r} reference element "
                     "records missing from Redis: their data is incomplete")


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
        loaded, records, expanded = yield from _load_many(ctx, thread_id, by_ns)
        try:
            for ns, cid in chunk:
                entry = loaded.get((ns, cid))
                if entry is None:  # deleted between the index read and the load
                    continue
                yield Emit(_build_tuple(serde, thread_id, ns, cid, as_hash(entry[1]), entry[2], records, expanded))
                if remaining is not None:
                    remaining -= 1
        finally:  # also when the reader stops early
            ctx.expanded.add(expanded)
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
        namespaces = sorted(unescape(as_text(m)) for m in members)
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
            page = [(ns, as_text(i)) for i in ids]
            remaining = yield from _emit_page(ctx, serde, thread_id, page, filter, remaining)
            if len(ids) < size:
                break
            upper = "(" + page[-1][1]
        return remaining
    # Several namespaces: merge their ids, newest first (ids are time-ordered across namespaces too).
    replies = yield Batch(*(("ZRANGE", layout.index(thread_id, ns), upper, "-", "BYLEX", "REV") for ns in namespaces))
    merged = sorted(
        ((as_text(i), ns) for ns, ids in zip(namespaces, replies, strict=True) for i in ids),
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
        threads = sorted({ctx.layout.thread_of(as_text(k)) for k in keys})
        checkpoint_ns: str | None = None
        checkpoint_id: str | None = None
    else:
        threads = [config_thread_id(config)]
        ns_value = config["configurable"].get("checkpoint_ns")
        checkpoint_ns = None if ns_value is None else str(ns_value)
        checkpoint_id = get_checkpoint_id(config)
    remaining = limit
    for thread_id in threads:
        remaining = yield from _list_thread(ctx, serde, thread_id, checkpoint_ns, checkpoint_id, before_id, filter, remaining)
        if remaining is not None and remaining <= 0:
            return


# -- writes ----------------------------------------------------------------------------------------------------


def _counted_args(records: codec.Elements) -> tuple[Any, ...]:
    """``k`` and ``k`` ``(digest, record)`` pairs, as the scripts take them."""
    return (len(records), *(x for pair in records.items() for x in pair))


def _element_commands(ctx: PlanContext, thread_id: str, checkpoint_ns: str, elements: codec.Elements) -> list[Any]:
    """Plain commands that store element records (each rewritten with the same bytes if present), registered
    with the thread and given its TTL, before the script that references them (a write without a lease)."""
    if not elements:
        return []
    layout, policy = ctx.layout, ctx.policy
    key = layout.elements(thread_id, checkpoint_ns)
    commands: list[Any] = [("HSET", key, *(x for pair in elements.items() for x in pair)),
                           ("SADD", layout.registry(thread_id), key)]
    if policy.ttl_ms:
        commands.append(("PEXPIRE", key, policy.expire_ms))
    return commands


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
    thread_id, checkpoint_ns = config_thread_id(config), config_namespace(config)
    parent_id = config["configurable"].get("checkpoint_id") or ""
    record = dict(checkpoint)
    values: dict[str, Any] = record.pop("channel_values", None) or {}  # type: ignore[assignment]
    blob_args: list[Any] = []  # plain values: a plain HSET
    ref_args: list[Any] = []  # lists stored element by element: their reference records, counted by the script
    leaves: codec.Elements = {}
    chunks: codec.Elements = {}
    expanded: codec.Expansions = {}
    for channel, version in new_versions.items():
        enc = codec.encode_value(serde, values[channel]) if channel in values else _EMPTY
        (ref_args if enc.leaves else blob_args).extend((codec.blob_field(channel, version), enc.record))
        leaves.update(enc.leaves)
        chunks.update(enc.chunks)
        expanded.update(enc.expanded)
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
        layout.elements(thread_id, checkpoint_ns),
        layout.element_counts(thread_id, checkpoint_ns),
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
    counted = (*_counted_args(chunks), len(ref_args) // 2, *ref_args)
    commands: list[Any] = []
    if fence is None:
        call = Eval(scripts.PUT, keys, (*args, *counted))
        # Element records and plain channel values go in plain HSETs (never through Lua), atomically with the
        # script: MULTI/EXEC.
        commands.extend(_element_commands(ctx, thread_id, checkpoint_ns, leaves))
    else:  # element records through the script, which stores none when it refuses the write
        call = Eval(scripts.PUT_LEASED, (*keys, layout.lease(thread_id)),
                    (*args, fence.owner, fence.ttl_ms, repr(thread_id), *_counted_args(leaves), *counted))
    if blob_args:
        commands.append(("HSET", layout.blobs(thread_id, checkpoint_ns), *blob_args))
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
    ctx.elements.add(leaves)
    ctx.elements.add(chunks)
    ctx.expanded.add(expanded)
    ctx.cache.remember(thread_id, checkpoint_ns, checkpoint_id, refs_raw, newest=True)
    return checkpoint_config(thread_id, checkpoint_ns, checkpoint_id)


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
    thread_id, checkpoint_ns = config_thread_id(config), config_namespace(config)
    checkpoint_id = config["configurable"].get("checkpoint_id")
    if not checkpoint_id:
        raise ConfigError("put_writes needs config['configurable']['checkpoint_id']")
    if not writes:
        return
    key = layout.checkpoint(thread_id, checkpoint_ns, checkpoint_id)
    keep_first: list[Any] = []
    overwrite: list[Any] = []
    counted: list[Any] = []  # regular writes stored element by element: through the script, which counts them
    leaves: codec.Elements = {}
    chunks: codec.Elements = {}
    expanded: codec.Expansions = {}
    for idx, (channel, value) in enumerate(writes):
        write_idx = WRITES_IDX_MAP.get(channel, idx)
        enc = codec.encode_write(serde, task_id, write_idx, channel, value, task_path, split=write_idx >= 0)
        pair = (codec.write_field(task_id, write_idx), enc.record)
        (overwrite if write_idx < 0 else counted if enc.leaves else keep_first).append(pair)
        leaves.update(enc.leaves)
        chunks.update(enc.chunks)
        expanded.update(enc.expanded)
    element_keys = (layout.elements(thread_id, checkpoint_ns), layout.element_counts(thread_id, checkpoint_ns))
    commands: list[Any] = []
    if fence is not None:  # everything through the script, which stores nothing when it refuses the write
        first = [*counted, *keep_first]
        pairs = [x for pair in (*first, *overwrite) for x in pair]
        commands.append(Eval(
            scripts.PUT_WRITES_LEASED,
            (layout.registry(thread_id), layout.namespaces(thread_id), key, layout.refresh_marker(thread_id),
             layout.lease(thread_id), *element_keys),
            (escape(checkpoint_ns), policy.ttl_ms, policy.slack_ms, fence.owner, fence.ttl_ms, repr(thread_id),
             *_counted_args(leaves), *_counted_args(chunks), len(first), *pairs),
        ))
    else:
        commands.extend(_element_commands(ctx, thread_id, checkpoint_ns, leaves))
        # Regular writes keep the first value stored for (task_id, idx) (HSETNX); special channels (negative
        # idx) are overwritten. Plain commands so values never pass through Lua; MULTI/EXEC with the script.
        commands.extend(("HSETNX", key, f, v) for f, v in keep_first)
        if overwrite:
            commands.append(("HSET", key, *(x for pair in overwrite for x in pair)))
        commands.append(
            Eval(
                scripts.PUT_WRITES,
                (layout.registry(thread_id), layout.namespaces(thread_id), key, layout.refresh_marker(thread_id),
                 *element_keys),
                (escape(checkpoint_ns), policy.ttl_ms, policy.slack_ms, *_counted_args(chunks), len(counted),
                 *(x for pair in counted for x in pair)),
            )
        )
    yield Batch(*commands, atomic=True)
    ctx.elements.add(leaves)
    ctx.elements.add(chunks)
    ctx.expanded.add(expanded)
