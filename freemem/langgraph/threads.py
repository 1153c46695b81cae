"""A persisted thread seen whole: its latest messages (from any LangGraph checkpointer) next to what freemem
freed (from any :class:`~freemem.archives.Archive`), and restoring freed spans back into the thread as a new
checkpoint. Sync (:func:`show_thread`, :func:`restore_thread`) and async (:func:`ashow_thread`,
:func:`arestore_thread`, over an :class:`~freemem.archives.AsyncArchive` and the saver's async methods): each
is written once as steps yielding :class:`~freemem.driving.Call` requests (``saver.get_tuple`` / ``aget_tuple``,
``archive.restore`` / ``arestore``...), driven sync or async.

Restoring writes a checkpoint the way ``graph.update_state`` does (``source: "update"``, the next step, the
previous checkpoint as parent), with only the messages channel replaced, so the next ``invoke`` on the thread
continues from the restored context and the pruned one stays in history.

Branches. Two runs started together on one thread (or a fork) write two branches of checkpoints; the thread's
latest checkpoint is on one of them, while the archive keeps every branch's events. Each event names the
checkpoint its step ran on (``checkpoint_id`` / ``checkpoint_map``, recorded by :class:`~freemem.langgraph.CleanStep`
from LangGraph's task config), so :func:`lineage` places the events against the latest checkpoint's ancestors and
restoring or showing a thread undoes the events of its branch only; the others are in ``Restored.skipped`` /
``ThreadView.skipped`` with the reason (another branch's; pending on the latest checkpoint; markers not in the
messages), never an ``ArchiveMismatch``.

Lost archive events. The archive can lose events the checkpoints still point to (its keys expired with a
shorter TTL, were deleted, or were written to another key prefix). The pruned messages then still hold
freemem's markers (``[freemem: #<ref> N tokens freed]``) and fold messages whose text no event names.
:func:`orphaned_refs` finds them, and :class:`ThreadView` carries them (``orphans``), so a caller can say the
removed text is gone instead of reporting "nothing pruned" or "nothing to restore". Markers of a custom
``RoundPolicy(marker=...)`` template are not recognised (only freemem's default marker and fold messages).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.base.id import uuid6

from freemem.archives import Archive, AsyncArchive, Restored, undo_events
from freemem.core.archive import Lineage, Skipped, event_checkpoint, event_refs
from freemem.core.errors import StoreError
from freemem.core.views import message_views
from freemem.driving import CALL_HANDLERS, Call, adrive, drive

__all__ = [
    "ThreadView",
    "alineage",
    "aload_messages",
    "aorphaned_refs",
    "arestore_thread",
    "ashow_thread",
    "awrite_messages",
    "freemem_refs",
    "lineage",
    "load_messages",
    "orphaned_refs",
    "restore_thread",
    "show_thread",
    "write_messages",
]

#: freemem's default message marker (:data:`freemem.core.apply.DEFAULT_MESSAGE_MARKER`), naming its span's ref.
_MARKER = re.compile(r"\[freemem: #([0-9a-f]{8}) \d+ tokens freed\]")


@dataclass
class ThreadView:
    """A thread's pruned context, the original rebuilt from the archive, and its archived events."""

    thread_id: str
    checkpoint_id: str | None
    pruned: list[Any]
    original: list[Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Refs of markers and fold messages in ``pruned`` that no archived event names (their text is lost).
    orphans: list[str] = field(default_factory=list)
    #: Unrestored events left out of ``original``, and why (another branch's: see :class:`Lineage`).
    skipped: list[Skipped] = field(default_factory=list)
    #: Whether an archive was given (``False``: nothing was ever archived, which is not text that expired).
    has_archive: bool = True


def _config(thread_id: str, checkpoint_ns: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns}}


Steps = Generator[Call, Any, Any]


def _load_steps(saver: BaseCheckpointSaver[Any], thread_id: str, channel: str, checkpoint_ns: str) -> Steps:
    tup: CheckpointTuple | None = yield Call(saver, "get_tuple", (_config(thread_id, checkpoint_ns),))
    if tup is None:
        return None, []
    value = tup.checkpoint["channel_values"].get(channel)
    if value is None:
        return tup, []
    if not isinstance(value, list):
        raise StoreError(f"thread {thread_id!r}: channel {channel!r} holds a {type(value).__name__}, not messages")
    return tup, list(value)


def load_messages(
    saver: BaseCheckpointSaver[Any], thread_id: str, *, channel: str = "messages", checkpoint_ns: str = ""
) -> tuple[CheckpointTuple | None, list[Any]]:
    """The thread's latest checkpoint and the message list in its ``channel`` (empty if none)."""
    return drive(_load_steps(saver, thread_id, channel, checkpoint_ns), CALL_HANDLERS["sync"])


async def aload_messages(
    saver: BaseCheckpointSaver[Any], thread_id: str, *, channel: str = "messages", checkpoint_ns: str = ""
) -> tuple[CheckpointTuple | None, list[Any]]:
    """Async twin of :func:`load_messages`."""
    return await adrive(_load_steps(saver, thread_id, channel, checkpoint_ns), CALL_HANDLERS["async"])


def _write_steps(saver: BaseCheckpointSaver[Any], parent: CheckpointTuple, messages: Sequence[Any], channel: str,
                 note: dict[str, Any] | None) -> Steps:
    checkpoint = copy.deepcopy(parent.checkpoint)
    checkpoint["id"] = str(uuid6(clock_seq=-1))
    checkpoint["ts"] = datetime.now(UTC).isoformat()
    checkpoint["channel_values"][channel] = list(messages)
    version = saver.get_next_version(checkpoint["channel_versions"].get(channel), None)
    checkpoint["channel_versions"][channel] = version
    step = parent.metadata.get("step", -1) if parent.metadata else -1
    metadata: dict[str, Any] = {"source": "update", "step": int(step) + 1, "parents": {}}
    if note:
        metadata.update(note)
    return (yield Call(saver, "put", (parent.config, checkpoint, metadata, {channel: version})))


def write_messages(
    saver: BaseCheckpointSaver[Any],
    parent: CheckpointTuple,
    messages: Sequence[Any],
    *,
    channel: str = "messages",
    note: dict[str, Any] | None = None,
) -> RunnableConfig:
    """Store a child of ``parent`` whose ``channel`` holds ``messages`` (everything else unchanged)."""
    return drive(_write_steps(saver, parent, messages, channel, note), CALL_HANDLERS["sync"])


async def awrite_messages(
    saver: BaseCheckpointSaver[Any],
    parent: CheckpointTuple,
    messages: Sequence[Any],
    *,
    channel: str = "messages",
    note: dict[str, Any] | None = None,
) -> RunnableConfig:
    """Async twin of :func:`write_messages`."""
    return await adrive(_write_steps(saver, parent, messages, channel, note), CALL_HANDLERS["async"])


def freemem_refs(messages: Sequence[Any]) -> list[str]:
    """The refs freemem left in ``messages``: each default marker's ``#ref`` and each fold message's handle,
    in order (a ref twice if it occurs twice)."""
    refs: list[str] = []
    for view in message_views(messages):
        if view.fold is not None:
            refs.append(view.fold)
        for _name, text in view.fields:
            refs.extend(_MARKER.findall(text))
    return refs


#: Checkpoints read per listing call while placing events on the thread's branches.
LINEAGE_PAGE = 100
#: The most checkpoints read to place events (newest first): events recorded on older checkpoints cannot be
#: placed and are tried instead (applied when the messages hold their markers). Races are recent; this bounds
#: what showing or restoring a thread of thousands of checkpoints reads.
LINEAGE_MAX_CHECKPOINTS = 2000


class _Pages:
    """One page of a checkpointer's listing (``list`` / ``alist`` with ``before`` and ``limit``), as a call
    the drivers can make sync or async."""

    def __init__(self, saver: BaseCheckpointSaver[Any]) -> None:
        self.saver = saver

    def page(self, config: RunnableConfig, before: RunnableConfig | None, limit: int) -> list[CheckpointTuple]:
        return list(self.saver.list(config, before=before, limit=limit))

    async def apage(self, config: RunnableConfig, before: RunnableConfig | None, limit: int
                    ) -> list[CheckpointTuple]:
        return [tup async for tup in self.saver.alist(config, before=before, limit=limit)]


def _checkpoint_id(config: RunnableConfig | None) -> str | None:
    found = ((config or {}).get("configurable") or {}).get("checkpoint_id")
    return None if found is None else str(found)


def _lineage_steps(saver: BaseCheckpointSaver[Any], tup: CheckpointTuple, events: Sequence[dict[str, Any]],
                   checkpoint_ns: str) -> Steps:
    # Checkpoint ids order by time, so listing the thread newest first until past the oldest checkpoint an
    # event names gives every checkpoint that can matter; the head's chain of parents is then followed in it.
    head = str(_checkpoint_id(tup.config))
    wanted = {c for e in events if (c := event_checkpoint(e, checkpoint_ns)) is not None and c != head}
    if not wanted:
        return Lineage(head, frozenset(), None, checkpoint_ns)
    oldest = min(wanted)
    parents: dict[str, str | None] = {head: _checkpoint_id(tup.parent_config)}
    config = _config(str(tup.config["configurable"]["thread_id"]), checkpoint_ns)
    before: RunnableConfig | None = None
    pages = _Pages(saver)
    read = 0
    while True:
        page: list[CheckpointTuple] = yield Call(pages, "page", (config, before, LINEAGE_PAGE))
        read += len(page)
        for item in page:
            parents[str(_checkpoint_id(item.config))] = _checkpoint_id(item.parent_config)
        if (len(page) < LINEAGE_PAGE or str(_checkpoint_id(page[-1].config)) < oldest
                or read >= LINEAGE_MAX_CHECKPOINTS):
            break
        before = page[-1].config
    ancestors: set[str] = set()
    current = parents[head]
    while current is not None and current in parents and current >= oldest:
        ancestors.add(current)
        current = parents[current]
    floor = current if current is not None and current not in parents and current >= oldest else None
    return Lineage(head, frozenset(ancestors), floor, checkpoint_ns)


def lineage(saver: BaseCheckpointSaver[Any], tup: CheckpointTuple, events: Sequence[dict[str, Any]], *,
            checkpoint_ns: str = "") -> Lineage:
    """Where checkpoint ``tup`` stands among the checkpoints ``events`` were recorded on (which of them are its
    ancestors), read from ``saver``: what a restore of ``tup`` needs to skip other branches' events."""
    return drive(_lineage_steps(saver, tup, events, checkpoint_ns), CALL_HANDLERS["sync"])


async def alineage(saver: BaseCheckpointSaver[Any], tup: CheckpointTuple, events: Sequence[dict[str, Any]], *,
                   checkpoint_ns: str = "") -> Lineage:
    """Async twin of :func:`lineage`."""
    return await adrive(_lineage_steps(saver, tup, events, checkpoint_ns), CALL_HANDLERS["async"])


def _revive(archive: Any) -> Any:
    revive = getattr(archive, "revive", None)
    if revive is not None:
        return revive
    from freemem.lc import revive_message

    return revive_message


def _orphan_steps(archive: Archive | AsyncArchive, thread_id: str, messages: Sequence[Any]) -> Steps:
    refs = freemem_refs(messages)
    if not refs:
        return []
    known: set[str] = set()
    for event in (yield Call(archive, "events", (thread_id,), {"include_restored": True})):
        known.update(event_refs(event))
    return list(dict.fromkeys(r for r in refs if r not in known))


def orphaned_refs(archive: Archive, thread_id: str, messages: Sequence[Any]) -> list[str]:
    """The refs in ``messages`` (see :func:`freemem_refs`) that no archived event of the thread names, in
    order, each once: text freemem removed that the archive no longer holds (expired, deleted)."""
    return drive(_orphan_steps(archive, thread_id, messages), CALL_HANDLERS["sync"])


async def aorphaned_refs(archive: AsyncArchive, thread_id: str, messages: Sequence[Any]) -> list[str]:
    """Async twin of :func:`orphaned_refs`."""
    return await adrive(_orphan_steps(archive, thread_id, messages), CALL_HANDLERS["async"])


def _show_steps(saver: BaseCheckpointSaver[Any], archive: Archive | AsyncArchive | None, thread_id: str,
                channel: str, checkpoint_ns: str) -> Steps:
    tup, pruned = yield from _load_steps(saver, thread_id, channel, checkpoint_ns)
    checkpoint_id = None if tup is None else tup.config["configurable"]["checkpoint_id"]
    if archive is None:
        return ThreadView(thread_id=thread_id, checkpoint_id=checkpoint_id, pruned=pruned, original=list(pruned),
                          has_archive=False)
    events = yield Call(archive, "list_events", (thread_id,))
    original: list[Any] = []
    skipped: list[Skipped] = []
    if pruned and tup is not None:
        unrestored = yield Call(archive, "events", (thread_id,))
        branch = yield from _lineage_steps(saver, tup, unrestored, checkpoint_ns)
        result = undo_events(pruned, unrestored, thread_id, revive=_revive(archive), lineage=branch)
        original, skipped = result.messages, result.skipped
    orphans = (yield from _orphan_steps(archive, thread_id, pruned)) if pruned else []
    return ThreadView(thread_id=thread_id, checkpoint_id=checkpoint_id, pruned=pruned, original=original,
                      events=events, orphans=orphans, skipped=skipped)


def show_thread(
    saver: BaseCheckpointSaver[Any],
    archive: Archive | None,
    thread_id: str,
    *,
    channel: str = "messages",
    checkpoint_ns: str = "",
) -> ThreadView:
    """The thread's pruned messages, the original rebuilt from the unrestored events of its branch (events of
    another branch, e.g. a concurrent run's that lost the race, are listed in ``skipped``), and all its events.
    ``archive=None``: no archive was configured; ``original`` is the pruned messages."""
    return drive(_show_steps(saver, archive, thread_id, channel, checkpoint_ns), CALL_HANDLERS["sync"])


async def ashow_thread(
    saver: BaseCheckpointSaver[Any],
    archive: AsyncArchive | None,
    thread_id: str,
    *,
    channel: str = "messages",
    checkpoint_ns: str = "",
) -> ThreadView:
    """Async twin of :func:`show_thread`."""
    return await adrive(_show_steps(saver, archive, thread_id, channel, checkpoint_ns), CALL_HANDLERS["async"])


def _restore_steps(saver: BaseCheckpointSaver[Any], archive: Archive | AsyncArchive, thread_id: str,
                   event_id: str | None, channel: str, checkpoint_ns: str, dry_run: bool) -> Steps:
    # The archive marks events restored only after the new checkpoint is stored, so a failure in between
    # leaves the events restorable (a retry rebuilds the same messages from the same pruned checkpoint).
    tup, pruned = yield from _load_steps(saver, thread_id, channel, checkpoint_ns)
    if tup is None:
        raise StoreError(f"thread {thread_id!r} has no checkpoints under this key prefix")
    if event_id is not None:
        events = [(yield Call(archive, "get_event", (thread_id, event_id)))]
        if events[0].get("restored_at") is not None:
            return Restored(messages=list(pruned))
    else:
        events = yield Call(archive, "events", (thread_id,))
    branch = yield from _lineage_steps(saver, tup, events, checkpoint_ns)
    result = undo_events(pruned, events, thread_id, revive=_revive(archive), lineage=branch,
                         strict=event_id is not None)
    if dry_run or not result.event_ids:
        return result
    yield from _write_steps(saver, tup, result.messages, channel, {"freemem_restored": result.event_ids})
    yield Call(archive, "mark_all_restored", (thread_id, result.event_ids))
    return result


def restore_thread(
    saver: BaseCheckpointSaver[Any],
    archive: Archive,
    thread_id: str,
    event_id: str | None = None,
    *,
    channel: str = "messages",
    checkpoint_ns: str = "",
    dry_run: bool = False,
) -> Restored:
    """Undo one event (or every unrestored one) in the thread's latest messages and store the result as a new
    checkpoint; the events are marked restored once it is stored (``dry_run``: compute, write nothing).

    Only the events of the latest checkpoint's branch are undone: an event recorded by a run whose checkpoints
    lost the race to a concurrent run on the same thread (or on a fork) is left out, and so is one whose
    markers the messages do not hold; :attr:`Restored.skipped` says which and why. A named event
    (``event_id``) that is not on the branch is skipped the same way; one on the branch whose markers a newer
    event edited raises :class:`~freemem.core.archive.ArchiveMismatch` (restore the newer one first)."""
    steps = _restore_steps(saver, archive, thread_id, event_id, channel, checkpoint_ns, dry_run)
    return drive(steps, CALL_HANDLERS["sync"])


async def arestore_thread(
    saver: BaseCheckpointSaver[Any],
    archive: AsyncArchive,
    thread_id: str,
    event_id: str | None = None,
    *,
    channel: str = "messages",
    checkpoint_ns: str = "",
    dry_run: bool = False,
) -> Restored:
    """Async twin of :func:`restore_thread` (the saver's ``aget_tuple``/``aput``, the archive's ``a`` methods)."""
    steps = _restore_steps(saver, archive, thread_id, event_id, channel, checkpoint_ns, dry_run)
    return await adrive(steps, CALL_HANDLERS["async"])
