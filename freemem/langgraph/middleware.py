"""``FreeMemoryMiddleware``: freemem inside ``langchain.agents.create_agent``.

It runs before every model call (``before_model`` / ``abefore_model``), so a single long turn with dozens of
tool calls is cleaned *between* model calls, not only between turns. The pruned messages are written back to
graph state — edited messages keep their ids, so the ``add_messages`` reducer replaces them in place and the
checkpointer stores the pruned thread — and a bounded, JSON-plain ledger of cleaning events lives next to
them in ``freemem_ledger``::

    from langchain.agents import create_agent
    from freemem import FreeMemory
    from freemem.langgraph import FreeMemoryMiddleware

    agent = create_agent(model, tools, middleware=[FreeMemoryMiddleware(FreeMemory(budget=32_000))],
                         checkpointer=saver)

The budget counts the messages in state; the system prompt and the tool schemas come on top, so leave room
for them.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

from langchain.agents.middleware.types import AgentMiddleware, AgentState, OmitFromInput
from langgraph.runtime import Runtime
from typing_extensions import NotRequired

from freemem.langgraph._core import CleanStep, StepStats, _last_value, bounded_ledger, latest_time, thread_id_of
from freemem.langgraph.recall import recall_tool
from freemem.memory import FreeMemory
from freemem.policy import MemoryPolicy

__all__ = ["FreeMemoryAgentState", "FreeMemoryMiddleware"]


class FreeMemoryAgentState(AgentState[Any]):
    """Agent state with freemem's fields: the bounded ledger, the size after the last clean, and the time of
    the last model call (for the prompt cache's TTL).

    Both are output-only (not part of the agent's input schema) and JSON-plain. (The reducer must be the
    last ``Annotated`` metadata: that is where LangGraph looks for it.)
    """

    freemem_ledger: NotRequired[Annotated[list[dict[str, Any]], OmitFromInput, bounded_ledger]]
    freemem_tokens_at_last_clean: NotRequired[Annotated[int, OmitFromInput, _last_value]]
    freemem_last_call_at: NotRequired[Annotated[float | None, OmitFromInput, latest_time]]


class FreeMemoryMiddleware(AgentMiddleware[FreeMemoryAgentState, Any, Any]):
    """Clean the agent's messages before each model call and persist the pruned state.

    Args:
        memory: the engine; ``FreeMemory()`` (heuristic cleaner, every 5,000 new tokens, loops) by default.
            Give it a ``budget`` to keep every model request under that many tokens of messages.
        name: the middleware's node name prefix (must be unique among an agent's middleware).
        recall: offer the agent the ``recall`` tool (:mod:`freemem.langgraph.recall`), which pages freed
            text and folded messages back in by the id their marker or fold message names. Needs
            ``memory.archive``; without one the tool is not offered (a warning says so).
        recall_page_chars: the most characters one ``recall`` call returns.

    Attributes:
        stats: process-local counters of what the steps did and how long they took (:class:`StepStats`).
    """

    state_schema = FreeMemoryAgentState

    def __init__(self, memory: MemoryPolicy | None = None, *, name: str | None = None, recall: bool = False,
                 recall_page_chars: int = 4000) -> None:
        super().__init__()
        self.memory = memory if memory is not None else FreeMemory()
        self._name = name
        self._step = CleanStep(self.memory, state_fields=True)
        self.tools = []
        if recall:
            if getattr(self.memory, "archive", None) is None:
                warnings.warn("freemem: recall=True without an archive: there is nothing to page back in, so "
                              "the recall tool is not offered (pass FreeMemory(archive=...))", RuntimeWarning,
                              stacklevel=2)
            else:
                self.tools = [recall_tool(self.memory, page_chars=recall_page_chars)]

    @property
    def name(self) -> str:
        return self._name or type(self).__name__

    @property
    def stats(self) -> StepStats:
        return self._step.stats

    def before_model(self, state: FreeMemoryAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Check the triggers and, when one fires, clean; return the update that persists the result."""
        return self._step.run(state, thread=thread_id_of(runtime=runtime))

    async def abefore_model(self, state: FreeMemoryAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Async twin of :meth:`before_model`."""
        return await self._step.arun(state, thread=thread_id_of(runtime=runtime))
