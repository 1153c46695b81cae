"""Reading messages, written once: a chat model's answer (its text, usage, whether it was cut off) and a
transcript message (its text, the newest assistant output, a JSON-plain form).

Chat models are duck-typed (LangChain's ``AIMessage`` shape: ``content``, ``additional_kwargs``,
``usage_metadata``, ``response_metadata``); transcript messages are OpenAI-style dicts or LangChain messages,
read through :func:`freemem.core.context.message_views`. Core: no LangChain import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from freemem.core.views import message_views

__all__ = ["answer_text", "hit_length_limit", "json_message", "message_text", "model_usage", "newest_text"]

# ------------------------------------------------------------------------------------- a model's answer


def answer_text(message: Any, *, reasoning: bool = True) -> str:
    """The text of a chat model's answer, whatever shape its content has (str, or a list of blocks).

    With ``reasoning`` (the default): ``reasoning_content`` first (when the server splits it out), then every
    block's ``text`` / ``reasoning`` / ``thinking``, one part a line -- what a summary or a reasoning segment
    is read from. Without: only the answer proper, the ``text`` blocks joined as they stand -- what a
    cleaner's JSON commands are parsed from (a JSON answer split over blocks stays whole).
    """
    content = getattr(message, "content", message)
    if not reasoning:
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(b if isinstance(b, str) else b["text"] for b in content
                           if isinstance(b, str) or (isinstance(b, Mapping) and b.get("type") == "text"
                                                     and isinstance(b.get("text"), str)))
        return "" if content is None else str(content)
    parts: list[str] = []
    kwargs = getattr(message, "additional_kwargs", None) or {}
    split_out = kwargs.get("reasoning_content")
    if isinstance(split_out, str) and split_out:
        parts.append(split_out)
    if isinstance(content, str):
        parts.append(content)
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping):
                for key in ("text", "reasoning", "thinking"):
                    if isinstance(block.get(key), str):
                        parts.append(block[key])
                        break
    elif content is not None:
        parts.append(str(content))
    return "\n".join(p for p in parts if p)


def model_usage(message: Any) -> dict[str, int]:
    """Token usage the model reported (LangChain ``usage_metadata``), in OpenAI's names (``prompt_tokens``,
    ``completion_tokens``, ``total_tokens``; those it did not report are absent)."""
    meta = getattr(message, "usage_metadata", None) or {}
    usage: dict[str, int] = {}
    for ours, theirs in (("prompt_tokens", "input_tokens"), ("completion_tokens", "output_tokens"),
                         ("total_tokens", "total_tokens")):
        value = meta.get(theirs) if isinstance(meta, Mapping) else None
        if isinstance(value, int):
            usage[ours] = value
    return usage


def hit_length_limit(message: Any) -> bool:
    """Whether the server says generation stopped at the token limit (OpenAI ``finish_reason="length"``,
    Anthropic ``stop_reason="max_tokens"``)."""
    meta = getattr(message, "response_metadata", None) or {}
    if not isinstance(meta, Mapping):
        return False
    return meta.get("finish_reason") == "length" or meta.get("stop_reason") in ("max_tokens", "length")


# -------------------------------------------------------------------------------- transcript messages


def message_text(message: Any) -> str:
    """A transcript message's text fields (content, reasoning), one a line."""
    (view,) = message_views([message])
    return "\n".join(text for _name, text in view.fields)


def newest_text(messages: Sequence[Any]) -> str:
    """The newest assistant output (content and reasoning) among the last four messages, where repetition
    loops show first; empty when there is none."""
    if not messages:
        return ""
    for view in reversed(message_views(list(messages[-4:]))):
        if view.role == "assistant":
            return "\n".join(text for _name, text in view.fields)
    return ""


def json_message(message: Any) -> dict[str, Any]:
    """A message as a JSON-plain OpenAI-style dict (a dict is returned as a shallow copy): ``role``,
    ``content``, and ``id``, ``tool_call_id``, ``tool_calls`` when it has them. For showing and auditing; the
    exact, revivable form the archive restores from is :func:`freemem.core.folding.plain_message`."""
    if isinstance(message, dict):
        return dict(message)
    (view,) = message_views([message])
    out: dict[str, Any] = {"role": view.role, "content": getattr(message, "content", "")}
    if view.id:
        out["id"] = view.id
    if view.tool_call_id:
        out["tool_call_id"] = view.tool_call_id
    if view.tool_calls:
        out["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                             for i, n, a in view.tool_calls]
    return out
