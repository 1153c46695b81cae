"""One message, read the same way whatever its form: a :class:`MessageView` of an OpenAI-format dict or a
LangChain message (role, id, editable fields, tool calls and their argument strings, fold handle), built once
per message object (a process-wide cache keyed by identity and content), and the per-message counting that
every token figure in freemem uses (:func:`count_messages`: texts plus ``MESSAGE_OVERHEAD_TOKENS`` each)."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from freemem.core.blocks import block_rule, block_text, signed_call_ids, signed_reasoning_field
from freemem.core.errors import FormatError
from freemem.core.json_args import (
    ARG_FIELD_MIN_CHARS,
    MAX_ARG_DEPTH,
    ArgString,
    arg_field_name,
    arg_strings,
    json_depth,
)
from freemem.core.media import DEFAULT_IMAGE_RULE, Media, media_of, media_tokens

__all__ = ["DATE_KEYS", "FOLD_KEY", "MESSAGE_OVERHEAD_TOKENS", "MessageView", "count_messages", "counted_texts",
           "image_rule_of", "message_view", "message_views", "name_tool_results", "read_message", "read_once",
           "views_media_tokens"]

#: Tokens a chat template adds around each message (role markers, separators); OpenAI documents ~3-4.
MESSAGE_OVERHEAD_TOKENS = 4

#: Where a fold message carries its handle: the dict message's ``metadata`` key, or a LangChain message's
#: ``additional_kwargs`` key (see :mod:`freemem.core.folding`).
FOLD_KEY = "freemem_fold"

#: Metadata keys a message may carry its own date under (first found wins): the message dict itself, its
#: ``metadata``, or a LangChain message's ``additional_kwargs`` / ``response_metadata``.
DATE_KEYS = ("date", "created_at", "timestamp", "time", "datetime")


@dataclass
class MessageView:
    """A chat message reduced to what rendering needs, whatever its original type."""

    index: int
    role: str
    id: str | None = None
    name: str | None = None
    #: Text fields in render order: ``("reasoning_content", text)``, ``("content", text)`` or one
    #: ``("content[i]", text)`` per text part. Non-text parts appear as ``("part", placeholder)``.
    fields: list[tuple[str, str]] = field(default_factory=list)
    #: ``(call_id, tool_name, arguments_text)`` of an assistant message's tool calls.
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    tool_call_id: str | None = None
    pinned: bool = False
    #: The handle of a fold message (one freemem wrote in place of folded messages), else None.
    fold: str | None = None
    #: The images and documents of the content (counted by their size, never edited: :mod:`freemem.core.media`).
    media: list[Media] = field(default_factory=list)
    #: The date the message carries in its own metadata (:data:`DATE_KEYS`), as given; None when it has none.
    date: str | None = None
    #: Text fields that are never edited, with the reason (a signed thinking block, a text block with
    #: citations: the rows of :data:`freemem.core.blocks.BLOCK_RULES` whose fate is ``"keep"``).
    kept: dict[str, str] = field(default_factory=dict)
    #: Indexes (into :attr:`tool_calls`) of calls a provider signed: their arguments are kept whole.
    signed_calls: frozenset[int] = frozenset()
    #: The message carries something a provider signed (a signed block, field or call).
    signed: bool = False

    def arg_strings(self, k: int, min_chars: int = ARG_FIELD_MIN_CHARS) -> list[ArgString]:
        """Top-level string values (``min_chars`` and longer) of the ``k``-th tool call's arguments."""
        return arg_strings(self.tool_calls[k][2], min_chars)

    def arg_fields(self, min_chars: int = ARG_FIELD_MIN_CHARS) -> list[tuple[str, str]]:
        """``(field name, decoded value)`` of the string values in this message's tool calls."""
        return [(arg_field_name(k, a.key), a.value) for k in range(len(self.tool_calls))
                for a in self.arg_strings(k, min_chars)]

    def all_fields(self) -> dict[str, str]:
        """Text fields and every argument string field (any length: a pruned value is short) by name."""
        out = dict(self.fields)
        out.update(self.arg_fields(min_chars=0))
        return out


def _dict_view(index: int, msg: dict[str, Any]) -> MessageView:
    if not isinstance(msg, dict):
        raise FormatError(f"message {index} is a {type(msg).__name__}, expected a dict or a LangChain message")
    role = msg.get("role")
    if not isinstance(role, str):
        raise FormatError(f"message {index} has no 'role'")
    view = MessageView(
        index=index,
        role=role,
        id=_str_or_none(msg.get("id")),
        name=_str_or_none(msg.get("name")),
        tool_call_id=_str_or_none(msg.get("tool_call_id")),
        pinned=bool(msg.get("pinned")) or bool(_meta(msg).get("freemem_pinned")),
        fold=_fold_handle(_meta(msg).get(FOLD_KEY)),
        date=_date_of(msg, _meta(msg)),
    )
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        key = "reasoning_content" if msg.get("reasoning_content") else "reasoning"
        view.fields.append((key, reasoning))
        if signed_reasoning_field(msg):
            view.kept[key] = "mirrors signed thinking blocks"
            view.signed = True
    _content_fields(view, msg.get("content"))
    calls = msg.get("tool_calls") or []
    if not isinstance(calls, list):
        raise FormatError(f"message {index}: 'tool_calls' is not a list")
    signed = signed_call_ids(calls)
    for call in calls:
        if not isinstance(call, dict):
            raise FormatError(f"message {index}: a tool call is not an object")
        fn = call.get("function") or {}
        name = fn.get("name") if isinstance(fn, dict) else None
        args = fn.get("arguments") if isinstance(fn, dict) else None
        if name is None:  # LangChain-style dicts: {"name", "args", "id"}
            name, args = call.get("name"), call.get("args")
        args = _args_text(index, args) if not isinstance(args, str) else _checked(index, args)
        view.tool_calls.append((str(call.get("id") or ""), str(name or "?"), args))
    view.signed_calls = _signed_indexes(view, signed)
    view.signed = view.signed or bool(view.signed_calls)
    return view


def _args_text(index: int, args: Any) -> str:
    """Tool-call arguments given as a value (LangChain ``args``), as the JSON text that is counted and shown."""
    if args is None:
        return ""
    try:
        text = json.dumps(args, ensure_ascii=False, sort_keys=True)
    except RecursionError:
        raise FormatError(f"message {index}: tool-call arguments nest deeper than {MAX_ARG_DEPTH} levels") from None
    except (TypeError, ValueError) as exc:
        raise FormatError(f"message {index}: tool-call arguments are not JSON data ({exc})") from None
    return _checked(index, text)


def _checked(index: int, args: str) -> str:
    """``args`` (JSON text), refused when it nests deeper than :data:`MAX_ARG_DEPTH`: every later step
    (parsing for a digest, archiving, copying a message) would hit Python's recursion limit on it."""
    if args.lstrip()[:1] in ("{", "[") and json_depth(args, MAX_ARG_DEPTH) > MAX_ARG_DEPTH:
        raise FormatError(f"message {index}: tool-call arguments nest deeper than {MAX_ARG_DEPTH} levels")
    return args


def _signed_indexes(view: MessageView, signed: set[str]) -> frozenset[int]:
    return frozenset(k for k, (call_id, _n, _a) in enumerate(view.tool_calls) if call_id and call_id in signed)


def _meta(msg: dict[str, Any]) -> dict[str, Any]:
    meta = msg.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _lc_view(index: int, msg: Any) -> MessageView:
    # Duck-typed on langchain_core.messages.BaseMessage so the core never imports LangChain.
    role = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "developer": "developer"}.get(
        msg.type, msg.type
    )
    kwargs = getattr(msg, "additional_kwargs", None) or {}
    meta = getattr(msg, "response_metadata", None) or {}
    view = MessageView(
        index=index,
        role=role,
        id=_str_or_none(getattr(msg, "id", None)),
        name=_str_or_none(getattr(msg, "name", None)),
        tool_call_id=_str_or_none(getattr(msg, "tool_call_id", None)),
        pinned=bool(kwargs.get("freemem_pinned") or meta.get("freemem_pinned")),
        fold=_fold_handle(kwargs.get(FOLD_KEY)),
        date=_date_of(kwargs, meta),
    )
    reasoning = kwargs.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        view.fields.append(("reasoning_content", reasoning))
        if signed_reasoning_field(kwargs):
            view.kept["reasoning_content"] = "mirrors signed thinking blocks"
            view.signed = True
    _content_fields(view, msg.content)
    calls = getattr(msg, "tool_calls", None) or []
    for call in calls:
        args = _args_text(index, call.get("args"))
        view.tool_calls.append((str(call.get("id") or ""), str(call.get("name") or "?"), args))
    view.signed_calls = _signed_indexes(view, signed_call_ids(calls, kwargs))
    view.signed = view.signed or bool(view.signed_calls)
    return view


def _content_fields(view: MessageView, content: Any) -> None:
    if content is None:
        return
    if isinstance(content, str):
        view.fields.append(("content", content))
        return
    if isinstance(content, list):
        for i, part in enumerate(content):
            # What each block may become is one table (freemem.core.blocks): its text shows as a field
            # (editable, or kept byte-identical), or the block shows as a placeholder.
            rule = block_rule(part)
            view.signed = view.signed or rule.signed
            text = block_text(part, rule)
            if text is None:
                kind = part.get("type", "non-text") if isinstance(part, dict) else type(part).__name__
                view.fields.append(("part", f"[{kind} part]"))
                if isinstance(part, dict) and (found := media_of(part)) is not None:
                    view.media.append(found)
                continue
            fname = f"content[{i}]"
            view.fields.append((fname, text))
            if rule.fate == "keep":
                view.kept[fname] = rule.name
        return
    raise FormatError(f"message {view.index}: content of type {type(content).__name__} is not supported")


def _fold_handle(value: Any) -> str | None:
    """The handle a fold message carries (``{"handle": ...}`` or the handle itself), else None."""
    if isinstance(value, dict):
        value = value.get("handle")
    return value if isinstance(value, str) and value else None


def _date_of(*holders: Any) -> str | None:
    """The first date found under :data:`DATE_KEYS` in ``holders`` (dicts), as a string."""
    for holder in holders:
        if isinstance(holder, dict):
            for key in DATE_KEYS:
                value = holder.get(key)
                if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
                    return str(value).strip()
    return None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def counted_texts(views: Sequence[MessageView]) -> list[str]:
    """The texts a message list's token count is made of: every text field, each tool call's arguments (as
    sent: JSON) and name. Add :data:`MESSAGE_OVERHEAD_TOKENS` per message."""
    texts: list[str] = []
    for view in views:
        texts.extend(text for _name, text in view.fields)
        for _call_id, name, args in view.tool_calls:
            texts.append(args)
            texts.append(name)
    return texts


def image_rule_of(counter: Any, image_rule: str | None = None) -> str:
    """The image rule to count by: ``image_rule`` when given, else the counter's own (``counter.image_rule``:
    tiktoken encodings bill by OpenAI's rule), else :data:`~freemem.core.media.DEFAULT_IMAGE_RULE`."""
    return image_rule or getattr(counter, "image_rule", None) or DEFAULT_IMAGE_RULE


def views_media_tokens(counter: Any, views: Sequence[MessageView], image_rule: str | None = None) -> int:
    """Tokens of the images and documents in ``views`` (:func:`freemem.core.media.media_tokens`)."""
    rule = image_rule_of(counter, image_rule)
    return sum(media_tokens(m, rule, counter.count) for view in views for m in view.media)


def count_messages(counter: Any, messages: Sequence[Any], image_rule: str | None = None) -> int:
    """Tokens of a message list by ``counter`` (a :class:`~freemem.tokens.TokenCounter`): every text in
    :func:`counted_texts`, the images and documents by their size (:func:`views_media_tokens`, by
    ``image_rule`` or the counter's), plus :data:`MESSAGE_OVERHEAD_TOKENS` per message. With a
    :class:`~freemem.tokens.CachedCounter` the texts are counted in one batch and cached, so a new turn costs
    O(new tokens)."""
    views = message_views(messages)
    texts = counted_texts(views)
    total = counter.count_texts(texts) if hasattr(counter, "count_texts") else sum(counter.count_many(texts))
    return int(total) + views_media_tokens(counter, views, image_rule) + MESSAGE_OVERHEAD_TOKENS * len(messages)


class _LcViewCache:
    """Views of LangChain messages by value: an agent's history is re-read at every model call, and a
    checkpointer hands back new objects with the same values each time. A view is reused when the message's
    type, id and text content are equal and its tool calls, kwargs, metadata, name and call id compare equal.
    Bounded: cleared when full."""

    LIMIT = 20_000

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], tuple[tuple[Any, ...], MessageView]] = {}

    def view(self, index: int, msg: Any) -> MessageView:
        d = getattr(msg, "__dict__", None)
        content = d.get("content") if d is not None else None
        if d is None or not isinstance(content, str):
            return _lc_view(index, msg)
        key = (d.get("type"), d.get("id"), content)
        rest = (d.get("tool_calls"), d.get("additional_kwargs"), d.get("response_metadata"), d.get("name"),
                d.get("tool_call_id"))
        hit = self._entries.get(key)
        if hit is not None and hit[0] == rest:
            return _copy_view(hit[1], index)
        view = _lc_view(index, msg)
        if len(self._entries) >= self.LIMIT:
            self._entries.clear()
        self._entries[key] = (copy.deepcopy(rest), _copy_view(view, index))
        return view


def _copy_view(view: MessageView, index: int) -> MessageView:
    """A copy of ``view`` at ``index`` whose lists and maps can be changed without touching the original."""
    return dataclasses.replace(view, index=index, fields=list(view.fields), tool_calls=list(view.tool_calls),
                               media=list(view.media), kept=dict(view.kept))


_LC_VIEWS = _LcViewCache()


def message_view(index: int, msg: Any) -> MessageView:
    """Read one OpenAI-format dict or LangChain message (at position ``index``) into a :class:`MessageView`. A
    tool result's ``name`` is what the message itself says: :func:`name_tool_results` names it from its call.
    Inside :func:`read_once` a message object already read hands out a copy of that read."""
    reads = _READS.get()
    if reads is not None:
        hit = reads.get(id(msg))
        if hit is not None and hit[0] is msg:
            return _copy_view(hit[1], index)
    view = read_message(index, msg)
    if reads is not None:
        reads[id(msg)] = (msg, _copy_view(view, index))
    return view


def read_message(index: int, msg: Any) -> MessageView:
    """Read one message into a view, whatever :func:`read_once` block is open (LangChain messages are still
    reused by value from a process-wide cache): what :func:`message_view` does for a message it has not read
    in the block."""
    if isinstance(msg, dict):
        return _dict_view(index, msg)
    if hasattr(msg, "type") and hasattr(msg, "content"):
        return _LC_VIEWS.view(index, msg)
    raise FormatError(f"message {index} is a {type(msg).__name__}, expected a dict or a LangChain message")


#: The reads of the current :func:`read_once` block: message id -> (the message, its view as read).
_READS: contextvars.ContextVar[dict[int, tuple[Any, MessageView]] | None] = contextvars.ContextVar(
    "freemem_message_reads", default=None)


@contextlib.contextmanager
def read_once() -> Iterator[None]:
    """Within this block each message object is read into a view once: a later :func:`message_views` /
    :func:`message_view` of the same object (by identity, at any position) gets a copy of the first read. A
    graph step wraps its whole work in it (measuring, the trigger check, the clean, the archive), so the views
    of one step are built once per message. Messages are taken as unchanged while the block lasts (freemem
    edits by making new message objects); blocks nest (the outer one's reads are kept)."""
    if _READS.get() is not None:
        yield
        return
    token = _READS.set({})
    try:
        yield
    finally:
        _READS.reset(token)


def name_tool_results(views: Sequence[MessageView]) -> None:
    """Name each tool result (whose message gives no name) after the call that produced it, in place."""
    names: dict[str, str] = {}
    for view in views:
        for call_id, name, _ in view.tool_calls:
            names[call_id] = name
        if view.role == "tool" and view.name is None and view.tool_call_id in names:
            view.name = names[view.tool_call_id]


def message_views(messages: Sequence[Any]) -> list[MessageView]:
    """Read OpenAI-format dicts or LangChain messages into :class:`MessageView` objects (tool results named
    after their calls)."""
    views = [message_view(i, msg) for i, msg in enumerate(messages)]
    name_tool_results(views)
    return views
