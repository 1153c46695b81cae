"""Folding: whole units of old messages leave the context for one fold message, recoverably.

Deleting spans inside messages cannot bound a long session: every message keeps its header, its marker, its
per-message overhead and its protected tool-call arguments, so the skeleton of a session grows with every
step (about 48 tokens per tool call). A *fold* takes the oldest run of complete units outside the protected
regions and replaces it with one short message: a digest and a handle.

* A **unit** is a human message, or an assistant message together with every tool result that answers its
  calls (they follow it). Folding whole units keeps every tool call with its result by construction.
* The run starts right after the head (leading system messages and the first human message, which stay) and
  stops before the first protected message (the latest human message, the most recent turn, a pinned
  message) and before the newest ``keep_units`` units.
* A previous fold message at the start of the run is folded into the new one, so a thread holds at most one
  fold message however long it runs, and its digest stays within ``digest_tokens``.
* The **digest** is extractive (no model): which tools ran on what (names, short argument values), what the
  user asked (the first words of each human message), and the lines of folded tool output that the later
  conversation quoted or acted on (identifier-like strings that reappear after the fold), within a token
  cap; the lines of a merged older digest are kept while they fit, least referenced first out.
* The **fold message** is a user message (dict: ``metadata.freemem_fold``; LangChain: ``additional_kwargs``
  ``freemem_fold``) with the id ``freemem-fold-<handle>``; it is protected from edits.
* Everything is **recoverable**: the :class:`FoldRecord` holds the folded messages whole (JSON-plain, see
  :func:`plain_message`), and :func:`unfold` puts them back exactly — same order, same ids, equal values.

This module is core: plain dicts and duck-typed LangChain messages, no LangChain import. Reviving archived
LangChain messages from their JSON form needs a ``revive`` function (:func:`freemem.lc.revive_message`).
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from freemem.context import FOLD_KEY, MessageView, Protection, message_views, protected_messages
from freemem.errors import FreememError

__all__ = [
    "FOLD_ID_PREFIX",
    "FoldMismatch",
    "FoldPlan",
    "FoldRecord",
    "Unit",
    "extractive_digest",
    "fold_units",
    "make_fold",
    "plain_message",
    "register_reviver",
    "unfold",
]

#: Id of a fold message: this prefix and the fold's handle.
FOLD_ID_PREFIX = "freemem-fold-"

_IDENT = re.compile(r"[A-Za-z0-9_][\w./:\-]{7,}")
_WS = re.compile(r"\s+")
#: freemem's own markers and fold headers: never evidence that a line was used later.
_OWN = re.compile(r"\[freemem[: ][^\]\n]{0,120}\]")


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

    def to_dict(self, *, full: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"handle": self.handle, "index": self.index, "message_id": self.message_id,
                             "n_messages": len(self.messages), "tokens": self.tokens,
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
                   merged=data.get("merged"), digest=str(data.get("digest") or ""))


# ------------------------------------------------------------------------------------------------ planning


def fold_units(views: Sequence[MessageView], protection: Protection, *, keep_units: int = 4) -> FoldPlan:
    """The units that may fold, oldest first: after the head, before the first protected message, never the
    newest ``keep_units`` units, and only units whose tool calls all have their results inside the unit."""
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
            if units:  # a fold message further in (user pinned around it): stop, fold what came before
                break
            units.append(Unit(i, i + 1, fold=True))
            i += 1
            continue
        if i in whole:
            break
        j = i + 1
        if view.role == "assistant":
            while j < n and views[j].role == "tool":
                j += 1
            calls = {call_id for call_id, _n, _a in view.tool_calls}
            answered = {views[k].tool_call_id for k in range(i + 1, j)}
            if not calls <= answered:  # a result missing or elsewhere: folding would orphan it
                break
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


def _one_line(text: str, limit: int) -> str:
    text = _WS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call_line(name: str, args: str, limit: int = 160) -> str:
    import json

    try:
        parsed = json.loads(args) if args else {}
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        bits = []
        for key, value in parsed.items():
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            bits.append(f"{key}={_one_line(str(shown), 60)}")
        inner = ", ".join(bits)
    else:
        inner = _one_line(args, 60)
    return _one_line(f"{name}({inner})", limit)


def _later_idents(views: Sequence[MessageView]) -> set[str]:
    out: set[str] = set()
    for view in views:
        if view.role in ("system", "developer") or view.fold is not None:
            continue
        for _name, text in view.fields:
            out.update(_IDENT.findall(_OWN.sub(" ", text)))
        for _cid, _name, args in view.tool_calls:
            out.update(_IDENT.findall(args))
    return out


def _digest_body(view: MessageView) -> list[str]:
    """A previous fold message's digest lines (after its first line)."""
    text = "\n".join(t for _n, t in view.fields)
    return [line for line in text.split("\n")[1:] if line.strip()]


def extractive_digest(folded: Sequence[MessageView], later: Sequence[MessageView], *, header: str,
                      counter: Any, cap_tokens: int, ref_lines: int = 3) -> tuple[str, int]:
    """The digest of ``folded`` (``header`` first), within ``cap_tokens``; returns ``(text, tokens)``.

    Each line has a priority: lines holding strings the later conversation uses first, then what the user
    asked, then what the assistant did; within a priority the newest lines stay longest. Line order in the
    text is the conversation's.
    """
    later_ids = _later_idents(later)
    lines: list[tuple[int, str]] = []  # (priority, line)

    def referenced(text: str) -> bool:
        return any(tok in later_ids for tok in _IDENT.findall(_OWN.sub(" ", text)))

    for view in folded:
        if view.fold is not None:
            lines.extend((2 if referenced(line) else 0, line) for line in _digest_body(view))
            continue
        text = "\n".join(t for n, t in view.fields if n != "part")
        if view.role in ("user", "human"):
            lines.append((3 if referenced(text) else 1, "- user: " + _one_line(text, 200)))
        elif view.role == "assistant":
            if text.strip():
                lines.append((2 if referenced(text) else 0, "- assistant: " + _one_line(text, 160)))
            for _cid, name, args in view.tool_calls:
                lines.append((2 if referenced(args) else 0, "- called " + _call_line(name, args)))
        elif view.role == "tool":
            found = 0
            for raw in text.split("\n"):
                if found >= ref_lines:
                    break
                if _OWN.sub("", raw).strip() and len(raw) < 400 and referenced(raw):
                    lines.append((2, f"  {view.name or 'tool'} said: " + _one_line(raw, 160)))
                    found += 1
        elif text.strip():
            lines.append((0, f"- {view.role}: " + _one_line(text, 120)))
    budget = max(0, cap_tokens - counter.count(header))
    costs = [counter.count(line) + 1 for _p, line in lines]
    keep = [True] * len(lines)
    total = sum(costs)
    if total > budget:
        # Drop the lowest priority first, oldest first within a priority.
        for idx in sorted(range(len(lines)), key=lambda k: (lines[k][0], k)):
            if total <= budget:
                break
            keep[idx] = False
            total -= costs[idx]
    body = [line for (_p, line), k in zip(lines, keep) if k]
    text = "\n".join([header, *body])
    return text, counter.count(text)


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
              digest: str | None = None, handle: str | None = None) -> tuple[list[Any], FoldRecord]:
    """Fold the first ``count`` units of ``plan``: returns the new message list and the record.

    ``digest`` replaces the extractive digest (a model summary); its first line is freemem's header either way.
    """
    units = plan.units[:count]
    start, end = units[0].start, units[-1].end
    handle = handle or new_handle()
    folded_views = list(views[start:end])
    n_folded = sum(1 for v in folded_views if v.fold is None)
    merged = next((v.fold for v in folded_views if v.fold is not None), None)
    previous = sum(int(_fold_count(messages[v.index])) for v in folded_views if v.fold is not None)
    total = n_folded + previous
    header = (f"[freemem: {total} earlier messages folded; recall(\"{handle}\") pages them back in]")
    if digest is None:
        text, tokens = extractive_digest(folded_views, views[end:], header=header, counter=counter,
                                         cap_tokens=digest_tokens)
    else:
        text = header + "\n" + counter.truncate(digest.strip(), max(1, digest_tokens - counter.count(header)))
        tokens = counter.count(text)
    like = next((messages[v.index] for v in views if v.role in ("user", "human") and v.fold is None), None)
    if like is None and messages and not isinstance(messages[0], dict):
        like = messages[0]
    new_msg = fold_message(like, handle, text, total)
    record = FoldRecord(handle=handle, index=start, message_id=FOLD_ID_PREFIX + handle,
                        messages=[plain_message(m) for m in messages[start:end]],
                        message_ids=[v.id for v in folded_views], tokens=sum(sizes[start:end]),
                        digest_tokens=tokens, merged=merged, digest=text)
    return [*messages[:start], new_msg, *messages[end:]], record


def _fold_count(message: Any) -> int:
    meta = message.get("metadata", {}).get(FOLD_KEY) if isinstance(message, dict) else (
        (getattr(message, "additional_kwargs", None) or {}).get(FOLD_KEY))
    return int(meta.get("messages", 1)) if isinstance(meta, dict) else 1


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
    originals = [_revive(m, revive) for m in rec.messages]
    return [*messages[:at], *originals, *messages[at + 1:]]
