"""freemem for LangGraph and LangChain agents.

* :class:`FreeMemoryMiddleware` — for ``langchain.agents.create_agent``: cleans before every model call, so
  long tool-use loops are cleaned inside a turn; persists the pruned messages in graph state.
* :func:`wrap` — for any compiled graph with a ``messages`` channel: an outer graph ``freemem → agent`` that
  cleans between turns of multi-turn chat.
* :func:`free_node` and :func:`route_to_clean` / :func:`should_clean` — for hand-built graphs.
* :func:`pre_model_hook` — for the legacy ``langgraph.prebuilt.create_react_agent``.
* :func:`request_tokens` / :func:`request_size` — the tokens of a request's system prompt and tool schemas,
  which the budget counts too (the middleware measures them itself; see ``docs/budget.md``).
* :func:`show_thread` / :func:`restore_thread` (and async twins) — a persisted thread's pruned context next
  to the original rebuilt from any archive, and restoring it as a new checkpoint (any checkpointer).
* :class:`FreeReasoner` — the Free()LM loop for raw reasoning models over an OpenAI-compatible server;
  :class:`InftyThinker` — InftyThink's summary loop for any chat model; :class:`GatedReader` — GRU-Mem's
  gated reader over a long document (and as a tool). Imported on first use, so importing this package never
  pulls the ``openai`` client or the policies in.

Every surface writes edited messages back under their own ids (``add_messages`` replaces them), keeps a bounded
JSON-plain ledger in state (``freemem_ledger``; see :class:`FreeMemoryFields`), records removed spans in
``FreeMemory.archive`` when one is set, and fails open: a cleaner error costs one skipped round and a warning.
"""

from freemem.optional import require_extra

require_extra("langgraph", "langgraph", "langchain", "langchain_core", what="freemem.langgraph")
import importlib
from typing import Any

from freemem.langgraph._core import (
    LAST_CALL_KEY,
    LEDGER_KEY,
    LEDGER_MAX_EVENTS,
    TOKENS_KEY,
    CleanStep,
    FreeMemoryFields,
    StepStats,
    bounded_ledger,
)
from freemem.langgraph.middleware import FreeMemoryAgentState, FreeMemoryMiddleware
from freemem.langgraph.node import FreeNode, free_node, pre_model_hook, route_to_clean, should_clean
from freemem.langgraph.recall import RECALL_TOOL_NAME, recall_tool
from freemem.langgraph.request import RequestSize, request_size, request_tokens
from freemem.langgraph.threads import ThreadView, arestore_thread, ashow_thread, restore_thread, show_thread
from freemem.langgraph.wrap import messages_update, wrap

__all__ = [
    "RECALL_TOOL_NAME",
    "recall_tool",
    "LAST_CALL_KEY",
    "LEDGER_KEY",
    "LEDGER_MAX_EVENTS",
    "TOKENS_KEY",
    "CleanStep",
    "FreeMemoryAgentState",
    "FreeMemoryFields",
    "FreeMemoryMiddleware",
    "FreeNode",
    "FreeReasoner",
    "GatedReader",
    "RequestSize",
    "InftyThinker",
    "StepStats",
    "ThreadView",
    "arestore_thread",
    "ashow_thread",
    "bounded_ledger",
    "free_node",
    "messages_update",
    "pre_model_hook",
    "request_size",
    "request_tokens",
    "restore_thread",
    "route_to_clean",
    "should_clean",
    "show_thread",
    "wrap",
]


_LAZY = {"FreeReasoner": "reasoner", "GatedReader": "gated", "InftyThinker": "inftythink"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'freemem.langgraph' has no attribute {name!r}")
    return getattr(importlib.import_module(f"freemem.langgraph.{module}"), name)
