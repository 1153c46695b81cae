"""``FreeMemoryMiddleware``: freemem inside ``langchain.agents.create_agent``.

It runs before every model call (``before_model`` / ``abefore_model``), so a single long turn with dozens of
tool calls is cleaned *between* model calls, not only between turns. The pruned messages are written back to
graph state — edited messages keep their ids, so the ``add_messages`` reducer replaces them in place and the
checkpointer stores the pruned thread — and a bounded, JSON-plain ledger of cleaning events lives next to
them in ``freemem_ledger``. It also wraps the model call (``wrap_model_call`` / ``awrap_model_call``) to
measure what the model receives besides the messages::

    from langchain.agents import create_agent
    from freemem import FreeMemory
    from freemem.langgraph import FreeMemoryMiddleware

    agent = create_agent(model, tools, middleware=[FreeMemoryMiddleware(FreeMemory(budget=32_000))],
                         checkpointer=saver)

The budget is the whole request the model receives: the system prompt (the agent's ``system_prompt`` or a
system message in state), every bound tool's schema (the ``recall`` tool included, as
``convert_to_openai_tool`` gives it), the messages, and their images and documents by pixel size and pages.
Each model call measures the system prompt and the tools (:mod:`freemem.langgraph.request`) and remembers
them per thread; the next ``before_model`` gives the messages ``budget - (system + tools)``. A call whose
request would still pass the budget (the first of a thread in this process, a prompt that grew) is cleaned
inside the call, for that call (the state is pruned at the next step). When the system prompt and the tools
alone pass the budget, a ``RuntimeWarning`` and a ledger note say so once per thread and rounds for the
budget stop. See ``docs/budget.md``.

Graph steps: ``before_model`` is a node, so each model call costs two supersteps instead of one (an agent
loop of N tool calls: about ``3N + 3`` steps with the middleware, ``2N + 2`` without); set
``recursion_limit`` accordingly (``docs/budget.md``).
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NotRequired

from langchain.agents.middleware.types import AgentMiddleware, AgentState, ModelRequest, OmitFromInput
from langgraph.runtime import Runtime

from freemem.langgraph._core import CleanStep, StepStats, bounded_ledger, last_value, latest_time, thread_id_of
from freemem.langgraph.recall import recall_tool
from freemem.langgraph.request import RequestSize, request_size
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
    freemem_tokens_at_last_clean: NotRequired[Annotated[int, OmitFromInput, last_value]]
    freemem_last_call_at: NotRequired[Annotated[float | None, OmitFromInput, latest_time]]


class FreeMemoryMiddleware(AgentMiddleware[FreeMemoryAgentState, Any, Any]):
    """Clean the agent's messages before each model call and persist the pruned state.

    Args:
        memory: the engine; ``FreeMemory()`` (heuristic cleaner, every 5,000 new tokens, loops) by default.
            Give it a ``budget`` to keep every model request (system prompt, tool schemas and messages)
            under that many tokens.
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
        # The request's tokens outside the messages, per thread, measured at each model call; a thread not
        # measured yet starts from the agent's latest (one agent: one system prompt and tool set).
        self._fixed = _FixedSizes()
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

    def request_size(self, thread: str | None = None) -> RequestSize | None:
        """The system prompt and tool schemas of ``thread``'s latest model request (else the agent's latest,
        None before the first model call), in tokens by the memory's counter."""
        return self._fixed.get(thread)

    def before_model(self, state: FreeMemoryAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Check the triggers and, when one fires, clean; return the update that persists the result."""
        thread = thread_id_of(runtime=runtime)
        return self._step.run(state, thread=thread, fixed=self._fixed.fixed(thread))

    async def abefore_model(self, state: FreeMemoryAgentState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        """Async twin of :meth:`before_model`."""
        thread = thread_id_of(runtime=runtime)
        return await self._step.arun(state, thread=thread, fixed=self._fixed.fixed(thread))

    def _measure(self, request: ModelRequest) -> tuple[str | None, RequestSize]:
        thread = thread_id_of(runtime=getattr(request, "runtime", None))
        system = getattr(request, "system_message", None)
        if system is None:
            system = request.system_prompt
        size = request_size(getattr(self.memory, "counter", None) or "approx", system_prompt=system,
                            tools=list(request.tools or ()), image_rule=getattr(self.memory, "image_rule", None))
        self._fixed.set(thread, size)
        return thread, size

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], Any]) -> Any:
        """Measure the request's system prompt and tools for the next steps; when the request passes the
        budget as it stands, send the model a cleaned copy of its messages."""
        thread, size = self._measure(request)
        pruned = self._step.fit_request(request.messages, fixed=size.fixed, thread=thread)
        return handler(request if pruned is None else request.override(messages=pruned))

    async def awrap_model_call(self, request: ModelRequest,
                               handler: Callable[[ModelRequest], Awaitable[Any]]) -> Any:
        """Async twin of :meth:`wrap_model_call`."""
        thread, size = self._measure(request)
        pruned = await self._step.afit_request(request.messages, fixed=size.fixed, thread=thread)
        return await handler(request if pruned is None else request.override(messages=pruned))


class _FixedSizes:
    """The latest :class:`RequestSize` per thread (bounded), and the agent's latest for new threads."""

    def __init__(self, max_threads: int = 10_000) -> None:
        self._sizes: OrderedDict[str, RequestSize] = OrderedDict()
        self._latest: RequestSize | None = None
        self._lock = threading.Lock()
        self._max = max_threads

    def get(self, thread: str | None) -> RequestSize | None:
        with self._lock:
            return self._sizes.get(thread or "", self._latest)

    def fixed(self, thread: str | None) -> int | None:
        size = self.get(thread)
        return None if size is None else size.fixed

    def set(self, thread: str | None, size: RequestSize) -> None:
        with self._lock:
            self._sizes[thread or ""] = size
            self._sizes.move_to_end(thread or "")
            self._latest = size
            while len(self._sizes) > self._max:
                self._sizes.popitem(last=False)
