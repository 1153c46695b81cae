"""Folding: whole units of old messages leave the context for one fold message, recoverably.

Deleting spans inside messages cannot bound a long session: every message keeps its header, its marker, its
per-message overhead and its protected tool-call arguments, so the skeleton of a session grows with every
step (about 48 tokens per tool call). A *fold* takes the oldest run of complete units outside the protected
regions and replaces it with one short message: a digest and a handle.

* A **unit** is a human message, or an assistant message together with every tool result that answers its
  calls (they follow it). Folding whole units keeps every tool call with its result by construction.
* The run starts right after the head (leading system messages and the first human message, which stay) and
  stops before the most recent turn and the newest ``keep_units`` units. Protected messages inside the run
  (the latest human message, a pinned one) stay where they are, after the fold message: a long current
  turn folds too.
* A previous fold message at the start of the run is folded into the new one, so a thread holds at most one
  fold message however long it runs, and its digest stays within ``digest_tokens``.
* The **digest** is extractive (no model, :mod:`freemem.core.digest`): the sentences of the folded messages that
  hold specifics (names, numbers, codes, paths, ids), those the later conversation uses first, then what the
  user stated, then what the assistant did (tool calls with short argument values) — small talk and echoes
  last — within a token cap; a merged older digest's lines compete with the new ones on equal terms.
* The **fold message** is a user message (dict: ``metadata.freemem_fold``; LangChain: ``additional_kwargs``
  ``freemem_fold``) with the id ``freemem-fold-<handle>``; it is protected from edits.
* Everything is **recoverable**: the :class:`FoldRecord` holds the folded messages whole (JSON-plain, see
  :func:`plain_message`), and :func:`unfold` puts them back exactly — same order, same ids, equal values.

This module is core: plain dicts and duck-typed LangChain messages, no LangChain import. Reviving archived
LangChain messages from their JSON form needs a ``revive`` function (:func:`freemem.lc.revive_message`).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from freemem.core.context import RECENT_TURN, Protection, protected_messages
from freemem.core.digest import extractive_digest
from freemem.core.errors import FreememError
from freemem.core.views import FOLD_KEY, MessageView, message_views

__all__ = [
    "FOLD_ID_PREFIX",
    "FoldMismatch",
    "FoldPlan",
    "FoldRecord",
    "Unit",
    "fold_units",
    "make_fold",
    "fold_originals",
    "plain_message",
    "replace_digest",
    "register_reviver",
    "unfold",
]

#: Id of a fold message: this prefix and the fold's handle.
FOLD_ID_PREFIX = "freemem-fold-"



class FoldMismatch(FreememError):
    """A fold cannot be undone: its fold message is not in the messages, or a folded message is unreadable."""


@dataclass(frozen=True, slots=True)
class Unit:
    """Messages ``[start, end)`` that fold together (a human message; an assistant message and its results)."""

    start: int
    end: int
    #: This unit is a previous fold message (it merges into the new fold).
    fold: bool = False


@dataclass
class FoldPlan:
    """The foldable units of a message list, oldest first (empty when nothing may fold)."""

    units: list[Unit] = field(default_factory=list)

    @property
    def start(self) -> int:
        return self.units[0].start if self.units else 0


@dataclass
class FoldRecord:
    """One fold: where the fold message sits, and the folded messages whole (what restores it)."""

    handle: str
    #: Index of the fold message in the list right after the fold (where the folded run started).
    index: int
    message_id: str
    #: The folded messages as :func:`plain_message` dicts, in order.
    messages: list[dict[str, Any]]
    message_ids: list[str | None]
    tokens: int = 0
    digest_tokens: int = 0
    #: The handle of the previous fold message folded into this one, if any.
    merged: str | None = None
    digest: str = ""
    #: Where each folded message was in the list before the fold (protected messages between folded units
    #: stayed in place; undoing folds newest first, these indexes are exact).
    positions: list[int] = field(default_factory=list)
    #: The bound the digest was made under (what a model digest of the same fold may take too); known to the
    #: process that folded, not archived (0 in a record read back).
    digest_cap: int = field(default=0, compare=False)

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"handle": self.handle, "index": self.index, "message_id": self.message_id,
                             "n_messages": len(self.messages), "positions": list(self.positions),
                             "tokens": self.tokens,
                             "digest_tokens": self.digest_tokens, "merged": self.merged}
        if full:
            d["message_ids"] = list(self.message_ids)
            d["messages"] = copy.deepcopy(self.messages)
            d["digest"] = self.digest
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldRecord:
        return cls(handle=str(data["handle"]), index=int(data["index"]), message_id=str(data["message_id"]),
                   messages=list(data.get("messages") or []), message_ids=list(data.get("message_ids") or []),
                   tokens=int(data.get("tokens") or 0), digest_tokens=int(data.get("digest_tokens") or 0),
                   merged=data.get("merged"), digest=str(data.get("digest") or ""),
                   positions=[int(p) for p in data.get("positions") or []])


# ------------------------------------------------------------------------------------------------ planning


def fold_units(views: Sequence[MessageView], protection: Protection, *, keep_units: int = 4) -> FoldPlan:
    """The units that may fold, oldest first: after the head, never the newest ``keep_units`` units, and only
    units whose tool calls all have their results inside the unit. Protected messages between them (the
    latest human message, a pinned one) are not units: they stay where they are and a fold goes around them,
    so a long current turn can fold too. Previous fold messages are units (they merge into the new fold)."""
    n = len(views)
    whole = protected_messages(list(views), protection)
    i = 0
    # The head stays: leading system messages and protected messages up to the first human one included.
    while i < n and views[i].fold is None and (i in whole or views[i].role in ("system", "developer")):
        i += 1
    units: list[Unit] = []
    while i < n:
        view = views[i]
        if view.fold is not None:
            units.append(Unit(i, i + 1, fold=True))
            i += 1
            continue
        if i in whole:
            if whole[i] == RECENT_TURN:
                break  # the rest of the list is the recent turn
            i += 1  # a protected message stays in place; folding goes on after it
            continue
        j = i + 1
        if view.role == "tool":
            i = j  # a result away from its call: it stays with whatever keeps the call
            continue
        if view.role == "assistant":
            while j < n and views[j].role == "tool":
                j += 1
            calls = {call_id for call_id, _n, _a in view.tool_calls}
            answered = {views[k].tool_call_id for k in range(i + 1, j)}
            if not calls <= answered:
                # A result missing or elsewhere: folding this unit would orphan it. It stays where it is
                # (like a protected message) and folding goes on around it.
                i = j
                continue
        if any(k in whole for k in range(i, j)):
            break
        units.append(Unit(i, j))
        i = j
    real = [u for u in units if not u.fold]
    if len(real) <= keep_units:
        return FoldPlan([])
    cut = real[-keep_units] if keep_units else None
    return FoldPlan([u for u in units if cut is None or u.start < cut.start])


# ------------------------------------------------------------------------------------------------ digests


# ------------------------------------------------------------------------------------------------ folding


def plain_message(message: Any) -> dict[str, Any]:
    """A JSON-plain, exact form of a message for the archive: ``{"format": "openai", "message": dict}`` or
    ``{"format": "langchain", "message": model_dump()}`` (revived by :func:`freemem.lc.revive_message`)."""
    if isinstance(message, dict):
        return {"format": "openai", "message": copy.deepcopy(message)}
    dump = getattr(message, "model_dump", None)
    if dump is None:
        raise FoldMismatch(f"cannot archive a {type(message).__name__} message")
    return {"format": "langchain", "message": dump()}


_REVIVERS: dict[str, Callable[[dict[str, Any]], Any]] = {}


def register_reviver(fmt: str, revive: Callable[[dict[str, Any]], Any]) -> None:
    """Make ``revive`` the default for archived messages of format ``fmt`` (``freemem.lc`` registers the
    LangChain one when it is imported, which every LangGraph and Redis surface does)."""
    _REVIVERS[fmt] = revive


def _revive(record: dict[str, Any], revive: Callable[[dict[str, Any]], Any] | None) -> Any:
    fmt = record.get("format")
    if fmt == "openai":
        return copy.deepcopy(record["message"])
    if fmt == "langchain":
        revive = revive or _REVIVERS.get("langchain")
        if revive is None:
            raise FoldMismatch("the fold holds LangChain messages: pass revive=freemem.lc.revive_message")
        return revive(record["message"])
    raise FoldMismatch(f"unknown archived message format {fmt!r}")


def new_handle() -> str:
    """A fresh fold handle: ``f`` and 8 hex digits."""
    return "f" + uuid.uuid4().hex[:8]


def fold_message(like: Any, handle: str, text: str, n: int) -> Any:
    """The fold message, in the form (dict or LangChain) of ``like`` (a human message of the list, or
    any message when there is none)."""
    meta = {"handle": handle, "messages": n}
    mid = FOLD_ID_PREFIX + handle
    if like is None or isinstance(like, dict):
        return {"role": "user", "content": text, "id": mid, "metadata": {FOLD_KEY: meta}}
    update: dict[str, Any] = {"content": text, "id": mid, "additional_kwargs": {FOLD_KEY: meta},
                              "response_metadata": {}, "name": None}
    for attr in ("tool_calls", "invalid_tool_calls"):
        if hasattr(like, attr):
            update[attr] = []
    return like.model_copy(update=update, deep=True)


def make_fold(messages: Sequence[Any], views: Sequence[MessageView], plan: FoldPlan, count: int, *,
              counter: Any, digest_tokens: int, sizes: Sequence[int],
              digest: str | None = None, handle: str | None = None,
              recall: bool = False, before: dict[str, MessageView] | None = None) -> tuple[list[Any], FoldRecord]:
    """Fold the first ``count`` units of ``plan``: returns the new message list and the record.

    The fold message takes the place of the first folded unit; protected messages between folded units stay,
    in order, after it. ``digest`` replaces the extractive digest (a model summary); its first line is
    freemem's header either way, and names the ``recall`` tool when ``recall`` (the agent has it). ``before``
    maps message ids to their views before this round's deletions: the digest reads those (lines a deletion
    took this round still make the digest).
    """
    units = plan.units[:count]
    positions = [k for u in units for k in range(u.start, u.end)]
    chosen = set(positions)
    start = units[0].start
    handle = handle or new_handle()
    folded_views = [views[k] for k in positions]
    n_folded = sum(1 for v in folded_views if v.fold is None)
    merged = next((v.fold for v in folded_views if v.fold is not None), None)
    previous = sum(_fold_count(messages[v.index]) for v in folded_views if v.fold is not None)
    total = n_folded + previous
    how = (f'recall("{handle}") pages them all back in, recall(query="...") searches them' if recall
           else f"fold {handle}, kept in freemem's archive")
    header = f"[freemem: {total} earlier messages folded; {how}]"
    if digest is None:
        later = [v for v in views[start:] if v.index not in chosen]
        source = [before.get(v.id, v) if before and v.id is not None else v for v in folded_views]
        text, tokens = extractive_digest(source, later, header=header, counter=counter,
                                         cap_tokens=digest_tokens)
    else:
        text = header + "\n" + counter.truncate(digest.strip(), max(1, digest_tokens - counter.count(header)))
        tokens = counter.count(text)
    like = next((messages[v.index] for v in views if v.role in ("user", "human") and v.fold is None), None)
    if like is None and messages and not isinstance(messages[0], dict):
        like = messages[0]
    new_msg = fold_message(like, handle, text, total)
    record = FoldRecord(handle=handle, index=start, message_id=FOLD_ID_PREFIX + handle,
                        messages=[plain_message(messages[k]) for k in positions],
                        message_ids=[v.id for v in folded_views], tokens=sum(sizes[k] for k in positions),
                        digest_tokens=tokens, merged=merged, digest=text, positions=positions,
                        digest_cap=digest_tokens)
    rest = [messages[k] for k in range(start, len(messages)) if k not in chosen]
    return [*messages[:start], new_msg, *rest], record


def _fold_count(message: Any) -> int:
    meta = message.get("metadata", {}).get(FOLD_KEY) if isinstance(message, dict) else (
        (getattr(message, "additional_kwargs", None) or {}).get(FOLD_KEY))
    return int(meta.get("messages", 1)) if isinstance(meta, dict) else 1


def fold_originals(record: FoldRecord, *, revive: Callable[[dict[str, Any]], Any] | None = None) -> list[Any]:
    """The messages ``record`` folded, revived (dicts as they were; LangChain messages through ``revive`` or the
    registered reviver)."""
    return [_revive(m, revive) for m in record.messages]


def replace_digest(messages: Sequence[Any], record: FoldRecord, text: str) -> list[Any]:
    """``messages`` with the fold message of ``record`` carrying ``text`` instead of its digest (same id, same
    fold metadata)."""
    out = list(messages)
    for k, view in enumerate(message_views(out)):
        if view.id == record.message_id:
            msg = out[k]
            out[k] = {**msg, "content": text} if isinstance(msg, dict) else msg.model_copy(update={"content": text})
            return out
    raise FoldMismatch(f"fold {record.handle}: its message {record.message_id!r} is not in the messages")


def unfold(messages: Sequence[Any], record: FoldRecord | dict[str, Any], *,
           revive: Callable[[dict[str, Any]], Any] | None = None) -> list[Any]:
    """Undo one fold: the fold message (found by id, else at the recorded index) is replaced by the folded
    messages, exactly as they were."""
    rec = record if isinstance(record, FoldRecord) else FoldRecord.from_dict(record)
    views = message_views(messages)
    at = next((v.index for v in views if v.id == rec.message_id), None)
    if at is None and rec.index < len(views) and views[rec.index].fold == rec.handle:
        at = rec.index
    if at is None:
        raise FoldMismatch(f"fold {rec.handle}: its message {rec.message_id!r} is not in the messages")
    originals = fold_originals(rec, revive=revive)
    positions = rec.positions or list(range(at, at + len(originals)))
    if len(positions) != len(originals) or positions[0] != at:
        raise FoldMismatch(f"fold {rec.handle}: its record does not match the messages")
    out = [*messages[:at], *messages[at + 1:]]
    for pos, original in zip(positions, originals):
        if pos > len(out):
            raise FoldMismatch(f"fold {rec.handle}: position {pos} is past the end of the messages")
        out.insert(pos, original)
    return out
