"""Thread plans: delete, prune, forget runs, copy a thread; re-arm its TTL, list its keys, measure it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from freemem.core.errors import ConfigError
from freemem.redis import scripts
from freemem.redis.keys import KeyLayout, escape, unescape
from freemem.redis.plans.context import PlanContext, as_hash, as_text
from freemem.redis.protocol import Batch, Eval, Plan

__all__ = ["copy_thread", "delete_for_runs", "delete_thread", "memory_usage", "prune", "thread_keys", "touch"]


def _delete_call(layout: KeyLayout, thread_id: str) -> Eval:
    return Eval(
        scripts.DELETE_THREAD,
        (layout.registry(thread_id), layout.refresh_marker(thread_id), layout.namespaces(thread_id)),
        (layout.thread_base(thread_id),),
    )


def _forget_runs(layout: KeyLayout, thread_ids: Sequence[str], replies: Sequence[Any]) -> Batch:
    """Remove deleted threads from the run index (each run set is its own slot)."""
    commands = [
        ("SREM", layout.run_threads(as_text(run)), escape(thread_id))
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
    threads = sorted({unescape(as_text(m)) for group in members for m in group})
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
    counts_prefix = layout.thread_base(source) + "mc:"
    for raw_key, raw_kind, items in exported:
        key = as_text(raw_key)
        kind = "counts" if key.startswith(counts_prefix) else raw_kind  # reference counts add up on a merge
        args.extend((layout.rebase(key, source, target), kind, len(items), *items))
        if key.startswith(checkpoint_prefix):
            run = as_hash(items).get(b"run")
            if run:
                runs.add(as_text(run))
    commands: list[Any] = []
    for run in sorted(runs):
        run_key = layout.run_threads(run)
        commands.append(("SADD", run_key, escape(target)))
        if policy.ttl_ms:
            commands.append(("PEXPIRE", run_key, policy.expire_ms))
    commands.append(Eval(scripts.IMPORT, (layout.registry(target), layout.refresh_marker(target)), tuple(args)))
    yield Batch(*commands)


# -- writer lease ----------------------------------------------------------------------------------------------


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
    keys = sorted(as_text(m) for m in members)
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
