"""LangChain message helpers that the core leaves out: reviving archived messages.

The core archives a folded LangChain message as its ``model_dump()`` (:func:`freemem.core.folding.plain_message`)
and never imports LangChain; this module turns such a dump back into the same message class with equal
values, and registers itself as the default reviver when imported (the LangGraph and Redis layers import it).
"""

from __future__ import annotations

from typing import Any

from freemem.optional import require_extra

require_extra("langgraph", "langchain_core", what="freemem.lc")

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    ToolMessage,
    ToolMessageChunk,
)

from freemem.core.folding import FoldMismatch, register_reviver

__all__ = ["revive_message"]

_CLASSES: dict[str, type[BaseMessage]] = {
    "human": HumanMessage,
    "ai": AIMessage,
    "system": SystemMessage,
    "tool": ToolMessage,
    "chat": ChatMessage,
    "function": FunctionMessage,
    "AIMessageChunk": AIMessageChunk,
    "HumanMessageChunk": HumanMessageChunk,
    "ToolMessageChunk": ToolMessageChunk,
}


def revive_message(data: dict[str, Any]) -> BaseMessage:
    """The LangChain message whose ``model_dump()`` is ``data``."""
    cls = _CLASSES.get(str(data.get("type")))
    if cls is None:
        raise FoldMismatch(f"cannot revive a LangChain message of type {data.get('type')!r}")
    return cls.model_validate(data)


register_reviver("langchain", revive_message)
