"""The part of a model request that is not the message list: the system prompt and the bound tools' schemas.

A provider bills the whole request — the system prompt, every tool's name, description and JSON schema, and
the messages — and the context window holds all of it. :func:`request_tokens` measures the part outside the
messages the way the provider receives it: each tool converted with ``langchain_core``'s
``convert_to_openai_tool`` (the schema LangChain's chat models send) and counted as its JSON text, plus the
system prompt's text (and its images, if any) counted like a message. ``Budget(fixed_tokens=...)`` and
:meth:`FreeMemory.reserved <freemem.FreeMemory.reserved>` take the result, so the messages get what the
budget leaves.

Counts of tools are cached per tool object (a ``BaseTool`` is long-lived; a dict schema is keyed by its JSON),
so measuring every model call costs a few dictionary lookups.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from freemem.core.errors import ConfigError
from freemem.core.views import count_messages
from freemem.tokens import TokenCounter, cached_counter

__all__ = ["TOOL_OVERHEAD_TOKENS", "RequestSize", "request_size", "request_tokens", "tool_schema_tokens"]

#: Tokens a provider adds around each tool definition (its framing in the prompt), on top of the JSON.
TOOL_OVERHEAD_TOKENS = 8


@dataclass(frozen=True)
class RequestSize:
    """The tokens of a request's parts outside the message list."""

    system: int = 0
    tools: int = 0
    #: How many tools were counted.
    tool_count: int = 0

    @property
    def fixed(self) -> int:
        """System prompt plus tool schemas: what no cleaning round can shrink."""
        return self.system + self.tools

    def describe(self) -> str:
        return f"system prompt {self.system:,} + {self.tool_count} tool schemas {self.tools:,} tokens"


class _ToolCounts:
    """Token counts of tool schemas per (counter, tool), bounded LRU. A ``BaseTool`` is keyed by identity
    (the entry keeps the tool alive, so its id is not reused while cached), a dict by its JSON."""

    def __init__(self, size: int = 1024) -> None:
        self._items: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def count(self, counter: TokenCounter, tool: Any) -> int:
        if isinstance(tool, dict):
            key: tuple[Any, ...] = (id(counter), "dict", json.dumps(tool, sort_keys=True, default=str))
        else:
            key = (id(counter), "obj", id(tool))
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and (isinstance(tool, dict) or hit[0] is tool):
                self._items.move_to_end(key)
                return hit[1]
        tokens = tool_schema_tokens(counter, tool)
        with self._lock:
            self._items[key] = (None if isinstance(tool, dict) else tool, tokens)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return tokens


_TOOLS = _ToolCounts()


def tool_schema_tokens(counter: TokenCounter, tool: Any) -> int:
    """Tokens of one tool's definition as the provider receives it: ``convert_to_openai_tool``'s JSON plus
    :data:`TOOL_OVERHEAD_TOKENS`. A provider-native dict that does not convert (a server-side tool such as
    ``{"type": "web_search"}``) is counted as its own JSON.

    Raises:
        ConfigError: ``tool`` is neither a tool, a function, a schema nor a dict.
    """
    try:
        schema: Any = convert_to_openai_tool(tool)
    except Exception as exc:
        if not isinstance(tool, dict):
            raise ConfigError(f"cannot read the schema of tool {tool!r}: {exc}") from exc
        schema = tool
    return counter.count(json.dumps(schema, ensure_ascii=False, default=str)) + TOOL_OVERHEAD_TOKENS


def request_size(counter: TokenCounter | str, *, system_prompt: str | BaseMessage | None = None,
                 tools: Sequence[Any] = (), image_rule: str | None = None) -> RequestSize:
    """The tokens of a request's system prompt and tool schemas (see the module docstring).

    Args:
        counter: a :class:`~freemem.tokens.TokenCounter` or its name (use the memory's: ``memory.counter``).
        system_prompt: the system prompt, as text or a ``SystemMessage`` (None: none).
        tools: the tools bound to the model: ``BaseTool`` objects, functions, pydantic models or dicts.
        image_rule: how images in a system message are billed (default: the counter's rule).
    """
    base = cached_counter(counter)
    system = 0
    if system_prompt is not None:
        message = system_prompt if isinstance(system_prompt, BaseMessage) else SystemMessage(content=system_prompt)
        if message.content:
            system = count_messages(base, [message], image_rule)
    tokens = sum(_TOOLS.count(base, t) for t in tools)
    return RequestSize(system=system, tools=tokens, tool_count=len(tools))


def request_tokens(counter: TokenCounter | str, *, system_prompt: str | BaseMessage | None = None,
                   tools: Sequence[Any] = (), image_rule: str | None = None) -> int:
    """:func:`request_size`'s total: the ``fixed_tokens`` for ``FreeMemory(budget=Budget(..., fixed_tokens=...))``."""
    return request_size(counter, system_prompt=system_prompt, tools=tools, image_rule=image_rule).fixed
