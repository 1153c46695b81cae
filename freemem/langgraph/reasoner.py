"""FreeReasoner: the Free()LM reasoning loop (:mod:`freemem.policies.reasoner`) as a LangGraph graph.

::

    START -> generate --(running)--> clean -> generate -> ... --(answer | budget | rounds | context)--> END

The state is plain JSON, so any LangGraph checkpointer persists it; with one, an interrupted run resumes with
:meth:`FreeReasoner.resume`. One server is enough: SGLang serving ``--model-path M --enable-lora --lora-paths
free=A`` answers generation requests for ``M`` (no adapter) and cleaning requests for ``M:free``::

    reasoner = FreeReasoner("http://127.0.0.1:30000/v1", model="Qwen/Qwen3-8B", adapter="free")
    result = reasoner.invoke("How many primes are there below 100?")
    result.answer, result.status, result.ledger

The cleaner is a :class:`~freemem.cleaners.free_module.FreeModuleCleaner` by default; pass ``memory=`` to use
any :class:`~freemem.FreeMemory` (another cleaner, a token counter, an archive, markers). Cleaning fails open: a
cleaner that is down costs one skipped round (a warning and a ledger entry with the error), never the run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from freemem.core.errors import ConfigError
from freemem.langgraph.steps import PolicyGraph
from freemem.policies.reasoner import (
    QWEN3_THINKING_PROMPT,
    FreeReasonerSteps,
    ReasonerResult,
    ReasonerState,
    Status,
)

__all__ = ["QWEN3_THINKING_PROMPT", "FreeReasoner", "ReasonerResult", "ReasonerState", "Status"]


class FreeReasoner(PolicyGraph, FreeReasonerSteps):
    """The Free()LM reasoning loop (generate L tokens → clean with the Free-Module → continue) as a graph.

    Takes every argument of :class:`~freemem.policies.reasoner.FreeReasonerSteps` (the server, model, memory,
    chunk and budget sizes, sampling, retries), plus:

    Args:
        checkpointer: any LangGraph checkpointer (``InMemorySaver``, SQLite, freemem's Redis saver...).
    """

    # -- graph -------------------------------------------------------------------------------------------

    def _clean_node(self, state: ReasonerState, config: Any) -> dict[str, Any]:
        return self.clean(state, _thread_of(config))

    async def _aclean_node(self, state: ReasonerState, config: Any) -> dict[str, Any]:
        return await self.aclean(state, _thread_of(config))

    @staticmethod
    def _route(state: ReasonerState) -> str:
        return "clean" if state.get("status") == "running" else "__end__"

    def build_graph(self) -> Any:
        """The compiled graph: ``generate`` and ``clean`` in turn until the status says stop."""
        builder = StateGraph(ReasonerState)
        builder.add_node("generate", RunnableLambda(self.generate, afunc=self.agenerate, name="generate"))
        builder.add_node("clean", RunnableLambda(self._clean_node, afunc=self._aclean_node, name="clean"))
        builder.add_edge(START, "generate")
        builder.add_conditional_edges("generate", self._route, {"clean": "clean", "__end__": END})
        builder.add_edge("clean", "generate")
        return builder.compile(checkpointer=self.checkpointer)

    # -- public API --------------------------------------------------------------------------------------

    def _config(self, thread_id: str | None, config: Mapping[str, Any] | None) -> tuple[dict[str, Any], str | None]:
        cfg: dict[str, Any] = dict(config or {})
        configurable = dict(cfg.get("configurable", {}))
        thread = thread_id or configurable.get("thread_id")
        if thread is None and self.checkpointer is not None:
            thread = uuid.uuid4().hex
        if thread is not None:
            configurable["thread_id"] = thread
        cfg["configurable"] = configurable
        cfg.setdefault("recursion_limit", 2 * self.max_rounds + 8)
        return cfg, thread

    def invoke(self, question: str, *, thread_id: str | None = None,
               config: Mapping[str, Any] | None = None) -> ReasonerResult:
        """Reason about ``question`` until an answer or a limit. With a checkpointer every step is persisted
        under ``thread_id`` (a new id when None; see :attr:`ReasonerResult.thread_id`)."""
        cfg, thread = self._config(thread_id, config)
        state = self.graph.invoke(self.initial_state(question), cfg)
        return ReasonerResult.from_state(state, thread_id=thread, think_end=self.think_end)

    async def ainvoke(self, question: str, *, thread_id: str | None = None,
                      config: Mapping[str, Any] | None = None) -> ReasonerResult:
        """Async twin of :meth:`invoke`."""
        cfg, thread = self._config(thread_id, config)
        state = await self.graph.ainvoke(self.initial_state(question), cfg)
        return ReasonerResult.from_state(state, thread_id=thread, think_end=self.think_end)

    def _require_thread(self, thread_id: str) -> dict[str, Any]:
        if self.checkpointer is None:
            raise ConfigError("resuming needs a checkpointer (FreeReasoner(checkpointer=...))")
        cfg, _ = self._config(thread_id, None)
        return cfg

    def resume(self, thread_id: str) -> ReasonerResult:
        """Continue an interrupted run from its last checkpoint (a finished run is returned as it is)."""
        cfg = self._require_thread(thread_id)
        snapshot = self.graph.get_state(cfg)
        if not snapshot.values:
            raise ConfigError(f"no FreeReasoner run is stored under thread {thread_id!r}")
        state = self.graph.invoke(None, cfg) if snapshot.next else snapshot.values
        return ReasonerResult.from_state(state, thread_id=thread_id, think_end=self.think_end)

    async def aresume(self, thread_id: str) -> ReasonerResult:
        """Async twin of :meth:`resume`."""
        cfg = self._require_thread(thread_id)
        snapshot = await self.graph.aget_state(cfg)
        if not snapshot.values:
            raise ConfigError(f"no FreeReasoner run is stored under thread {thread_id!r}")
        state = await self.graph.ainvoke(None, cfg) if snapshot.next else snapshot.values
        return ReasonerResult.from_state(state, thread_id=thread_id, think_end=self.think_end)

    def get_state(self, thread_id: str) -> ReasonerResult | None:
        """The stored state of a thread as a result (status ``running`` while unfinished); None if unknown."""
        cfg = self._require_thread(thread_id)
        values = self.graph.get_state(cfg).values
        return ReasonerResult.from_state(values, thread_id=thread_id, think_end=self.think_end) if values else None


def _thread_of(config: Any) -> str:
    configurable = (config or {}).get("configurable", {}) if isinstance(config, Mapping) else {}
    return str(configurable.get("thread_id") or "default")
